"""Measurement invariance across groups (waves, or groups the codebook names): configural, metric
and scalar multi-group CFA, agreeing with R's lavaan `cfa(model, data, group =, group.equal =,
estimator =, missing =)`, each level judged against the previous one by Chen's (2007) rules.

Follows lavaan's multi-group defaults (`layout.GroupLayout`): a mean structure, marker-variable
identification in every group, factor means 0 except with equal intercepts, where they are free
in groups 2..G; groups ordered by first appearance in the data. The fits are `fiml.fit_sample`
on one Sample, so the three levels share the saturated model. Under MLR the decisions use the
robust CFI and RMSEA (Zhang and Savalei's after FIML), under ML the normal-theory ones. Checked
against `tests/reference/lavaan_invariance.R` (listwise ML) and `lavaan_fiml_groups.R`.
"""

from __future__ import annotations

import pandas as pd

from pipeline.psychometrics.estimation import check_model
from pipeline.psychometrics.fiml import FIT_MEASURES, FimlResult, fit_sample, sample

LEVELS = {
    "configural": (),
    "metric": ("loadings",),
    "scalar": ("loadings", "intercepts"),
}
MIN_GROUPS = 2  # invariance compares groups: with fewer, the table only says it needs more
# Chen (2007): invariance holds if CFI drops by at most .010 and RMSEA rises by at most .015.
DELTA_CFI_MIN = -0.010
DELTA_RMSEA_MAX = 0.015
TABLE_COLUMNS = (
    "model",
    "estimator",
    "missing",
    "groups",
    "n",
    *FIT_MEASURES,
    "delta_cfi",
    "delta_rmsea",
    "decision",
)


def _groups_text(labels, sizes) -> str:
    return "; ".join(f"{g} ({n})" for g, n in zip(labels, sizes, strict=True))


def _kept(data: pd.DataFrame, items: list[str], group: str, missing: str) -> pd.Series:
    """Rows per group that the fit keeps (FIML: with an answer; listwise: complete)."""
    if group not in data.columns:
        raise ValueError(f"group column not in the data: {group!r}")
    answered = data[items].notna()
    keep = answered.all(axis=1) if missing == "listwise" else answered.any(axis=1)
    rows = data[keep & data[group].notna()]
    return rows.groupby(group, sort=False).size()


def _judged(fit: FimlResult, estimator: str) -> tuple[float, float]:
    """The CFI and RMSEA the decisions use: robust under MLR."""
    if estimator == "MLR":
        return fit.cfi_robust, fit.rmsea_robust
    return fit.cfi, fit.rmsea


def invariance_table(
    data: pd.DataFrame,
    model: dict[str, list[str]],
    group: str,
    estimator: str,
    missing: str,
    unit: str = "groups",
) -> pd.DataFrame:
    """Configural, metric and scalar invariance with the Chen (2007) decision per step: "holds"
    when CFI drops by at most .010 and RMSEA rises by at most .015 against the previous level.

    With fewer than MIN_GROUPS groups with rows to fit nothing is estimable: each level's row
    keeps its groups and n, blank fit, and the reason as `decision`, naming the groups `unit`
    ("not estimable: needs 2 waves (1 in the data)")."""
    items = check_model(data, model)
    sizes = _kept(data, items, group, missing)
    base = {"estimator": estimator, "missing": missing}
    if not model or len(sizes) < MIN_GROUPS:
        reason = f"not estimable: needs {MIN_GROUPS} {unit} ({len(sizes)} in the data)"
        if not model:
            reason = "not estimable: no scale of two or more items to compare"
        groups = _groups_text(sizes.index, sizes)
        rows = [
            base | {"model": level, "groups": groups, "n": int(sizes.sum()), "decision": reason}
            for level in LEVELS
        ]
        return pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
    shared = sample(data, items, group, missing)
    rows, previous = [], None
    for level, equal in LEVELS.items():
        fit = fit_sample(shared, model, estimator, equal)
        cfi, rmsea = _judged(fit, estimator)
        if previous is None:
            delta_cfi = delta_rmsea = float("nan")
            decision = "baseline"
        else:
            delta_cfi, delta_rmsea = cfi - previous[0], rmsea - previous[1]
            ok = delta_cfi >= DELTA_CFI_MIN and delta_rmsea <= DELTA_RMSEA_MAX
            decision = "holds" if ok else "rejected"
        rows.append(
            base
            | {"model": level, "groups": _groups_text(fit.groups, fit.n_per_group), "n": fit.n}
            | {name: getattr(fit, name) for name in FIT_MEASURES}
            | {"delta_cfi": delta_cfi, "delta_rmsea": delta_rmsea, "decision": decision}
        )
        previous = (cfi, rmsea)
    return pd.DataFrame(rows, columns=list(TABLE_COLUMNS)).astype({"n": int, "df": int})
