"""Multilevel models of learning outcomes: the statsmodels engine, its guards and the model layer.

Three layers, each usable alone:

- `fit_statsmodels` fits a linear mixed model with statsmodels' MixedLM and returns a `MixedFit`
  in lme4's conventions (variances on the data scale, logLik of REML fits = -REML criterion / 2).
  Random parts: an intercept per company; optionally an intercept per person within company (a
  variance component, `exog_vc`); optionally a random slope for wave per company, correlated with
  the company intercept (`exog_re = [1, wave]`, lme4's `(1 + wave | company)`) or uncorrelated
  (a second variance component, lme4's `(1 | company) + (0 + wave | company)`).
- `fit_problems` / `fit_guarded` catch statsmodels' silent failures (issue #10239: a variance at
  the boundary can come with between-level fixed effects of exactly 0.0 and converged=True) and
  refit with other optimisers and start values. A fallback fit is accepted only within
  LOGLIK_TOL of the best log-likelihood any engine found for the model, the fast engine's
  profile at the fit's variances with each in turn at 0 included (`short_of_optimum`: lbfgs can
  stop at a person variance lme4 puts at 0 and call it converged).
- `wave_models` (two-level, one wave) and `longitudinal_models` (three-level, all waves) build the
  within/between designs, fit them, add t-based inference with between-within df, Nakagawa R^2
  and an OLS cluster-robust sensitivity fit; `coefficients_table` and `fit_table` give the
  `multilevel.csv` / `multilevel_fit.csv` contract.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from pipeline.models.mixed_fit import MixedFit
from pipeline.models.nested_lmm import fit_nested, profiled_loglik

if TYPE_CHECKING:
    from statsmodels.regression.mixed_linear_model import MixedLM, MixedLMParams, VCSpec

COMPANY = "company_id"
PERSON = "person_id"
WAVE = "wave"
INTERCEPT = "Intercept"

# Per-optimiser settings. bfgs at gtol 1e-8 reproduces lme4 to ~1e-5 or better; tighter (1e-9)
# makes it report non-convergence at the optimum (precision loss).
# the largest |score| (log-likelihood gradient on statsmodels' packed parameters) of a fit whose
# optimiser stopped on rounding noise ("precision loss") before gtol, taken as converged: such
# fits sit at ~1e-6, unconverged ones at ~1 (lme4's check.conv.grad allows 2e-3 on the deviance)
SCORE_TOL = 1e-4
OPTIMIZER_KWARGS = {
    "bfgs": {"gtol": 1e-8, "maxiter": 2000},
    "lbfgs": {},
    "powell": {"xtol": 1e-10, "ftol": 1e-12, "maxiter": 2000},
    "nm": {"xtol": 1e-10, "ftol": 1e-12, "maxiter": 1000},  # slow: ~0.01 s per iteration at n=400
}
# (optimiser, start) pairs tried in turn by `fit_guarded`; starts are variance ratios to residual.
# The first, `nested_lmm`, is the fast profiled engine; the others are statsmodels' MixedLM, the
# reference engine it falls back to.
FAST = "nested_lmm"
STRATEGIES = (
    (FAST, None),
    ("bfgs", None),
    ("lbfgs", None),
    ("powell", None),
    ("bfgs", 0.05),
    ("bfgs", 2.0),
    ("nm", None),
)
BOUNDARY_TOL = 1e-4  # lme4's isSingular: a random-effect sd / residual sd below this
# How far (in log-likelihood units) a fit may fall below the best log-likelihood any engine found
# for the model and still be accepted. A fit d below the optimum has every estimate within about
# sqrt(2 d) standard errors of it (the log-likelihood is near quadratic there): 0.014 SE at 1e-4.
# Converged fits of both engines reach lme4's logLik within 3e-9 on every lme4 fixture; lbfgs,
# stopped at a person variance lme4 puts at 0 (lme4_nested_person0_data.csv), falls 0.008 (REML)
# and 0.015 (ML) short. The tolerance sits well apart from both.
LOGLIK_TOL = 1e-4
ZERO_T = 1e-8  # |estimate| / SE below this counts as the #10239 "exact zero"
MIN_WAVES = 2  # the longitudinal models' wave effect
SLOPE_MIN_WAVES = 3  # the company wave slope
WITHHELD = ["estimate", "std_error", "ci_low", "ci_high", "p_value"]  # of a blocked fit
UNKNOWN = "unknown"  # the level of a control whose value is missing or suppressed


# ---- the statsmodels engine -------------------------------------------------------------------


def fit_statsmodels(
    y: np.ndarray,
    X: np.ndarray,
    names: Sequence[str],
    company: np.ndarray,
    person: np.ndarray | None = None,
    wave_slope: np.ndarray | None = None,
    reml: bool = True,
    *,
    slope_correlated: bool = True,
    method: str = "bfgs",
    start_ratio: float | None = None,
    polish: bool = True,
) -> MixedFit:
    """Fit y = X b + company intercept [+ person-in-company intercept] [+ company wave slope] + e.

    `wave_slope` is the wave value of each row; `slope_correlated` chooses between a slope
    correlated with the company intercept (variances "company", "wave_slope" and covariance
    "company_wave_cov") and an independent one (no covariance). `start_ratio` starts all random
    variances at that multiple of the residual variance instead of statsmodels' default.
    `polish` restarts a finite, converged fit of another optimiser with bfgs (gtol 1e-8) from
    its estimates, which takes statsmodels' lbfgs (~1e-5 from lme4) to ~1e-6.
    Raises what statsmodels raises (LinAlgError is common for lbfgs); `fit_guarded` catches it.
    """
    # not at the top: docs/developer.md#start-up-time
    from statsmodels.regression.mixed_linear_model import MixedLM

    y, X, company = np.asarray(y, float), np.asarray(X, float), np.asarray(company)
    exog_re = np.ones((len(y), 1))
    vc = {}
    if person is not None:
        vc["person"] = _person_indicators(company, np.asarray(person))
    if wave_slope is not None:
        wave_slope = np.asarray(wave_slope, float)
        if slope_correlated:
            exog_re = np.column_stack([exog_re, wave_slope])
        else:
            vc["wave_slope"] = _per_company(company, wave_slope[:, None])
    model = MixedLM(y, X, groups=company, exog_re=exog_re, exog_vc=_vc_spec(vc))
    result = _run(model, reml, method, _start_params(exog_re.shape[1], len(vc), start_ratio))
    label = method if start_ratio is None else f"{method} (start {start_ratio:g})"
    if polish and method != "bfgs" and _converged(model, result) and np.isfinite(result.llf):
        polished = _polish(model, reml, result)
        if polished is not None:
            result, label = polished, f"{label} + bfgs"
    variances = _variances(result, model)
    return MixedFit(
        names=tuple(names),
        fe=np.asarray(result.fe_params, float),
        cov=_fe_cov(X, company, exog_re, vc, np.asarray(result.cov_re, float), variances),
        variances=variances,
        loglik=float(result.llf),
        reml=reml,
        converged=_converged(model, result),
        n_obs=len(y),
        n_groups=_group_counts(company, person),
        engine="statsmodels",
        optimizer=label,
    )


def _polish(model: MixedLM, reml: bool, result):
    """A bfgs restart from `result`, if it converges at least as high; else None."""
    try:
        polished = _run(model, reml, "bfgs", result.params_object)
    except np.linalg.LinAlgError:
        return None
    return polished if _converged(model, polished) and polished.llf >= result.llf else None


def _converged(model: MixedLM, result) -> bool:
    """The optimiser met its tolerance, or stopped where the gradient is below SCORE_TOL (on
    some CPUs bfgs' gtol 1e-8 is out of reach of the rounding noise of the likelihood)."""
    if result.converged:
        return True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        score = model.score(result.params_object, profile_fe=True)
    return bool(np.all(np.isfinite(score)) and np.max(np.abs(score)) < SCORE_TOL)


def _run(model: MixedLM, reml: bool, method: str, start):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit(reml=reml, method=[method], start_params=start, **OPTIMIZER_KWARGS[method])


def _fe_cov(X, company, exog_re, vc, cov_re, variances) -> np.ndarray:
    """lme4's vcov(): (sum_g X_g' V_g^-1 X_g)^-1 at the estimates.

    statsmodels' cov_params() inverts the full observed Hessian instead, whose fixed-by-variance
    cross terms do not vanish in unbalanced data (SEs then differ from lme4 by up to ~1%).
    """
    info = np.zeros((X.shape[1], X.shape[1]))
    for i, g in enumerate(np.unique(company)):
        rows = company == g
        Z = exog_re[rows]
        V = Z @ cov_re @ Z.T + variances["residual"] * np.eye(rows.sum())
        for name, mats in vc.items():
            V += variances[name] * mats[i] @ mats[i].T
        info += X[rows].T @ np.linalg.solve(V, X[rows])
    return np.linalg.inv(info)


def _per_company(company: np.ndarray, columns: np.ndarray) -> list[np.ndarray]:
    """One variance component's design: per company (sorted, as MixedLM orders groups) its rows."""
    return [columns[company == g] for g in np.unique(company)]


def _person_indicators(company: np.ndarray, person: np.ndarray) -> list[np.ndarray]:
    """Per company, an indicator matrix with one column per person of that company."""
    blocks = []
    for g in np.unique(company):
        rows = person[company == g]
        blocks.append((rows[:, None] == np.unique(rows)[None, :]).astype(float))
    return blocks


def _vc_spec(vc: dict[str, list[np.ndarray]]) -> VCSpec | None:
    # not at the top: docs/developer.md#start-up-time
    from statsmodels.regression.mixed_linear_model import VCSpec

    if not vc:
        return None
    colnames = [
        [[f"{name}{j}" for j in range(m.shape[1])] for m in mats] for name, mats in vc.items()
    ]
    return VCSpec(list(vc), colnames, list(vc.values()))


def _start_params(k_re: int, k_vc: int, ratio: float | None) -> MixedLMParams | None:
    # not at the top: docs/developer.md#start-up-time
    from statsmodels.regression.mixed_linear_model import MixedLMParams

    if ratio is None:
        return None
    return MixedLMParams.from_components(cov_re=np.eye(k_re) * ratio, vcomp=np.full(k_vc, ratio))


def _variances(result, model: MixedLM) -> dict[str, float]:
    cov_re = np.asarray(result.cov_re, float)
    variances = {"company": cov_re[0, 0]}
    if cov_re.shape[0] == 2:
        variances |= {"wave_slope": cov_re[1, 1], "company_wave_cov": cov_re[0, 1]}
    for name, value in zip(model.exog_vc.names, result.vcomp, strict=True):
        variances[name] = float(value)
    variances["residual"] = float(result.scale)
    return {k: float(v) for k, v in variances.items()}


def _group_counts(company: np.ndarray, person: np.ndarray | None) -> dict[str, int]:
    counts = {"company": len(np.unique(company))}
    if person is not None:
        pairs = pd.DataFrame({"c": company, "p": np.asarray(person)}).drop_duplicates()
        counts["person"] = len(pairs)
    return counts


# ---- guards -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    # not_converged | zero_fixed_effect | nonfinite | short_of_optimum | boundary_variance |
    # singular_cov
    kind: str
    blocking: bool
    detail: str
    component: str = ""  # the variance component concerned, for boundary problems

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail}"


