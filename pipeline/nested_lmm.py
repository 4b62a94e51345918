"""A fast profiled REML/ML fit of random-intercept models: persons nested in companies.

The model is y = X b + u_company + u_person + e with independent normal intercepts, as lme4's
`lmer(y ~ X + (1 | company/person))` (or `(1 | company)` without persons). Written as
V = s2 H with H = I + t_c Z_c Z_c' + t_p Z_p Z_p', the fixed effects b and the residual variance
s2 are profiled out, so the optimiser only sees the variance ratios t (lme4's theta^2: the
random-intercept variance relative to the residual variance). They are bounded below by 0, so a
variance can sit on the boundary as lme4 lets it. Bounding t rather than theta matters there: the
slope in theta vanishes at theta = 0 whether or not the deviance falls into the interior, so
L-BFGS-B can stall at 0 on the theta scale; on the t scale the slope at 0 tells them apart.

Every quantity the profiled criterion needs is a quadratic form a' H^-1 b in the columns of [X y]
and log det H. Within a company H is block diagonal in compound-symmetric person blocks
A_p = I + t_p 11' plus a rank-one company term, so (Sherman-Morrison, with f_p = 1/(1 + t_p m_p)
for a person with m_p rows and S_p(a) the person's sum of a):

    a' A^-1 b  = sum a b - sum_p t_p f_p S_p(a) S_p(b)
    1' A^-1 a  = r_c(a) = sum_{p in c} f_p S_p(a),        w_c = 1' A^-1 1 = sum_{p in c} m_p f_p
    a' H^-1 b  = a' A^-1 b - sum_c t_c r_c(a) r_c(b) / (1 + t_c w_c)
    log det H  = sum_p log(1 + t_p m_p) + sum_c log(1 + t_c w_c)

The per-person sums are taken once; an evaluation then costs O(persons x columns^2), with segment
sums over companies (persons sorted by company) instead of a loop. The gradient comes from the
same pieces: d/dt_j of log det H is tr(H^-1 Z_j Z_j'), and d/dt_j of the profiled residual sum of
squares is -|Z_j' H^-1 r|^2 (the fixed effects are at their optimum). Without persons, every row
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

from pipeline.mixed_fit import MixedFit

OPTIMIZER = "L-BFGS-B on the variance ratios (bounded at 0), analytic gradient"
BOUNDARY = 1e-12  # variance ratios below this are 0
GRADIENT_TOL = 1e-3  # |d deviance / d theta| at the optimum; lme4's check.conv.grad allows 2e-3


@dataclass(frozen=True)
class _Design:
    """Per-person sums of [X y] and their cross products, persons sorted by company."""

    zz: np.ndarray  # [X y]' [X y]
    sums: np.ndarray  # persons x (k + 1): per-person column sums of [X y]
    rows: np.ndarray  # rows per person
    company_of: np.ndarray  # company index per person (non-decreasing)
    starts: np.ndarray  # first person of every company, for np.add.reduceat
    n: int
    k: int


@dataclass(frozen=True)
class _Profile:
    deviance: float
    gradient: np.ndarray  # d deviance / d (t_c, t_p)
    beta: np.ndarray
    xhx_inv: np.ndarray  # (X' H^-1 X)^-1
    rss: float
    s2: float


def _codes(labels: np.ndarray) -> np.ndarray:
    return np.unique(np.asarray(labels), return_inverse=True)[1].ravel()


def _design(y, X, company, person) -> _Design:
    y = np.asarray(y, dtype=float)
    X = np.asarray(X, dtype=float)
    n, k = X.shape
    company = _codes(company)
    # The nesting key is the (company, person) pair; without persons every row is its own unit.
    unit = np.arange(n) if person is None else _codes(person)
    pairs, unit = np.unique(np.column_stack([company, unit]), axis=0, return_inverse=True)
    unit = unit.ravel()
    z = np.column_stack([X, y])
    if not np.isfinite(z).all():
        raise ValueError("y and X must be finite: drop incomplete rows before fitting")
    sums = np.zeros((len(pairs), k + 1))
    np.add.at(sums, unit, z)
    company_of = pairs[:, 0]  # np.unique sorts the pairs by company first
    starts = np.flatnonzero(np.r_[True, company_of[1:] != company_of[:-1]])
    return _Design(
        zz=z.T @ z,
        sums=sums,
        rows=np.bincount(unit).astype(float),
        company_of=company_of,
        starts=starts,
        n=n,
        k=k,
    )


def _profile(d: _Design, t_c: float, t_p: float, reml: bool) -> _Profile:
    k = d.k
    f = 1.0 / (1.0 + t_p * d.rows)
    mf = d.rows * f
    r = np.add.reduceat(d.sums * f[:, None], d.starts)  # 1' A^-1 [X y] per company
    w = np.add.reduceat(mf, d.starts)  # 1' A^-1 1 per company
    e = 1.0 / (1.0 + t_c * w)
    m = d.zz - (d.sums * (t_p * f)[:, None]).T @ d.sums - (r * (t_c * e)[:, None]).T @ r
    xhx, xhy, yhy = m[:k, :k], m[:k, k], m[k, k]
    chol = linalg.cho_factor(xhx)
    beta = linalg.cho_solve(chol, xhy)
    rss = yhy - xhy @ beta
    dof = d.n - k if reml else d.n
    logdet = np.log1p(t_p * d.rows).sum() + np.log1p(t_c * w).sum()
    deviance = logdet + dof * (1.0 + np.log(2.0 * np.pi * rss / dof))
    if reml:
        deviance += 2.0 * np.log(np.diag(chol[0])).sum()

    # Z_j' H^-1 [X y] per company (j = c) and per person (j = p), and tr(H^-1 Z_j Z_j').
    u_company = r * e[:, None]
    u_person = d.sums * f[:, None] - mf[:, None] * (r * (t_c * e)[:, None])[d.company_of]
    traces = (
        (w * e).sum(),
        (mf - (t_c * e)[d.company_of] * mf**2).sum(),
    )
    gradient = np.empty(2)
    xhx_inv = linalg.cho_solve(chol, np.eye(k))
    for j, (u, trace) in enumerate(zip((u_company, u_person), traces, strict=True)):
        ur = u[:, k] - u[:, :k] @ beta  # Z_j' H^-1 (y - X beta)
        gradient[j] = trace - dof * (ur @ ur) / rss
        if reml:
            gradient[j] -= np.einsum("ij,jk,ik->", u[:, :k], xhx_inv, u[:, :k])
    return _Profile(deviance, gradient, beta, xhx_inv, rss, rss / dof)


def fit_nested(y, X, names, company, person=None, reml: bool = True) -> MixedFit:
    """Random intercepts for `company` and, given `person`, for persons nested in companies.

    `X` holds the fixed-effect columns (intercept included), `names` their names. Person labels
    may repeat across companies: the nesting key is the (company, person) pair.
    """
    d = _design(y, X, company, person)
    nested = person is not None
    free = 2 if nested else 1  # t_p is fixed at 0 without persons

    def objective(t):
        p = _profile(d, t[0], t[1] if nested else 0.0, reml)
        return p.deviance, p.gradient[:free]

    def minimize(start):
        return optimize.minimize(
            objective,
            start,
            jac=True,
            method="L-BFGS-B",
            bounds=[(0.0, None)] * free,
            options={"ftol": 1e-15, "gtol": 1e-7, "maxiter": 500},
        )

    # Where the deviance is flat (large or tiny ratios) its rounding noise can stop the line search
    # before gtol is met, and L-BFGS-B ends "abnormally". A restart that cannot take a single step
    # confirms no lower deviance is found near there; the gradient check below decides the rest.
    res = minimize(np.ones(free))
    if not res.success:
        res = minimize(res.x)
    stopped = res.success or res.nit == 0
    # L-BFGS-B can stop a rounding error away from the bound (5e-17): that is the bound.
    t = np.r_[np.where(res.x > BOUNDARY, res.x, 0.0), 0.0][:2]
    p = _profile(d, t[0], t[1], reml)
    # Judged on lme4's theta = sqrt(t) scale; at a ratio of 0 only a negative slope in t (the
    # deviance falls into the interior) is a failure.
    g = p.gradient[:free]
    slope = np.where(t[:free] > 0, 2.0 * np.sqrt(t[:free]) * g, np.minimum(g, 0.0))

    variances = {"company": t[0] * p.s2}
    n_groups = {"company": len(d.starts)}
    if nested:
        variances["person"] = t[1] * p.s2
        n_groups["person"] = len(d.rows)
    variances["residual"] = p.s2
    return MixedFit(
        names=tuple(names),
        fe=p.beta,
        cov=p.s2 * p.xhx_inv,
        variances=variances,
        loglik=-0.5 * p.deviance,
        reml=reml,
        converged=bool(stopped and np.max(np.abs(slope)) < GRADIENT_TOL),
        n_obs=d.n,
        n_groups=n_groups,
        engine="nested_lmm",
        optimizer=OPTIMIZER,
    )
