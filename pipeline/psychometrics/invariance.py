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

import numpy as np
import pandas as pd

from pipeline.psychometrics.estimation import check_model
from pipeline.psychometrics.fiml import FIT_MEASURES, FimlResult, fit_sample, sample
from pipeline.psychometrics.layout import group_layout, layout_of
from pipeline.psychometrics.score_test import score_tests

LEVELS = {
    "configural": (),
    "metric": ("loadings",),
    "scalar": ("loadings", "intercepts"),
}
MIN_GROUPS = 2  # invariance compares groups: with fewer, the table only says it needs more
# The partial search frees one equality at a time, but keeps at least this many items per factor
# whose parameter stays equal across the groups (a marker's loading, fixed to 1, counts).
MIN_INVARIANT_ITEMS = 2
# The block each level adds, and so the one its partial search may free.
SEARCHED = {"metric": "loadings", "scalar": "intercepts"}
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
    "free",
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
    single = layout_of(items, model)
    rows, accepted, free = [], None, frozenset()
    for level, equal in LEVELS.items():
        fit = fit_sample(shared, model, estimator, equal, free)
        if accepted is None:
            rows.append(_row(base, model, level, fit, estimator, None, free, "baseline"))
            accepted = fit
            continue
        holds = _holds(fit, accepted, estimator)
        rows.append(_row(base, model, level, fit, estimator, accepted, free, _decision(holds)))
        searched = free
        while not holds:
            candidate = _next_to_free(shared, single, model, level, equal, searched, fit)
            if candidate is None:
                break
            searched = searched | {candidate}
            fit = fit_sample(shared, model, estimator, equal, searched)
            holds = _holds(fit, accepted, estimator)
        if searched != free:
            partial_row = _row(
                base, model, f"{level} (partial)", fit, estimator, accepted, searched, ""
            )
            partial_row["decision"] = "holds partially" if holds else "rejected"
            rows.append(partial_row)
        if holds:
            accepted, free = fit, searched
    return pd.DataFrame(rows, columns=list(TABLE_COLUMNS)).astype({"n": int, "df": int})


def _decision(holds: bool) -> str:
    return "holds" if holds else "rejected"


def _holds(fit: FimlResult, previous: FimlResult, estimator: str) -> bool:
    (cfi, rmsea), (cfi0, rmsea0) = _judged(fit, estimator), _judged(previous, estimator)
    return cfi - cfi0 >= DELTA_CFI_MIN and rmsea - rmsea0 <= DELTA_RMSEA_MAX


def _row(base, model, level, fit, estimator, previous, free, decision) -> dict:
    cfi, rmsea = _judged(fit, estimator)
    deltas = (float("nan"), float("nan"))
    if previous is not None:
        cfi0, rmsea0 = _judged(previous, estimator)
        deltas = (cfi - cfi0, rmsea - rmsea0)
    return (
        base
        | {"model": level, "groups": _groups_text(fit.groups, fit.n_per_group), "n": fit.n}
        | {name: getattr(fit, name) for name in FIT_MEASURES}
        | {"delta_cfi": deltas[0], "delta_rmsea": deltas[1], "free": _named(free, model)}
        | {"decision": decision}
    )


def _named(free: frozenset, model: dict[str, list[str]]) -> str:
    """The freed parameters in lavaan's group.partial syntax ("visual=~x2", "x3~1")."""
    factors, items = list(model), [item for its in model.values() for item in its]
    single = layout_of(items, model)
    names = []
    for block, position in sorted(free):
        if block == "loadings":
            item = single.free_loadings[position]
            names.append(f"{factors[single.factor_of[item]]}=~{items[item]}")
        else:  # the search frees loadings and intercepts only (SEARCHED)
            names.append(f"{items[position]}~1")
    return "; ".join(names)


def _next_to_free(shared, single, model, level, equal, free, fit) -> tuple[str, int] | None:
    """The constraint of the level's own block with the largest score test (lavTestScore) whose
    release keeps MIN_INVARIANT_ITEMS equal items on its factor; None when there is none."""
    block = SEARCHED[level]
    layout = group_layout(single, len(fit.groups), tuple(equal), free)
    tests = score_tests(shared, layout, fit.estimates, list(model), fit.loadings["item"].tolist())
    tests = tests[(tests["block"] == block)].sort_values("X2", ascending=False)
    for position in tests["position"]:
        candidate = (block, int(position))
        if candidate not in free and _leaves_enough(single, free | {candidate}, block):
            return candidate
    return None


def _leaves_enough(single, free: frozenset, block: str) -> bool:
    """Whether every factor keeps MIN_INVARIANT_ITEMS items whose `block` entry is equal."""
    for factor in range(single.m):
        items = np.flatnonzero(single.factor_of == factor)
        if block == "loadings":  # positions among the free loadings; the marker stays equal
            free_items = single.free_loadings
            equal = 1 + sum((block, k) not in free for k, j in enumerate(free_items) if j in items)
        else:
            equal = sum((block, int(j)) not in free for j in items)
        if equal < min(MIN_INVARIANT_ITEMS, len(items)):
            return False
    return True


GROUP_TABLE_COLUMNS = ("variable", *TABLE_COLUMNS, "note")


def group_invariance_table(
    data: pd.DataFrame,
    model: dict[str, list[str]],
    variables: tuple[str, ...],
    estimator: str,
    missing: str,
    min_rows: int,
) -> pd.DataFrame:
    """Invariance across the groups of each background variable in `variables`, as across the
    waves, one block of rows per variable. A group of fewer than `min_rows` rows (the reporting
    minimum, or too few to fit) is left out unnamed, and `note` says how many groups were. With
    no variables, one row whose note says so."""
    if not variables:
        note = "no background variables named for invariance (codebook cfa.groups)"
        return pd.DataFrame([{"note": note}], columns=list(GROUP_TABLE_COLUMNS))
    tables = []
    for variable in variables:
        sizes = data[variable].value_counts()
        kept = sizes[sizes >= min_rows].index
        rows = data[data[variable].isin(kept)]
        table = invariance_table(rows, model, variable, estimator, missing, unit="groups")
        left_out = len(sizes) - len(kept)
        note = f"{left_out} group(s) under {min_rows} rows left out" if left_out else ""
        tables.append(table.assign(variable=variable, note=note))
    return pd.concat(tables, ignore_index=True)[list(GROUP_TABLE_COLUMNS)]