def fit_problems(fit: MixedFit, boundary_tol: float = BOUNDARY_TOL) -> list[Problem]:
    """What is wrong with a fit. Boundary variances are notes (lme4 reports 0 too); the rest block.

    A fixed effect of exactly 0.0 (or |t| < 1e-8, e.g. 1e-17) is what statsmodels returns for the
    intercept and between-level terms when lbfgs silently fails at a variance boundary
    (statsmodels #10239, with loglik inf and converged=True); a real estimate is never that small.
    """
    problems = []
    if not fit.converged:
        problems.append(Problem("not_converged", True, f"optimizer {fit.optimizer}"))
    for name, value, se in zip(fit.names, fit.fe, fit.se, strict=True):
        if value == 0.0 or abs(value) < ZERO_T * se:
            problems.append(Problem("zero_fixed_effect", True, f"{name} = {value:.3g} (~0.0)"))
        if not np.isfinite([value, se]).all():
            problems.append(Problem("nonfinite", True, f"{name}: estimate or SE not finite"))
    if not np.isfinite(fit.loglik):
        problems.append(Problem("nonfinite", True, f"log-likelihood {fit.loglik}"))
    problems += _boundary_problems(fit.variances, boundary_tol)
    return problems


def _boundary_problems(variances: Mapping[str, float], tol: float) -> list[Problem]:
    residual = variances["residual"]
    problems = []
    for name, value in variances.items():
        if name in ("residual", "company_wave_cov"):
            continue
        if not value > (tol**2) * residual:
            detail = f"{name} variance {value:.3g} ~ 0"
            problems.append(Problem("boundary_variance", False, detail, name))
    if "company_wave_cov" in variances:
        product = variances["company"] * variances["wave_slope"]
        if product > 0 and abs(variances["company_wave_cov"]) / np.sqrt(product) > 1 - tol:
            detail = "intercept-slope correlation is +-1"
            problems.append(Problem("singular_cov", False, detail, "company_wave_cov"))
    return problems


