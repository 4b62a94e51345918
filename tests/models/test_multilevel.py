"""The statsmodels multilevel engine and model layer agree with lme4 (fixtures: lme4_models.R;
for the guard against a fit short of the optimum, lme4_nested.R's person0 fits).

No R is needed: the R scripts' output is committed. Tolerance 1e-4 relative for fixed effects,
SEs, variance components, logLik, AIC, BIC and R^2; observed differences are ~1e-6 or smaller.
"""

import json
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats

from pipeline.models import multilevel as ml
from pipeline.models.mixed_fit import MixedFit
from pipeline.models.nested_lmm import fit_nested, profiled_loglik

REFERENCE = Path(__file__).parents[1] / "reference"
TOL = 1e-4
FIXED = pd.read_csv(REFERENCE / "lme4_models_fixed.csv")
FIT = pd.read_csv(REFERENCE / "lme4_models_fit.csv")
SLEEP = pd.read_csv(REFERENCE / "lme4_models_sleepstudy.csv")
SIM = pd.read_csv(REFERENCE / "lme4_models_sim.csv")
WAVE0 = SIM[SIM.wave == "2019-T0"]
VARIANCE_COLUMNS = {
    "company": "var_company",
    "person": "var_person",
    "wave_slope": "var_wave_slope",
    "company_wave_cov": "cov_company_wave",
    "residual": "var_residual",
}


def reference(model: str, reml: bool) -> tuple[pd.DataFrame, pd.Series]:
    fixed = FIXED[(FIXED.model == model) & (FIXED.reml == reml)].set_index("term")
    fit = FIT[(FIT.model == model) & (FIT.reml == reml)].iloc[0]
    return fixed, fit


def assert_matches_lme4(fit: MixedFit, model: str, reml: bool) -> None:
    fixed, ref = reference(model, reml)
    assert fit.names == tuple(fixed.index)
    np.testing.assert_allclose(fit.fe, fixed.estimate, rtol=TOL)
    np.testing.assert_allclose(fit.se, fixed.std_error, rtol=TOL)
    expected = {k: ref[c] for k, c in VARIANCE_COLUMNS.items() if pd.notna(ref[c])}
    assert set(fit.variances) == set(expected)
    for name, value in expected.items():
        assert fit.variances[name] == pytest.approx(value, rel=TOL), name
    assert fit.loglik == pytest.approx(ref.loglik, rel=TOL)
    aic, bic = ml.information_criteria(fit)
    assert (aic, bic) == pytest.approx((ref.aic, ref.bic), rel=TOL)
    assert fit.n_obs == ref.n_obs and fit.reml == reml and fit.converged


def test_fixtures_record_versions():
    versions = json.loads((REFERENCE / "lme4_models_versions.json").read_text())
    assert versions["R"].startswith("R version") and versions["lme4"].startswith("1.")


# ---- engine -----------------------------------------------------------------------------------


@pytest.mark.parametrize("reml", [True, False])
@pytest.mark.parametrize("model, correlated", [("sleep_corr", True), ("sleep_indep", False)])
def test_random_slope_matches_lme4_sleepstudy(model, correlated, reml):
    X = np.column_stack([np.ones(len(SLEEP)), SLEEP.Days])
    fit = ml.fit_statsmodels(
        SLEEP.Reaction,
        X,
        ["Intercept", "Days"],
        SLEEP.Subject.astype(str).to_numpy(),
        wave_slope=SLEEP.Days,
        reml=reml,
        slope_correlated=correlated,
    )
    assert_matches_lme4(fit, model, reml)
    ref = reference(model, reml)[1]
    r2 = ml.nakagawa_r2(fit, X, SLEEP.Days.to_numpy())  # Johnson's slope term
    assert r2 == pytest.approx((ref.r2_marginal, ref.r2_conditional), rel=TOL)


def test_a_fit_stopped_early_is_not_converged_and_one_stopped_by_rounding_noise_is():
    """bfgs' gtol 1e-8 can be out of reach of the likelihood's rounding (the ML sleepstudy fit
    ends with |score| ~3e-6 on some CPUs): that counts as converged, three iterations do not."""
    X = np.column_stack([np.ones(len(SLEEP)), SLEEP.Days])
    model = sm.MixedLM(SLEEP.Reaction, X, groups=SLEEP.Subject, exog_re=X)
    with pytest.warns(Warning):
        stopped = model.fit(reml=False, method=["bfgs"], maxiter=3)
    assert not stopped.converged and not ml._converged(model, stopped)
    done = model.fit(reml=False, method=["bfgs"], gtol=1e-8, maxiter=2000)
    assert ml._converged(model, done)


