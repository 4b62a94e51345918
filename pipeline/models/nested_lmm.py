"""A fast profiled REML/ML fit of linear mixed models: persons nested in companies, with an
optional random wave slope per company.

The model is y = X b + u_company + w v_company + u_person + e, as lme4's
`lmer(y ~ X + (1 + w | company) + (1 | company:person))`: a company intercept (and, optionally,
a wave slope correlated with it, or independent as `(1 | company) + (0 + w | company)`), an
intercept per person within company, and normal residuals. Written as V = s2 H with
H = A + Z L L' Z', A = I + t_p Z_p Z_p' (the person part) and Z the company columns [1] or
[1, w], the fixed effects b and the residual variance s2 are profiled out, so the optimiser
only sees the relative covariance: the person ratio t_p and the lower-triangular L (lme4's
theta). The variances are bounded below by 0, so they can sit on the boundary as lme4 lets
them. The optimiser works on the ratios t = L_jj^2 and t_p rather than on theta: the slope in
theta vanishes at theta = 0 whether or not the deviance falls into the interior, so L-BFGS-B can
stall at 0 on the theta scale; on the t scale the slope at 0 tells them apart. The off-diagonal
L_10 (the intercept-slope covariance) is free, and beside it the intercept stays on lme4's theta
scale (see `_Design.kinds`): a slope variance at 0 is common, an intercept variance at 0 rare.

Every quantity the profiled criterion needs is a quadratic form a' H^-1 b in the columns of
G = [Z X y] and log det H. A is block diagonal in compound-symmetric person blocks
A_p = I + t_p 11', so (Sherman-Morrison, f_p = 1/(1 + t_p m_p) for a person with m_p rows and
S_p(a) the person's sum of a)

    a' A^-1 b  = sum a b - sum_p t_p f_p S_p(a) S_p(b)

gives per company K = Z' A^-1 G, and with M = I + L' Z'A^-1 Z L (Woodbury)

    a' H^-1 b  = a' A^-1 b - sum_c (L' Z'A^-1 a)' M^-1 (L' Z'A^-1 b)
    log det H  = sum_p log(1 + t_p m_p) + sum_c log det M.

The per-person sums and per-company cross products are taken once; an evaluation then costs
O(persons x columns x q) plus a q x q solve per company, with segment sums over companies
(persons sorted by company) instead of a loop. The gradient comes from the same pieces:
d/dT of log det H is sum_c Z'H^-1 Z, of the profiled residual sum of squares
-sum_c (Z'H^-1 r)(Z'H^-1 r)' (the fixed effects are at their optimum), and likewise per person;
the chain rule takes it from T = L L' to the optimiser's parameters. Without persons, every row
is its own "person" with t_p fixed at 0.

The deviances are lme4's: ML  n (1 + log(2 pi rss / n)) + log det H,
REML (n - k)(1 + log(2 pi rss / (n - k))) + log det H + log det X' H^-1 X; `loglik` is -deviance/2.
The covariance of the fixed effects is s2 (X' H^-1 X)^-1 with s2 = rss / n (ML) or
rss / (n - k) (REML), as lme4's vcov reports it. (statsmodels' bse_fe agrees without variance
components; with them it inverts a Hessian with fixed-effect/variance cross terms and differs by
a fraction of a percent.)
"""

from dataclasses import dataclass

import numpy as np
from scipy import linalg, optimize

from pipeline.models.mixed_fit import MixedFit

OPTIMIZER = "L-BFGS-B on the variance ratios (bounded at 0), analytic gradient"
BOUNDARY = 1e-12  # variance ratios (and thetas) below this are 0
GRADIENT_TOL = 1e-3  # lme4's check.conv.grad allows 2e-3 (see `_converged`)
STEP = 1e-4  # relative step of the finite-difference Hessian