@dataclass(frozen=True)
class Attempt:
    optimizer: str
    loglik: float
    converged: bool
    problems: tuple[str, ...]  # or the error the fit raised

    def __str__(self) -> str:
        return f"{self.optimizer}: loglik {self.loglik:.6g}, {'; '.join(self.problems) or 'ok'}"


@dataclass(frozen=True)
class GuardedFit:
    fit: MixedFit
    problems: tuple[Problem, ...]  # those left in the chosen fit
    attempts: tuple[Attempt, ...]

    @property
    def blocking(self) -> bool:
        return any(p.blocking for p in self.problems)


def fit_guarded(
    y,
    X,
    names,
    company,
    person=None,
    wave_slope=None,
    reml=True,
    *,
    slope_correlated=True,
    strategies: Sequence[tuple[str, float | None]] = STRATEGIES,
) -> GuardedFit:
    """The fast engine, then `fit_statsmodels` with the next (optimiser, start) strategy while a
    blocking problem remains (a fit that raises counts as a failed attempt).

    Stops at the first fit without blocking problems (boundary notes are legitimate estimates).
    Being more than LOGLIK_TOL below the best log-likelihood found is one (`short_of_optimum`).
    The best is taken over every attempt so far, blocked ones included, and for a fallback fit
    also over the fast engine's profile at its variances with each in turn at 0
    (`boundary_probe`), so that a fallback that is the only fit is held against something too.
    Without such a fit, returns the one with the fewest blocking problems, then the highest
    log-likelihood.
    """
    _check_rank(X, names)
    profile = partial(profiled_loglik, y, X, company, person, reml, wave_slope, slope_correlated)
    tried, attempts = [], []
    best = (-np.inf, "")
    for method, start in strategies:
        try:
            if method == FAST:
                fit = fit_nested(y, X, names, company, person, reml, wave_slope, slope_correlated)
            else:
                fit = fit_statsmodels(
                    y,
                    X,
                    names,
                    company,
                    person,
                    wave_slope,
                    reml,
                    slope_correlated=slope_correlated,
                    method=method,
                    start_ratio=start,
                )
        except (np.linalg.LinAlgError, ValueError) as error:
            label = method if start is None else f"{method} (start {start:g})"
            attempts.append(Attempt(label, np.nan, False, (f"error: {error}",)))
            continue
        problems = fit_problems(fit)
        best = max(best, (_finite(fit.loglik), FAST if method == FAST else fit.optimizer))
        if method != FAST and not any(p.blocking for p in problems):
            best = max(best, boundary_probe(fit, profile))
        problems += short_of_optimum(fit, *best)
        tried.append((fit, problems))
        attempts.append(
            Attempt(fit.optimizer, fit.loglik, fit.converged, tuple(map(str, problems)))
        )
        if not any(p.blocking for p in problems):
            break
    if not tried:
        raise RuntimeError("every MixedLM attempt failed: " + "; ".join(map(str, attempts)))
    fit, problems = min(tried, key=_badness)
    return GuardedFit(fit, tuple(problems), tuple(attempts))


