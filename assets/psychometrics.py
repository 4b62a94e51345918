"""Stage 5: psychometric evidence for the scan: reliability and the measurement model per wave,
and measurement invariance across the waves."""

import dagster as dg
import pandas as pd

from assets.partitions import waves
from assets.resources import ALL_WAVES, ScanConfig
from assets.versions import shareable, source_version
from pipeline.instrument.scoring import recode_items, score_scales
from pipeline.psychometrics.cfa import measurement_tables, scale_model
from pipeline.psychometrics.invariance import (
    group_invariance_table,
    invariance_table,
    longitudinal_invariance_table,
)
from pipeline.psychometrics.reliability import reliability_tables
from pipeline.psychometrics.validity import pair_table, scale_table

PSYCHOMETRICS_CODE_VERSION = source_version(
    "pipeline.instrument.scoring",
    "pipeline.psychometrics.reliability",
    "pipeline.psychometrics.cfa",
    "pipeline.psychometrics.estimation",
    "pipeline.psychometrics.fiml",
    "pipeline.psychometrics.invariance",
    "pipeline.psychometrics.layout",
    "pipeline.psychometrics.validity",
    __name__,
)
ALPHA_WARNING = 0.60


@dg.multi_asset(
    partitions_def=waves,
    group_name="psychometrics",
    code_version=shareable(PSYCHOMETRICS_CODE_VERSION),
    outs={
        "reliability": dg.AssetOut(
            io_manager_key="shareable_io",
            kinds={"csv"},
            metadata={"file": "reliability.csv"},
            description="Alpha with a bootstrap 95% CI, standardised alpha, omega total and mean r "
            "per scale (psych).",
        ),
        "item_statistics": dg.AssetOut(
            io_manager_key="shareable_io",
            kinds={"csv"},
            metadata={"file": "item_statistics.csv"},
            description="Per item: n, mean, sd, r_drop and alpha if dropped (psych).",
        ),
    },
)
def reliability_stats(
    context: dg.AssetExecutionContext, scan: ScanConfig, pseudonymised_responses: pd.DataFrame
):
    """Bootstrap seeds are derived from the wave and the scale (see `bootstrap_seed`)."""
    scales, items = reliability_tables(
        pseudonymised_responses, scan.codebook(), context.partition_key
    )
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
    group_name="psychometrics",
    code_version=shareable(PSYCHOMETRICS_CODE_VERSION),
    outs={
        "cfa_fit": dg.AssetOut(
            io_manager_key="shareable_io",
            kinds={"csv"},
            metadata={"file": "cfa_fit.csv"},
            description="Fit of the scan's measurement model (CFA as lavaan's cfa(), with the "
            "codebook's estimator and missing-data treatment; by default FIML with MLR).",
        ),
        "cfa_loadings": dg.AssetOut(
            io_manager_key="shareable_io",
            kinds={"csv"},
            metadata={"file": "cfa_loadings.csv"},
            description="Standardised loadings of the measurement model.",
        ),
        "validity_scales": dg.AssetOut(
            io_manager_key="shareable_io",
            kinds={"csv"},
            metadata={"file": "validity_scales.csv"},
            description="Per scale: composite reliability, AVE and the Fornell-Larcker criterion "
            "from the measurement model.",
        ),
        "validity_pairs": dg.AssetOut(
            io_manager_key="shareable_io",
            kinds={"csv"},
            metadata={"file": "validity_pairs.csv"},
            description="Per pair of scales: HTMT (semTools) and the correlation of the scale "
            "scores with its 95% CI (culture-outcome rows: the culture scales' association "
            "with the outcomes).",
        ),
    },
)
def measurement_model(scan: ScanConfig, pseudonymised_responses: pd.DataFrame):
    """Each item on its scale, every scale of at least two items a factor, factors correlated;
    estimated as the codebook's `cfa:` says. What cannot be estimated is said in the fit table's
    `note`. The validity evidence rests on this fit (CR, AVE and Fornell-Larcker from its
    loadings and factor correlations); its HTMT uses pairwise item correlations, so every
    answer counts there too."""
    codebook = scan.codebook()
    scales = {name: list(scale.items) for name, scale in codebook.scales.items()}
    data = recode_items(pseudonymised_responses, codebook)
    fit, loadings, result = measurement_tables(
        data, scales, codebook.cfa.estimator, codebook.cfa.missing
    )
    if result is not None and not result.converged:
        raise CfaNotConverged(f"the CFA of the scales on {result.n} rows did not converge")
    yield dg.Output(
        fit,
        "cfa_fit",
        metadata={
            "n": int(fit["n"].iat[0]),
            "estimator": codebook.cfa.estimator,
            "missing": codebook.cfa.missing,
            "note": str(fit["note"].iat[0]),
        },
    )
    yield dg.Output(loadings, "cfa_loadings", metadata={"dagster/row_count": len(loadings)})
    correlations = result.factor_correlations if result is not None else pd.DataFrame()
    validity = scale_table(scales, loadings, correlations)
    yield dg.Output(validity, "validity_scales", metadata={"dagster/row_count": len(validity)})
    levels = {
        level: [n for n, s in codebook.scales.items() if s.level == level]
        for level in (
            "culture",
            "outcome",
        )
    }
    scores = score_scales(pseudonymised_responses, codebook)
    pairs = pair_table(data, scales, scores, levels["culture"], levels["outcome"], "pairwise")
    yield dg.Output(pairs, "validity_pairs", metadata={"dagster/row_count": len(pairs)})


