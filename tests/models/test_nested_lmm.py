"""The profiled nested random-intercept engine against lme4 fixtures and statsmodels' MixedLM.

Fixtures come from `tests/reference/lme4_nested.R` (lme4 1.1-31, bobyqa with rhoend = 1e-12).
"""

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from statsmodels.regression.mixed_linear_model import MixedLM

from pipeline.models.nested_lmm import _design, _profile, fit_nested, profiled_loglik

REFERENCE = Path(__file__).parents[1] / "reference"
FITS = [
    "sleepstudy_reml",
    "sleepstudy_ml",
    "nested_reml",
    "nested_ml",
    "boundary_reml",
    "boundary_ml",
    "person0_reml",
    "person0_ml",
]
DATA = {
    "sleepstudy": "sleepstudy",
    "nested": "data",
    "boundary": "boundary_data",
    "person0": "person0_data",
}
NESTED_TERMS = ["(Intercept)", "wave", "x", "z"]
LME4_REL = 1e-6  # achieved: <= 2.1e-7 (nested_ml variances); 1e-4 would be ample
LME4_ABS = 1e-10  # for variances lme4 puts at exactly 0
LOGLIK_REL = 1e-9  # the criterion is flat at the optimum, so logLik agrees far beyond 1e-4
SM_REL = 1e-6


def read(name: str) -> pd.DataFrame:
    return pd.read_csv(REFERENCE / f"lme4_nested_{name}.csv")


def dataset(fit_name: str) -> pd.DataFrame:
    return read(DATA[fit_name.split("_")[0]])


def fit(fit_name: str, person=None):
    """Our fit; the nested data's own person labels unless `person` replaces them."""
    data = dataset(fit_name)
    reml = fit_name.endswith("_reml")
    if fit_name.startswith("sleepstudy"):
        X = np.column_stack([np.ones(len(data)), data["Days"]])
        return fit_nested(data["Reaction"], X, ["(Intercept)", "Days"], data["Subject"], reml=reml)
    X = np.column_stack([np.ones(len(data)), data["wave"], data["x"], data["z"]])
    person = data["person"] if person is None else person
    return fit_nested(data["y"], X, NESTED_TERMS, data["company"], person, reml=reml)


def statsmodels_fit(fit_name: str):
    """statsmodels' MixedLM; BFGS with gtol 1e-9, as its default stops ~1e-5 short in ML fits."""
    data = dataset(fit_name)
    if fit_name.startswith("sleepstudy"):
        model = MixedLM.from_formula("Reaction ~ Days", data, groups="Subject")
    else:
        model = MixedLM.from_formula(
            "y ~ wave + x + z",
            data,
            groups="company",
            re_formula="1",
            vc_formula={"person": "0 + C(person)"},
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = model.fit(reml=fit_name.endswith("_reml"), method="bfgs", gtol=1e-9, maxiter=1000)
    return model, result


def relative(a, b) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b) / np.abs(b)))


@pytest.mark.parametrize("fit_name", FITS)
def test_agrees_with_lme4(fit_name):
    ours = fit(fit_name)
    fixef = read("fixef").query("fit == @fit_name")
    varcomp = read("varcomp").query("fit == @fit_name").set_index("component")["variance"]
    summary = read("fit").set_index("fit").loc[fit_name]

    assert ours.names == tuple(fixef["term"])
    assert relative(ours.fe, fixef["estimate"]) < LME4_REL
    assert relative(ours.se, fixef["se"]) < LME4_REL
    assert set(ours.variances) == set(varcomp.index)
    for component, variance in varcomp.items():
        if variance == 0:
            assert ours.variances[component] == pytest.approx(0, abs=LME4_ABS)
        else:
            assert ours.variances[component] == pytest.approx(variance, rel=LME4_REL)
    assert ours.loglik == pytest.approx(summary["loglik"], rel=LOGLIK_REL)
    assert ours.reml == summary["reml"]
    assert ours.converged
    assert ours.n_obs == summary["nobs"]
    assert ours.n_groups["company"] == summary["n_company"]
    assert ours.n_groups.get("person", 0) == np.nan_to_num(summary["n_person"])
    assert ours.engine == "nested_lmm"