@dataclass(frozen=True)
class _Design:
    """Per-person sums of G = [Z X y] and the cross products the criterion needs, persons sorted
    by company. Z is [1] or [1, wave]; q its width. The optimiser's parameters are the company
    intercept's, then with a slope the covariance L_10 (when correlated) and the slope ratio
    t_1, then the person ratio t_p when nested."""

    ff: np.ndarray  # [X y]' [X y]
    sums: np.ndarray  # persons x (q + k + 1): per-person column sums of G
    outer: np.ndarray  # persons x q x (q + k + 1): S_p(Z) S_p(G)'
    zg: np.ndarray  # companies x q x (q + k + 1): Z' G per company
    rows: np.ndarray  # rows per person
    company_of: np.ndarray  # company index per person (non-decreasing)
    starts: np.ndarray  # first person of every company, for np.add.reduceat
    n: int
    k: int
    q: int
    correlated: bool
    nested: bool

    @property
    def kinds(self) -> np.ndarray:
        """Per parameter: "t" (a variance ratio), "theta" (lme4's theta, the root of one) or
        "cov" (L_10, free). The correlated slope's intercept is on the theta scale: on the t
        scale the chain rule divides by sqrt(t_0), which is 0 when the intercept variance is."""
        if self.q == 1:
            company = ["t"]
        elif self.correlated:
            company = ["theta", "cov", "t"]
        else:
            company = ["t", "t"]
        return np.array(company + ["t"] * self.nested)


@dataclass(frozen=True)
class _Profile:
    deviance: float
    gradient: np.ndarray  # d deviance / d parameters
    beta: np.ndarray
    xhx_inv: np.ndarray  # (X' H^-1 X)^-1
    rss: float
    s2: float
    cov: np.ndarray  # T = L L', the company covariance relative to the residual variance


def _codes(labels: np.ndarray) -> np.ndarray:
    return np.unique(np.asarray(labels), return_inverse=True)[1].ravel()


def _design(y, X, company, person=None, wave_slope=None, correlated=True) -> _Design:
    y = np.asarray(y, dtype=float)
    X = np.asarray(X, dtype=float)
    n, k = X.shape
    z = np.ones((n, 1))
    if wave_slope is not None:
        z = np.column_stack([z, np.asarray(wave_slope, dtype=float)])
    q = z.shape[1]
    g = np.column_stack([z, X, y])
    if not np.isfinite(g).all():
        raise ValueError("y, X and the wave must be finite: drop incomplete rows before fitting")
    company = _codes(company)
    # The nesting key is the (company, person) pair; without persons every row is its own unit.
    unit = np.arange(n) if person is None else _codes(person)
    pairs, unit = np.unique(np.column_stack([company, unit]), axis=0, return_inverse=True)
    unit = unit.ravel()
    sums = np.zeros((len(pairs), g.shape[1]))
    np.add.at(sums, unit, g)
    zg = np.zeros((company.max() + 1, q, g.shape[1]))
    np.add.at(zg, company, z[:, :, None] * g[:, None, :])
    company_of = pairs[:, 0]  # np.unique sorts the pairs by company first
    return _Design(
        ff=g[:, q:].T @ g[:, q:],
        sums=sums,
        outer=sums[:, :q, None] * sums[:, None, :],
        zg=zg,
        rows=np.bincount(unit).astype(float),
        company_of=company_of,
        starts=np.flatnonzero(np.r_[True, company_of[1:] != company_of[:-1]]),
        n=n,
        k=k,
        q=q,
        correlated=correlated and q == 2,
        nested=person is not None,
    )


def _factor(d: _Design, params: np.ndarray) -> tuple[np.ndarray, float]:
    """L (q x q, lower triangular) and t_p from the optimiser's parameters."""
    kinds = d.kinds
    root = np.where(kinds == "t", np.sqrt(np.maximum(params, 0.0)), params)
    lower = np.zeros((d.q, d.q))
    lower[0, 0] = root[0]
    if d.q == 2:
        lower[1, 0] = root[1] if d.correlated else 0.0
        lower[1, 1] = root[1 + d.correlated]
    return lower, params[-1] if d.nested else 0.0