# The fast engine's fixed effects and SEs on the slope fits (achieved <= 1.3e-7); its variances,
# flat near the optimum, agree within 1.4e-5 (assert_matches_lme4's 1e-4), logLik within 2e-11.
FAST_TOL = 1e-6


@pytest.mark.parametrize("reml", [True, False])
@pytest.mark.parametrize(
    "model, correlated, nested",
    [("sleep_corr", True, False), ("sleep_indep", False, False), ("long_slope", True, True)],
)
def test_fast_engine_random_slope_matches_lme4(model, correlated, nested, reml):
    if nested:
        design = ml.build_design(SIM, "y", ["x"], ["grp"], longitudinal=True)
        y, X, names, company, wave = design.y, design.X, design.names, design.company, design.wave
    else:
        y, X, names = (
            SLEEP.Reaction,
            np.column_stack([np.ones(len(SLEEP)), SLEEP.Days]),
            ["Intercept", "Days"],
        )
        company, wave = SLEEP.Subject.astype(str).to_numpy(), SLEEP.Days
    fit = fit_nested(
        y, X, names, company, design.person if nested else None, reml, wave, correlated
    )
    assert fit.engine == "nested_lmm"
    assert_matches_lme4(fit, model, reml)
    fixed, ref = reference(model, reml)
    np.testing.assert_allclose(fit.fe, fixed.estimate, rtol=FAST_TOL)
    np.testing.assert_allclose(fit.se, fixed.std_error, rtol=FAST_TOL)
    assert fit.loglik == pytest.approx(ref.loglik, rel=1e-9)


@pytest.mark.parametrize("reml", [True, False])
def test_two_level_within_between_matches_lme4(reml):
    design = ml.build_design(WAVE0, "y", ["x"], ["grp"])
    assert_matches_lme4(
        ml.fit_statsmodels(design.y, design.X, design.names, design.company, reml=reml),
        "wave0_full",
        reml,
    )
    empty = design.empty()
    assert_matches_lme4(
        ml.fit_statsmodels(empty.y, empty.X, empty.names, empty.company, reml=reml),
        "wave0_empty",
        reml,
    )


@pytest.mark.parametrize("reml", [True, False])
@pytest.mark.parametrize("model, slope", [("long_nested", False), ("long_slope", True)])
def test_three_level_matches_lme4(model, slope, reml):
    design = ml.build_design(SIM, "y", ["x"], ["grp"], longitudinal=True)
    fit = ml.fit_statsmodels(
        design.y,
        design.X,
        design.names,
        design.company,
        person=design.person,
        wave_slope=design.wave if slope else None,
        reml=reml,
    )
    assert_matches_lme4(fit, model, reml)
    persons = SIM.dropna(subset=["y", "x"]).person_id.nunique()
    assert fit.n_groups == {"company": 24, "person": persons}


# ---- model layer and tables -------------------------------------------------------------------


@pytest.fixture(scope="module")
def wave_results():
    return ml.wave_models(WAVE0, ["y"], ["x"], ["grp"])


@pytest.fixture(scope="module")
def long_results():
    return ml.longitudinal_models(SIM, ["y"], ["x"], ["grp"])


def test_wave_models_tables_match_lme4(wave_results):
    coefs = ml.coefficients_table(wave_results).set_index(["model", "term"])
    fits = ml.fit_table(wave_results).set_index("model")
    for name, model in [("y/empty", "wave0_empty"), ("y/full", "wave0_full")]:
        fixed, ref = reference(model, True)
        rows = coefs.loc[name]
        np.testing.assert_allclose(rows.estimate, fixed.estimate[rows.index], rtol=TOL)
        np.testing.assert_allclose(rows.std_error, fixed.std_error[rows.index], rtol=TOL)
        got = fits.loc[name]
        for column in [
            "loglik",
            "aic",
            "bic",
            "var_company",
            "var_residual",
            "r2_marginal",
            "r2_conditional",
        ]:
            assert got[column] == pytest.approx(ref[column], rel=TOL, abs=1e-12), column
    icc = fits.loc["y/empty"]
    assert icc.icc == pytest.approx(icc.var_company / (icc.var_company + icc.var_residual))


