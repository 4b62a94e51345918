"""Measurement invariance across groups (waves, or groups the codebook names): configural, metric
and scalar multi-group CFA, agreeing with R's lavaan `cfa(model, data, group =, group.equal =,
estimator =, missing =)`, each level judged against the previous one by Chen's (2007) rules.

Follows lavaan's multi-group defaults (`layout.GroupLayout`): a mean structure, marker-variable
identification in every group, factor means 0 except with equal intercepts, where they are free
in groups 2..G; groups ordered by first appearance in the data. The fits are `fiml.fit_sample`
on one Sample, so the three levels share the saturated model. Under MLR the decisions use the
robust CFI and RMSEA (Zhang and Savalei's after FIML), under ML the normal-theory ones. Checked
against `tests/reference/lavaan_invariance.R` (listwise ML) and `lavaan_fiml_groups.R`.

The waves as groups treat a panel member's answers in two waves as two independent persons.
`longitudinal_invariance_table` fits the panel as it is: per scale, one model over the waves in
wide format (`layout.wide_layout`: a factor per wave, the same item's residuals correlated
across the waves, a person absent in a wave handled by FIML), its levels fixing loadings and
intercepts equal over the waves, under the same rules and partial search. Checked against
`tests/reference/lavaan_wide.R`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.psychometrics.estimation import SingularCovariance, check_model
from pipeline.psychometrics.fiml import FIT_MEASURES, FimlResult, fit_layout, sample
from pipeline.psychometrics.layout import group_layout, layout_of, wide_layout, wide_model
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

    def build(equal, free):
        return group_layout(single, len(shared.labels), equal, free)

    rows = _levels(shared, model, estimator, build)
    return pd.DataFrame([base | row for row in rows], columns=list(TABLE_COLUMNS)).astype(
        {"n": int, "df": int}
    )


def _levels(shared, model, estimator, build) -> list[dict]:
    """Each level's fit and decision, with a partial search where a level is rejected;
    `build(equal, free)` gives the layout of a level's equalities less the freed entries."""
    rows, accepted, free = [], None, frozenset()
    for level, equal in LEVELS.items():
        fit = fit_layout(shared, build(equal, free), model, estimator)
        if accepted is None:
            rows.append(_row(model, level, fit, estimator, None, free, "baseline"))
            accepted = fit
            continue
        holds = _holds(fit, accepted, estimator)
        rows.append(_row(model, level, fit, estimator, accepted, free, _decision(holds)))
        searched = free
        while not holds:
            candidate = _next_to_free(shared, build, model, level, equal, searched, fit)
            if candidate is None:
                break
            searched = searched | {candidate}
            fit = fit_layout(shared, build(equal, searched), model, estimator)
            holds = _holds(fit, accepted, estimator)
        if searched != free:
            partial_row = _row(model, f"{level} (partial)", fit, estimator, accepted, searched, "")
            partial_row["decision"] = "holds partially" if holds else "rejected"
            rows.append(partial_row)
        if holds:
            accepted, free = fit, searched
    return rows


def _decision(holds: bool) -> str:
    return "holds" if holds else "rejected"


def _holds(fit: FimlResult, previous: FimlResult, estimator: str) -> bool:
    (cfi, rmsea), (cfi0, rmsea0) = _judged(fit, estimator), _judged(previous, estimator)
    return cfi - cfi0 >= DELTA_CFI_MIN and rmsea - rmsea0 <= DELTA_RMSEA_MAX