def boundary_probe(fit: MixedFit, profile: Callable[..., float]) -> tuple[float, str]:
    """The highest log-likelihood `profile` (the fast engine's, `profiled_loglik`) gives at
    `fit`'s variances with one random variance in turn at 0, and which one.

    A fit stopped short of an optimum on the boundary (statsmodels' lbfgs at a person variance of
    ~0.005 that lme4 puts at 0) sits below one of these. -inf where the fast engine cannot
    evaluate the model, the case a fallback is for.
    """
    found = [(-np.inf, "")]
    for name in [n for n in fit.variances if n not in ("residual", "company_wave_cov")]:
        at_zero = {**fit.variances, name: 0.0}
        if name in ("company", "wave_slope") and "company_wave_cov" in at_zero:
            at_zero["company_wave_cov"] = 0.0
        try:
            found.append((_finite(profile(variances=at_zero)), f"{name} variance at 0"))
        except (np.linalg.LinAlgError, ValueError):
            continue
    return max(found)


def short_of_optimum(fit: MixedFit, best: float, source: str, tol=LOGLIK_TOL) -> list[Problem]:
    """A blocking problem when `fit`'s log-likelihood is more than `tol` below `best`, the best
    found for the model (by `source`): the fit stopped short of an optimum the model has."""
    gap = best - fit.loglik
    if not gap > tol:
        return []
    detail = f"loglik {fit.loglik:.6f} is {gap:.3g} below {best:.6f} ({source}; tolerance {tol:g})"
    return [Problem("short_of_optimum", True, detail)]


def _finite(loglik: float) -> float:
    """A log-likelihood to compare with others: -inf unless finite (#10239 reports +inf)."""
    return loglik if np.isfinite(loglik) else -np.inf


def _check_rank(X, names) -> None:
    """No engine can fit collinear fixed effects; name the terms instead of failing inside one."""
    _, singular, vt = np.linalg.svd(np.asarray(X, dtype=float), full_matrices=False)
    null = vt[singular <= singular[0] * max(np.shape(X)) * np.finfo(float).eps]
    if len(null):
        involved = ", ".join(
            n for n, w in zip(names, np.abs(null).max(axis=0), strict=True) if w > 1e-8
        )
        raise ValueError(f"fixed effects {involved} are collinear (a linear combination is 0)")


