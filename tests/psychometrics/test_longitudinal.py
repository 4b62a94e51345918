"""Longitudinal invariance in the panel against lavaan 0.6-14 (`tests/reference/lavaan_wide.R`):
one factor, four items, three waves in wide format, with persons absent in a wave and answers
missing at random; configural, metric and scalar by FIML and listwise under ML and MLR, the
score tests of the metric and scalar levels, and the scalar level with y3's intercept at wave 3
free. Tolerance: 1e-4 relative for every fit measure, estimate (of max(|est|, SE)) and SE, X2
within 1e-4 of max(1, X2). Reached: fit measures 1.2e-6, estimates 5.4e-6, SEs 3.5e-6, score
tests 4e-6."""

import re
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from lavaan_reference import (
    MEASURES,
    TOLERANCE,
    assert_estimates_agree,
    assert_fit_agrees,
    relative,
)

from pipeline.psychometrics.fiml import fit_layout, sample
from pipeline.psychometrics.invariance import (
    LEVELS,
    LONGITUDINAL_COLUMNS,
    longitudinal_invariance_table,
    wide_rows,
)
from pipeline.psychometrics.layout import wide_layout, wide_model
from pipeline.psychometrics.score_test import score_tests

REFERENCE = Path(__file__).parents[1] / "reference"
MODEL = {"F": ["y1", "y2", "y3", "y4"]}
WAVES = ["1", "2", "3"]
WIDE = wide_model(MODEL, WAVES)
WIDE_ITEMS = [item for items in WIDE.values() for item in items]
Y3_AT_3 = frozenset({("intercepts", WIDE_ITEMS.index("y3@3"))})


def lavaan_name(name: str) -> str:
    """lavaan's y3_2 and F2 as the wide model names them: y3@2, F@2."""
    return re.sub(r"^(y\d)_(\d)$", r"\1@\2", re.sub(r"^F(\d)$", r"F@\1", name))


def long_data() -> pd.DataFrame:
    """The fixture's persons as a survey delivers them: a row per person and wave answered."""
    wide = pd.read_csv(REFERENCE / "lavaan_wide_data.csv")
    rows = []
    for wave in WAVES:
        part = wide[[f"{item}_{wave}" for item in MODEL["F"]]].set_axis(MODEL["F"], axis=1)
        part = part.assign(person=[f"p{i}" for i in range(len(wide))], wave=wave)
        rows.append(part[part[MODEL["F"]].notna().any(axis=1)])
    return pd.concat(rows, ignore_index=True)


@cache
def shared(missing: str):
    wide, _ = wide_rows(long_data(), MODEL["F"], "person", "wave")
    return sample(wide, WIDE_ITEMS, None, missing)


@cache
def fitted(level: str, missing: str, estimator: str, partial=frozenset()):
    layout = wide_layout(MODEL, len(WAVES), LEVELS[level], partial)
    return fit_layout(shared(missing), layout, WIDE, estimator)


@pytest.mark.parametrize("estimator", ["ML", "MLR"])
@pytest.mark.parametrize("missing", ["fiml", "listwise"])
@pytest.mark.parametrize("level", list(LEVELS))
def test_wide_levels_agree_with_lavaan(level, missing, estimator):
    lavaan_missing = {"fiml": "ml", "listwise": "listwise"}[missing]
    expected = pd.read_csv(REFERENCE / "lavaan_wide_fit.csv")
    expected = expected[
        (expected.level == level)
        & (expected.missing == lavaan_missing)
        & (expected.estimator == estimator)
    ].set_index("measure")["value"]
    result = fitted(level, missing, estimator)
    assert result.converged
    assert_fit_agrees(result, expected, estimator)
    estimates = pd.read_csv(REFERENCE / "lavaan_wide_estimates.csv", keep_default_na=False)
    estimates = estimates[
        (estimates.level == level)
        & (estimates.missing == lavaan_missing)
        & (estimates.estimator == estimator)
    ].assign(lhs=lambda e: e.lhs.map(lavaan_name), rhs=lambda e: e.rhs.map(lavaan_name))
    # listwise lavaan has no intercepts unless they are constrained
    both = assert_estimates_agree(result, estimates, ["lhs", "op", "rhs"])
    assert len(both) > 30
    assert len(both.query("op == '~~' and lhs != rhs and lhs.str.startswith('y')")) == 12


def test_absent_waves_count_by_fiml_and_equalities_hold_over_the_waves():
    """Every person with an answer counts under FIML (listwise: only those complete at every
    wave); the metric level's loadings are one value per item over the waves; the scalar level
    frees the later waves' factor means."""
    people = long_data()["person"].nunique()
    assert fitted("configural", "fiml", "MLR").n == people == 450
    assert fitted("configural", "listwise", "MLR").n < people / 3
    loadings = fitted("metric", "fiml", "ML").parameters.query("op == '=~'")
    by_item = loadings.groupby(loadings.rhs.str[:2])["est"].nunique()
    assert by_item.to_dict() == {"y2": 1, "y3": 1, "y4": 1}
    means = fitted("scalar", "fiml", "ML").parameters.query(
        "op == '~1' and lhs.str.startswith('F')"
    )
    assert list(means.lhs) == ["F@2", "F@3"]


