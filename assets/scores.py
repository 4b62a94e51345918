"""Stage 4: scale scores and their aggregation to companies, per wave."""

import dagster as dg
import pandas as pd

import pipeline.psychometrics.aggregation
from assets.partitions import waves
from assets.resources import ScanConfig
from assets.versions import shareable, source_version
from pipeline.instrument.scoring import recode_items, score_scales

SCORES_CODE_VERSION = source_version(
    "pipeline.instrument.scoring",
    "pipeline.psychometrics.aggregation",
    __name__,
)


@dg.asset(
    partitions_def=waves,
    io_manager_key="shareable_io",
    group_name="scores",
    code_version=shareable(SCORES_CODE_VERSION),
    kinds={"pandas", "parquet"},
    metadata={"file": "scale_scores.parquet"},
)
def scale_scores(
    scan: ScanConfig, pseudonymised_responses: pd.DataFrame
) -> dg.Output[pd.DataFrame]:
    """Per response: the mean of the valid (reverse-coded) items of each scale when at least
    `min_valid` of them are answered, else missing; `<scale>_n_valid` beside each score."""
    scores = score_scales(pseudonymised_responses, scan.codebook())
    frame = pd.concat(
        [pseudonymised_responses[["person_id", "company_id", "wave"]], scores], axis=1
    )
    return dg.Output(frame, metadata={"dagster/row_count": len(frame)})


@dg.multi_asset(
    partitions_def=waves,
    group_name="scores",
    code_version=shareable(SCORES_CODE_VERSION),
    outs={
        "company_scores": dg.AssetOut(
            io_manager_key="shareable_io",
            kinds={"csv"},
            metadata={"file": "company_scores.csv"},
            description="Per company and culture scale: n, mean, sd, 95% CI (clipped to the "
            "scale's range), rwg(j); companies under the reporting minimum are `suppressed` and "
            "carry no values.",
        ),
        "aggregation": dg.AssetOut(
            io_manager_key="shareable_io",
            kinds={"csv"},
            metadata={"file": "aggregation.csv"},
            description="Per culture scale: ICC(1), ICC(2), mean group size, mean rwg(j); "
            "without culture scales one row whose `note` says so.",
        ),
    },
)
def company_aggregates(
    scan: ScanConfig, pseudonymised_responses: pd.DataFrame, scale_scores: pd.DataFrame
):
    """Culture scales aggregated to companies, as R's multilevel package computes it; without
    culture scales, no companies and an aggregation row that says why."""
    codebook = scan.codebook()
    culture = {n: s for n, s in codebook.scales.items() if s.level == "culture"}
    frame = pd.concat(
        [scale_scores[["company_id", *culture]], recode_items(pseudonymised_responses, codebook)],
        axis=1,
    )
    options = {n: s.response_scale.max - s.response_scale.min + 1 for n, s in culture.items()}
    bounds = {n: (s.response_scale.min, s.response_scale.max) for n, s in culture.items()}
    companies, summary = pipeline.psychometrics.aggregation.company_aggregates(
        frame,
        {n: list(s.items) for n, s in culture.items()},
        "company_id",
        codebook.anonymisation.k,
        options,
        bounds,
    )
    yield dg.Output(companies, "company_scores", metadata={"dagster/row_count": len(companies)})
    yield dg.Output(summary, "aggregation", metadata={"dagster/row_count": len(summary)})
