"""Full-information maximum likelihood (FIML) for the CFA when answers are missing, in one group
or several, agreeing with R's lavaan `cfa(model, data, missing = "ml")` (with `group =` and
`group.equal =` for several), under lavaan's ML and MLR estimators.

Every respondent counts with the items they answered: the log-likelihood is summed over the rows,
each with the rows and columns of its group's implied means and covariances that its items take.
The model has a mean structure (lavaan's intercepts; factor means as `layout.GroupLayout` says).
Its chi-square compares it with the saturated model, whose means and covariances per group come
from the EM algorithm as lavaan runs it (the same start, steps and stopping rule, so the same
moments), and the baseline model of independent items. SEs: under ML the observed information
(the Hessian of the log-likelihood, lavaan's default under FIML); under MLR the sandwich of the
observed information around the casewise scores, with the Yuan-Bentler scaled chi-square and the
robust CFI, TLI and RMSEA of Zhang and Savalei's FIML correction. Checked against
`tests/reference/lavaan_fiml.R` (HolzingerSwineford1939 with missing values added by a seeded
rule, and psych's bfi with its own) and `tests/reference/lavaan_fiml_groups.R` (the invariance
levels across HolzingerSwineford1939's two schools).

The work per step is done for all rows at once: each missing-data pattern's inverse covariance
comes from the whole inverse by removing its missing items; the fit starts from the ML fit of
the model to the EM moments, with that fit's information as the optimiser's first curvature, so
the full-information steps only correct it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
from scipy import optimize

from pipeline.instrument.codebook import CFA_ESTIMATORS, CFA_MISSING
from pipeline.psychometrics.estimation import (
    GRADIENT_TOLERANCE,
    check_covariance,
    check_model,
    fit_indices,
    minimise,
    normal_discrepancy,
    robust_indices,
    srmr_bentler,
    srmr_with_means,
    standardized_loadings,
)
from pipeline.psychometrics.layout import GroupLayout, group_layout, layout_of

LOG_2PI = float(np.log(2 * np.pi))
EM_TOLERANCE = 1e-5  # lavaan: the largest change of a mean or covariance in one EM step
EM_MAX_STEPS = 500
CHUNK = 4096  # rows per block where a per-row matrix is formed
# BFGS's stop on -2 log L / N: summed over 10,000 rows its gradient is exact to about 1e-8, and
# asking for less makes the line search spin on rounding (the estimates move by < 1e-6).
GTOL = 1e-7


@dataclass(frozen=True)
class Patterns:
    """One group's rows (at least one answer each), sorted by missing-data pattern: `x` the
    answers (0 where missing), `pattern` each row's pattern; per pattern its observed `masks`,
    number of `rows`, mean and covariance (divided by its rows) embedded in all items (0 where
    missing); `groups` the patterns by how many items they miss (indices, missing items)."""

    x: np.ndarray
    pattern: np.ndarray
    masks: np.ndarray
    rows: np.ndarray
    means: np.ndarray
    covs: np.ndarray
    groups: list[tuple[np.ndarray, np.ndarray]]

    @property
    def n(self) -> int:
        return len(self.x)


def patterns(x: np.ndarray) -> Patterns:
    """The missing-data patterns of `x` (NaN = missing); rows without any answer are left out,
    as lavaan leaves them out."""
    present = ~np.isnan(x)
    x, present = x[present.any(axis=1)], present[present.any(axis=1)]
    masks, which, rows = np.unique(present, axis=0, return_inverse=True, return_counts=True)
    order = np.argsort(which.ravel(), kind="stable")
    x, which = np.where(present, x, 0.0)[order], which.ravel()[order]
    starts = np.concatenate([[0], np.cumsum(rows)[:-1]])
    means = np.add.reduceat(x, starts, axis=0) / rows[:, None]
    covs = np.zeros((len(masks), x.shape[1], x.shape[1]))
    for k in np.flatnonzero(rows > 1):  # a pattern of one row has no spread
        centred = (x[starts[k] : starts[k] + rows[k]] - means[k]) * masks[k]
        covs[k] = centred.T @ centred / rows[k]
    missing = (~masks).sum(axis=1)
    groups = [
        (
            np.flatnonzero(missing == r),
            np.array([np.flatnonzero(~mk) for mk in masks[missing == r]]),
        )
        for r in np.unique(missing)
    ]
    return Patterns(x, which, masks, rows, means, covs, groups)


def _embedded_inverses(sigma: np.ndarray, pats: Patterns) -> tuple[np.ndarray, np.ndarray]:
    """Per pattern, the inverse of Sigma's observed block embedded in all items (zero rows and
    columns where missing) and its log-determinant, all patterns at once: from P = Sigma^-1 by
    removing the missing items m, P - P[:, m] P_mm^-1 P[m, :], and
    log|Sigma_oo| = log|Sigma| + log|P_mm|."""
    whole = np.linalg.inv(sigma)
    logdet = np.linalg.slogdet(sigma)[1]
    inverses = np.empty((len(pats.rows), *sigma.shape))
    logdets = np.empty(len(pats.rows))
    for index, m in pats.groups:
        if m.shape[1] == 0:
            inverses[index], logdets[index] = whole, logdet
            continue
        p_mm = whole[m[:, :, None], m[:, None, :]]
        p_m = whole[m]  # patterns x missing x items
        inverses[index] = whole - np.swapaxes(p_m, 1, 2) @ np.linalg.solve(p_mm, p_m)
        logdets[index] = logdet + np.linalg.slogdet(p_mm)[1]
    inverses[~pats.masks] = 0  # rounding: the removed rows are zero up to it
    inverses.transpose(0, 2, 1)[~pats.masks] = 0
    return inverses, logdets


def _row_chunks(mu: np.ndarray, inverses: np.ndarray, pats: Patterns):
    """Per block of rows: the rows' pattern indices and v = Sigma_oo^-1 (x_o - mu_o) per row,
    scattered over the items (0 where missing)."""
    for start in range(0, pats.n, CHUNK):
        which = pats.pattern[start : start + CHUNK]
        r = (pats.x[start : start + CHUNK] - mu) * pats.masks[which]
        yield which, r, np.einsum("kij,kj->ki", inverses[which], r)


@dataclass(frozen=True)
class Terms:
    """The log-likelihood of one group's rows under (mu, sigma) and its derivatives by the means
    and by each element of the covariance matrix (as an unconstrained symmetric matrix)."""

    loglik: float
    d_mu: np.ndarray
    d_sigma: np.ndarray


def terms(mu: np.ndarray, sigma: np.ndarray, pats: Patterns) -> Terms:
    """With v_i = Sigma_oo^-1 (x_o - mu_o): log L = -1/2 sum_i (p_i log 2 pi + log|Sigma_oo| +
    r_i' v_i), d/dmu = sum_i v_i, d/dSigma = -1/2 (sum_k n_k Sigma_oo^-1 - sum_i v_i v_i')."""
    inverses, logdets = _embedded_inverses(sigma, pats)
    quad, d_mu, vv = 0.0, np.zeros(len(mu)), np.zeros_like(sigma)
    for _, r, v in _row_chunks(mu, inverses, pats):
        quad += np.sum(r * v)
        d_mu += v.sum(axis=0)
        vv += v.T @ v
    sizes = pats.masks.sum(axis=1)
    loglik = -0.5 * (pats.rows @ (sizes * LOG_2PI + logdets) + quad)
    d_sigma = -0.5 * (np.einsum("k,kij->ij", pats.rows, inverses) - vv)
    return Terms(float(loglik), d_mu, d_sigma)


def saturated_moments(pats: Patterns, start: tuple[np.ndarray, np.ndarray]):
    """Means and covariances of the saturated model by EM, as lavaan's
    `lav_mvn_mi_h1_est_moments`, from `start` (lavaan: the available-case means and variances,
    no covariances), until no mean or covariance changes by EM_TOLERANCE or more. One step: each
    row's missing answers replaced by their conditional expectation, x_i - mu = Sigma v_i, and
    their conditional covariance Sigma - Sigma Sigma_oo^-1 Sigma (embedded) added."""
    mu, sigma = start
    n, p = pats.n, len(mu)
    lower = np.tril_indices(p)
    for _ in range(EM_MAX_STEPS):
        inverses, _ = _embedded_inverses(sigma, pats)
        shift, spread = np.zeros(p), np.zeros((p, p))
        for _, _, v in _row_chunks(mu, inverses, pats):
            z = v @ sigma
            shift += z.sum(axis=0)
            spread += z.T @ z
        shift /= n
        average_inverse = np.einsum("k,kij->ij", pats.rows, inverses) / n
        new_sigma = spread / n - np.outer(shift, shift) + sigma - sigma @ average_inverse @ sigma
        new_sigma = (new_sigma + new_sigma.T) / 2
        new_mu = mu + shift
        if np.linalg.eigvalsh(new_sigma)[0] < 1e-6:  # lavaan's ridge
            new_sigma[np.diag_indices(p)] += np.max(np.diag(new_sigma)) * 1e-8
        change = max(np.max(np.abs(new_mu - mu)), np.max(np.abs((new_sigma - sigma)[lower])))
        mu, sigma = new_mu, new_sigma
        if change < EM_TOLERANCE:
            break
    return mu, sigma


def available_case(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each item's mean and variance (over N) over the rows that answered it."""
    mu = np.nanmean(x, axis=0)
    return mu, np.nanmean((x - mu) ** 2, axis=0)