@pytest.mark.parametrize(
    ("level", "partial", "label"),
    [("metric", frozenset(), ""), ("scalar", frozenset(), ""), ("scalar", Y3_AT_3, "y3_3~1")],
)
def test_wide_score_tests_agree_with_lavaan(level, partial, label):
    expected = pd.read_csv(REFERENCE / "lavaan_wide_score.csv", keep_default_na=False)
    expected = expected[(expected.level == level) & (expected.partial == label)]
    expected = expected.assign(lhs=expected.lhs.map(lavaan_name), rhs=expected.rhs.map(lavaan_name))
    fit = fitted(level, "fiml", "ML", partial)
    layout = wide_layout(MODEL, len(WAVES), LEVELS[level], partial)
    mine = score_tests(shared("fiml"), layout, fit.estimates, list(WIDE), WIDE_ITEMS)
    both = mine.merge(expected, on=["lhs", "op", "rhs"], suffixes=("", "_lavaan"))
    assert len(both) == len(mine) == len(expected) >= 6
    difference = np.abs(both["X2"] - both["X2_lavaan"].astype(float))
    assert np.all(difference < TOLERANCE * np.maximum(1.0, both["X2"])), both
    if level == "scalar" and not partial:  # the planted shift has the largest test
        assert mine.loc[mine["X2"].idxmax(), ["lhs", "op"]].tolist() == ["y3@3", "~1"]


def test_the_partial_wide_model_agrees_with_lavaan():
    fit = fitted("scalar", "fiml", "ML", Y3_AT_3)
    expected = pd.read_csv(REFERENCE / "lavaan_wide_partial.csv").set_index("measure")["value"]
    for measure in ("logl", "chisq", "df", "cfi", "tli", "rmsea", "srmr"):
        mine = getattr(fit, MEASURES[measure])
        assert relative(mine, expected[measure]) < TOLERANCE, measure
    intercepts = fit.parameters.query("op == '~1' and lhs.str.startswith('y3')")
    assert intercepts["est"].nunique() == 2  # wave 3 its own, waves 1 and 2 one


@pytest.mark.parametrize("estimator", ["ML", "MLR"])
def test_the_table_finds_the_planted_item(estimator):
    """The search frees y3's intercept at wave 3, where the simulation shifted it, and scalar
    invariance then holds partially; the table's rows are the fits above."""
    table = longitudinal_invariance_table(long_data(), MODEL, "person", "wave", estimator, "fiml")
    assert list(table.columns) == list(LONGITUDINAL_COLUMNS)
    assert list(table["model"]) == ["configural", "metric", "scalar", "scalar (partial)"]
    assert list(table["decision"]) == ["baseline", "holds", "rejected", "holds partially"]
    assert table["free"].iloc[3] == "y3@3~1" and (table["scale"] == "F").all()
    assert table["groups"][0] == "1 (414); 2 (333); 3 (249)" and (table["n"] == 450).all()
    assert table["chisq"][2] == pytest.approx(fitted("scalar", "fiml", estimator).chisq)


def test_one_wave_or_too_little_overlap_is_not_estimable_and_says_why():
    data = long_data()
    one = longitudinal_invariance_table(
        data[data.wave == "1"], MODEL, "person", "wave", "MLR", "fiml"
    )
    assert (one["decision"] == "not estimable: needs 2 waves (1 in the data)").all()
    assert one["chisq"].isna().all() and list(one["model"]) == list(LEVELS)
    # wave 3 answered by other persons than waves 1 and 2: its covariances rest on nobody
    apart = data.assign(person=data.person.where(data.wave != "3", "new" + data.person))
    table = longitudinal_invariance_table(apart, MODEL, "person", "wave", "MLR", "fiml")
    assert (
        table["decision"]
        == "not estimable: 0% of the persons answered in both 1 and 3 (at least 10% needed)"
    ).all()


def test_rows_without_a_person_or_with_one_twice_in_a_wave_are_persons_of_their_own():
    """Two people who chose the same code in one wave: which of the code's rows in the other
    waves is whose is unknown, so none of them is linked, and the table's note counts them."""
    data = long_data()
    unlinked = data.assign(person="")
    wide, ambiguous = wide_rows(unlinked, MODEL["F"], "person", "wave")
    assert len(wide) == len(data) and sorted(wide.columns) == sorted(WIDE_ITEMS)
    assert wide.notna().any(axis=1).all() and ambiguous == 0
    twice = pd.concat([data, data.iloc[[5]].assign(y1=1.0)], ignore_index=True)
    person = data.person.iloc[5]
    rows_of_person = int((twice.person == person).sum())
    wide, ambiguous = wide_rows(twice, MODEL["F"], "person", "wave")
    assert ambiguous == rows_of_person >= 2
    assert len(wide) == data.person.nunique() - 1 + rows_of_person
    table = longitudinal_invariance_table(twice, MODEL, "person", "wave", "ML", "fiml")
    note = f"{rows_of_person} rows whose person repeats within a wave are taken as persons of"
    note += " their own"
    assert (table["note"] == note).all() and person not in note
    assert (table["n"] == len(wide)).all()