def _badness(attempt: tuple[MixedFit, list[Problem]]) -> tuple[int, float]:
    fit, problems = attempt
    loglik = fit.loglik if np.isfinite(fit.loglik) else -np.inf
    return sum(p.blocking for p in problems), -loglik


# ---- designs ----------------------------------------------------------------------------------


def wave_numbers(labels: pd.Series, order: Sequence[str] | Mapping[str, float] | None = None):
    """Wave labels as 0, 1, 2, ...: by sorted label, by position in `order`, or by a mapping."""
    if isinstance(order, Mapping):
        mapping = dict(order)
    else:
        mapping = {label: i for i, label in enumerate(order or sorted(labels.dropna().unique()))}
    unknown = sorted(set(labels.dropna()) - set(mapping))
    if unknown:
        raise ValueError(f"column {WAVE!r}: waves {unknown} are not in the wave order {mapping}")
    return labels.map(mapping).astype(float).to_numpy()


def model_frame(
    scores: pd.DataFrame, responses: pd.DataFrame, controls: Mapping[str, Sequence[str]]
) -> pd.DataFrame:
    """The scale scores with the background controls ({name: levels, reference first}) as
    categoricals. A suppressed or missing control value is its own last level, UNKNOWN, so that
    disclosure control does not drop respondents from the models."""
    frame = scores.copy()
    for name, levels in controls.items():
        values = responses[name].astype("string").fillna(UNKNOWN)
        frame[name] = pd.Categorical(values, categories=[*levels, UNKNOWN])
        if frame[name].isna().any():
            odd = sorted(set(values) - {*levels, UNKNOWN})
            raise ValueError(f"control {name!r}: values {odd} are not among its levels {levels}")
    return frame


def within_between(frame: pd.DataFrame, columns: Sequence[str], company: str = COMPANY):
    """Add `<c>_between` (company mean of c over the rows given) and `<c>_within` (c minus it)."""
    means = frame.groupby(company)[list(columns)].transform("mean")
    out = frame.copy()
    for c in columns:
        out[f"{c}_within"] = frame[c] - means[c]
        out[f"{c}_between"] = means[c]
    return out


def dummy_code(frame: pd.DataFrame, controls: Sequence[str]) -> pd.DataFrame:
    """0/1 columns `<control>[<level>]` for every level but the first (the reference).

    Levels are a categorical's category order, else sorted; levels absent from `frame` are skipped.
    """
    columns = {}
    for c in controls:
        values = (
            frame[c]
            if isinstance(frame[c].dtype, pd.CategoricalDtype)
            else frame[c].astype("category")
        )
        for level in values.cat.remove_unused_categories().cat.categories[1:]:
            columns[f"{c}[{level}]"] = (values == level).astype(float)
    return pd.DataFrame(columns, index=frame.index)


@dataclass(frozen=True)
class Design:
    y: np.ndarray
    X: np.ndarray
    names: tuple[str, ...]
    company: np.ndarray
    person: np.ndarray | None
    wave: np.ndarray | None
    n_dropped: int  # rows dropped listwise for a missing outcome, predictor or id

    def empty(self) -> Design:
        """The intercept-only model on the same rows."""
        return Design(
            self.y,
            self.X[:, :1],
            self.names[:1],
            self.company,
            self.person,
            self.wave,
            self.n_dropped,
        )


def build_design(
    frame: pd.DataFrame,
    outcome: str,
    culture: Sequence[str],
    controls: Sequence[str] = (),
    *,
    longitudinal: bool = False,
    wave_order=None,
) -> Design:
    """Listwise-complete rows; Intercept [+ wave] + culture within + culture between + dummies.

    Company means are taken over the rows kept (all waves when `longitudinal`), so the within
    parts have company mean 0 in the analysis sample.
    """
    ids = [COMPANY, PERSON, WAVE] if longitudinal else [COMPANY]
    needed = [*ids, outcome, *culture, *controls]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise ValueError(f"multilevel input lacks columns {missing}; it has {list(frame.columns)}")
    kept = within_between(frame.dropna(subset=needed), culture)
    parts = {INTERCEPT: np.ones(len(kept))}
    if longitudinal:
        parts[WAVE] = wave_numbers(kept[WAVE], wave_order)
    parts |= {f"{c}_within": kept[f"{c}_within"] for c in culture}
    parts |= {f"{c}_between": kept[f"{c}_between"] for c in culture}
    parts |= dummy_code(kept, controls).to_dict("series")
    X = np.column_stack([np.asarray(v, float) for v in parts.values()])
    return Design(
        y=kept[outcome].to_numpy(float),
        X=X,
        names=tuple(parts),
        company=kept[COMPANY].astype(str).to_numpy(),
        person=kept[PERSON].astype(str).to_numpy() if longitudinal else None,
        wave=parts.get(WAVE),
        n_dropped=len(frame) - len(kept),
    )


