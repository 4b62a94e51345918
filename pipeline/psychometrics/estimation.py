"""The pieces every maximum-likelihood CFA here shares: the checks of model and data, the ML
discrepancy of moments, the optimiser, and the fit measures lavaan computes from a fit (CFI,
TLI and RMSEA as lav_fit_cfi, lav_fit_nnfi and lav_fit_rmsea; SRMR as lavaan's "srmr"; the
standardised loadings of `standardizedSolution`). The estimator itself is `fiml.py`."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import optimize

from pipeline.psychometrics.layout import GroupLayout, Layout, implied


class SingularCovariance(ValueError):
    """The items' sample covariance matrix is not positive definite, so ML cannot fit it (lavaan
    refuses too): an item without variance, or items that are linear copies of each other."""


def check_covariance(s: np.ndarray, items: list[str], where: str) -> float:
    """The log-determinant of a positive definite covariance matrix, or SingularCovariance
    naming the items at fault."""
    sign, logdet = np.linalg.slogdet(s)
    if sign > 0 and np.linalg.eigvalsh(s)[0] > 1e-10 * np.max(np.diag(s)):
        return float(logdet)
    constant = [item for item, v in zip(items, np.diag(s), strict=True) if v <= 0]
    if constant:
        raise SingularCovariance(f"{where}: no variance in item(s) {', '.join(constant)}")
    weights = np.abs(np.linalg.eigh(s)[1][:, 0])
    dependent = [item for item, w in zip(items, weights, strict=True) if w > 0.1]
    raise SingularCovariance(f"{where}: items {', '.join(dependent)} are linearly dependent")


def normal_discrepancy(theta, layout: GroupLayout, stats):
    """The multi-group ML discrepancy with a mean structure, sum_g w_g F_g, and its gradient;
    `stats` per group: (w_g = N_g / N, covariance S_g over N_g, mean m_g, log|S_g|). F_g is
    log|Sigma_g| + tr(S_g Sigma_g^-1) - log|S_g| - p + (m_g - mu_g)' Sigma_g^-1 (m_g - mu_g)."""
    total, d_mu, d_sigma = 0.0, [], []
    for g, (w, s, m, logdet_s) in enumerate(stats):
        mu, sigma = layout.moments(theta, g)
        try:  # a positive determinant is not enough: two negative eigenvalues have one
            root = np.linalg.cholesky(sigma)
        except np.linalg.LinAlgError:
            return 1e10, np.zeros_like(theta)
        logdet = 2 * np.sum(np.log(np.diag(root)))
        inv = np.linalg.inv(sigma)
        inv_d = inv @ (m - mu)
        total += w * (logdet + np.sum(s * inv) - logdet_s - len(m) + (m - mu) @ inv_d)
        d_sigma.append(w * (inv - inv @ (s + np.outer(m - mu, m - mu)) @ inv))
        d_mu.append(-2 * w * inv_d)
    return total, layout.chain_rule(theta, d_mu, d_sigma)


def srmr_bentler(s: np.ndarray, sigma: np.ndarray) -> float:
    """lavaan's default "srmr": residuals standardised by the sample standard deviations."""
    d = 1 / np.sqrt(np.diag(s))
    r = (s - sigma) * np.outer(d, d)
    lower = r[np.tril_indices(len(s))]
    return float(np.sqrt(np.mean(lower**2)))


def srmr_with_means(s: np.ndarray, sigma: np.ndarray, m: np.ndarray, mu: np.ndarray) -> float:
    """lavaan's "srmr" with a mean structure (srmr_bentler): covariance and mean residuals,
    both standardised by the saturated model's standard deviations."""
    sd = np.sqrt(np.diag(s))
    cov = ((s - sigma) / np.outer(sd, sd))[np.tril_indices(len(s))]
    means = (m - mu) / sd
    return float(np.sqrt((np.sum(cov**2) + np.sum(means**2)) / (len(cov) + len(means))))


