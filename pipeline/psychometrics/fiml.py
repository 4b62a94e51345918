"""Full-information maximum likelihood (FIML) for the CFA when answers are missing, agreeing with
R's lavaan `cfa(model, data, missing = "ml")`, with lavaan's ML and MLR estimators.

Every respondent counts with the items they answered: the log-likelihood is summed over the
missing-data patterns, each with the rows and columns of the implied means and covariances that
its items take. The model gains an intercept per item (lavaan's mean structure). Its chi-square
compares it with the saturated model, whose means and covariances come from the EM algorithm as
lavaan runs it (the same start, steps and stopping rule, so the same moments), and the baseline
model of independent items. SEs: under ML the observed information (the Hessian of the
log-likelihood, lavaan's default under FIML); under MLR the sandwich of the observed
information around the casewise scores, with the Yuan-Bentler scaled chi-square and the robust
CFI, TLI and RMSEA. Checked against `tests/reference/lavaan_fiml.R` (HolzingerSwineford1939 with
missing values added by a seeded rule, and psych's bfi with its own).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.psychometrics.cfa import (
    GRADIENT_TOLERANCE,
    Layout,
    check_model,
    fit_indices,
    implied,
    layout_of,
    minimise,
    standardized_loadings,
    start_values,
)

LOG_2PI = float(np.log(2 * np.pi))
EM_TOLERANCE = 1e-5  # lavaan: the largest change of a mean or covariance in one EM step
EM_MAX_STEPS = 500


@dataclass(frozen=True)
class Pattern:
    """The rows that answered the same items: `observed` (a mask over the items, and `o`, `m` as
    indices of the observed and the missing items), their values (rows x observed items), and
    their mean and covariance (divided by the rows)."""

    observed: np.ndarray
    o: np.ndarray
    m: np.ndarray
    values: np.ndarray
    mean: np.ndarray
    cov: np.ndarray


@dataclass(frozen=True)
class Patterns:
    """All patterns, also stacked for the work done at every step of the fit: per pattern its
    rows, its observed mask, mean and covariance embedded in all items (zero where missing),
    and the patterns grouped by how many items they miss (`groups`: indices, missing items)."""

    items: list[Pattern]
    rows: np.ndarray
    masks: np.ndarray
    means: np.ndarray
    covs: np.ndarray
    groups: list[tuple[np.ndarray, np.ndarray]]


def patterns(x: np.ndarray) -> Patterns:
    """The missing-data patterns of `x` (NaN = missing); rows without any answer are left out,
    as lavaan leaves them out."""
    present = ~np.isnan(x)
    x, present = x[present.any(axis=1)], present[present.any(axis=1)]
    masks, which = np.unique(present, axis=0, return_inverse=True)
    items = []
    p = x.shape[1]
    means, covs = np.zeros((len(masks), p)), np.zeros((len(masks), p, p))
    for k, mask in enumerate(masks):
        values = x[which.ravel() == k][:, mask]
        mean = values.mean(axis=0)
        centred = values - mean
        cov = centred.T @ centred / len(values)
        o = np.flatnonzero(mask)
        items.append(Pattern(mask, o, np.flatnonzero(~mask), values, mean, cov))
        means[k, o] = mean
        covs[k][np.ix_(o, o)] = cov
    missing = (~masks).sum(axis=1)
    groups = [
        (np.flatnonzero(missing == r), np.array([pat.m for pat in items if len(pat.m) == r]))
        for r in np.unique(missing)
    ]
    rows = np.array([len(pat.values) for pat in items])
    return Patterns(items, rows, masks, means, covs, groups)


def _embedded_inverses(sigma: np.ndarray, pats: Patterns) -> tuple[np.ndarray, np.ndarray]:
    """Per pattern, the inverse of Sigma's observed block embedded in all items (zero rows and
    columns where missing) and its log-determinant, all patterns at once: from P = Sigma^-1 by
    removing the missing items m, P - P[:, m] P_mm^-1 P[m, :], and
    log|Sigma_oo| = log|Sigma| + log|P_mm|."""
    whole = np.linalg.inv(sigma)
    logdet = np.linalg.slogdet(sigma)[1]
    inverses = np.empty((len(pats.items), *sigma.shape))
    logdets = np.empty(len(pats.items))
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


def loglik(mu: np.ndarray, sigma: np.ndarray, pats: Patterns) -> float:
    """The FIML log-likelihood of the rows under means `mu` and covariances `sigma`."""
    inverses, logdets = _embedded_inverses(sigma, pats)
    d = (pats.means - mu) * pats.masks
    quad = np.einsum("kij,kij->k", inverses, pats.covs) + np.einsum("ki,kij,kj->k", d, inverses, d)
    sizes = pats.masks.sum(axis=1)
    return float(-0.5 * np.sum(pats.rows * (sizes * LOG_2PI + logdets + quad)))


def _moment_gradient(mu: np.ndarray, sigma: np.ndarray, pats: Patterns):
    """The log-likelihood's derivatives by the means and by each element of the covariance
    matrix (as an unconstrained matrix: symmetric, each of Sigma_ij and Sigma_ji counted)."""
    inverses, _ = _embedded_inverses(sigma, pats)
    d = (pats.means - mu) * pats.masks
    inv_d = np.einsum("kij,kj->ki", inverses, d)
    n = pats.rows
    d_mu = n @ inv_d
    inv_s_inv = inverses @ pats.covs @ inverses
    d_sigma = -0.5 * (
        np.einsum("k,kij->ij", n, inverses - inv_s_inv) - np.einsum("k,ki,kj->ij", n, inv_d, inv_d)
    )
    return d_mu, d_sigma


def saturated_moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Means and covariances of the saturated model by EM, as lavaan's
    `lav_mvn_mi_h1_est_moments`: start from the available-case means and variances (no
    covariances), stop when no mean or covariance changes by EM_TOLERANCE or more."""
    x = x[~np.isnan(x).all(axis=1)]
    n, p = x.shape
    mu = np.nanmean(x, axis=0)
    sigma = np.diag(np.nanmean((x - mu) ** 2, axis=0))
    pats = patterns(x)
    lower = np.tril_indices(p)
    for _ in range(EM_MAX_STEPS):
        t1, t2 = np.zeros(p), np.zeros((p, p))
        for pat in pats.items:
            o, m = pat.observed, ~pat.observed
            filled = np.empty((len(pat.values), p))
            filled[:, o] = pat.values
            extra = np.zeros((p, p))
            if m.any():
                weights = sigma[np.ix_(m, o)] @ np.linalg.inv(sigma[np.ix_(o, o)])
                filled[:, m] = (pat.values - mu[o]) @ weights.T + mu[m]
                extra[np.ix_(m, m)] = len(pat.values) * (
                    sigma[np.ix_(m, m)] - weights @ sigma[np.ix_(o, m)]
                )
            t1 += filled.sum(axis=0)
            t2 += filled.T @ filled + extra
        new_mu = t1 / n
        new_sigma = t2 / n - np.outer(new_mu, new_mu)
        if np.linalg.eigvalsh(new_sigma)[0] < 1e-6:  # lavaan's ridge
            new_sigma[np.diag_indices(p)] += np.max(np.diag(new_sigma)) * 1e-8
        change = max(np.max(np.abs(new_mu - mu)), np.max(np.abs((new_sigma - sigma)[lower])))
        mu, sigma = new_mu, new_sigma
        if change < EM_TOLERANCE:
            break
    return mu, sigma