def test_likelihood_ratio_full_vs_empty_uses_ml_fits(wave_results):
    full = ml.fit_table(wave_results).set_index("model").loc["y/full"]
    ll_empty = reference("wave0_empty", False)[1].loglik
    ll_full = reference("wave0_full", False)[1].loglik
    chisq = 2 * (ll_full - ll_empty)
    assert full.lr_chisq == pytest.approx(chisq, rel=TOL)
    assert full.lr_df == 4  # x_within, x_between, grp[b], grp[c]
    assert full.lr_p == pytest.approx(stats.chi2.sf(chisq, 4), rel=1e-3)


def test_between_within_df_and_t_p_values_by_hand(wave_results):
    coefs = ml.coefficients_table(wave_results).set_index(["model", "term"])
    fixed, _ = reference("wave0_full", True)
    n_obs, n_companies = 136, 24
    # company level: intercept + x_between; within: x_within, grp[b], grp[c]
    cases = {"x_between": n_companies - 1 - 1, "x_within": n_obs - n_companies - 3}
    for term, df in cases.items():
        row = coefs.loc[("y/full", term)]
        assert row.df == df
        t = fixed.estimate[term] / fixed.std_error[term]
        assert row.p_value == pytest.approx(2 * stats.t.sf(abs(t), df), rel=1e-3)
        half = stats.t.ppf(0.975, df) * fixed.std_error[term]
        assert row.ci_high - row.estimate == pytest.approx(half, rel=TOL)
    assert coefs.loc[("y/full", "x_between")].df_method == "between-within: company level"
    assert coefs.loc[("y/full", "grp[b]")].df_method == "between-within: within level"
    assert coefs.loc[("y/empty", "Intercept")].df == n_companies - 1


def test_longitudinal_model_keeps_slope_and_matches_lme4(long_results):
    (result,) = long_results
    assert result.model == "y/longitudinal"
    assert_matches_lme4(result.fit, "long_slope", True)
    row = ml.fit_table(long_results).iloc[0]
    ref = reference("long_slope", True)[1]
    assert row.r2_marginal == pytest.approx(ref.r2_marginal, rel=TOL)
    assert row.r2_conditional == pytest.approx(ref.r2_conditional, rel=TOL)
    assert "random wave slope" in row.notes and not row.blocking and np.isnan(row.icc)


def test_persons_who_answered_once_stay_in(long_results):
    complete = SIM.dropna(subset=["y", "x"])
    once = complete.person_id.value_counts().eq(1).sum()
    assert once > 0
    row = ml.fit_table(long_results).iloc[0]
    assert row.n_obs == len(complete) and row.n_dropped == len(SIM) - len(complete)
    assert row.n_persons == complete.person_id.nunique()


def test_slope_dropped_with_two_waves():
    two = SIM[SIM.wave != "2021-T2"]
    (result,) = ml.longitudinal_models(two, ["y"], ["x"], ["grp"])
    assert "wave_slope" not in result.fit.variances
    assert "wave" in result.fit.names and not result.guarded.blocking
    row = ml.fit_table([result]).iloc[0]
    assert row.notes == "wave slope not estimable: needs 3 waves (2 in the data)"
    assert row.n_obs == len(two.dropna(subset=["y", "x"])) and np.isnan(row.var_wave_slope)
    assert "wave" in set(ml.coefficients_table([result]).term)


def test_longitudinal_models_with_one_wave_are_not_estimable_and_say_why():
    one = SIM[SIM.wave == "2019-T0"].assign(z=lambda d: -d.y)
    results = ml.longitudinal_models(one, ["y", "z"], ["x"], ["grp"])
    reason = "not estimable: needs 2 waves (1 in the data)"
    assert results == [
        ml.NotEstimable("y/longitudinal", "y", reason),
        ml.NotEstimable("z/longitudinal", "z", reason),
    ]
    fits = ml.fit_table(results)
    assert list(fits.columns) == list(ml.FIT_COLUMNS)
    assert list(fits.model) == ["y/longitudinal", "z/longitudinal"]
    assert (fits.notes == reason).all() and not fits.blocking.any()
    assert fits.drop(columns=["model", "outcome", "blocking", "notes"]).isna().all().all()
    coefs = ml.coefficients_table(results)
    assert coefs.empty and list(coefs.columns) == list(ml.COEFFICIENT_COLUMNS)


