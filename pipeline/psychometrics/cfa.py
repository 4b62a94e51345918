"""Single-group confirmatory factor analysis by maximum likelihood, agreeing with R's lavaan.

Follows lavaan's `cfa()` defaults: each item loads on one factor, the factors correlate, the first
loading of each factor is fixed to 1 (marker variable), estimator ML with `likelihood = "normal"`,
so the sample covariance divides by N and the chi-square is N times the minimised discrepancy.

Incomplete rows are deleted listwise (lavaan's default `missing = "listwise"`); full-information
ML is not implemented.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize


class SingularCovariance(ValueError):
    """The items' sample covariance matrix is not positive definite, so ML cannot fit it (lavaan
    refuses too): an item without variance, or items that are linear copies of each other."""


def sample_covariance(x: np.ndarray, items: list[str], where: str) -> tuple[np.ndarray, float]:
    """The ML sample covariance (divided by N) and its log-determinant, or SingularCovariance
    naming the items at fault."""
    s = np.cov(x, rowvar=False, bias=True)  # likelihood = "normal": divide by N
    sign, logdet = np.linalg.slogdet(s)
    if sign > 0 and np.linalg.eigvalsh(s)[0] > 1e-10 * np.max(np.diag(s)):
        return s, float(logdet)
    constant = [item for item, v in zip(items, np.diag(s), strict=True) if v <= 0]
    if constant:
        raise SingularCovariance(f"{where}: no variance in item(s) {', '.join(constant)}")
    weights = np.abs(np.linalg.eigh(s)[1][:, 0])
    dependent = [item for item, w in zip(items, weights, strict=True) if w > 0.1]
    raise SingularCovariance(f"{where}: items {', '.join(dependent)} are linearly dependent")


@dataclass(frozen=True)
class CfaResult:
    chisq: float
    df: int
    cfi: float
    tli: float
    rmsea: float
    srmr: float
    n: int
    converged: bool
    loadings: pd.DataFrame  # columns factor, item, std_loading


@dataclass(frozen=True)
class Layout:
    """Where each free parameter goes: Lambda (p x m), Phi (m x m, symmetric), Theta (diagonal)."""

    p: int
    m: int
    factor_of: np.ndarray  # factor index of each item
    free_loadings: np.ndarray  # item indices whose loading is free (not a marker)
    markers: np.ndarray  # item index of each factor's marker
    phi_rows: np.ndarray  # lower-triangle (incl. diagonal) indices of Phi
    phi_cols: np.ndarray

    @property
    def n_params(self) -> int:
        return len(self.free_loadings) + len(self.phi_rows) + self.p

    def unpack(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        k = len(self.free_loadings)
        q = len(self.phi_rows)
        lam = np.zeros((self.p, self.m))
        lam[self.markers, np.arange(self.m)] = 1.0
        lam[self.free_loadings, self.factor_of[self.free_loadings]] = theta[:k]
        phi = np.zeros((self.m, self.m))
        phi[self.phi_rows, self.phi_cols] = theta[k : k + q]
        phi[self.phi_cols, self.phi_rows] = theta[k : k + q]
        return lam, phi, theta[k + q :]

    def pack_gradient(self, d_lam: np.ndarray, d_phi: np.ndarray, d_psi: np.ndarray) -> np.ndarray:
        # An off-diagonal Phi parameter appears twice in the symmetric matrix.
        d_phi_sym = d_phi + d_phi.T - np.diag(np.diag(d_phi))
        return np.concatenate(
            [
                d_lam[self.free_loadings, self.factor_of[self.free_loadings]],
                d_phi_sym[self.phi_rows, self.phi_cols],
                d_psi,
            ]
        )


def layout_of(items: list[str], model: dict[str, list[str]]) -> Layout:
    factor_of = np.array([i for i, its in enumerate(model.values()) for _ in its])
    starts = np.cumsum([0] + [len(its) for its in model.values()])[:-1]
    free = np.setdiff1d(np.arange(len(items)), starts)
    rows, cols = np.tril_indices(len(model))
    return Layout(len(items), len(model), factor_of, free, starts, rows, cols)


def implied(layout: Layout, theta: np.ndarray) -> np.ndarray:
    lam, phi, psi = layout.unpack(theta)
    return lam @ phi @ lam.T + np.diag(psi)


def _discrepancy(theta: np.ndarray, layout: Layout, s: np.ndarray, logdet_s: float):
    """ML discrepancy F = log|Sigma| + tr(S Sigma^-1) - log|S| - p and its gradient."""
    lam, phi, psi = layout.unpack(theta)
    sigma = lam @ phi @ lam.T + np.diag(psi)
    sign, logdet = np.linalg.slogdet(sigma)
    if sign <= 0:
        # Outside the admissible region: a large value makes the line search step back.
        return 1e10, np.zeros_like(theta)
    inv = np.linalg.inv(sigma)
    f = logdet + np.trace(s @ inv) - logdet_s - layout.p
    g = inv - inv @ s @ inv  # dF/dSigma
    grad = layout.pack_gradient(2 * g @ lam @ phi, lam.T @ g @ lam, np.diag(g))
    return f, grad


def start_values(layout: Layout, s: np.ndarray) -> np.ndarray:
    """Half of each marker's variance to its factor, the rest to its residual; other loadings
    from their covariance with the marker (lambda_j * phi = cov(x_j, marker))."""
    phi_diag = s[layout.markers, layout.markers] / 2
    free = layout.free_loadings
    factor = layout.factor_of[free]
    lam = s[free, layout.markers[factor]] / phi_diag[factor]
    phi = np.where(layout.phi_rows == layout.phi_cols, phi_diag[layout.phi_rows], 0.0)
    psi = np.diag(s) / 2
    return np.concatenate([lam, phi, psi])


def srmr_bentler(s: np.ndarray, sigma: np.ndarray) -> float:
    """lavaan's default "srmr": residuals standardised by the sample standard deviations."""
    d = 1 / np.sqrt(np.diag(s))
    r = (s - sigma) * np.outer(d, d)
    lower = r[np.tril_indices(len(s))]
    return float(np.sqrt(np.mean(lower**2)))


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