def _structured(theta: np.ndarray, layout: Layout) -> tuple[np.ndarray, np.ndarray]:
    """The implied means (the intercepts, the last p parameters) and covariances."""
    return theta[-layout.p :], implied(layout, theta[: -layout.p])


def _through_model(theta: np.ndarray, layout: Layout, d_mu, d_sigma) -> np.ndarray:
    """The chain rule from the implied moments to the parameters: given a function's
    derivatives by the means and by each covariance element, its gradient by theta."""
    lam, phi, _ = layout.unpack(theta[: -layout.p])
    loadings = 2 * d_sigma @ lam @ phi
    return np.concatenate(
        [layout.pack_gradient(loadings, lam.T @ d_sigma @ lam, np.diag(d_sigma)), d_mu]
    )


def _gradient(theta: np.ndarray, layout: Layout, pats: Patterns) -> np.ndarray:
    """log L's gradient by the parameters, through its derivatives by the implied moments."""
    return _through_model(theta, layout, *_moment_gradient(*_structured(theta, layout), pats))


def _moments(theta: np.ndarray, layout: Layout) -> np.ndarray:
    """The implied means and vech(Sigma): the saturated model's parameters."""
    mu, sigma = _structured(theta, layout)
    return np.concatenate([mu, _vech(sigma)])