def test_models_without_outcome_or_culture_scales_are_one_row_that_says_why():
    cases = [
        (ml.wave_models, WAVE0, [], ["x"], "no outcome scale"),
        (ml.wave_models, WAVE0, ["y"], [], "no culture scale"),
        (ml.longitudinal_models, SIM, [], [], "no outcome and no culture scale"),
    ]
    for models, frame, outcomes, culture, missing in cases:
        results = models(frame, outcomes, culture, ["grp"])
        reason = f"not estimable: the codebook's models have {missing}"
        assert results == [ml.NotEstimable("", "", reason)]
        fits = ml.fit_table(results)
        assert list(fits.notes) == [reason] and list(fits.columns) == list(ml.FIT_COLUMNS)
        assert ml.coefficients_table(results).empty


def test_slope_dropped_when_its_fit_is_singular():
    # same design, y without any company wave slope: lme4 also gives a singular fit (corr 1.0)
    rng = np.random.default_rng(5)
    company_effect = dict(zip(sorted(SIM.company_id.unique()), rng.normal(0, 0.5, 24), strict=True))
    frame = SIM.assign(y=1 + 0.5 * SIM.x + SIM.company_id.map(company_effect))
    frame["y"] += rng.normal(size=len(frame))
    (result,) = ml.longitudinal_models(frame, ["y"], ["x"], ["grp"])
    assert set(result.fit.variances) == {"company", "person", "residual"}
    (note,) = result.notes
    assert note.startswith("wave slope dropped: ") and "singular_cov" in note


def test_nested_r2_matches_lme4_hand_formula():
    design = ml.build_design(SIM, "y", ["x"], ["grp"], longitudinal=True)
    fit = ml.fit_statsmodels(design.y, design.X, design.names, design.company, design.person)
    ref = reference("long_nested", True)[1]
    got = ml.nakagawa_r2(fit, design.X)
    assert got == pytest.approx((ref.r2_marginal, ref.r2_conditional), rel=TOL)


def test_within_parts_have_company_mean_zero():
    for frame, longitudinal in [(WAVE0, False), (SIM, True)]:
        design = ml.build_design(frame, "y", ["x"], ["grp"], longitudinal=longitudinal)
        parts = pd.DataFrame(design.X, columns=design.names).assign(company=design.company)
        means = parts.groupby("company")[["x_within", "x_between"]].agg(["mean", "std"])
        assert np.abs(means[("x_within", "mean")]).max() < 1e-12
        assert means[("x_between", "std")].fillna(0).max() < 1e-12
        x = frame.dropna(subset=["y", "x"]).x.to_numpy()
        np.testing.assert_allclose(parts.x_within + parts.x_between, x, rtol=1e-14)
        between = ml.company_level_terms(design.X, design.names, design.company)
        assert between == ("Intercept", "x_between")


def test_ols_cluster_robust_matches_hand_sandwich(wave_results):
    design = wave_results[1].design
    X, y, company = design.X, design.y, design.company
    beta = np.linalg.lstsq(X, y, rcond=None)[0]
    bread = np.linalg.inv(X.T @ X)
    score = pd.DataFrame(X * (y - X @ beta)[:, None]).groupby(company).sum().to_numpy()
    n, k, g = len(y), X.shape[1], len(np.unique(company))
    cov = g / (g - 1) * (n - 1) / (n - k) * bread @ score.T @ score @ bread
    rows = ml.coefficients_table(wave_results).query("model == 'y/full'")
    np.testing.assert_allclose(rows.ols_estimate, beta, rtol=1e-10)
    np.testing.assert_allclose(rows.ols_std_error, np.sqrt(np.diag(cov)), rtol=1e-10)


def test_tables_follow_the_output_contract(wave_results, long_results):
    coefs = ml.coefficients_table(wave_results + long_results)
    fits = ml.fit_table(wave_results + long_results)
    assert {
        "model",
        "term",
        "estimate",
        "std_error",
        "df",
        "df_method",
        "ci_low",
        "ci_high",
        "p_value",
        "ols_estimate",
        "ols_std_error",
    } <= set(coefs.columns)
    assert {
        "model",
        "n_obs",
        "n_groups",
        "n_persons",
        "loglik",
        "aic",
        "bic",
        "reml",
        "converged",
        "var_company",
        "var_residual",
        "icc",
        "r2_marginal",
        "r2_conditional",
        "engine",
        "optimizer",
        "problems",
    } <= set(fits.columns)
    assert list(fits.model) == ["y/empty", "y/full", "y/longitudinal"]
    # every model, the wave slope included, goes through the fast engine
    assert set(fits.engine) == {"nested_lmm"} and fits.reml.all()