def company_level_terms(
    X: np.ndarray, names: Sequence[str], company: np.ndarray
) -> tuple[str, ...]:
    """Terms constant within every company (the intercept included): tested on company df."""
    means = pd.DataFrame(X).groupby(company).transform("mean").to_numpy()
    scale = np.maximum(np.abs(X).max(axis=0), 1.0)
    constant = np.all(np.abs(X - means) <= 1e-12 * scale, axis=0)
    return tuple(n for n, c in zip(names, constant, strict=True) if c)


# ---- inference, effect sizes, sensitivity -----------------------------------------------------


def t_inference(fit: MixedFit, between: Sequence[str], n_companies: int) -> pd.DataFrame:
    """Estimates with t-based CIs and p-values, df by the between-within rule (SAS DDFM=BW).

    Company-level terms: companies - company-level predictors - 1 (the intercept counts here);
    within terms: observations - companies - within-level predictors.
    """
    # not at the top: docs/developer.md#start-up-time
    from scipy import stats

    n_between = sum(n in between for n in fit.names)
    n_within = len(fit.names) - n_between
    is_between = np.array([n in between for n in fit.names])
    df = np.where(is_between, n_companies - n_between, fit.n_obs - n_companies - n_within)
    df = np.where(df > 0, df, np.nan)
    crit = stats.t.ppf(0.975, df)
    return pd.DataFrame(
        {
            "term": fit.names,
            "estimate": fit.fe,
            "std_error": fit.se,
            "df": df,
            "df_method": np.where(
                is_between, "between-within: company level", "between-within: within level"
            ),
            "ci_low": fit.fe - crit * fit.se,
            "ci_high": fit.fe + crit * fit.se,
            "p_value": 2 * stats.t.sf(np.abs(fit.fe / fit.se), df),
        }
    )


def random_variance(fit: MixedFit, wave: np.ndarray | None = None) -> float:
    """Mean random-effect variance over the rows (Johnson, 2014): with a wave slope,
    mean_i of var(u0 + u1 w_i) = company + 2 cov w_i + slope w_i^2; plus person if nested."""
    v = fit.variances
    total = v["company"] + v.get("person", 0.0)
    if "wave_slope" in v:
        w = np.asarray(wave, float)
        total += np.mean(2 * v.get("company_wave_cov", 0.0) * w + v["wave_slope"] * w**2)
    return float(total)


def nakagawa_r2(fit: MixedFit, X: np.ndarray, wave: np.ndarray | None = None):
    """(marginal, conditional) R^2 of Nakagawa & Schielzeth; var(X b) with an n - 1 denominator."""
    var_fixed = float(np.var(X @ fit.fe, ddof=1))
    random = random_variance(fit, wave)
    total = var_fixed + random + fit.variances["residual"]
    return var_fixed / total, (var_fixed + random) / total


def icc(fit: MixedFit) -> float:
    """Company share of the random variance; NaN with a random slope (it depends on the wave)."""
    v = fit.variances
    if "wave_slope" in v:
        return np.nan
    return v["company"] / (v["company"] + v.get("person", 0.0) + v["residual"])


def ols_cluster(y: np.ndarray, X: np.ndarray, company: np.ndarray):
    """OLS estimates and company-clustered SEs (statsmodels' default small-sample correction)."""
    # not at the top: docs/developer.md#start-up-time
    import statsmodels.api as sm

    groups = pd.factorize(company)[0]
    result = sm.OLS(y, X).fit(cov_type="cluster", cov_kwds={"groups": groups})
    return np.asarray(result.params), np.asarray(result.bse)


def lr_test(restricted: MixedFit, full: MixedFit) -> tuple[float, int, float]:
    """Likelihood-ratio chi-square, df and p of two nested ML fits on the same rows."""
    # not at the top: docs/developer.md#start-up-time
    from scipy import stats

    if restricted.reml or full.reml:
        raise ValueError("likelihood-ratio tests of fixed effects need ML fits, not REML")
    chisq = max(0.0, 2 * (full.loglik - restricted.loglik))
    df = _n_params(full) - _n_params(restricted)
    return chisq, df, float(stats.chi2.sf(chisq, df))


def _n_params(fit: MixedFit) -> int:
    """lme4's df for AIC/BIC: fixed effects + variance parameters (residual included)."""
    return len(fit.fe) + len(fit.variances)


