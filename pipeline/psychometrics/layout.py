"""Where the parameters of a CFA sit in its matrices, in one group and in several.

A model {factor: [items]} loads each item on one factor; the first item of each factor is its
marker (loading fixed to 1, lavaan's default identification). `Layout` maps a single group's
parameter vector (free loadings, the factor (co)variances Phi, the residual variances) onto
Lambda, Phi and Theta. `GroupLayout` does so for several groups with a mean structure (item
intercepts nu, factor means alpha), each block either shared by all groups or free per group, as
lavaan's `group.equal` words name them, and residual covariances where a model has them.
`wide_layout` places one model measured at several waves in one group ("wide" format): a factor
per wave, the same item's residuals correlated across the waves, and the equalities over the
waves inside that group. All give the implied moments and take a function's derivatives by those
moments back to the parameters (the chain rule every estimator here uses).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EQUALITY_WORDS = ("loadings", "intercepts", "residuals", "lv.variances", "lv.covariances", "means")


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
        return self.matrices(theta[:k], theta[k : k + q]) + (theta[k + q :],)

    def matrices(self, loadings: np.ndarray, phi_lower: np.ndarray):
        """Lambda and Phi from the free loadings and Phi's lower triangle (also for a batch of
        parameter vectors: leading axes carry over)."""
        batch = loadings.shape[:-1]
        lam = np.zeros((*batch, self.p, self.m))
        lam[..., self.markers, np.arange(self.m)] = 1.0
        lam[..., self.free_loadings, self.factor_of[self.free_loadings]] = loadings
        phi = np.zeros((*batch, self.m, self.m))
        phi[..., self.phi_rows, self.phi_cols] = phi_lower
        phi[..., self.phi_cols, self.phi_rows] = phi_lower
        return lam, phi

    def block_gradients(self, lam, phi, d_sigma, d_mu=None, alpha=None):
        """A function's gradient by the free loadings, Phi's lower triangle and the residual
        variances, given its derivatives by Sigma's elements (`d_sigma`, as an unconstrained
        symmetric matrix) and, with a mean structure mu = nu + Lambda alpha, by mu (for a batch
        of Lambda, Phi and alpha too: leading axes carry over)."""
        d_lam = 2 * d_sigma @ lam @ phi
        if d_mu is not None:
            d_lam = d_lam + d_mu[:, None] * alpha[..., None, :]
        d_phi = np.swapaxes(lam, -1, -2) @ d_sigma @ lam
        d_phi = d_phi + np.swapaxes(d_phi, -1, -2)  # an off-diagonal entry counts twice
        d_phi[..., np.arange(self.m), np.arange(self.m)] /= 2
        return (
            d_lam[..., self.free_loadings, self.factor_of[self.free_loadings]],
            d_phi[..., self.phi_rows, self.phi_cols],
            np.broadcast_to(np.diag(d_sigma), (*lam.shape[:-2], self.p)),
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


@dataclass(frozen=True)
class GroupLayout:
    """Where each free parameter goes, per group: an index into the parameter vector for every
    entry of a block, equal entries (across groups, or within one) having the same index, or -1
    where the entry is fixed (factor means fixed to 0). Group g's moments: Sigma_g = Lambda_g
    Phi_g Lambda_g' + Theta_g, mu_g = nu_g + Lambda_g alpha_g; Theta_g has the residual
    variances psi on its diagonal and the residual covariances theta at the item pairs
    `pairs`."""

    single: Layout
    groups: int
    lam: np.ndarray  # (G, free loadings)
    phi: np.ndarray  # (G, lower-triangle entries of Phi)
    psi: np.ndarray  # (G, p)
    nu: np.ndarray  # (G, p)
    alpha: np.ndarray  # (G, m); -1 where fixed to 0
    resid_cov: np.ndarray  # (G, residual covariances)
    pairs: np.ndarray  # (2, residual covariances): the two items of each
    n_params: int

    @property
    def blocks(self) -> tuple[np.ndarray, ...]:
        return self.lam, self.phi, self.psi, self.nu, self.alpha, self.resid_cov

    @property
    def structured_means(self) -> bool:
        """Whether the means are restricted (equal intercepts), so not saturated by the model."""
        return bool((self.alpha >= 0).any())

    def unpack(self, theta: np.ndarray, g: int):
        """Group g's Lambda, Phi, residual variances, intercepts and factor means (for a batch
        of parameter vectors too: theta's leading axes carry over)."""
        lam, phi = self.single.matrices(theta[..., self.lam[g]], theta[..., self.phi[g]])
        alpha = np.where(self.alpha[g] >= 0, theta[..., np.maximum(self.alpha[g], 0)], 0.0)
        return lam, phi, theta[..., self.psi[g]], theta[..., self.nu[g]], alpha

    def moments(self, theta: np.ndarray, g: int) -> tuple[np.ndarray, np.ndarray]:
        """Group g's implied means and covariances (per parameter vector of a batch)."""
        lam, phi, psi, nu, alpha = self.unpack(theta, g)
        sigma = lam @ phi @ np.swapaxes(lam, -1, -2)
        sigma[..., np.arange(self.single.p), np.arange(self.single.p)] += psi
        first, second = self.pairs
        sigma[..., first, second] += theta[..., self.resid_cov[g]]
        sigma[..., second, first] += theta[..., self.resid_cov[g]]
        return nu + (lam @ alpha[..., None])[..., 0], sigma

    def chain_rule(self, theta: np.ndarray, d_mu: list, d_sigma: list) -> np.ndarray:
        """A function's gradient by theta, given per group its derivatives by the implied means
        and by each element of the implied covariance matrix (an unconstrained symmetric
        matrix); shared parameters sum over the groups. For a batch of theta (rows), a batch of
        gradients."""
        grad = np.zeros(theta.shape)
        every = (slice(None),) * (theta.ndim - 1)  # the batch axes, if any
        for g in range(self.groups):
            lam, phi, _, _, alpha = self.unpack(theta, g)
            d_lam, d_phi, d_psi = self.single.block_gradients(lam, phi, d_sigma[g], d_mu[g], alpha)
            np.add.at(grad, (*every, self.lam[g]), d_lam)
            np.add.at(grad, (*every, self.phi[g]), d_phi)
            np.add.at(grad, (*every, self.psi[g]), d_psi)
            np.add.at(grad, (*every, self.nu[g]), np.broadcast_to(d_mu[g], d_psi.shape))
            free = self.alpha[g] >= 0
            by_means = np.einsum("...pm,p->...m", lam, d_mu[g])
            np.add.at(grad, (*every, self.alpha[g][free]), by_means[..., free])
            first, second = self.pairs
            by_pairs = d_sigma[g][first, second] + d_sigma[g][second, first]
            shape = (*theta.shape[:-1], len(first))
            np.add.at(grad, (*every, self.resid_cov[g]), np.broadcast_to(by_pairs, shape))
        return grad

    def start(self, moments: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        """Single-group start values per group from its (mean, covariance), averaged over the
        groups where shared; intercepts from the means; factor means 0."""
        s_ = self.single
        total, count = np.zeros(self.n_params), np.zeros(self.n_params)
        k, q = len(s_.free_loadings), len(s_.phi_rows)
        for g, (m, s) in enumerate(moments):
            sv = start_values(s_, s)
            for idx, val in (
                (self.lam[g], sv[:k]),
                (self.phi[g], sv[k : k + q]),
                (self.psi[g], sv[k + q :]),
                (self.nu[g], m),
            ):
                np.add.at(total, idx, val)
                np.add.at(count, idx, 1)
        return np.divide(total, count, out=np.zeros_like(total), where=count > 0)

    def names(self, factors: list[str], items: list[str]) -> list[tuple[int, str, str, str, int]]:
        """lavaan's (group, lhs, op, rhs) of every free entry, group by group, with its index in
        theta; a shared parameter appears in each group, as lavaan lists it."""
        s_ = self.single
        rows = []
        for g in range(self.groups):
            entries = [
                *(
                    (("=~", factors[s_.factor_of[j]], items[j]), i)
                    for j, i in zip(s_.free_loadings, self.lam[g], strict=True)
                ),
                *(
                    (("~~", factors[c], factors[r]), i)
                    for r, c, i in zip(s_.phi_rows, s_.phi_cols, self.phi[g], strict=True)
                ),
                *((("~~", item, item), i) for item, i in zip(items, self.psi[g], strict=True)),
                *((("~1", item, ""), i) for item, i in zip(items, self.nu[g], strict=True)),
                *(
                    (("~1", factor, ""), i)
                    for factor, i in zip(factors, self.alpha[g], strict=True)
                    if i >= 0
                ),
                *(
                    (("~~", items[a], items[b]), i)
                    for a, b, i in zip(*self.pairs, self.resid_cov[g], strict=True)
                ),
            ]
            rows += [(g + 1, lhs, op, rhs, i) for (op, lhs, rhs), i in entries]
        return rows


def group_layout(
    single: Layout,
    groups: int,
    equal: tuple[str, ...] = (),
    partial: frozenset[tuple[str, int]] = frozenset(),
) -> GroupLayout:
    """The layout of `groups` groups with the blocks named in `equal` shared, except the entries
    in `partial` ((block, position): a free loading's position among the free loadings, an
    item's among the items), which are free in every group (lavaan's `group.partial`). Factor
    means are fixed to 0, except that with "intercepts" (and not "means") they are free in groups
    2..G, as lavaan does."""
    unknown = set(equal) - set(EQUALITY_WORDS)
    if unknown:
        raise ValueError(f"unknown equality constraints: {sorted(unknown)}")
    counter = iter(range(10**9))

    def block(size: int, shared: bool, name: str = "") -> np.ndarray:
        indices = np.array([[next(counter) for _ in range(size)] for _ in range(groups)], dtype=int)
        if shared:
            own = [j for j in range(size) if (name, j) not in partial]
            indices[:, own] = indices[0, own]
        return indices

    lam = block(len(single.free_loadings), "loadings" in equal, "loadings")
    # Factor variances and covariances share only as far as asked.
    diag = single.phi_rows == single.phi_cols
    phi = np.empty((groups, len(single.phi_rows)), dtype=int)
    phi[:, diag] = block(int(diag.sum()), "lv.variances" in equal)
    phi[:, ~diag] = block(int((~diag).sum()), "lv.covariances" in equal)
    psi = block(single.p, "residuals" in equal, "residuals")
    nu = block(single.p, "intercepts" in equal, "intercepts")
    alpha = np.full((groups, single.m), -1, dtype=int)
    if "intercepts" in equal and "means" not in equal:
        alpha[1:] = block(single.m, False)[1:]
    no_pairs = np.empty((groups, 0), dtype=int)
    return _renumbered(
        single, groups, (lam, phi, psi, nu, alpha, no_pairs), np.empty((2, 0), dtype=int)
    )


def wide_model(model: dict[str, list[str]], waves: list[str]) -> dict[str, list[str]]:
    """`model` at each wave, wave by wave: factor "f@wave" with items "item@wave"."""
    return {
        f"{factor}@{wave}": [f"{item}@{wave}" for item in items]
        for wave in waves
        for factor, items in model.items()
    }


WIDE_EQUALITY_WORDS = ("loadings", "intercepts", "residuals")


def wide_layout(
    model: dict[str, list[str]],
    waves: int,
    equal: tuple[str, ...] = (),
    partial: frozenset[tuple[str, int]] = frozenset(),
) -> GroupLayout:
    """The layout of `model` measured at `waves` waves in one group, over `wide_model`'s items:
    a factor per wave (all factors correlated), the same item's residuals correlated across
    every pair of waves, and the blocks named in `equal` equal across the waves, except the
    entries in `partial` ((block, position) among the wide model's free loadings or items: that
    wave's entry gets its own parameter). Factor means are 0, except that with equal
    intercepts they are free at waves 2.. (the longitudinal analogue of `group_layout`)."""
    unknown = set(equal) - set(WIDE_EQUALITY_WORDS)
    if unknown:
        raise ValueError(f"unknown equality constraints over the waves: {sorted(unknown)}")
    items = [item for its in model.values() for item in its]
    per_wave = layout_of(items, model)
    wide = wide_model(model, [str(w) for w in range(waves)])
    single = layout_of([item for its in wide.values() for item in its], wide)
    counter = iter(range(10**9))

    def block(size: int, name: str) -> np.ndarray:
        """Wave by wave; an entry equal to the first wave's unless freed."""
        indices = np.empty((waves, size), dtype=int)
        for w in range(waves):
            for j in range(size):
                shared = w > 0 and name in equal and (name, w * size + j) not in partial
                indices[w, j] = indices[0, j] if shared else next(counter)
        return indices.ravel()[None, :]

    lam = block(len(per_wave.free_loadings), "loadings")
    phi = np.array([[next(counter) for _ in single.phi_rows]])
    psi = block(per_wave.p, "residuals")
    nu = block(per_wave.p, "intercepts")
    alpha = np.full((1, single.m), -1, dtype=int)
    if "intercepts" in equal:
        alpha[0, per_wave.m :] = [next(counter) for _ in range(single.m - per_wave.m)]
    pairs = np.array(
        [
            (a * per_wave.p + j, b * per_wave.p + j)
            for j in range(per_wave.p)
            for a in range(waves)
            for b in range(a + 1, waves)
        ],
        dtype=int,
    ).reshape(-1, 2)
    resid_cov = np.array([[next(counter) for _ in pairs]], dtype=int).reshape(1, -1)
    return _renumbered(single, 1, (lam, phi, psi, nu, alpha, resid_cov), pairs.T)


def _renumbered(single: Layout, groups: int, blocks: tuple, pairs: np.ndarray) -> GroupLayout:
    """The layout with its parameter indices renumbered 0..k-1 in order of first use (unused
    indices, such as the other groups' copies of a shared entry, leave gaps otherwise)."""
    used = np.concatenate([a.ravel() for a in blocks])
    used = np.unique(used[used >= 0])
    remap = np.full(used.max() + 1, -1)
    remap[used] = np.arange(len(used))
    renumbered = [np.where(a >= 0, remap[np.maximum(a, 0)], -1) for a in blocks]
    return GroupLayout(single, groups, *renumbered, pairs, len(used))


def unshared(layout: GroupLayout) -> tuple[GroupLayout, np.ndarray]:
    """The same model with every equality released (each group, or each wave of a wide layout,
    its own copy of a shared parameter; what is fixed stays fixed), and for each of its
    parameters the index of the constrained parameter it copies: lavaan's "unconstrained"
    parameters of a model whose equalities are `==` constraints between them."""
    counter = iter(range(10**9))
    released = [
        np.where(
            b >= 0, np.array([[next(counter) for _ in row] for row in b], dtype=int), -1
        ).reshape(b.shape)
        for b in layout.blocks
    ]
    free = _renumbered(layout.single, layout.groups, tuple(released), layout.pairs)
    copies = np.empty(free.n_params, dtype=int)
    for new, old in zip(free.blocks, layout.blocks, strict=True):
        copies[new[new >= 0]] = old[new >= 0]
    return free, copies