def _objective(theta: np.ndarray, layout: Layout, pats: Patterns, n: int):
    """-2 log L / N and its gradient, the scale the CFA's optimiser works on."""
    mu, sigma = _structured(theta, layout)
    if np.linalg.eigvalsh(sigma)[0] <= 0:
        return 1e10, np.zeros_like(theta)  # outside the admissible region: step back
    return -2 / n * loglik(mu, sigma, pats), -2 / n * _gradient(theta, layout, pats)


def _casewise_scores(theta: np.ndarray, layout: Layout, pats: Patterns) -> np.ndarray:
    """Each row's derivative of its own log-likelihood by the parameters (rows x parameters):
    by its implied moments, d l_i / d mu = r and d l_i / d Sigma = (r r' - inv) / 2 with
    r = inv (x_o - mu_o) scattered over the items, then through the model as `_gradient`."""
    mu, sigma = _structured(theta, layout)
    lam, phi, _ = layout.unpack(theta[: -layout.p])
    free, factor = layout.free_loadings, layout.factor_of[layout.free_loadings]
    blocks = []
    for pat, inv in zip(pats.items, _embedded_inverses(sigma, pats)[0], strict=True):
        inv_oo = inv[np.ix_(pat.o, pat.o)]
        r = np.zeros((len(pat.values), layout.p))
        r[:, pat.o] = (pat.values - mu[pat.o]) @ inv_oo
        g = 0.5 * (r[:, :, None] * r[:, None, :] - inv[None])
        loadings = 2 * (g @ (lam @ phi))[:, free, factor]
        d_phi = np.einsum("ia,kij,jb->kab", lam, g, lam)
        d_phi = d_phi + d_phi.transpose(0, 2, 1) - d_phi * np.eye(layout.m)
        d_psi = np.diagonal(g, axis1=1, axis2=2)
        blocks.append(
            np.concatenate([loadings, d_phi[:, layout.phi_rows, layout.phi_cols], d_psi, r], 1)
        )
    return np.concatenate(blocks)


def _jacobian(function, x: np.ndarray, step: float = 1e-6) -> np.ndarray:
    """d function(x) / dx by central differences, each step `step` relative to |x| (at least
    `step`)."""
    h = step * np.maximum(1.0, np.abs(x))
    columns = []
    for j in range(len(x)):
        shift = np.zeros_like(x)
        shift[j] = h[j]
        columns.append((function(x + shift) - function(x - shift)) / (2 * h[j]))
    return np.array(columns).T


def observed_information(theta: np.ndarray, layout: Layout, pats: Patterns) -> np.ndarray:
    """The Hessian of -log L by the parameters (lavaan's observed information, as a sum), by
    the chain rule through the implied moments m(theta): Delta' W Delta minus the sum of
    dl/dm_j times m_j's own curvature, W the saturated model's observed information at m(theta)
    and Delta = dm/dtheta. Both derivatives of m are of polynomials, by central differences."""
    mu, sigma = _structured(theta, layout)
    d_mu, d_sigma = _moment_gradient(mu, sigma, pats)
    delta = _jacobian(lambda x: _moments(x, layout), theta)
    curvature = _jacobian(lambda x: _through_model(x, layout, d_mu, d_sigma), theta, 1e-5)
    information = delta.T @ _saturated_observed(mu, sigma, pats) @ delta - curvature
    return (information + information.T) / 2