# ---- inputs -----------------------------------------------------------------------------------


def test_wave_numbers_sorted_or_given_order():
    labels = pd.Series(["2020-T1", "2019-T0", "2021-T2"])
    assert list(ml.wave_numbers(labels)) == [1, 0, 2]
    assert list(ml.wave_numbers(labels, ["2021-T2", "2020-T1", "2019-T0"])) == [1, 2, 0]
    with pytest.raises(ValueError, match="2021-T2"):
        ml.wave_numbers(labels, {"2019-T0": 0, "2020-T1": 1})


def test_dummy_code_uses_first_level_as_reference():
    frame = pd.DataFrame({"age": ["35-44", "<25", "25-34", "35-44"]})
    frame["lead"] = pd.Categorical(["no", "yes", "no", "no"], categories=["yes", "no", "unused"])
    dummies = ml.dummy_code(frame, ["age", "lead"])
    assert list(dummies.columns) == ["age[35-44]", "age[<25]", "lead[no]"]
    assert list(dummies["lead[no]"]) == [1, 0, 1, 1]


def test_wave_models_refuse_several_waves():
    with pytest.raises(ValueError, match="one wave"):
        ml.wave_models(SIM, ["y"], ["x"], ["grp"])


# ---- guards -----------------------------------------------------------------------------------


def no_company_variance(seed: int = 19):
    """12 companies x 6 persons, a company-level predictor z and no company variance at all."""
    rng = np.random.default_rng(seed)
    company = np.repeat(np.arange(12), 6).astype(str)
    z = np.repeat(rng.normal(size=12), 6)
    x = rng.normal(size=72)
    y = 1 + 0.5 * x + 0.3 * z + rng.normal(size=72)
    return y, np.column_stack([np.ones(72), x, z]), company


def test_guard_catches_statsmodels_10239_and_refits():
    y, X, company = no_company_variance()
    names = ["Intercept", "x", "z"]
    # statsmodels' default lbfgs: intercept exactly 0.0, z ~1e-17, converged=True (#10239)
    broken = ml.fit_statsmodels(y, X, names, company, method="lbfgs")
    assert broken.converged and broken.fe[0] == 0.0
    kinds = {p.kind: p.blocking for p in ml.fit_problems(broken)}
    assert kinds["zero_fixed_effect"] and kinds["boundary_variance"] is False
    guarded = ml.fit_guarded(y, X, names, company, strategies=[("lbfgs", None), ("powell", None)])
    assert [a.optimizer for a in guarded.attempts] == ["lbfgs", "powell"]
    assert guarded.fit.optimizer.startswith("powell") and not guarded.blocking
    assert [p.kind for p in guarded.problems] == ["boundary_variance"]  # a legitimate note
    # at a zero company variance the REML estimates are the OLS ones
    np.testing.assert_allclose(guarded.fit.fe, sm.OLS(y, X).fit().params, rtol=1e-6)


def test_guard_reports_failures_that_remain_after_refits():
    y, X, company = no_company_variance()
    guarded = ml.fit_guarded(y, X, ["Intercept", "x", "z"], company, strategies=[("lbfgs", None)])
    assert guarded.blocking and len(guarded.attempts) == 1
    assert "zero_fixed_effect" in {p.kind for p in guarded.problems}


def constructed(fe, variances, converged=True) -> MixedFit:
    return MixedFit(
        names=("Intercept", "z"),
        fe=np.array(fe),
        cov=np.diag([0.01, 0.04]),
        variances=variances,
        loglik=-100.0,
        reml=True,
        converged=converged,
        n_obs=50,
        n_groups={"company": 10},
        engine="statsmodels",
        optimizer="bfgs",
    )