def _vech(matrix: np.ndarray) -> np.ndarray:
    return matrix[np.tril_indices(len(matrix))]


def _to_vech(matrix: np.ndarray, p: int, axis: int) -> np.ndarray:
    """D' applied along `axis` of a matrix indexed by vec(Sigma): sums the two entries of each
    covariance (vech), the one entry of each variance."""
    rows, cols = np.tril_indices(p)
    first = np.take(matrix, rows * p + cols, axis=axis)
    second = np.take(matrix, cols * p + rows, axis=axis)
    shape = [1] * matrix.ndim
    shape[axis] = len(rows)
    return first + second * (rows != cols).reshape(shape)


def saturated_observed(mu, sigma, pats: Patterns) -> np.ndarray:
    """The saturated model's observed information at (mu, sigma), by the means and vech(Sigma),
    as a sum over the rows. Per pattern k, with Q_k its embedded inverse, v_k = Q_k d_k (d_k its
    mean minus mu) and X_k = Q_k S_k Q_k + v_k v_k' - Q_k / 2 (Savalei 2010):
    -d2l/dmu2 = sum n_k Q_k, -d2l/dmu dvecSigma = sum n_k (v_k' x Q_k) and
    -d2l/dvecSigma2 = D' (sum n_k X_k x Q_k) D, the sums over all patterns at once (a sum of
    Kronecker products is one matrix product)."""
    p, n = len(mu), pats.rows
    inverses, _ = _embedded_inverses(sigma, pats)
    d = (pats.means - mu) * pats.masks
    v = np.einsum("kij,kj->ki", inverses, d)
    x = inverses @ pats.covs @ inverses + v[:, :, None] * v[:, None, :] - inverses / 2
    cross = np.einsum("k,ki,kab->aib", n, v, inverses).reshape(p, p * p)
    q = p + p * (p + 1) // 2
    observed = np.empty((q, q))
    observed[:p, :p] = np.einsum("k,kij->ij", n, inverses)
    observed[:p, p:] = _to_vech(cross, p, axis=1)
    observed[p:, :p] = observed[:p, p:].T
    observed[p:, p:] = _kron_vech(n[:, None, None] * x, inverses)
    return observed