def _profile(d: _Design, params: np.ndarray, reml: bool) -> _Profile:
    q, k = d.q, d.k
    lower, t_p = _factor(d, np.asarray(params, dtype=float))
    f = 1.0 / (1.0 + t_p * d.rows)
    sz, sf = d.sums[:, :q], d.sums[:, q:]
    zag = d.zg - np.add.reduceat(d.outer * (t_p * f)[:, None, None], d.starts)  # Z'A^-1 G
    zaz, zaf = zag[:, :, :q], zag[:, :, q:]
    faf = d.ff - (sf * (t_p * f)[:, None]).T @ sf
    m = np.eye(q) + lower.T @ zaz @ lower
    m_inv = np.linalg.inv(m)
    b = lower.T @ zaf
    fhf = faf - np.einsum("cqi,cqj->ij", b, m_inv @ b)  # [X y]' H^-1 [X y]
    xhx, xhy, yhy = fhf[:k, :k], fhf[:k, k], fhf[k, k]
    chol = linalg.cho_factor(xhx)
    beta = linalg.cho_solve(chol, xhy)
    rss = yhy - xhy @ beta
    dof = d.n - k if reml else d.n
    logdet = np.log1p(t_p * d.rows).sum() + np.linalg.slogdet(m)[1].sum()
    deviance = logdet + dof * (1.0 + np.log(2.0 * np.pi * rss / dof))
    if reml:
        deviance += 2.0 * np.log(np.diag(chol[0])).sum()

    # d deviance / dT, T = L L': per company Z'H^-1 Z, Z'H^-1 r and Z'H^-1 X.
    xhx_inv = linalg.cho_solve(chol, np.eye(k))
    resid = np.r_[-beta, 1.0]
    lml = lower @ m_inv @ lower.T  # L M^-1 L' per company
    zhf = zaf - zaz @ lml @ zaf
    zhz = zaz - zaz @ lml @ zaz
    u = zhf @ resid
    d_cov = zhz.sum(axis=0) - dof / rss * u.T @ u
    if reml:
        d_cov -= np.einsum("cik,kl,cjl->ij", zhf[:, :, :k], xhx_inv, zhf[:, :, :k])
    d_lower = 2.0 * d_cov @ lower
    # Correlated: (theta_0, L_10, t_1); otherwise t on the diagonal. In both d T_jj / d t_j = 1.
    gradient = [d_lower[0, 0], d_lower[1, 0], d_cov[1, 1]] if d.correlated else [*np.diag(d_cov)]
    if d.nested:
        # 1' H^-1 G per person: f_p (S_p(G) - S_p(Z)' L M^-1 L' Z'A^-1 G of its company)
        h = f[:, None] * (sf - (sz[:, :, None] * (lml @ zaf)[d.company_of]).sum(axis=1))
        quad = ((sz[:, :, None] * lml[d.company_of]).sum(axis=1) * sz).sum(axis=1)
        hr = h @ resid
        d_person = (f * d.rows - f**2 * quad).sum() - dof / rss * (hr @ hr)
        if reml:
            d_person -= ((h[:, :k] @ xhx_inv) * h[:, :k]).sum()
        gradient.append(d_person)
    return _Profile(deviance, np.array(gradient), beta, xhx_inv, rss, rss / dof, lower @ lower.T)


def fit_nested(
    y,
    X,
    names,
    company,
    person=None,
    reml: bool = True,
    wave_slope=None,
    slope_correlated: bool = True,
) -> MixedFit:
    """Random intercepts for `company` and, given `person`, for persons nested in companies;
    given `wave_slope` (each row's wave value), a random wave slope per company, correlated
    with the company intercept or (`slope_correlated=False`) independent of it.

    `X` holds the fixed-effect columns (intercept included), `names` their names. Person labels
    may repeat across companies: the nesting key is the (company, person) pair.
    """
    d = _design(y, X, company, person, wave_slope, slope_correlated)
    bounded = d.kinds != "cov"
    bounds = [(0.0, None) if b else (None, None) for b in bounded]

    def objective(params):
        p = _profile(d, params, reml)
        return p.deviance, p.gradient

    def minimize(start):
        return optimize.minimize(
            objective,
            start,
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
            options={"ftol": 1e-15, "gtol": 1e-7, "maxiter": 500},
        )

    # Where the deviance is flat (large or tiny ratios) its rounding noise can stop the line search
    # before gtol is met, and L-BFGS-B ends "abnormally". A restart that cannot take a single step
    # confirms no lower deviance is found near there; the gradient check below decides the rest.
    res = minimize(bounded.astype(float))
    if not res.success:
        res = minimize(res.x)
    stopped = res.success or res.nit == 0
    # L-BFGS-B can stop a rounding error away from the bound (5e-17): that is the bound.
    params = np.where(bounded & (res.x <= BOUNDARY), 0.0, res.x)
    p = _profile(d, params, reml)

    variances = {"company": p.cov[0, 0] * p.s2}
    n_groups = {"company": len(d.starts)}
    if d.nested:
        variances["person"] = params[-1] * p.s2
        n_groups["person"] = len(d.rows)
    if d.q == 2:
        variances["wave_slope"] = p.cov[1, 1] * p.s2
        if d.correlated:
            variances["company_wave_cov"] = p.cov[0, 1] * p.s2
    variances["residual"] = p.s2
    return MixedFit(
        names=tuple(names),
        fe=p.beta,
        cov=p.s2 * p.xhx_inv,
        variances={key: float(value) for key, value in variances.items()},
        loglik=-0.5 * p.deviance,
        reml=reml,
        converged=stopped and _converged(d, params, reml, p.gradient),
        n_obs=d.n,
        n_groups=n_groups,
        engine="nested_lmm",
        optimizer=OPTIMIZER,
    )


