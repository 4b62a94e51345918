"""Stage 4: scale scores and their reliability, per wave, from the shareable responses."""

import sys

import dagster as dg
import pandas as pd

import pipeline.aggregation
import pipeline.cfa
import pipeline.reliability
import pipeline.scoring
from assets.partitions import waves
from assets.resources import ScanConfig
from assets.versions import source_version
from pipeline.aggregation import aggregation_table, company_table
from pipeline.cfa import fit_cfa
from pipeline.reliability import reliability_tables
from pipeline.scoring import recode_items, score_scales

SCORES_CODE_VERSION = source_version(
    pipeline.scoring,
    pipeline.reliability,
    pipeline.cfa,
    pipeline.aggregation,
    sys.modules[__name__],
)
ALPHA_WARNING = 0.60


@dg.asset(
    partitions_def=waves,
    io_manager_key="shareable_io",
    group_name="scores",
    code_version=SCORES_CODE_VERSION,
    kinds={"pandas", "parquet"},
    metadata={"file": "scale_scores.parquet"},
)
def scale_scores(scan: ScanConfig, anonymised_responses: pd.DataFrame) -> dg.Output[pd.DataFrame]:
    """Per response: the mean of the valid (reverse-coded) items of each scale when at least
    `min_valid` of them are answered, else missing; `<scale>_n_valid` beside each score."""
    scores = score_scales(anonymised_responses, scan.codebook())
    frame = pd.concat([anonymised_responses[["person_id", "company_id", "wave"]], scores], axis=1)
    return dg.Output(frame, metadata={"dagster/row_count": len(frame)})


@dg.multi_asset(
    partitions_def=waves,
    group_name="scores",
    code_version=SCORES_CODE_VERSION,
    outs={
        "reliability": dg.AssetOut(
            io_manager_key="shareable_io",
            kinds={"csv"},
            metadata={"file": "reliability.csv"},
            description="Alpha, standardised alpha, omega total and mean r per scale (psych).",
        ),
        "item_statistics": dg.AssetOut(
            io_manager_key="shareable_io",
            kinds={"csv"},
            metadata={"file": "item_statistics.csv"},
            description="Per item: n, mean, sd, r_drop and alpha if dropped (psych).",
        ),
    },
)
def reliability_stats(scan: ScanConfig, anonymised_responses: pd.DataFrame):
    scales, items = reliability_tables(anonymised_responses, scan.codebook())
    yield dg.Output(scales, "reliability", metadata={"dagster/row_count": len(scales)})
    yield dg.Output(items, "item_statistics", metadata={"dagster/row_count": len(items)})


@dg.asset_check(asset="reliability", partitions_def=waves)
def alpha_at_least_060(reliability: pd.DataFrame) -> dg.AssetCheckResult:
    """Warns when a scale's alpha falls below .60 in the wave."""
    low = reliability[reliability["alpha"] < ALPHA_WARNING].set_index("scale")["alpha"]
    return dg.AssetCheckResult(
        passed=low.empty,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"below_060": dg.MetadataValue.json(low.round(3).to_dict())},
    )


class CfaNotConverged(RuntimeError):
    """The measurement model's fit did not converge; its numbers are not published."""


@dg.multi_asset(
    partitions_def=waves,
    group_name="scores",
    code_version=SCORES_CODE_VERSION,
    outs={
        "cfa_fit": dg.AssetOut(
            io_manager_key="shareable_io",
            kinds={"csv"},
            metadata={"file": "cfa_fit.csv"},
            description="Fit of the scan's measurement model (ML CFA, as lavaan's cfa()).",
        ),
        "cfa_loadings": dg.AssetOut(
            io_manager_key="shareable_io",
            kinds={"csv"},
            metadata={"file": "cfa_loadings.csv"},
            description="Standardised loadings of the measurement model.",
        ),
    },
)
def measurement_model(scan: ScanConfig, anonymised_responses: pd.DataFrame):
    """Each item on its scale, every scale a factor, factors correlated; complete rows only."""
    codebook = scan.codebook()
    model = {name: list(scale.items) for name, scale in codebook.scales.items()}
    result = fit_cfa(recode_items(anonymised_responses, codebook), model)
    if not result.converged:
        raise CfaNotConverged(f"the CFA of {len(model)} scales on {result.n} rows did not converge")
    fit = pd.DataFrame(
        [
            {
                "model": "scales",
                "n": result.n,
                "chisq": result.chisq,
                "df": result.df,
                "cfi": result.cfi,
                "tli": result.tli,
                "rmsea": result.rmsea,
                "srmr": result.srmr,
            }
        ]
    )
    yield dg.Output(fit, "cfa_fit", metadata={"n": result.n, "cfi": result.cfi})
    yield dg.Output(result.loadings, "cfa_loadings", metadata={"dagster/row_count": len(model)})


@dg.multi_asset(
    partitions_def=waves,
    group_name="scores",
    code_version=SCORES_CODE_VERSION,
    outs={
        "company_scores": dg.AssetOut(
            io_manager_key="shareable_io",
            kinds={"csv"},
            metadata={"file": "company_scores.csv"},
            description="Per company and culture scale: n, mean, sd, 95% CI, rwg(j); companies "
            "under the reporting minimum are `suppressed` and carry no values.",
        ),
        "aggregation": dg.AssetOut(
            io_manager_key="shareable_io",
            kinds={"csv"},
            metadata={"file": "aggregation.csv"},
            description="Per culture scale: ICC(1), ICC(2), mean group size, mean rwg(j).",
        ),
    },
)
def company_aggregates(
    scan: ScanConfig, anonymised_responses: pd.DataFrame, scale_scores: pd.DataFrame
):
    """Culture scales aggregated to companies, as R's multilevel package computes it."""
    codebook = scan.codebook()
    culture = {n: s for n, s in codebook.scales.items() if s.level == "culture"}
    frame = pd.concat(
        [scale_scores[["company_id", *culture]], recode_items(anonymised_responses, codebook)],
        axis=1,
    )
    options = {n: s.response_scale.max - s.response_scale.min + 1 for n, s in culture.items()}
    companies = pd.concat(
        [
            company_table(
                frame,
                name,
                "company_id",
                min_n=codebook.anonymisation.k,
                items=list(scale.items),
                n_options=options[name],
            )
            for name, scale in culture.items()
        ],
        ignore_index=True,
    )
    summary = aggregation_table(
        frame, {n: list(s.items) for n, s in culture.items()}, "company_id", options
    )
    yield dg.Output(companies, "company_scores", metadata={"dagster/row_count": len(companies)})
    yield dg.Output(summary, "aggregation", metadata={"dagster/row_count": len(summary)})
