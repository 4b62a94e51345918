"""Multi-group confirmatory factor analysis by maximum likelihood, for measurement invariance,
agreeing with R's lavaan `cfa(model, data, group=..., group.equal=...)`.

Follows lavaan's multi-group defaults: a mean structure (item intercepts nu, factor means alpha),
marker-variable identification in every group (first loading of each factor fixed to 1), and
per-group ML with `likelihood = "normal"` (sample covariance and mean of group g over N_g). The
objective is sum_g (N_g / N) F_g with

    F_g = log|Sigma_g| + tr(S_g Sigma_g^-1) - log|S_g| - p + (m_g - mu_g)' Sigma_g^-1 (m_g - mu_g),
    Sigma_g = Lambda_g Phi_g Lambda_g' + Theta_g,  mu_g = nu_g + Lambda_g alpha_g,

and the chi-square is N times its minimum (sum_g N_g F_g).

Each parameter block is either group-specific or shared by all groups, as named in `equal`
(lavaan's `group.equal` words: "loadings", "intercepts", "residuals", "lv.variances",
"lv.covariances", "means"). Factor means are fixed to 0 in every group, except that with
"intercepts" (and not "means") they are free in groups 2..G, as lavaan does. Groups are ordered by
first appearance in the data, as lavaan orders a non-factor group variable.

Incomplete rows are deleted listwise (lavaan's default); full-information ML is not implemented.
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
    layout_of,
    minimise,
    sample_covariance,
    start_values,
)

EQUALITY_WORDS = ("loadings", "intercepts", "residuals", "lv.variances", "lv.covariances", "means")
LEVELS = {
    "configural": (),
    "metric": ("loadings",),
    "scalar": ("loadings", "intercepts"),
}
MIN_GROUPS = 2  # invariance compares groups: with fewer, the table only says it needs more
# Chen (2007): invariance holds if CFI drops by at most .010 and RMSEA rises by at most .015.
DELTA_CFI_MIN = -0.010
DELTA_RMSEA_MAX = 0.015
TABLE_COLUMNS = (
    "model",
    "groups",
    "n",
    "chisq",
    "df",
    "cfi",
    "tli",
    "rmsea",
    "srmr",
    "delta_cfi",
    "delta_rmsea",
    "decision",
)


@dataclass(frozen=True)
class MultiGroupResult:
    chisq: float
    df: int
    cfi: float
    tli: float
    rmsea: float
    srmr: float
    n: int
    converged: bool
    groups: tuple[str, ...]
    n_per_group: tuple[int, ...]


@dataclass(frozen=True)
class _MultiLayout:
    """Where each free parameter goes, per group: an index into the parameter vector for every
    free entry of a block, or -1 where the entry is fixed (factor means fixed to 0)."""

    single: Layout
    groups: int
    lam: np.ndarray  # (G, free loadings)
    phi: np.ndarray  # (G, lower-triangle entries of Phi)
    psi: np.ndarray  # (G, p)
    nu: np.ndarray  # (G, p)
    alpha: np.ndarray  # (G, m); -1 where fixed to 0
    n_params: int

    def unpack(self, theta: np.ndarray, g: int):
        s = self.single
        lam = np.zeros((s.p, s.m))
        lam[s.markers, np.arange(s.m)] = 1.0
        lam[s.free_loadings, s.factor_of[s.free_loadings]] = theta[self.lam[g]]
        phi = np.zeros((s.m, s.m))
        phi[s.phi_rows, s.phi_cols] = theta[self.phi[g]]
        phi[s.phi_cols, s.phi_rows] = theta[self.phi[g]]
        alpha = np.where(self.alpha[g] >= 0, theta[np.maximum(self.alpha[g], 0)], 0.0)
        return lam, phi, theta[self.psi[g]], theta[self.nu[g]], alpha


def _multi_layout(single: Layout, groups: int, equal: tuple[str, ...]) -> _MultiLayout:
    counter = iter(range(10**9))

    def block(size: int, shared: bool) -> np.ndarray:
        if shared:
            idx = np.array([next(counter) for _ in range(size)], dtype=int)
            return np.tile(idx, (groups, 1))
        return np.array([[next(counter) for _ in range(size)] for _ in range(groups)], dtype=int)

    lam = block(len(single.free_loadings), "loadings" in equal)
    # Factor variances and covariances share only as far as asked.
    diag = single.phi_rows == single.phi_cols
    phi = np.empty((groups, len(single.phi_rows)), dtype=int)
    phi[:, diag] = block(int(diag.sum()), "lv.variances" in equal)
    phi[:, ~diag] = block(int((~diag).sum()), "lv.covariances" in equal)
    psi = block(single.p, "residuals" in equal)
    nu = block(single.p, "intercepts" in equal)
    alpha = np.full((groups, single.m), -1, dtype=int)
    if "intercepts" in equal and "means" not in equal:
        alpha[1:] = block(single.m, False)[1:]
    used = np.concatenate([a.ravel() for a in (lam, phi, psi, nu, alpha)])
    used = np.unique(used[used >= 0])
    # Renumber to 0..k-1 (group 1's unused factor-mean slots leave gaps).
    remap = np.full(used.max() + 1, -1)
    remap[used] = np.arange(len(used))

    def re(a: np.ndarray) -> np.ndarray:
        return np.where(a >= 0, remap[np.maximum(a, 0)], -1)

    return _MultiLayout(single, groups, re(lam), re(phi), re(psi), re(nu), re(alpha), len(used))


def _objective(theta, layout: _MultiLayout, stats):
    """sum_g w_g F_g (w_g = N_g / N) and its gradient."""
    s_ = layout.single
    total = 0.0
    grad = np.zeros_like(theta)
    for g, (w, s, m, logdet_s) in enumerate(stats):
        lam, phi, psi, nu, alpha = layout.unpack(theta, g)
        sigma = lam @ phi @ lam.T + np.diag(psi)
        sign, logdet = np.linalg.slogdet(sigma)
        if sign <= 0:
            return 1e10, np.zeros_like(theta)
        inv = np.linalg.inv(sigma)
        d = m - (nu + lam @ alpha)
        inv_d = inv @ d
        total += w * (logdet + np.trace(s @ inv) - logdet_s - s_.p + d @ inv_d)
        g_sigma = inv - inv @ (s + np.outer(d, d)) @ inv  # dF/dSigma
        g_mu = -2 * inv_d  # dF/dmu
        d_lam = 2 * g_sigma @ lam @ phi + np.outer(g_mu, alpha)
        d_phi = lam.T @ g_sigma @ lam
        d_phi_sym = d_phi + d_phi.T - np.diag(np.diag(d_phi))
        np.add.at(grad, layout.lam[g], w * d_lam[s_.free_loadings, s_.factor_of[s_.free_loadings]])
        np.add.at(grad, layout.phi[g], w * d_phi_sym[s_.phi_rows, s_.phi_cols])
        np.add.at(grad, layout.psi[g], w * np.diag(g_sigma))
        np.add.at(grad, layout.nu[g], w * g_mu)
        free = layout.alpha[g] >= 0
        np.add.at(grad, layout.alpha[g][free], w * (lam.T @ g_mu)[free])
    return total, grad


def _srmr(layout: _MultiLayout, theta: np.ndarray, stats) -> float:
    """lavaan's default "srmr" with a mean structure: per group, covariance and mean residuals
    standardised by the sample standard deviations, root mean square over the p(p+1)/2 + p
    moments; groups combined by N_g / N."""
    total = 0.0
    for g, (w, s, m, _) in enumerate(stats):
        lam, phi, psi, nu, alpha = layout.unpack(theta, g)
        sigma = lam @ phi @ lam.T + np.diag(psi)
        sd = np.sqrt(np.diag(s))
        r = ((s - sigma) / np.outer(sd, sd))[np.tril_indices(len(s))]
        r_mean = (m - nu - lam @ alpha) / sd
        total += w * np.sqrt((np.sum(r**2) + np.sum(r_mean**2)) / (len(r) + len(r_mean)))
    return float(total)


def _start(layout: _MultiLayout, stats) -> np.ndarray:
    """Single-group start values per group (cfa.py), averaged over groups where shared; item
    intercepts from the sample means; factor means 0."""
    s_ = layout.single
    total = np.zeros(layout.n_params)
    count = np.zeros(layout.n_params)
    k, q = len(s_.free_loadings), len(s_.phi_rows)
    for g, (_, s, m, _) in enumerate(stats):
        sv = start_values(s_, s)
        for idx, val in (
            (layout.lam[g], sv[:k]),
            (layout.phi[g], sv[k : k + q]),
            (layout.psi[g], sv[k + q :]),
            (layout.nu[g], m),
        ):
            np.add.at(total, idx, val)
            np.add.at(count, idx, 1)
    return np.divide(total, count, out=np.zeros_like(total), where=count > 0)


def _complete_rows(
    data: pd.DataFrame, model: dict[str, list[str]], group: str
) -> tuple[list[str], pd.DataFrame]:
    """The model's items and the rows with every item and the group (lavaan's listwise)."""
    items = check_model(data, model)
    if group not in data.columns:
        raise ValueError(f"group column not in the data: {group!r}")
    return items, data[items + [group]].dropna()


def _groups_text(labels, sizes) -> str:
    return "; ".join(f"{g} ({n})" for g, n in zip(labels, sizes, strict=True))


def fit_multigroup(
    data: pd.DataFrame,
    model: dict[str, list[str]],
    group: str,
    equal: tuple[str, ...] = (),
) -> MultiGroupResult:
    """Fit `model` ({factor: [items]}) in every group of `data[group]` by ML, with the parameter
    blocks named in `equal` shared across groups. Rows with a missing item or group are dropped."""
    unknown = set(equal) - set(EQUALITY_WORDS)
    if unknown:
        raise ValueError(f"unknown equality constraints: {sorted(unknown)}")
    items, complete = _complete_rows(data, model, group)
    labels = tuple(pd.unique(complete[group]))
    if len(labels) < MIN_GROUPS:
        raise ValueError("multi-group CFA needs at least two groups")
    single = layout_of(items, model)
    p = single.p
    n = len(complete)
    stats = []
    sizes = []
    for label in labels:
        x = complete.loc[complete[group] == label, items].to_numpy(dtype=float)
        if len(x) <= p:
            raise ValueError(f"group {label!r}: {len(x)} complete rows for {p} items")
        s, logdet_s = sample_covariance(x, items, f"group {label!r}")
        stats.append((len(x) / n, s, x.mean(axis=0), logdet_s))
        sizes.append(len(x))
    n_groups = len(labels)
    layout = _multi_layout(single, n_groups, tuple(equal))
    df = n_groups * (p * (p + 1) // 2 + p) - layout.n_params
    result = minimise(_objective, _start(layout, stats), (layout, stats))
    grad_ok = np.max(np.abs(result.jac)) < GRADIENT_TOLERANCE
    chisq = float(n * result.fun)
    # Baseline (lavaan): independence model in every group, variances and means free.
    base_chisq = 0.0
    for ng, (_, s, _, logdet_s) in zip(sizes, stats, strict=True):
        base_chisq += float(ng * (np.sum(np.log(np.diag(s))) - logdet_s))
    base_df = n_groups * p * (p - 1) // 2
    cfi, tli, rmsea = fit_indices(chisq, df, base_chisq, base_df, n)
    return MultiGroupResult(
        chisq=chisq,
        df=df,
        cfi=cfi,
        tli=tli,
        rmsea=float(rmsea * np.sqrt(n_groups)),  # lavaan's multi-group RMSEA
        srmr=_srmr(layout, result.x, stats),
        n=n,
        converged=bool(result.success or grad_ok),
        groups=tuple(str(label) for label in labels),
        n_per_group=tuple(sizes),
    )


def invariance_table(
    data: pd.DataFrame, model: dict[str, list[str]], group: str, unit: str = "groups"
) -> pd.DataFrame:
    """Configural, metric and scalar invariance with the Chen (2007) decision per step: "holds"
    when CFI drops by at most .010 and RMSEA rises by at most .015 against the previous level.

    With fewer than MIN_GROUPS groups with complete rows nothing is estimable: each level's row
    keeps its groups and n, blank fit, and the reason as `decision`, naming the groups `unit`
    ("not estimable: needs 2 waves (1 in the data)")."""
    _, complete = _complete_rows(data, model, group)
    sizes = complete.groupby(group, sort=False).size()
    if len(sizes) < MIN_GROUPS:
        reason = f"not estimable: needs {MIN_GROUPS} {unit} ({len(sizes)} in the data)"
        groups = _groups_text(sizes.index, sizes)
        rows = [
            {"model": level, "groups": groups, "n": len(complete), "decision": reason}
            for level in LEVELS
        ]
        return pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
    rows = []
    previous = None
    for level, equal in LEVELS.items():
        fit = fit_multigroup(data, model, group, equal)
        if previous is None:
            delta_cfi = delta_rmsea = float("nan")
            decision = "baseline"
        else:
            delta_cfi = fit.cfi - previous.cfi
            delta_rmsea = fit.rmsea - previous.rmsea
            ok = delta_cfi >= DELTA_CFI_MIN and delta_rmsea <= DELTA_RMSEA_MAX
            decision = "holds" if ok else "rejected"
        rows.append(
            {
                "model": level,
                "groups": _groups_text(fit.groups, fit.n_per_group),
                "n": fit.n,
                "chisq": fit.chisq,
                "df": fit.df,
                "cfi": fit.cfi,
                "tli": fit.tli,
                "rmsea": fit.rmsea,
                "srmr": fit.srmr,
                "delta_cfi": delta_cfi,
                "delta_rmsea": delta_rmsea,
                "decision": decision,
            }
        )
        previous = fit
    return pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