def test_guard_rules_on_constructed_fits():
    healthy = {"company": 0.2, "residual": 1.0}
    assert ml.fit_problems(constructed([1.0, 1e-6], healthy)) == []
    zero = ml.fit_problems(constructed([1.0, 0.0], {"company": 0.0, "residual": 1.0}))
    assert {(p.kind, p.blocking) for p in zero} == {
        ("zero_fixed_effect", True),
        ("boundary_variance", False),
    }
    stuck = ml.fit_problems(constructed([1.0, 0.3], healthy, converged=False))
    assert [(p.kind, p.blocking) for p in stuck] == [("not_converged", True)]
    singular = {"company": 0.2, "wave_slope": 0.05, "company_wave_cov": 0.1, "residual": 1.0}
    assert [p.kind for p in ml.fit_problems(constructed([1.0, 0.3], singular))] == ["singular_cov"]


@pytest.mark.parametrize("reml", [True, False])
def test_fast_engine_and_statsmodels_agree_inside_the_guard(reml):
    design = ml.build_design(SIM, "y", ["x"], ["grp"], longitudinal=True)
    args = (design.y, design.X, design.names, design.company, design.person)
    fast = ml.fit_guarded(*args, reml=reml)
    reference = ml.fit_guarded(*args, reml=reml, strategies=ml.STRATEGIES[1:])
    assert fast.fit.engine == "nested_lmm" and reference.fit.engine == "statsmodels"
    np.testing.assert_allclose(fast.fit.fe, reference.fit.fe, rtol=1e-6)
    np.testing.assert_allclose(fast.fit.se, reference.fit.se, rtol=1e-6)
    for part in ("company", "person", "residual"):
        assert fast.fit.variances[part] == pytest.approx(reference.fit.variances[part], rel=1e-5)
    assert fast.fit.loglik == pytest.approx(reference.fit.loglik, rel=1e-9)


# lme4_nested.R: 30 companies, persons answering 1-3 waves, no person effect; lme4 puts the person
# variance at exactly 0 (REML and ML)
PERSON0 = pd.read_csv(REFERENCE / "lme4_nested_person0_data.csv")


def person0_model():
    X = np.column_stack([np.ones(len(PERSON0)), PERSON0.wave, PERSON0.x, PERSON0.z])
    names = ("(Intercept)", "wave", "x", "z")
    return PERSON0.y.to_numpy(), X, names, PERSON0.company.to_numpy(), PERSON0.person.to_numpy()


def person0_reference(reml: bool):
    fit = f"person0_{'reml' if reml else 'ml'}"
    fixef = pd.read_csv(REFERENCE / "lme4_nested_fixef.csv").query("fit == @fit")
    varcomp = pd.read_csv(REFERENCE / "lme4_nested_varcomp.csv").query("fit == @fit")
    loglik = pd.read_csv(REFERENCE / "lme4_nested_fit.csv").set_index("fit").loglik[fit]
    return fixef, varcomp.set_index("component").variance, loglik


@pytest.mark.parametrize("reml", [True, False])
def test_guard_rejects_a_fallback_short_of_the_optimum_lme4_finds(reml):
    """Issue #19: without the fast engine, statsmodels' lbfgs stops at a person variance of
    ~0.005 that lme4 puts at 0, company variance 0.2-0.7% off, calls it converged, and the
    earlier rules pass it. The log-likelihood rule rejects it; powell + bfgs agrees with lme4."""
    fixef, variances, loglik = person0_reference(reml)
    model = person0_model()
    raw = ml.fit_statsmodels(*model, reml=reml, method="lbfgs")
    assert raw.converged and ml.fit_problems(raw) == []  # not even a boundary note
    assert raw.variances["person"] > 1e-3 * raw.variances["residual"]
    assert abs(raw.variances["company"] / variances["company"] - 1) > 1e-3
    assert loglik - raw.loglik > 50 * ml.LOGLIK_TOL

    guarded = ml.fit_guarded(*model, reml=reml, strategies=ml.STRATEGIES[1:])
    stuck = next(a for a in guarded.attempts if a.optimizer == "lbfgs")
    # the old rule stopped at the first fit without blocking problems that no earlier one beat
    for earlier in guarded.attempts[: guarded.attempts.index(stuck)]:
        assert not earlier.converged and earlier.loglik < stuck.loglik
    assert stuck.loglik == raw.loglik
    (reason,) = stuck.problems
    assert reason.startswith("short_of_optimum: ") and "(person variance at 0;" in reason

    fit = guarded.fit
    assert not guarded.blocking and fit.engine == "statsmodels"
    assert guarded.attempts[-1].optimizer == fit.optimizer != "lbfgs"
    np.testing.assert_allclose(fit.fe, fixef.estimate, rtol=TOL)
    np.testing.assert_allclose(fit.se, fixef.se, rtol=TOL)
    for part in ("company", "residual"):
        assert fit.variances[part] == pytest.approx(variances[part], rel=TOL), part
    assert variances["person"] == 0 and fit.variances["person"] < TOL * fit.variances["residual"]
    assert fit.loglik == pytest.approx(loglik, abs=ml.LOGLIK_TOL)