def robust_indices(x2, df, c, x2_b, df_b, c_b, n: int, groups: int):
    """Robust CFI, TLI and RMSEA from a chi-square, its baseline's and their scaling factors:
    Brosseau-Liard, Savalei and Li (2012) and Brosseau-Liard and Savalei (2014) for complete
    data, as lavaan computes them (lav_fit_cfi, lav_fit_nnfi, lav_fit_rmsea with c_hat); the
    FIML correction feeds them its own chi-squares and factors."""
    t1 = max(x2 - c * df, 0.0)
    t2 = max(x2 - c * df, x2_b - c_b * df_b, 0.0)
    cfi = 1.0 if max(t1, t2) < 1.5e-8 else 1 - t1 / t2
    tli = 1 - (x2 - c * df) * df_b / ((x2_b - c_b * df_b) * df)
    rmsea = float(np.sqrt(groups * max(x2 / n / df - c / n, 0.0)))
    return cfi, tli, rmsea


def fit_indices(chisq: float, df: int, base_chisq: float, base_df: int, n: int):
    """CFI, TLI and RMSEA as lavaan 0.6 computes them (lav_fit_cfi, lav_fit_nnfi,
    lav_fit_rmsea): RMSEA with N, not N - 1; CFI and TLI are 1 for a saturated model."""
    t1 = max(chisq - df, 0.0)
    t2 = max(chisq - df, base_chisq - base_df, 0.0)
    cfi = 1.0 if max(t1, t2) < 1.5e-8 else 1 - t1 / t2  # R's all.equal(t, 0)
    t1 = (chisq - df) * base_df
    t2 = (base_chisq - base_df) * df
    tli = 1 - t1 / t2 if df > 0 and t2 != 0 else 1.0
    rmsea = float(np.sqrt(max(chisq - df, 0.0) / (df * n))) if df > 0 else 0.0
    return cfi, tli, rmsea


def standardized_loadings(layout: Layout, theta: np.ndarray, model, items) -> pd.DataFrame:
    lam, phi, _ = layout.unpack(theta)
    sigma = implied(layout, theta)
    std = lam * np.sqrt(np.diag(phi))[None, :] / np.sqrt(np.diag(sigma))[:, None]
    factors = list(model)
    return pd.DataFrame(
        {
            "factor": [factors[f] for f in layout.factor_of],
            "item": items,
            "std_loading": std[np.arange(layout.p), layout.factor_of],
        }
    )


def check_model(data: pd.DataFrame, model: dict[str, list[str]]) -> list[str]:
    items = [item for its in model.values() for item in its]
    if any(len(its) == 0 for its in model.values()):
        raise ValueError("every factor needs at least one item")
    if len(set(items)) != len(items):
        raise ValueError("each item must load on exactly one factor")
    missing = [item for item in items if item not in data.columns]
    if missing:
        raise ValueError(f"items not in the data: {missing}")
    return items


GRADIENT_TOLERANCE = 1e-6


def minimise(
    objective,
    start: np.ndarray,
    args: tuple,
    hess_inv: np.ndarray | None = None,
    gtol: float = 1e-9,
) -> optimize.OptimizeResult:
    """BFGS from `start`; where its line search stalls (it can, after stepping towards a
    covariance that is not positive definite), L-BFGS-B continues from where BFGS stopped.
    `objective(x, *args)` returns the discrepancy and its gradient; `hess_inv`, a first guess of
    the inverse Hessian (BFGS starts from the identity without one); `gtol`, the largest gradient
    element at which BFGS stops."""
    result = optimize.minimize(
        objective,
        start,
        args=args,
        jac=True,
        method="BFGS",
        options={"gtol": gtol, "maxiter": 10_000, "hess_inv0": hess_inv},
    )
    if np.max(np.abs(result.jac)) >= GRADIENT_TOLERANCE:
        result = optimize.minimize(
            objective,
            result.x,
            args=args,
            jac=True,
            method="L-BFGS-B",
            options={"gtol": 1e-10, "ftol": 1e-15, "maxiter": 10_000},
        )
    return result