def information_criteria(fit: MixedFit) -> tuple[float, float]:
    """(AIC, BIC) as lme4 computes them, from the REML criterion for REML fits."""
    k = _n_params(fit)
    return -2 * fit.loglik + 2 * k, -2 * fit.loglik + k * np.log(fit.n_obs)


# ---- model specs ------------------------------------------------------------------------------


@dataclass(frozen=True)
class NotEstimable:
    """A model the data or the codebook do not allow, and why: a row of `multilevel_fit.csv`
    without numbers. Without outcome or culture scales there is no model to name (model "")."""

    model: str
    outcome: str
    reason: str


def _without_scales(outcomes: Sequence[str], culture: Sequence[str]) -> list[NotEstimable]:
    """The one row of a model table without outcome or culture scales; none when both exist."""
    missing = [kind for kind, names in (("outcome", outcomes), ("culture", culture)) if not names]
    if not missing:
        return []
    reason = f"not estimable: the codebook's models have no {' and no '.join(missing)} scale"
    return [NotEstimable("", "", reason)]


@dataclass(frozen=True)
class ModelResult:
    model: str
    outcome: str
    design: Design
    guarded: GuardedFit
    lr: tuple[float, int, float] | None = None  # vs the empty model, ML fits
    notes: tuple[str, ...] = ()

    @property
    def fit(self) -> MixedFit:
        return self.guarded.fit


def fit_model(name, outcome, design, *, nested=False, slope=False, reml=True, notes=(), lr=None):
    guarded = fit_guarded(
        design.y,
        design.X,
        design.names,
        design.company,
        person=design.person if nested else None,
        wave_slope=design.wave if slope else None,
        reml=reml,
    )
    return ModelResult(name, outcome, design, guarded, lr, tuple(notes))


def wave_models(
    frame: pd.DataFrame,
    outcomes: Sequence[str],
    culture: Sequence[str],
    controls: Sequence[str] = (),
) -> list[ModelResult | NotEstimable]:
    """Per outcome, on one wave's rows: `<outcome>/empty` and `<outcome>/full` (REML), with
    the ML likelihood-ratio test of full vs empty on the same (listwise complete) rows; without
    outcome or culture scales, one NotEstimable that says which are missing."""
    if WAVE in frame.columns and frame[WAVE].nunique() > 1:
        raise ValueError(f"wave_models fits one wave; got {sorted(frame[WAVE].unique())}")
    results = _without_scales(outcomes, culture)
    if results:
        return results
    for outcome in outcomes:
        design = build_design(frame, outcome, culture, controls)
        ml_empty = fit_guarded(
            design.y, design.X[:, :1], design.names[:1], design.company, reml=False
        )
        ml_full = fit_guarded(design.y, design.X, design.names, design.company, reml=False)
        results.append(fit_model(f"{outcome}/empty", outcome, design.empty()))
        results.append(
            fit_model(f"{outcome}/full", outcome, design, lr=lr_test(ml_empty.fit, ml_full.fit))
        )
    return results


def longitudinal_models(
    frame: pd.DataFrame,
    outcomes: Sequence[str],
    culture: Sequence[str],
    controls: Sequence[str] = (),
    wave_order=None,
) -> list[ModelResult | NotEstimable]:
    """Per outcome, all waves: `<outcome>/longitudinal`, company / person-in-company intercepts.

    A model needs MIN_WAVES waves with complete rows (else it is NotEstimable). The
    company-level wave slope (correlated with the intercept) is kept only with at least
    SLOPE_MIN_WAVES waves and a slope fit without blocking problems whose slope variance and
    intercept-slope correlation are off the boundary; otherwise it is dropped and a note says
    why. The person level is dropped if every person answered once. Persons who answered once
    stay in.
    """
    results = _without_scales(outcomes, culture)
    if results:
        return results
    for outcome in outcomes:
        design = build_design(
            frame, outcome, culture, controls, longitudinal=True, wave_order=wave_order
        )
        n_waves = len(np.unique(design.wave))
        name = f"{outcome}/longitudinal"
        if n_waves < MIN_WAVES:
            reason = f"not estimable: needs {MIN_WAVES} waves ({n_waves} in the data)"
            results.append(NotEstimable(name, outcome, reason))
            continue
        nested = pd.Series(list(zip(design.company, design.person, strict=True))).duplicated().any()
        notes = [] if nested else ["person level dropped: every person answered once"]
        if n_waves < SLOPE_MIN_WAVES:
            notes.append(
                f"wave slope not estimable: needs {SLOPE_MIN_WAVES} waves ({n_waves} in the data)"
            )
        else:
            with_slope = fit_model(
                name,
                outcome,
                design,
                nested=nested,
                slope=True,
                notes=[*notes, "random wave slope per company"],
            )
            reasons = _slope_problems(with_slope.guarded)
            if not reasons:
                results.append(with_slope)
                continue
            notes.append(f"wave slope dropped: {'; '.join(map(str, reasons))}")
        results.append(fit_model(name, outcome, design, nested=nested, notes=notes))
    return results