def test_a_fallback_alone_short_of_the_optimum_is_blocked_with_the_reason():
    """With no other fit to compare, the fast engine's profile at the fallback's variances with
    the person variance at 0 is higher: the only fit is blocked and publishes no numbers."""
    y, X, names, company, person = person0_model()
    guarded = ml.fit_guarded(y, X, names, company, person, strategies=[("lbfgs", None)])
    assert guarded.blocking and [p.kind for p in guarded.problems] == ["short_of_optimum"]
    profile = partial(profiled_loglik, y, X, company, person)
    best, source = ml.boundary_probe(guarded.fit, profile)
    assert source == "person variance at 0" and best - guarded.fit.loglik > ml.LOGLIK_TOL
    design = ml.Design(y, X, names, company, person, None, 0)
    row = ml.fit_table([ml.ModelResult("y/longitudinal", "y", design, guarded)]).iloc[0]
    assert row.blocking and row.problems.startswith("short_of_optimum: loglik ")


def test_loglik_tolerance_rule_on_constructed_fits():
    fit = constructed([1.0, 0.3], {"company": 0.2, "residual": 1.0})  # loglik -100
    assert ml.short_of_optimum(fit, -100.0, "itself") == []
    assert ml.short_of_optimum(fit, -100.0 + 0.5 * ml.LOGLIK_TOL, "bfgs") == []
    (problem,) = ml.short_of_optimum(fit, -100.0 + 2 * ml.LOGLIK_TOL, "nested_lmm")
    assert problem.kind == "short_of_optimum" and problem.blocking
    assert str(problem) == (
        "short_of_optimum: loglik -100.000000 is 0.0002 below -99.999800 "
        "(nested_lmm; tolerance 0.0001)"
    )


def test_collinear_fixed_effects_are_named_before_any_engine_runs():
    y, X, company = no_company_variance()
    doubled = np.column_stack([X, 2 * X[:, 1]])
    with pytest.raises(ValueError, match=r"fixed effects x, 2x are collinear"):
        ml.fit_guarded(y, doubled, ["Intercept", "x", "z", "2x"], company)


def test_a_blocked_fit_publishes_no_mixed_model_numbers():
    y, X, company = no_company_variance()
    design = ml.Design(y, X, ("Intercept", "x", "z"), company, None, None, 0)
    guarded = ml.fit_guarded(y, X, design.names, company, strategies=[("lbfgs", None)])
    assert guarded.blocking
    table = ml.coefficients_table([ml.ModelResult("y/full", "y", design, guarded)])
    assert table[ml.WITHHELD].isna().all().all()
    np.testing.assert_allclose(table["ols_estimate"], sm.OLS(y, X).fit().params, rtol=1e-10)
    fits = ml.fit_table([ml.ModelResult("y/full", "y", design, guarded)])
    assert fits["blocking"].all() and "zero_fixed_effect" in fits["problems"][0]


def test_model_frame_keeps_suppressed_controls_as_their_own_level():
    scores = pd.DataFrame({"company_id": ["c1", "c1", "c2"], "SL": [3.0, 4.0, 2.5]})
    responses = pd.DataFrame({"age_band": pd.array(["45+", None, "<35"], dtype="string")})
    frame = ml.model_frame(scores, responses, {"age_band": ("<35", "35-44", "45+")})
    assert list(frame["age_band"]) == ["45+", ml.UNKNOWN, "<35"]
    assert list(frame["age_band"].cat.categories) == ["<35", "35-44", "45+", ml.UNKNOWN]
    with pytest.raises(ValueError, match=r"control 'age_band': values \['60\+'\]"):
        ml.model_frame(
            scores, responses.assign(age_band=["60+", "<35", "<35"]), {"age_band": ("<35",)}
        )