def _kron_vech(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """D' (sum_k a_k x b_k) D for stacks of p x p matrices: the sum of Kronecker products as
    one matrix product, then summed onto vech(Sigma) on both sides."""
    k, p, _ = a.shape
    products = a.reshape(k, -1).T @ b.reshape(k, -1)
    kron = products.reshape(p, p, p, p).transpose(0, 2, 1, 3).reshape(p * p, p * p)
    return _to_vech(_to_vech(kron, p, axis=0), p, axis=1)


def saturated_expected(mu, sigma, pats: Patterns) -> np.ndarray:
    """The saturated model's expected information at (mu, sigma), by the means and vech(Sigma),
    as a sum over the rows, as lavaan's for missing = "ml" (the structured h1 information):
    per pattern k, n_k Q_k for the means and n_k D' (Q_k x Q_k) D / 2 for the covariances, Q_k
    its embedded inverse; none between them."""
    p, n = len(mu), pats.rows
    inverses, _ = _embedded_inverses(sigma, pats)
    q = p + p * (p + 1) // 2
    expected = np.zeros((q, q))
    expected[:p, :p] = np.einsum("k,kij->ij", n, inverses)
    expected[p:, p:] = _kron_vech(0.5 * n[:, None, None] * inverses, inverses)
    return expected


def first_order(mu, sigma, pats: Patterns) -> np.ndarray:
    """The sum over the rows of each row's score outer product, by the means and vech(Sigma):
    row i's scores are v_i and, for each covariance, v_a v_b - Q_ab (half that on the
    diagonal: a covariance appears twice in Sigma)."""
    p = len(mu)
    inverses, _ = _embedded_inverses(sigma, pats)
    rows, cols = np.tril_indices(p)
    weight = np.where(rows == cols, 0.5, 1.0)
    total = np.zeros((p + len(rows), p + len(rows)))
    for which, _, v in _row_chunks(mu, inverses, pats):
        covariances = weight * (v[:, rows] * v[:, cols] - inverses[which][:, rows, cols])
        scores = np.hstack([v, covariances])
        total += scores.T @ scores
    return total


def _jacobian(function, x: np.ndarray, step: float = 1e-6, batch: bool = False) -> np.ndarray:
    """d function(x) / dx by central differences, each step `step` relative to |x| (at least
    `step`); the functions differentiated here are polynomials of low degree, for which the
    central difference is exact up to rounding. A `batch` function takes all the shifted
    points at once (one per row)."""
    h = step * np.maximum(1.0, np.abs(x))
    shifts = np.diag(h)
    if batch:
        return ((function(x + shifts) - function(x - shifts)) / (2 * h[:, None])).T
    columns = [
        (function(x + d) - function(x - d)) / (2 * hj) for d, hj in zip(shifts, h, strict=True)
    ]
    return np.array(columns).T


def _deltas(theta: np.ndarray, layout: GroupLayout) -> list[np.ndarray]:
    """Per group, d(mu_g, vech Sigma_g) / d theta."""
    rows, cols = np.tril_indices(layout.single.p)

    def moments(x: np.ndarray, g: int) -> np.ndarray:
        mu, sigma = layout.moments(x, g)
        return np.concatenate([mu, sigma[..., rows, cols]], axis=-1)

    return [
        _jacobian(lambda x, g=g: moments(x, g), theta, batch=True) for g in range(layout.groups)
    ]


def _complete_information(sigma: np.ndarray) -> np.ndarray:
    """The complete-data information of one row by the means and vech(Sigma)."""
    p = len(sigma)
    inv = np.linalg.inv(sigma)
    information = np.zeros((p + p * (p + 1) // 2,) * 2)
    information[:p, :p] = inv
    information[p:, p:] = _to_vech(_to_vech(0.5 * np.kron(inv, inv), p, axis=0), p, axis=1)
    return information


def _objective(theta: np.ndarray, layout: GroupLayout, data: list[Patterns], n: int):
    """-2 log L / N and its gradient, the scale the CFA's optimiser works on."""
    parts = []
    for g, pats in enumerate(data):
        mu, sigma = layout.moments(theta, g)
        if np.linalg.eigvalsh(sigma)[0] <= 0:
            return 1e10, np.zeros_like(theta)  # outside the admissible region: step back
        parts.append(terms(mu, sigma, pats))
    gradient = layout.chain_rule(theta, [t.d_mu for t in parts], [t.d_sigma for t in parts])
    return -2 / n * sum(t.loglik for t in parts), -2 / n * gradient


def score_and_information(theta: np.ndarray, layout: GroupLayout, sample: Sample):
    """The gradient of log L / N by theta and the expected information per row (lavaan's
    "gradient.logl" and "information.expected"), for the score tests."""
    n = int(sample.sizes.sum())
    gradient = -0.5 * _objective(theta, layout, sample.data, n)[1]
    information = sum(
        delta.T @ saturated_expected(*layout.moments(theta, g), pats) @ delta
        for g, (delta, pats) in enumerate(zip(_deltas(theta, layout), sample.data, strict=True))
    )
    return gradient, information / n


def _two_stage_start(layout: GroupLayout, saturated: list, sizes: np.ndarray):
    """The ML fit of the model to the EM moments (a good start: FIML moves it little) and the
    inverse of its expected curvature on the optimiser's scale, 2 sum_g w_g Delta_g' W_g
    Delta_g with W_g the complete-data information, as the optimiser's first guess of the
    inverse Hessian."""
    weights = sizes / sizes.sum()
    stats = [
        (w, sigma, mu, np.linalg.slogdet(sigma)[1])
        for w, (mu, sigma) in zip(weights, saturated, strict=True)
    ]
    # L-BFGS-B: a start needs no last digits, and BFGS's dense updates cost n^3 per step with
    # several groups' hundreds of parameters.
    start = optimize.minimize(
        normal_discrepancy,
        layout.start(saturated),
        args=(layout, stats),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": 10_000},
    ).x
    curvature = sum(
        2 * w * delta.T @ _complete_information(layout.moments(start, g)[1]) @ delta
        for g, (w, delta) in enumerate(zip(weights, _deltas(start, layout), strict=True))
    )
    inverse = np.linalg.inv(curvature)
    inverse = (inverse + inverse.T) / 2
    try:
        np.linalg.cholesky(inverse)
    except np.linalg.LinAlgError:  # near a boundary the guess is useless: BFGS starts afresh
        return start, None
    return start, inverse


def _independence(x_groups: list[np.ndarray]) -> tuple[float, list]:
    """The baseline model, each item its own mean and variance in each group: its FIML
    log-likelihood and per group (means, variances)."""
    loglik, moments = 0.0, []
    for x in x_groups:
        means, variances = available_case(x)
        counts = (~np.isnan(x)).sum(axis=0)
        loglik += float(-0.5 * np.sum(counts * (LOG_2PI + np.log(variances) + 1)))
        moments.append((means, variances))
    return loglik, moments


def _complete_data_chisq(mu, sigma, m, s, n: int) -> float:
    """N times the complete-data ML discrepancy of the moments (mu, sigma) from (m, s)."""
    inv = np.linalg.inv(sigma)
    d = m - mu
    logdet = np.linalg.slogdet(sigma)[1] - np.linalg.slogdet(s)[1]
    return float(n * (logdet + np.sum(inv * s) - len(s) + d @ inv @ d))


class FimlCorrection:
    """Robust CFI, TLI and RMSEA after FIML by Zhang and Savalei's correction (FIML-C, version
    V3), as lavaan's `lav_fit_fiml_corrected`: the model's and the baseline's complete-data
    chi-squares at the saturated (EM) moments, each with its scaling factor
    k / df = (tr(Wc G) - 2 tr(D'J Wm^-1 Wc D E^-1) + tr(D'J D E^-1 D'Wc D E^-1)) / df, from the
    saturated model's observed (Wm, `observed`), first-order (J, `first`) and complete-data (Wc)
    information per row, G = Wm^-1 J Wm^-1, D = Delta and E = D'Wm D; lavaan's block-diagonal
    matrices over the groups (blocks weighted by each group's share of the rows) are summed
    here group by group. What depends only on the sample (the saturated terms, the baseline:
    per group the independence model's FIML means and variances) is computed once, for every
    model fitted to it."""

    def __init__(self, saturated: list, observed: list, first: list, sizes, baseline: list):
        self.saturated, self.sizes = saturated, sizes
        self.shares = sizes / sizes.sum()
        self.wm = [o / ng for o, ng in zip(observed, sizes, strict=True)]
        self.jm = [b / ng for b, ng in zip(first, sizes, strict=True)]
        self.wc = [_complete_information(s) for _, s in saturated]
        self.tr11 = sum(
            np.sum(c * np.linalg.solve(w, np.linalg.solve(w, j).T).T)
            for c, w, j in zip(self.wc, self.wm, self.jm, strict=True)
        )
        self.jm_wc = [
            j @ np.linalg.solve(w, c) for j, w, c in zip(self.jm, self.wm, self.wc, strict=True)
        ]
        groups = len(sizes)
        block = _baseline_delta(len(saturated[0][0]))  # each group's own means and variances
        deltas = [
            np.hstack([block if h == g else np.zeros_like(block) for h in range(groups)])
            for g in range(groups)
        ]
        implied = [(means, np.diag(variances)) for means, variances in baseline]
        self.baseline = self._chisq_and_scaling(implied, deltas)

    def _chisq_and_scaling(self, implied: list, deltas: list) -> tuple[float, float, int]:
        def weighted(blocks):
            return sum(f * d.T @ b @ d for f, d, b in zip(self.shares, deltas, blocks, strict=True))

        e_inv = np.linalg.inv(weighted(self.wm))
        tr12 = np.sum(weighted(self.jm_wc) * e_inv.T)
        b_e, c_e = weighted(self.jm) @ e_inv, weighted(self.wc) @ e_inv
        k = self.tr11 - 2 * tr12 + np.sum(b_e * c_e.T)
        dof = sum(len(w) for w in self.wm) - deltas[0].shape[1]
        x2 = sum(
            _complete_data_chisq(mu, sigma, m1, s1, ng)
            for (mu, sigma), (m1, s1), ng in zip(implied, self.saturated, self.sizes, strict=True)
        )
        return x2, float(k / dof), dof

    def indices(self, theta: np.ndarray, layout: GroupLayout, deltas: list):
        """The model's robust CFI, TLI and RMSEA; `deltas` its d moments / d theta per group."""
        model = [layout.moments(theta, g) for g in range(layout.groups)]
        x2, c, df = self._chisq_and_scaling(model, deltas)
        n = int(self.sizes.sum())
        x2_b, c_b, df_b = self.baseline
        return robust_indices(x2, df, c, x2_b, df_b, c_b, n, layout.groups)


def _baseline_delta(p: int) -> np.ndarray:
    """d(mu, vech Sigma) / d(means, variances) of the baseline model: it picks them."""
    rows, cols = np.tril_indices(p)
    delta = np.zeros((p + len(rows), 2 * p))
    delta[:p, :p] = np.eye(p)
    delta[p + np.flatnonzero(rows == cols), p + np.arange(p)] = 1
    return delta


# The fit measures of a FimlResult that the tables publish (the robust ones NaN under ML).
FIT_MEASURES = (
    "chisq",
    "df",
    "cfi",
    "tli",
    "rmsea",
    "srmr",
    "chisq_scaled",
    "scaling_factor",
    "cfi_robust",
    "tli_robust",
    "rmsea_robust",
)


@dataclass(frozen=True)
class FimlResult:
    estimator: str  # "ML" or "MLR"
    n: int  # rows with at least one answer
    loglik: float
    saturated_loglik: float
    chisq: float
    df: int
    baseline_chisq: float
    baseline_df: int
    cfi: float
    tli: float
    rmsea: float
    srmr: float
    converged: bool
    parameters: pd.DataFrame  # group, lhs, op, rhs, est, se (lavaan's parameterEstimates)
    loadings: pd.DataFrame  # factor, item, std_loading (of the first group)
    factor_correlations: pd.DataFrame  # factor x factor (of the first group)
    estimates: np.ndarray  # theta, as `layout.GroupLayout` places it
    groups: tuple[str, ...] = ("",)
    n_per_group: tuple[int, ...] = ()
    scaling_factor: float = float("nan")  # MLR: the Yuan-Bentler (Mplus) scaling factor
    chisq_scaled: float = float("nan")
    cfi_robust: float = float("nan")
    tli_robust: float = float("nan")
    rmsea_robust: float = float("nan")


def observed_information(theta, layout: GroupLayout, deltas, model_terms, data_g) -> np.ndarray:
    """The Hessian of -log L by theta (lavaan's observed information, as a sum), by the chain rule
    through the implied moments: Delta' W Delta, W the saturated model's observed information at
    the implied moments, less the moments' own curvature weighted by dl/dmoments (the moments
    are polynomials of theta: central differences of the chain rule are exact up to rounding)."""
    d_mu, d_sigma = [t.d_mu for t in model_terms], [t.d_sigma for t in model_terms]
    curvature = _jacobian(lambda x: layout.chain_rule(x, d_mu, d_sigma), theta, 1e-5, True)
    information = -curvature + sum(
        delta.T @ saturated_observed(*layout.moments(theta, g), pats) @ delta
        for g, (delta, pats) in enumerate(zip(deltas, data_g, strict=True))
    )
    return (information + information.T) / 2


@dataclass(frozen=True)
class Sample:
    """The rows a fit uses, per group: `missing` "fiml" keeps every row with an answer, "listwise"
    only the rows that answered every item (lavaan's default; the same likelihood then is the
    complete-data ML). Per group its patterns and its saturated moments by EM; the saturated
    model's information is computed once, for every model fitted to the sample."""

    items: list[str]
    labels: tuple[str, ...]
    x: list[np.ndarray]
    data: list[Patterns]
    saturated: list[tuple[np.ndarray, np.ndarray]]
    missing: str

    @property
    def sizes(self) -> np.ndarray:
        return np.array([pats.n for pats in self.data])

    @cached_property
    def observed(self) -> list[np.ndarray]:
        return [
            saturated_observed(mu, s, d)
            for (mu, s), d in zip(self.saturated, self.data, strict=True)
        ]

    @cached_property
    def saturated_loglik(self) -> float:
        return sum(
            terms(mu, s, d).loglik for (mu, s), d in zip(self.saturated, self.data, strict=True)
        )

    @cached_property
    def baseline(self) -> tuple[float, list]:
        """The independence model's log-likelihood and per group its means and variances."""
        return _independence(self.x)

    @cached_property
    def correction(self) -> FimlCorrection:
        return FimlCorrection(
            self.saturated, self.observed, self.first_order, self.sizes, self.baseline[1]
        )

    @cached_property
    def first_order(self) -> list[np.ndarray]:
        return [first_order(mu, s, d) for (mu, s), d in zip(self.saturated, self.data, strict=True)]


def sample(data: pd.DataFrame, items: list[str], group: str | None = None, missing="fiml"):
    """The Sample of `items` in `data`, in one group or in each group of `data[group]` (ordered
    by first appearance, as lavaan orders a group column). Raises SingularCovariance when a
    group's saturated covariance matrix is not positive definite, naming the items."""
    if missing not in CFA_MISSING:
        raise ValueError(f"missing {missing!r}: one of {', '.join(CFA_MISSING)}")
    if group is None:
        labels, x_all = ("",), [data[items].to_numpy(dtype=float)]
    else:
        if group not in data.columns:
            raise ValueError(f"group column not in the data: {group!r}")
        rows = data[data[group].notna()]
        labels = tuple(pd.unique(rows[group]))
        x_all = [rows.loc[rows[group] == g, items].to_numpy(dtype=float) for g in labels]
    keep = (
        (lambda x: ~np.isnan(x).any(axis=1))
        if missing == "listwise"
        else (lambda x: ~np.isnan(x).all(axis=1))
    )
    x_all = [x[keep(x)] for x in x_all]
    rows_kind = "complete rows" if missing == "listwise" else "rows with an answer"
    data_g = [patterns(x) for x in x_all]
    saturated = []
    for label, x, pats in zip(labels, x_all, data_g, strict=True):
        where = f"group {label!r}: " if group is not None else ""
        if len(x) <= len(items):
            raise ValueError(f"{where}{len(x)} {rows_kind} for {len(items)} items")
        mean, variance = available_case(x)
        if missing == "listwise":  # the saturated moments of complete rows
            mu, sigma = mean, np.cov(x, rowvar=False, bias=True)
        else:
            check_covariance(np.diag(variance), items, f"{where}{len(x)} {rows_kind}")
            mu, sigma = saturated_moments(pats, (mean, np.diag(variance)))
        check_covariance(sigma, items, f"{where}{len(x)} {rows_kind}")
        saturated.append((mu, sigma))
    return Sample(items, labels, x_all, data_g, saturated, missing)


def _baseline_scaling(sample: Sample, baseline: list, df: int) -> float:
    """The Yuan-Bentler scaling factor of the baseline model (each item its own mean and
    variance), as for the model: its information by its parameters through Delta_b, which
    picks the means and variances (the baseline's moments are linear in its parameters)."""
    delta = _baseline_delta(len(sample.items))
    trace0 = 0.0
    for (means, variances), pats in zip(baseline, sample.data, strict=True):
        a = delta.T @ saturated_observed(means, np.diag(variances), pats) @ delta
        b = delta.T @ first_order(means, np.diag(variances), pats) @ delta
        trace0 += np.trace(np.linalg.solve(a, b))
    trace1 = sum(
        np.trace(np.linalg.solve(a, b))
        for a, b in zip(sample.observed, sample.first_order, strict=True)
    )
    return float((trace1 - trace0) / df)


def _factor_correlations(layout: GroupLayout, theta: np.ndarray, factors: list[str]):
    """The first group's factor covariances Phi as correlations."""
    _, phi, _, _, _ = layout.unpack(theta, 0)
    sd = np.sqrt(np.diag(phi))
    return pd.DataFrame(phi / np.outer(sd, sd), index=factors, columns=factors)


def fit_fiml(
    data: pd.DataFrame,
    model: dict[str, list[str]],
    estimator: str = "ML",
    group: str | None = None,
    equal: tuple[str, ...] = (),
    missing: str = "fiml",
) -> FimlResult:
    """Fit `model` ({factor: [items]}) by ML to the rows of `data` that `missing` keeps: in one
    group, or in each group of `data[group]` with the parameter blocks named in `equal` shared
    (lavaan's `group.equal`)."""
    return fit_sample(
        sample(data, check_model(data, model), group, missing), model, estimator, equal
    )


def fit_sample(
    sample: Sample,
    model: dict[str, list[str]],
    estimator: str = "ML",
    equal=(),
    partial: frozenset[tuple[str, int]] = frozenset(),
) -> FimlResult:
    """Fit `model` to a Sample (several models to one sample share its saturated model), the
    blocks in `equal` shared across the groups except the entries in `partial`."""
    items = [item for its in model.values() for item in its]
    layout = group_layout(layout_of(items, model), len(sample.labels), tuple(equal), partial)
    return fit_layout(sample, layout, model, estimator)


def fit_layout(
    sample: Sample, layout: GroupLayout, model: dict[str, list[str]], estimator: str = "ML"
) -> FimlResult:
    """Fit the model whose parameters `layout` places (its factors and items named by `model`)
    to a Sample."""
    if estimator not in CFA_ESTIMATORS:
        raise ValueError(f"estimator {estimator!r}: one of {', '.join(CFA_ESTIMATORS)}")
    items, labels, data_g, saturated = sample.items, sample.labels, sample.data, sample.saturated
    if items != [item for its in model.values() for item in its]:
        raise ValueError("the model's items are not the sample's")
    p = len(items)
    sizes = sample.sizes
    n = int(sizes.sum())
    start, hess_inv = _two_stage_start(layout, saturated, sizes)
    result = minimise(_objective, start, (layout, data_g, n), hess_inv, GTOL)
    theta = result.x

    model_terms = [terms(*layout.moments(theta, g), pats) for g, pats in enumerate(data_g)]
    l0 = sum(t.loglik for t in model_terms)
    l1 = sample.saturated_loglik
    l_base, baseline = sample.baseline
    chisq, base_chisq = 2 * (l1 - l0), 2 * (l1 - l_base)
    df = layout.groups * (p * (p + 1) // 2 + p) - layout.n_params
    base_df = layout.groups * p * (p - 1) // 2
    cfi, tli, rmsea = fit_indices(chisq, df, base_chisq, base_df, n)

    deltas = _deltas(theta, layout)
    if sample.missing == "listwise" and estimator == "ML":
        # lavaan's default for complete data under ML: the expected information.
        information = sum(
            ng * delta.T @ _complete_information(layout.moments(theta, g)[1]) @ delta
            for g, (delta, ng) in enumerate(zip(deltas, sizes, strict=True))
        )
    else:
        information = observed_information(theta, layout, deltas, model_terms, data_g)
    vcov, robust = np.linalg.inv(information), {}
    if estimator == "MLR" and df > 0:
        scores = sum(
            delta.T @ first_order(*layout.moments(theta, g), pats) @ delta
            for g, (delta, pats) in enumerate(zip(deltas, data_g, strict=True))
        )
        vcov = vcov @ scores @ vcov  # the sandwich
        observed1, first1 = sample.observed, sample.first_order
        # lavaan's "yuan.bentler.mplus": (tr(A1^-1 B1) - tr(A0^-1 B0)) / df, A the observed
        # and B the first-order information, of the saturated model (1) and the model (0).
        trace1 = sum(
            np.trace(np.linalg.solve(a, b)) for a, b in zip(observed1, first1, strict=True)
        )
        c = float((trace1 - np.trace(np.linalg.solve(information, scores))) / df)
        if sample.missing == "fiml":
            corrected = sample.correction.indices(theta, layout, deltas)
        else:
            c_b = _baseline_scaling(sample, baseline, base_df)
            corrected = robust_indices(chisq, df, c, base_chisq, base_df, c_b, n, layout.groups)
        robust = {"scaling_factor": c, "chisq_scaled": chisq / c} | dict(
            zip(("cfi_robust", "tli_robust", "rmsea_robust"), corrected, strict=True)
        )
    names = layout.names(list(model), items)
    index = np.array([i for *_, i in names])
    parameters = pd.DataFrame(
        {
            "group": [g for g, *_ in names],
            "lhs": [lhs for _, lhs, _, _, _ in names],
            "op": [op for _, _, op, _, _ in names],
            "rhs": [rhs for _, _, _, rhs, _ in names],
            "est": theta[index],
            "se": np.sqrt(np.diag(vcov))[index],
        }
    )
    moments = [layout.moments(theta, g) for g in range(layout.groups)]
    if layout.groups == 1 and sample.missing == "listwise" and not layout.structured_means:
        # lavaan: no mean structure then
        srmr = srmr_bentler(saturated[0][1], moments[0][1])
    else:
        srmr = sum(
            ng / n * srmr_with_means(s1, sigma, m1, mu)
            for ng, (m1, s1), (mu, sigma) in zip(sizes, saturated, moments, strict=True)
        )
    first_group = np.concatenate([theta[layout.lam[0]], theta[layout.phi[0]], theta[layout.psi[0]]])
    return FimlResult(
        estimator=estimator,
        n=n,
        loglik=l0,
        saturated_loglik=l1,
        chisq=chisq,
        df=df,
        baseline_chisq=base_chisq,
        baseline_df=base_df,
        cfi=cfi,
        tli=tli,
        rmsea=float(rmsea * np.sqrt(layout.groups)),  # lavaan's multi-group RMSEA
        srmr=float(srmr),
        converged=bool(result.success or np.max(np.abs(result.jac)) < GRADIENT_TOLERANCE),
        parameters=parameters,
        loadings=standardized_loadings(layout.single, first_group, model, items),
        factor_correlations=_factor_correlations(layout, theta, list(model)),
        estimates=theta,
        groups=tuple(str(label) for label in labels),
        n_per_group=tuple(int(s) for s in sizes),
        **robust,
    )