def _all_waves(scan: ScanConfig, pseudonymised_responses: dict[str, pd.DataFrame]):
    """The measurement model, every wave's rows (items recoded, with `wave`, `person_id` and
    `company_id`) and the codebook's `cfa:` choices."""
    codebook = scan.codebook()
    model, _ = scale_model({name: list(scale.items) for name, scale in codebook.scales.items()})
    responses = pd.concat([pseudonymised_responses[w] for w in sorted(pseudonymised_responses)])
    data = recode_items(responses.reset_index(drop=True), codebook)
    data[["person_id", "company_id", "wave"]] = responses[
        ["person_id", "company_id", "wave"]
    ].to_numpy()
    return model, data, codebook.cfa


@dg.asset(
    io_manager_key="shareable_io",
    group_name=ALL_WAVES,
    code_version=shareable(PSYCHOMETRICS_CODE_VERSION),
    kinds={"csv"},
    metadata={"file": "invariance.csv"},
)
def measurement_invariance(
    scan: ScanConfig, pseudonymised_responses: dict[str, pd.DataFrame]
) -> dg.Output[pd.DataFrame]:
    """Configural, metric and scalar invariance of the measurement model across the waves
    (multi-group CFA with the waves as groups, as lavaan's `cfa(group = "wave", group.equal =)`,
    estimated as the codebook's `cfa:` says), with Chen's (2007) decision rules. With fewer
    than two waves `decision` says it is not estimable."""
    model, data, cfa = _all_waves(scan, pseudonymised_responses)
    table = invariance_table(data, model, "wave", cfa.estimator, cfa.missing, unit="waves")
    return dg.Output(
        table,
        metadata={
            "waves": sorted(pseudonymised_responses),
            "decisions": dg.MetadataValue.json(
                dict(zip(table["model"], table["decision"], strict=True))
            ),
        },
    )


@dg.asset(
    io_manager_key="shareable_io",
    group_name=ALL_WAVES,
    code_version=shareable(PSYCHOMETRICS_CODE_VERSION),
    kinds={"csv"},
    metadata={"file": "longitudinal_invariance.csv"},
)
def longitudinal_invariance(
    scan: ScanConfig, pseudonymised_responses: dict[str, pd.DataFrame]
) -> dg.Output[pd.DataFrame]:
    """Configural, metric and scalar invariance over the waves in the panel: per scale one model
    in wide format (a factor per wave, the same item's residuals correlated across the waves,
    persons linked by `person_id` within their company, absent waves handled by FIML),
    estimated as the codebook's `cfa:` says, with the partial search. Beside
    `measurement_invariance`, which treats the waves as independent groups."""
    model, data, cfa = _all_waves(scan, pseudonymised_responses)
    # a linkage code is a person within a company: the same code elsewhere is someone else
    linked = data["person_id"].fillna("") != ""
    data["panel"] = (data["company_id"] + "/" + data["person_id"]).where(linked, "")
    table = longitudinal_invariance_table(data, model, "panel", "wave", cfa.estimator, cfa.missing)
    final = table.groupby("scale", sort=False)["decision"].last()
    return dg.Output(
        table,
        metadata={
            "waves": sorted(pseudonymised_responses),
            "dagster/row_count": len(table),
            "last_decision": dg.MetadataValue.json(final.to_dict()),
        },
    )


@dg.asset(
    partitions_def=waves,
    io_manager_key="shareable_io",
    group_name="psychometrics",
    code_version=shareable(PSYCHOMETRICS_CODE_VERSION),
    kinds={"csv"},
    metadata={"file": "group_invariance.csv"},
)
def group_invariance(scan: ScanConfig, reported_responses: pd.DataFrame) -> dg.Output[pd.DataFrame]:
    """Configural, metric and scalar invariance within the wave across the groups of each
    background variable the codebook's `cfa.groups` names, under the rules of the waves'
    invariance (partial search included), on the pseudonymised values the reports use
    (`reported_responses`). A group under the reporting minimum k, or with no more rows than
    items, is left out unnamed."""
    codebook = scan.codebook()
    model, _ = scale_model({name: list(scale.items) for name, scale in codebook.scales.items()})
    data = recode_items(reported_responses, codebook)
    variables = codebook.cfa.groups
    data[list(variables)] = reported_responses[list(variables)]
    min_rows = max(codebook.anonymisation.k, sum(map(len, model.values())) + 1)
    cfa = codebook.cfa
    table = group_invariance_table(data, model, variables, cfa.estimator, cfa.missing, min_rows)
    return dg.Output(
        table, metadata={"dagster/row_count": len(table), "variables": list(variables)}
    )