def _row(model, level, fit, estimator, previous, free, decision) -> dict:
    cfi, rmsea = _judged(fit, estimator)
    deltas = (float("nan"), float("nan"))
    if previous is not None:
        cfi0, rmsea0 = _judged(previous, estimator)
        deltas = (cfi - cfi0, rmsea - rmsea0)
    return (
        {"model": level, "groups": _groups_text(fit.groups, fit.n_per_group), "n": fit.n}
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


def _next_to_free(shared, build, model, level, equal, free, fit) -> tuple[str, int] | None:
    """The constraint of the level's own block with the largest score test (lavTestScore) whose
    release keeps MIN_INVARIANT_ITEMS equal items on its factor; None when there is none."""
    block = SEARCHED[level]
    layout = build(tuple(equal), free)
    tests = score_tests(shared, layout, fit.estimates, list(model), fit.loadings["item"].tolist())
    tests = tests[(tests["block"] == block)].sort_values("X2", ascending=False)
    for position in tests["position"]:
        candidate = (block, int(position))
        if candidate not in free and _leaves_enough(layout.single, free | {candidate}, block):
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


LONGITUDINAL_COLUMNS = ("scale", *TABLE_COLUMNS, "note")
# Mplus's default minimum covariance coverage: the share of the persons fitted who answered in
# both waves of a pair; below it the covariances across those waves rest on too few persons.
MIN_COVERAGE = 0.10


def longitudinal_invariance_table(
    data: pd.DataFrame,
    model: dict[str, list[str]],
    person: str,
    wave: str,
    estimator: str,
    missing: str,
) -> pd.DataFrame:
    """Per factor of `model` (a scale), configural, metric and scalar invariance over the waves
    of one model in wide format, a row per person (`data[person]`; a row without one is a
    person of its own) and the scale's items at each wave (`data[wave]`, in order of first
    appearance) as its columns, under the rules of `invariance_table` with the partial search.
    `groups` gives the persons who answered in each wave, `n` the persons fitted. A scale that
    cannot be fitted (fewer than MIN_GROUPS waves, a pair of waves answered by under
    MIN_COVERAGE of the persons, too few persons or a singular covariance matrix) keeps its rows
    with the reason as `decision`. `note` counts the rows left unlinked (`wide_rows`)."""
    waves = [str(w) for w in pd.unique(data[wave].dropna())]
    wide, ambiguous = wide_rows(data, check_model(data, model), person, wave)
    note = (
        f"{ambiguous} rows whose {person} repeats within a wave are taken as persons of their own"
        if ambiguous
        else ""
    )
    tables = []
    for factor, scale_items in model.items():
        one = {factor: scale_items}
        columns = wide_model(one, waves)
        present = [wide[its].notna() for its in columns.values()]
        if missing == "listwise":  # complete at every wave
            complete = np.logical_and.reduce([p.all(axis=1) for p in present])
            answered = pd.DataFrame({w: complete for w in waves})[complete]
        else:
            answered = pd.DataFrame({w: p.any(axis=1) for w, p in zip(waves, present, strict=True)})
            answered = answered[answered.any(axis=1)]
        groups = _groups_text(waves, answered.sum().astype(int))
        base = {"scale": factor, "estimator": estimator, "missing": missing}
        base |= {"groups": groups, "note": note}
        reason = _not_estimable(answered, waves)
        if reason is None:
            try:
                shared = sample(wide, [i for its in columns.values() for i in its], None, missing)
            except (SingularCovariance, ValueError) as error:  # the reason names the items
                reason = f"not estimable: {error}"
        if reason is not None:
            rows = [base | {"model": lv, "n": len(answered), "decision": reason} for lv in LEVELS]
        else:

            def build(equal, free, one=one):
                return wide_layout(one, len(waves), equal, free)

            rows = [
                base | row | {"groups": groups}
                for row in _levels(shared, columns, estimator, build)
            ]
        tables.append(pd.DataFrame(rows, columns=list(LONGITUDINAL_COLUMNS)))
    if not tables:
        reason = "not estimable: no scale of two or more items to compare"
        rows = [{"model": level, "decision": reason} for level in LEVELS]
        tables.append(pd.DataFrame(rows, columns=list(LONGITUDINAL_COLUMNS)))
    return pd.concat(tables, ignore_index=True).astype({"n": "Int64", "df": "Int64"})


def _not_estimable(answered: pd.DataFrame, waves: list[str]) -> str | None:
    """Why the wide model cannot be fitted to persons who answered as `answered` (person x
    wave), or None."""
    if len(waves) < MIN_GROUPS:
        return f"not estimable: needs {MIN_GROUPS} waves ({len(waves)} in the data)"
    for a, first in enumerate(waves):
        for second in waves[a + 1 :]:
            coverage = (answered[first] & answered[second]).mean() if len(answered) else 0.0
            if coverage < MIN_COVERAGE:
                return (
                    f"not estimable: {coverage:.0%} of the persons answered in both {first} and "
                    f"{second} (at least {MIN_COVERAGE:.0%} needed)"
                )
    return None


def wide_rows(
    data: pd.DataFrame, items: list[str], person: str, wave: str
) -> tuple[pd.DataFrame, int]:
    """One row per person, a column "item@wave" per item and wave, and how many rows were taken
    as persons of their own because their person repeats within a wave (two people who chose
    the same linkage code: which rows of the other waves are whose is unknown, so none of that
    person's rows is linked). A row with no person is a person of its own too."""
    if person not in data.columns or wave not in data.columns:
        raise ValueError(f"the data need the columns {person!r} and {wave!r}")
    ids = data[person].astype("string").fillna("")
    repeated = pd.DataFrame({"id": ids, "wave": data[wave]}).duplicated(keep=False)
    ambiguous = ids.isin(ids[repeated & (ids != "")])
    unlinked = (ids == "") | ambiguous
    rows = pd.Series(range(len(data)), index=data.index).astype(str)
    key = ("id:" + ids).where(~unlinked, "row:" + rows)
    wide = data.assign(_person=key).pivot(index="_person", columns=wave, values=items)
    wide.columns = [f"{item}@{w}" for item, w in wide.columns]
    return wide.reset_index(drop=True), int(ambiguous.sum())


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