def minimise(objective, start: np.ndarray, args: tuple) -> optimize.OptimizeResult:
    """BFGS from `start`; where its line search stalls (it can, after stepping towards a
    covariance that is not positive definite), L-BFGS-B continues from where BFGS stopped.
    `objective(x, *args)` returns the discrepancy and its gradient."""
    result = optimize.minimize(
        objective,
        start,
        args=args,
        jac=True,
        method="BFGS",
        options={"gtol": 1e-9, "maxiter": 10_000},
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


def fit_cfa(data: pd.DataFrame, model: dict[str, list[str]]) -> CfaResult:
    """Fit `model` ({factor: [items]}) to `data` by ML; rows with a missing item are dropped."""
    items = check_model(data, model)
    x = data[items].dropna().to_numpy(dtype=float)
    n, p = x.shape
    layout = layout_of(items, model)
    df = p * (p + 1) // 2 - layout.n_params
    if n <= p:
        raise ValueError(f"{n} complete rows for {p} items: too few to fit")

    s, logdet_s = sample_covariance(x, items, f"{n} complete rows")
    result = minimise(_discrepancy, start_values(layout, s), (layout, s, logdet_s))
    grad_ok = np.max(np.abs(result.jac)) < GRADIENT_TOLERANCE
    chisq = float(n * result.fun)
    base_chisq = float(n * (np.sum(np.log(np.diag(s))) - logdet_s))
    cfi, tli, rmsea = fit_indices(chisq, df, base_chisq, p * (p - 1) // 2, n)
    return CfaResult(
        chisq=chisq,
        df=df,
        cfi=cfi,
        tli=tli,
        rmsea=rmsea,
        srmr=srmr_bentler(s, implied(layout, result.x)),
        n=n,
        converged=bool(result.success or grad_ok),
        loadings=standardized_loadings(layout, result.x, model, items),
    )


MIN_FACTOR_ITEMS = 2  # a factor of one item has no variance of its own to separate from error
FIT_COLUMNS = ["model", "n", "chisq", "df", "cfi", "tli", "rmsea", "srmr", "note"]


def degrees_of_freedom(model: dict[str, list[str]]) -> int:
    """The model's df: distinct (co)variances of its items minus its free parameters."""
    items = [item for its in model.values() for item in its]
    p = len(items)
    return p * (p + 1) // 2 - layout_of(items, model).n_params


def scale_model(scales: dict[str, list[str]]) -> tuple[dict[str, list[str]], list[str]]:
    """The measurement model of the scales ({factor: items}) that can be fitted, and notes on
    what is left out: scales of fewer than MIN_FACTOR_ITEMS items, or everything when the rest
    has no degrees of freedom to test (one factor of two items, say)."""
    model = {name: items for name, items in scales.items() if len(items) >= MIN_FACTOR_ITEMS}
    notes = [
        f"{name} left out: a factor needs at least {MIN_FACTOR_ITEMS} items"
        for name, items in scales.items()
        if len(items) < MIN_FACTOR_ITEMS
    ]
    if model and degrees_of_freedom(model) < 1:
        notes.append(
            f"not estimable: the model of {', '.join(model)} has {degrees_of_freedom(model)} "
            "degrees of freedom (a fit needs at least 1)"
        )
        model = {}
    elif not model:
        notes.append(f"not estimable: no scale has {MIN_FACTOR_ITEMS} or more items")
    return model, notes


def measurement_tables(
    data: pd.DataFrame, scales: dict[str, list[str]]
) -> tuple[pd.DataFrame, pd.DataFrame, CfaResult | None]:
    """`cfa_fit` (one row, model "scales", with a `note` on what was not estimable) and
    `cfa_loadings` of the scales' measurement model on `data` (reverse-coded items), and the
    fit itself (None when nothing could be fitted)."""
    model, notes = scale_model(scales)
    items = [item for its in model.values() for item in its]
    complete = int(data[items].notna().all(axis=1).sum()) if items else 0
    if model and complete <= len(items):
        notes.append(f"not estimable: {complete} complete rows for {len(items)} items")
        model = {}
    result = fit_cfa(data, model) if model else None
    fit = {name: np.nan for name in FIT_COLUMNS} | {"model": "scales", "note": "; ".join(notes)}
    if result is not None:
        fit |= {name: getattr(result, name) for name in FIT_COLUMNS[1:-1]}
        loadings = result.loadings
    else:
        fit["n"] = complete
        loadings = pd.DataFrame({"factor": [], "item": [], "std_loading": []})
    return pd.DataFrame([fit])[FIT_COLUMNS], loadings, result