def _slope_problems(guarded: GuardedFit) -> list[Problem]:
    """Why a slope model is not kept: blocking problems, or a slope variance or intercept-slope
    correlation on the boundary (a boundary person variance alone does not concern the slope)."""
    slope_parts = ("wave_slope", "company_wave_cov")
    return [p for p in guarded.problems if p.blocking or p.component in slope_parts]


# ---- output tables ----------------------------------------------------------------------------


COEFFICIENT_COLUMNS = (
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
)
FIT_COLUMNS = (
    "model",
    "outcome",
    "n_obs",
    "n_groups",
    "n_persons",
    "n_dropped",
    "loglik",
    "aic",
    "bic",
    "reml",
    "converged",
    "var_company",
    "var_person",
    "var_wave_slope",
    "cov_company_wave",
    "var_residual",
    "icc",
    "r2_marginal",
    "r2_conditional",
    "lr_chisq",
    "lr_df",
    "lr_p",
    "engine",
    "optimizer",
    "problems",
    "blocking",
    "notes",
)


def coefficients_table(results: Sequence[ModelResult | NotEstimable]) -> pd.DataFrame:
    """`multilevel.csv`: one row per model x term, t-based inference, and the OLS sensitivity
    (same design, company-clustered SEs) in `ols_estimate` / `ols_std_error` beside it.

    A model whose fit kept a blocking problem after every refit publishes no mixed-model numbers
    (NaN; `multilevel_fit.csv` says why), only the OLS sensitivity. A model that is not
    estimable has no rows (`multilevel_fit.csv` says why)."""
    tables = []
    for r in results:
        if isinstance(r, NotEstimable):
            continue
        d = r.design
        between = company_level_terms(d.X, r.fit.names, d.company)
        table = t_inference(r.fit, between, r.fit.n_groups["company"])
        if r.guarded.blocking:
            table[WITHHELD] = np.nan
        table["ols_estimate"], table["ols_std_error"] = ols_cluster(d.y, d.X, d.company)
        tables.append(table.assign(model=r.model))
    if not tables:
        return pd.DataFrame(columns=list(COEFFICIENT_COLUMNS))
    return pd.concat(tables, ignore_index=True)[list(COEFFICIENT_COLUMNS)]


def fit_table(results: Sequence[ModelResult | NotEstimable]) -> pd.DataFrame:
    """`multilevel_fit.csv`: one row per model; a model that is not estimable has no numbers,
    `blocking` False and its reason in `notes`."""
    rows = [
        {"model": r.model, "outcome": r.outcome, "blocking": False, "notes": r.reason}
        if isinstance(r, NotEstimable)
        else _fit_row(r)
        for r in results
    ]
    return pd.DataFrame(rows, columns=list(FIT_COLUMNS))


def _n_persons(design: Design) -> float:
    if design.person is None:
        return np.nan
    return len(set(zip(design.company, design.person, strict=True)))


def _fit_row(r: ModelResult) -> dict:
    fit, v = r.fit, r.fit.variances
    aic, bic = information_criteria(fit)
    r2_marginal, r2_conditional = nakagawa_r2(fit, r.design.X, r.design.wave)
    chisq, lr_df, lr_p = r.lr or (np.nan, np.nan, np.nan)
    return {
        "model": r.model,
        "outcome": r.outcome,
        "n_obs": fit.n_obs,
        "n_groups": fit.n_groups["company"],
        "n_persons": _n_persons(r.design),
        "n_dropped": r.design.n_dropped,
        "loglik": fit.loglik,
        "aic": aic,
        "bic": bic,
        "reml": fit.reml,
        "converged": fit.converged,
        "var_company": v["company"],
        "var_person": v.get("person", np.nan),
        "var_wave_slope": v.get("wave_slope", np.nan),
        "cov_company_wave": v.get("company_wave_cov", np.nan),
        "var_residual": v["residual"],
        "icc": icc(fit),
        "r2_marginal": r2_marginal,
        "r2_conditional": r2_conditional,
        "lr_chisq": chisq,
        "lr_df": lr_df,
        "lr_p": lr_p,
        "engine": fit.engine,
        "optimizer": fit.optimizer,
        "problems": "; ".join(map(str, r.guarded.problems)),
        "blocking": r.guarded.blocking,
        "notes": "; ".join(r.notes),
    }