@pytest.mark.parametrize(
    "fit_name", ["sleepstudy_reml", "sleepstudy_ml", "nested_reml", "nested_ml"]
)
def test_agrees_with_statsmodels(fit_name):
    ours = fit(fit_name)
    model, theirs = statsmodels_fit(fit_name)
    assert theirs.converged

    assert relative(ours.fe, theirs.fe_params) < SM_REL
    # With variance components (exog_vc) statsmodels' bse_fe, from its whole inverted Hessian,
    # differs from s2 (X' V^-1 X)^-1 by ~0.2%: the Hessian's fixed-effect/variance cross terms are
    # not 0 there. The fixed-effect block of that Hessian alone is s2 (X' V^-1 X)^-1.
    hessian, _ = model.hessian(theirs.params_object)
    k = len(ours.fe)
    assert relative(ours.cov, np.linalg.inv(-hessian[:k, :k])) < SM_REL
    assert ours.variances["company"] == pytest.approx(theirs.cov_re.iloc[0, 0], rel=SM_REL)
    if "person" in ours.variances:
        assert ours.variances["person"] == pytest.approx(theirs.vcomp[0], rel=SM_REL)
    assert ours.variances["residual"] == pytest.approx(theirs.scale, rel=SM_REL)
    assert ours.loglik == pytest.approx(theirs.llf, rel=SM_REL)


@pytest.mark.parametrize("fit_name", ["boundary_reml", "boundary_ml"])
def test_at_the_boundary_no_worse_than_statsmodels(fit_name):
    """statsmodels does not converge when the company variance is 0, so compare the optimum."""
    ours = fit(fit_name)
    _, theirs = statsmodels_fit(fit_name)
    assert ours.variances["company"] == 0
    assert ours.loglik >= theirs.llf - 1e-9


def test_persons_are_keyed_within_companies():
    """Labels p1, p2, ... restart in every company; globally unique labels give the same fit."""
    data = dataset("nested_reml")
    assert data.groupby("person")["company"].nunique().max() > 1
    assert data.groupby(["company", "person"]).size().min() == 1  # some persons answered once
    restarting = fit("nested_reml")
    unique = fit("nested_reml", person=data["company"] + "/" + data["person"])
    np.testing.assert_allclose(unique.fe, restarting.fe, rtol=1e-12)
    assert unique.variances == pytest.approx(restarting.variances, rel=1e-10)
    assert restarting.n_groups["person"] == len(data.groupby(["company", "person"]))


@pytest.mark.parametrize("reml", [True, False])
@pytest.mark.parametrize(
    "slope, correlated, params",
    [
        (False, False, [0.3, 0.5]),
        (True, True, [0.3, 0.1, 0.2, 0.5]),
        (True, False, [0.3, 0.2, 0.5]),
    ],
)
def test_gradient_matches_finite_differences(slope, correlated, params, reml):
    data = dataset("nested_reml")
    X = np.column_stack([np.ones(len(data)), data["wave"], data["x"], data["z"]])
    wave = data["wave"] if slope else None
    design = _design(data["y"], X, data["company"], data["person"], wave, correlated)
    params, h = np.array(params), 1e-6
    numeric = [
        (
            _profile(design, params + h * step, reml).deviance
            - _profile(design, params - h * step, reml).deviance
        )
        / (2 * h)
        for step in np.eye(len(params))
    ]
    np.testing.assert_allclose(_profile(design, params, reml).gradient, numeric, rtol=1e-6)


@pytest.mark.parametrize("reml", [True, False])
@pytest.mark.parametrize("slope, correlated", [(False, False), (True, True), (True, False)])
def test_profiled_loglik_at_a_fit_is_its_loglik(slope, correlated, reml):
    """The guard's probe evaluates any fit's variances: at the fast engine's own it gives back the
    fit's logLik, so the variances are mapped to the optimiser's parameters correctly."""
    data = dataset("nested_reml")
    X = np.column_stack([np.ones(len(data)), data["wave"], data["x"], data["z"]])
    args = (data["y"], X, data["company"], data["person"], reml, data["wave"] if slope else None)
    ours = fit_nested(args[0], X, NESTED_TERMS, *args[2:], slope_correlated=correlated)
    at_fit = profiled_loglik(*args, slope_correlated=correlated, variances=ours.variances)
    assert at_fit == pytest.approx(ours.loglik, rel=1e-12)


@pytest.mark.parametrize("fit_name", ["nested_reml", "nested_ml", "person0_reml", "person0_ml"])
def test_profiled_loglik_at_statsmodels_variances_is_its_loglik(fit_name):
    """Both engines compute the same likelihood, so the guard can hold a statsmodels fit, converged
    or not (bfgs is not on the person0 data), against the fast engine's profile."""
    data = dataset(fit_name)
    _, theirs = statsmodels_fit(fit_name)
    variances = {
        "company": theirs.cov_re.iloc[0, 0],
        "person": theirs.vcomp[0],
        "residual": theirs.scale,
    }
    X = np.column_stack([np.ones(len(data)), data["wave"], data["x"], data["z"]])
    reml = fit_name.endswith("_reml")
    at_theirs = profiled_loglik(
        data["y"], X, data["company"], data["person"], reml, variances=variances
    )
    assert at_theirs == pytest.approx(theirs.llf, rel=1e-12)