def profiled_loglik(
    y,
    X,
    company,
    person=None,
    reml: bool = True,
    wave_slope=None,
    slope_correlated: bool = True,
    *,
    variances: dict[str, float],
) -> float:
    """The log-likelihood (lme4's convention, as `fit_nested`'s) at the random variances'
    ratios to the residual one in `variances` (a `MixedFit`'s keys, on the data scale), with the
    fixed effects and the residual variance profiled out.

    Any such value is at most the optimum, so it bounds from below what a fit of the same model
    by any engine must reach (`multilevel.fit_guarded` uses this).
    """
    d = _design(y, X, company, person, wave_slope, slope_correlated)
    return -0.5 * _profile(d, _parameters(d, variances), reml).deviance


def _parameters(d: _Design, variances: dict[str, float]) -> np.ndarray:
    """The optimiser's parameters (see `_Design.kinds`) at data-scale variances: T = L L' on the
    residual's scale, with L's rows taken in turn so that a singular T (a variance at 0) works."""
    ratio = {name: value / variances["residual"] for name, value in variances.items()}
    company = [ratio["company"]]
    if d.correlated:
        root = np.sqrt(ratio["company"])
        below = ratio["company_wave_cov"] / root if root > 0 else 0.0
        company = [root, below, max(ratio["wave_slope"] - below**2, 0.0)]
    elif d.q == 2:
        company.append(ratio["wave_slope"])
    return np.array(company + ([ratio["person"]] if d.nested else []))


def _converged(d: _Design, params: np.ndarray, reml: bool, gradient: np.ndarray) -> bool:
    """lme4's gradient check (check.conv.grad): per free parameter the smaller of the gradient
    on lme4's theta = sqrt(t) scale and the Hessian-scaled gradient (about the distance to the
    optimum, so large data's large deviances do not fail it) is below GRADIENT_TOL. A ratio at
    0 fails only if the deviance falls into the interior (a negative slope in t)."""
    at_bound = (d.kinds != "cov") & (params == 0)
    if np.any(gradient[at_bound] < -GRADIENT_TOL):
        return False
    free = np.flatnonzero(~at_bound)
    if not len(free):
        return True
    raw = np.where(d.kinds == "t", 2.0 * np.sqrt(np.abs(params)) * gradient, gradient)[free]
    hessian = np.empty((len(free), len(free)))
    for row, j in enumerate(free):
        step = np.zeros_like(params)
        step[j] = STEP * (max(abs(params[j]), 1e-3) if d.kinds[j] == "cov" else params[j])
        up, down = _profile(d, params + step, reml), _profile(d, params - step, reml)
        hessian[row] = (up.gradient - down.gradient)[free] / (2.0 * step[j])
    try:
        upper = linalg.cholesky((hessian + hessian.T) / 2.0)
    except linalg.LinAlgError:
        return False  # not a minimum
    scaled = linalg.solve_triangular(upper, gradient[free])
    return bool(np.max(np.minimum(np.abs(raw), np.abs(scaled))) < GRADIENT_TOL)
