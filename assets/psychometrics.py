"""Stage 5: psychometric evidence for the scan: reliability and the measurement model per wave,
and measurement invariance across the waves."""

import sys

import dagster as dg
import pandas as pd

import pipeline.instrument.scoring
import pipeline.psychometrics.cfa
import pipeline.psychometrics.invariance
import pipeline.psychometrics.reliability
from assets.partitions import waves
from assets.resources import ALL_WAVES, ScanConfig
from assets.versions import source_version
from pipeline.instrument.scoring import recode_items
from pipeline.psychometrics.cfa import measurement_tables
from pipeline.psychometrics.invariance import invariance_table
from pipeline.psychometrics.reliability import reliability_tables

PSYCHOMETRICS_CODE_VERSION = source_version(
    pipeline.instrument.scoring,
    pipeline.psychometrics.reliability,
    pipeline.psychometrics.cfa,
    pipeline.psychometrics.invariance,
    sys.modules[__name__],
)
ALPHA_WARNING = 0.60


@dg.multi_asset(
    partitions_def=waves,
    group_name="psychometrics",
    code_version=PSYCHOMETRICS_CODE_VERSION,
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
    context: dg.AssetExecutionContext, scan: ScanConfig, anonymised_responses: pd.DataFrame
):
    """Bootstrap seeds are derived from the wave and the scale (see `bootstrap_seed`)."""
    scales, items = reliability_tables(anonymised_responses, scan.codebook(), context.partition_key)
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
    code_version=PSYCHOMETRICS_CODE_VERSION,
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
    """Each item on its scale, every scale of at least two items a factor, factors correlated;
    complete rows only. What cannot be estimated is said in the fit table's `note`."""
    codebook = scan.codebook()
    scales = {name: list(scale.items) for name, scale in codebook.scales.items()}
    data = recode_items(anonymised_responses, codebook)
    fit, loadings, result = measurement_tables(data, scales)
    if result is not None and not result.converged:
        raise CfaNotConverged(f"the CFA of the scales on {result.n} rows did not converge")
    yield dg.Output(
        fit, "cfa_fit", metadata={"n": int(fit["n"].iat[0]), "note": str(fit["note"].iat[0])}
    )
    yield dg.Output(loadings, "cfa_loadings", metadata={"dagster/row_count": len(loadings)})


@dg.asset(
    io_manager_key="shareable_io",
    group_name=ALL_WAVES,
    code_version=PSYCHOMETRICS_CODE_VERSION,
    kinds={"csv"},
    metadata={"file": "invariance.csv"},
)
def measurement_invariance(
    scan: ScanConfig, anonymised_responses: dict[str, pd.DataFrame]
) -> dg.Output[pd.DataFrame]:
    """Configural, metric and scalar invariance of the measurement model across the waves
    (multi-group CFA with the waves as groups, as lavaan's `cfa(group = "wave", group.equal =)`),
    with Chen's (2007) decision rules. With fewer than two waves `decision` says it is not
    estimable."""
    codebook = scan.codebook()
    model = {name: list(scale.items) for name, scale in codebook.scales.items()}
    responses = pd.concat([anonymised_responses[w] for w in sorted(anonymised_responses)])
    data = recode_items(responses.reset_index(drop=True), codebook)
    data["wave"] = responses["wave"].to_numpy()
    table = invariance_table(data, model, "wave", unit="waves")
    return dg.Output(
        table,
        metadata={
            "waves": sorted(anonymised_responses),
            "decisions": dg.MetadataValue.json(
                dict(zip(table["model"], table["decision"], strict=True))
            ),
        },
    )