def _vech(matrix: np.ndarray) -> np.ndarray:
    return matrix[np.tril_indices(len(matrix))]


def _vech_of_vec(p: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each vech element (lower triangle) its two positions in vec, and whether they are
    two (off the diagonal): the duplication matrix as indices."""
    rows, cols = np.tril_indices(p)
    return rows * p + cols, cols * p + rows, rows != cols


def _to_vech(matrix: np.ndarray, p: int, axis: int) -> np.ndarray:
    """D' applied along `axis` of a matrix indexed by vec(Sigma): sums the two entries of each
    covariance (vech), the one entry of each variance."""
    a, b, off = _vech_of_vec(p)
    first, second = np.take(matrix, a, axis=axis), np.take(matrix, b, axis=axis)
    shape = [1] * matrix.ndim
    shape[axis] = len(off)
    return first + second * off.reshape(shape)


@dataclass(frozen=True)
class SaturatedInformation:
    """The saturated model at its EM moments, by its parameters (the means, then vech Sigma):
    the observed information (the Hessian of -log L, analytically) and the first-order
    information (the sum of each row's score outer product), both as sums over the rows."""

    observed: np.ndarray
    first_order: np.ndarray
    n: int


def _saturated_observed(mu, sigma, pats: Patterns) -> np.ndarray:
    """The saturated model's observed information at (mu, sigma), by the means and vech(Sigma).
    Per pattern k, with Q_k its embedded inverse, v_k = Q_k d_k (d_k its mean minus mu) and
    X_k = Q_k S_k Q_k + v_k v_k' - Q_k / 2 (Savalei 2010): -d2l/dmu2 = sum n_k Q_k,
    -d2l/dmu dvecSigma = sum n_k (v_k' x Q_k) and -d2l/dvecSigma2 = D' (sum n_k X_k x Q_k) D,
    the sums over all patterns at once (a sum of Kronecker products is one matrix product)."""
    p, n = len(mu), pats.rows
    inverses, _ = _embedded_inverses(sigma, pats)
    d = (pats.means - mu) * pats.masks
    v = np.einsum("kij,kj->ki", inverses, d)
    x = inverses @ pats.covs @ inverses + v[:, :, None] * v[:, None, :] - inverses / 2
    cross = np.einsum("k,ki,kab->aib", n, v, inverses).reshape(p, p * p)
    products = (n[:, None, None] * x).reshape(len(n), -1).T @ inverses.reshape(len(n), -1)
    kron = products.reshape(p, p, p, p).transpose(0, 2, 1, 3).reshape(p * p, p * p)
    q = p + p * (p + 1) // 2
    observed = np.empty((q, q))
    observed[:p, :p] = np.einsum("k,kij->ij", n, inverses)
    observed[:p, p:] = _to_vech(cross, p, axis=1)
    observed[p:, :p] = observed[:p, p:].T
    observed[p:, p:] = _to_vech(_to_vech(kron, p, axis=0), p, axis=1)
    return observed


def saturated_information(mu, sigma, pats: Patterns) -> SaturatedInformation:
    """The saturated model's observed information and its first-order information, the sum of
    each row's score outer product (in chunks of rows)."""
    p = len(mu)
    inverses, _ = _embedded_inverses(sigma, pats)
    q = p + p * (p + 1) // 2
    rows, cols = np.tril_indices(p)
    weight = np.where(rows == cols, 0.5, 1.0)  # a covariance's score counts both its entries
    first_order, chunk = np.zeros((q, q)), []
    for k, pat in enumerate(pats.items):
        r = np.zeros((len(pat.values), p))
        r[:, pat.o] = (pat.values - mu[pat.o]) @ inverses[k][np.ix_(pat.o, pat.o)]
        covariances = weight * (r[:, rows] * r[:, cols] - inverses[k][rows, cols])
        chunk.append(np.hstack([r, covariances]))
        if sum(map(len, chunk)) >= 4096 or k == len(pats.items) - 1:
            scores = np.vstack(chunk)
            first_order += scores.T @ scores
            chunk = []
    return SaturatedInformation(
        _saturated_observed(mu, sigma, pats), first_order, int(pats.rows.sum())
    )


def yuan_bentler_scaling(
    information: np.ndarray, first_order: np.ndarray, saturated: SaturatedInformation, df: int
) -> float:
    """lavaan's "yuan.bentler.mplus" scaling factor of the chi-square under MLR:
    (tr(A1^-1 B1) - tr(A0^-1 B0)) / df, A the observed information and B the first-order
    information, of the saturated model (1, at its EM moments) and of the model (0, at its
    estimates: `information` and `first_order`)."""
    trace1 = np.trace(np.linalg.solve(saturated.observed, saturated.first_order))
    trace0 = np.trace(np.linalg.solve(information, first_order))
    return float((trace1 - trace0) / df)


def _complete_data_chisq(mu, sigma, m, s, n: int) -> float:
    """N times the complete-data ML discrepancy of the moments (mu, sigma) from (m, s)."""
    inv = np.linalg.inv(sigma)
    d = m - mu
    f = (
        np.linalg.slogdet(sigma)[1]
        + np.sum(inv * s)
        - np.linalg.slogdet(s)[1]
        - len(s)
        + d @ inv @ d
    )
    return float(n * f)


def fiml_corrected(
    theta: np.ndarray,
    layout: Layout,
    moments: tuple,
    information: SaturatedInformation,
    baseline: tuple,
) -> tuple[float, float, float]:
    """Robust CFI, TLI and RMSEA after FIML by Zhang and Savalei's correction (FIML-C, version
    V3), as lavaan's `lav_fit_fiml_corrected`: the model's and the baseline's complete-data
    chi-squares at the saturated (EM) moments, each with its scaling factor from the observed
    and first-order information of the saturated model. `baseline`: the independence model's
    FIML means and variances; `moments` the saturated model's."""
    mu1, sigma1 = moments
    p, n = len(mu1), information.n
    wm = information.observed / n
    wm_inv = np.linalg.inv(wm)
    gamma = wm_inv @ (information.first_order / n) @ wm_inv
    inv1 = np.linalg.inv(sigma1)
    wc = np.zeros_like(wm)
    wc[:p, :p] = inv1
    wc[p:, p:] = _to_vech(_to_vech(0.5 * np.kron(inv1, inv1), p, axis=0), p, axis=1)

    def chisq_and_scaling(mu, sigma, delta: np.ndarray) -> tuple[float, float, int]:
        e_inv = np.linalg.inv(delta.T @ wm @ delta)
        u = wm - wm @ delta @ e_inv @ delta.T @ wm
        k = np.trace(u @ wm_inv @ wc @ wm_inv @ u @ gamma)
        dof = len(wm) - delta.shape[1]
        return _complete_data_chisq(mu, sigma, mu1, sigma1, n), float(k / dof), dof

    x2, c, df = chisq_and_scaling(
        *_structured(theta, layout), _jacobian(lambda x: _moments(x, layout), theta)
    )
    means, variances = baseline
    delta_b = np.zeros((len(wm), 2 * p))
    delta_b[:p, :p] = np.eye(p)
    rows, cols = np.tril_indices(p)
    delta_b[p + np.flatnonzero(rows == cols), p + np.arange(p)] = 1
    x2_b, c_b, df_b = chisq_and_scaling(means, np.diag(variances), delta_b)
    t1 = max(x2 - c * df, 0.0)
    t2 = max(x2 - c * df, x2_b - c_b * df_b, 0.0)
    cfi = 1.0 if max(t1, t2) < 1.5e-8 else 1 - t1 / t2
    tli = 1 - (x2 - c * df) * df_b / ((x2_b - c_b * df_b) * df)
    rmsea = float(np.sqrt(max(x2 / n / df - c / n, 0.0)))
    return cfi, tli, rmsea


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
    parameters: pd.DataFrame  # lhs, op, rhs, est, se (lavaan's parameterEstimates, free ones)
    loadings: pd.DataFrame  # factor, item, std_loading
    scaling_factor: float = float("nan")  # MLR: the Yuan-Bentler (Mplus) scaling factor
    chisq_scaled: float = float("nan")
    cfi_robust: float = float("nan")
    tli_robust: float = float("nan")
    rmsea_robust: float = float("nan")


def _parameter_names(layout: Layout, model: dict[str, list[str]], items: list[str]):
    factors = list(model)
    loadings = [("=~", factors[layout.factor_of[j]], items[j]) for j in layout.free_loadings]
    phis = [
        ("~~", factors[c], factors[r])
        for r, c in zip(layout.phi_rows, layout.phi_cols, strict=True)
    ]
    return [*loadings, *phis, *[("~~", i, i) for i in items], *[("~1", i, "") for i in items]]


def fit_fiml(data: pd.DataFrame, model: dict[str, list[str]], estimator: str = "ML"):
    """Fit `model` ({factor: [items]}) to every row of `data` that answered an item, by FIML."""
    if estimator not in ("ML", "MLR"):
        raise ValueError(f"estimator {estimator!r}: ML or MLR")
    items = check_model(data, model)
    x = data[items].to_numpy(dtype=float)
    x = x[~np.isnan(x).all(axis=1)]
    n, p = x.shape
    layout = layout_of(items, model)
    pats = patterns(x)
    mu1, sigma1 = saturated_moments(x)
    start = np.concatenate([start_values(layout, sigma1), mu1])
    result = minimise(_objective, start, (layout, pats, n))
    theta = result.x
    mu0, sigma0 = _structured(theta, layout)
    l0, l1 = loglik(mu0, sigma0, pats), loglik(mu1, sigma1, pats)
    variances = np.nanvar(x, axis=0)  # the baseline: independent items, each its own mean
    counts = (~np.isnan(x)).sum(axis=0)
    l_base = float(-0.5 * np.sum(counts * (LOG_2PI + np.log(variances) + 1)))
    chisq, base_chisq = 2 * (l1 - l0), 2 * (l1 - l_base)
    df, base_df = p * (p + 1) // 2 - layout.n_params, p * (p - 1) // 2
    cfi, tli, rmsea = fit_indices(chisq, df, base_chisq, base_df, n)

    information = observed_information(theta, layout, pats)
    a_inv = np.linalg.inv(information)
    saturated = saturated_information(mu1, sigma1, pats)
    robust, vcov = {}, a_inv
    if estimator == "MLR":
        scores = _casewise_scores(theta, layout, pats)
        first_order = scores.T @ scores
        vcov = a_inv @ first_order @ a_inv  # the sandwich
        c = yuan_bentler_scaling(information, first_order, saturated, df)
        robust = {"scaling_factor": c, "chisq_scaled": chisq / c}
    baseline = (np.nanmean(x, axis=0), variances)
    corrected = fiml_corrected(theta, layout, (mu1, sigma1), saturated, baseline)
    robust |= dict(zip(("cfi_robust", "tli_robust", "rmsea_robust"), corrected, strict=True))
    names = _parameter_names(layout, model, items)
    parameters = pd.DataFrame(
        {
            "lhs": [lhs for _, lhs, _ in names],
            "op": [op for op, _, _ in names],
            "rhs": [rhs for _, _, rhs in names],
            "est": theta,
            "se": np.sqrt(np.diag(vcov)),
        }
    )
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
        rmsea=rmsea,
        srmr=srmr_with_means(sigma1, sigma0, mu1, mu0),
        converged=bool(result.success or np.max(np.abs(result.jac)) < GRADIENT_TOLERANCE),
        parameters=parameters,
        loadings=standardized_loadings(layout, theta[:-p], model, items),
        **robust,
    )


def srmr_with_means(s: np.ndarray, sigma: np.ndarray, m: np.ndarray, mu: np.ndarray) -> float:
    """lavaan's "srmr" with a mean structure (srmr_bentler): covariance and mean residuals,
    both standardised by the saturated model's standard deviations."""
    sd = np.sqrt(np.diag(s))
    cov = ((s - sigma) / np.outer(sd, sd))[np.tril_indices(len(s))]
    means = (m - mu) / sd
    return float(np.sqrt((np.sum(cov**2) + np.sum(means**2)) / (len(cov) + len(means))))
