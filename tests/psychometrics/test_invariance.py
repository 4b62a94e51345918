"""Listwise multi-group ML CFA (`fit_fiml(..., group=, missing="listwise")`) agrees with R's
lavaan (fixtures from tests/reference/lavaan_invariance.R; no R needed).

Model: the classic three-factor model on lavaan::HolzingerSwineford1939 with group = "school",
fitted as configural, metric (group.equal = "loadings") and scalar (group.equal = c("loadings",
"intercepts")) invariance. Tolerances:

- chi-square: relative 1e-5; CFI, TLI, RMSEA: absolute 1e-5. Observed differences are below
  1e-9 (smooth functions of the minimum of the objective).
- SRMR: absolute 1e-5. It depends on the parameters themselves, which lavaan's nlminb stops with
  a looser tolerance than ours; observed differences are about 2e-7.
- df: exact.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.psychometrics.fiml import fit_fiml
from pipeline.psychometrics.invariance import (
    LEVELS,
    TABLE_COLUMNS,
    group_invariance_table,
    invariance_table,
)

REFERENCE = Path(__file__).parents[1] / "reference"


def fit_multigroup(data, model, group, equal):
    return fit_fiml(data, model, "ML", group=group, equal=equal, missing="listwise")


MODEL = {
    "visual": ["x1", "x2", "x3"],
    "textual": ["x4", "x5", "x6"],
    "speed": ["x7", "x8", "x9"],
}


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return pd.read_csv(REFERENCE / "lavaan_invariance_data.csv")


@pytest.fixture(scope="module")
def lavaan_fit() -> pd.DataFrame:
    return pd.read_csv(REFERENCE / "lavaan_invariance_fit.csv").pivot(
        index="level", columns="measure", values="value"
    )


@pytest.fixture(scope="module")
def results(data):
    return {level: fit_multigroup(data, MODEL, "school", equal) for level, equal in LEVELS.items()}


@pytest.fixture(scope="module")
def table(data):
    return invariance_table(data, MODEL, "school", "ML", "listwise")


def test_groups_and_sizes_match_lavaan(results):
    versions = json.loads((REFERENCE / "lavaan_invariance_versions.json").read_text())
    for result in results.values():
        assert result.converged
        assert result.groups == tuple(versions["groups"])
        assert result.n_per_group == tuple(versions["n"])
        assert result.n == sum(versions["n"])


@pytest.mark.parametrize("level", list(LEVELS))
def test_chisq_and_df_match_lavaan(results, lavaan_fit, level):
    assert results[level].df == int(lavaan_fit.loc[level, "df"])
    assert results[level].chisq == pytest.approx(lavaan_fit.loc[level, "chisq"], rel=1e-5)


@pytest.mark.parametrize("measure", ["cfi", "tli", "rmsea", "srmr"])
@pytest.mark.parametrize("level", list(LEVELS))
def test_fit_indices_match_lavaan(results, lavaan_fit, level, measure):
    assert getattr(results[level], measure) == pytest.approx(
        lavaan_fit.loc[level, measure], abs=1e-5
    )


def test_invariance_table(table, lavaan_fit):
    assert list(table.columns) == list(TABLE_COLUMNS)
    assert table["groups"][0] == "Pasteur (156); Grant-White (145)"
    assert (table["n"] == 301).all()
    assert list(table["model"]) == ["configural", "metric", "scalar", "scalar (partial)"]
    t = table.set_index("model").loc[list(LEVELS)]
    expected_cfi = lavaan_fit["cfi"].reindex(t.index)
    expected_rmsea = lavaan_fit["rmsea"].reindex(t.index)
    np.testing.assert_allclose(t["cfi"], expected_cfi, atol=1e-5)
    for measure in ("tli", "srmr"):
        np.testing.assert_allclose(t[measure], lavaan_fit[measure].reindex(t.index), atol=1e-5)
    np.testing.assert_allclose(t["delta_cfi"].iloc[1:], np.diff(expected_cfi), atol=1e-5)
    np.testing.assert_allclose(t["delta_rmsea"].iloc[1:], np.diff(expected_rmsea), atol=1e-5)
    assert np.isnan(t.loc["configural", "delta_cfi"])
    # lavaan: metric dCFI = -.0025, dRMSEA = -.0041 (holds); scalar dCFI = -.0385 (rejected).
    assert list(t["decision"]) == ["baseline", "holds", "rejected"]
    assert list(t["free"]) == ["", "", ""]
    # The rejected scalar level searches for the intercepts that differ (score tests): freeing
    # two of them the level holds against metric.
    partial = table.iloc[3]
    assert partial["free"] == "x3~1; x7~1" and partial["decision"] == "holds partially"
    assert partial["delta_cfi"] >= -0.010 and partial["df"] == t.loc["scalar", "df"] - 2


def test_rejects_unknown_constraint(data):
    with pytest.raises(ValueError, match="unknown equality"):
        fit_multigroup(data, MODEL, "school", ("slopes",))


def test_one_group_is_not_estimable_and_the_table_says_why(data):
    one = data.assign(school="Pasteur")
    one.loc[0, "x1"] = np.nan  # listwise: the group's complete rows are counted
    table = invariance_table(one, MODEL, "school", "ML", "listwise", unit="schools")
    assert list(table.columns) == list(TABLE_COLUMNS)
    assert list(table["model"]) == list(LEVELS)
    assert (table["groups"] == f"Pasteur ({len(data) - 1})").all()
    assert (table["n"] == len(data) - 1).all()
    assert (table["decision"] == "not estimable: needs 2 schools (1 in the data)").all()
    assert table[list(TABLE_COLUMNS[5:-1])].isna().all().all()
    assert (table["estimator"] == "ML").all() and (table["missing"] == "listwise").all()


def test_missing_group_column(data):
    with pytest.raises(ValueError, match="group column"):
        fit_multigroup(data, MODEL, "wave", ())


def test_group_invariance_leaves_small_groups_out_unnamed(data):
    """A group under the minimum is neither fitted nor named; the note counts it."""
    frame = data.copy()
    frame.loc[:4, "school"] = "Tiny"  # 5 rows
    table = group_invariance_table(frame, MODEL, ("school",), "ML", "listwise", min_rows=10)
    assert list(table["variable"]) == ["school"] * 4  # three levels and the partial scalar
    assert "Tiny" not in " ".join(table["groups"]) and (table["n"] == 296).all()
    assert (table["note"] == "1 group(s) under 10 rows left out").all()
    alone = group_invariance_table(
        frame.assign(school="one"), MODEL, ("school",), "ML", "listwise", min_rows=10
    )
    assert (alone["decision"] == "not estimable: needs 2 groups (1 in the data)").all()


def test_group_invariance_without_variables_says_so(data):
    table = group_invariance_table(data, MODEL, (), "MLR", "fiml", min_rows=10)
    assert len(table) == 1 and table["note"][0].startswith("no background variables named")
    assert table["chisq"].isna().all()
