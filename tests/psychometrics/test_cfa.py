"""The listwise ML CFA agrees with R's lavaan (fixtures from tests/reference/lavaan_cfa.R; no R
needed): `fit_fiml(..., missing="listwise")`, the complete-data ML.

Model: the classic three-factor model on lavaan::HolzingerSwineford1939, lavaan's cfa() defaults.
Tolerances:

- chi-square: relative 1e-5; CFI, TLI, RMSEA, SRMR: absolute 1e-5. Observed differences are
  below 1e-9: these are smooth functions of the minimum of F, which both optimisers reach to high
  precision (F is flat there, so small parameter differences barely move it).
- standardised loadings: absolute 1e-5. These depend on the parameters themselves, which lavaan's
  nlminb stops with a looser tolerance than ours; observed differences are about 3.4e-7.
- df: exact.
"""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.psychometrics.estimation import SingularCovariance
from pipeline.psychometrics.fiml import fit_fiml

REFERENCE = Path(__file__).parents[1] / "reference"


def fit_cfa(data: pd.DataFrame, model: dict[str, list[str]]):
    return fit_fiml(data, model, missing="listwise")


MODEL = {
    "visual": ["x1", "x2", "x3"],
    "textual": ["x4", "x5", "x6"],
    "speed": ["x7", "x8", "x9"],
}


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return pd.read_csv(REFERENCE / "lavaan_hs1939.csv")


@pytest.fixture(scope="module")
def result(data):
    return fit_cfa(data, MODEL)


@pytest.fixture(scope="module")
def lavaan_fit() -> pd.Series:
    return pd.read_csv(REFERENCE / "lavaan_cfa_fit.csv").set_index("measure")["value"]


def test_converges_on_all_rows(result):
    assert result.converged
    assert result.n == 301


def test_chisq_and_df_match_lavaan(result, lavaan_fit):
    assert result.df == int(lavaan_fit["df"])
    assert result.chisq == pytest.approx(lavaan_fit["chisq"], rel=1e-5)


@pytest.mark.parametrize("measure", ["cfi", "tli", "rmsea", "srmr"])
def test_fit_indices_match_lavaan(result, lavaan_fit, measure):
    assert getattr(result, measure) == pytest.approx(lavaan_fit[measure], abs=1e-5)


def test_standardized_loadings_match_lavaan(result):
    expected = pd.read_csv(REFERENCE / "lavaan_cfa_loadings.csv")
    assert list(result.loadings.columns) == ["factor", "item", "std_loading"]
    assert result.loadings[["factor", "item"]].equals(expected[["factor", "item"]])
    np.testing.assert_allclose(
        result.loadings["std_loading"], expected["std_loading"], rtol=0, atol=1e-5
    )


def test_incomplete_rows_are_deleted_listwise(data, result):
    holes = data.copy()
    holes.loc[[3, 50, 200], "x5"] = np.nan
    holes.loc[[7], "x9"] = np.nan
    with_holes = fit_cfa(holes, MODEL)
    complete = fit_cfa(holes.dropna(), MODEL)
    assert with_holes.n == 297
    assert with_holes.chisq == pytest.approx(complete.chisq, rel=1e-9)


def test_columns_outside_the_model_are_ignored(data, result):
    extra = data.assign(noise=np.arange(len(data)) % 7)
    assert fit_cfa(extra, MODEL).chisq == pytest.approx(result.chisq, rel=1e-9)


def test_saturated_single_factor_fits_perfectly(data):
    fit = fit_cfa(data, {"visual": ["x1", "x2", "x3"]})
    assert fit.df == 0
    assert fit.chisq == pytest.approx(0, abs=1e-8)
    # lavaan reports chisq 0, df 0, cfi 1, tli 1, rmsea 0, srmr 0 for this model.
    assert (fit.cfi, fit.tli, fit.rmsea) == (1.0, 1.0, 0.0)
    assert fit.srmr == pytest.approx(0, abs=1e-8)


def test_rejects_items_on_two_factors(data):
    with pytest.raises(ValueError, match="exactly one factor"):
        fit_cfa(data, {"a": ["x1", "x2", "x3"], "b": ["x3", "x4", "x5"]})


def test_rejects_unknown_items(data):
    with pytest.raises(ValueError, match="not in the data"):
        fit_cfa(data, {"a": ["x1", "x2", "nope"]})


def test_refuses_an_item_without_variance(data):
    """lavaan refuses a covariance matrix that is not positive definite; so do we, by name,
    instead of reporting a 'converged' fit with an absurd chi-square."""
    with pytest.raises(SingularCovariance, match=r"301 complete rows: no variance in item\(s\) x2"):
        fit_cfa(data.assign(x2=3.0), MODEL)


def test_refuses_linearly_dependent_items(data):
    copied = data.assign(x5=2 * data["x4"] + 1)
    with pytest.raises(SingularCovariance, match="items x4, x5 are linearly dependent"):
        fit_cfa(copied, MODEL)
