"""Score tests of the equality constraints across groups, as R's lavaan `lavTestScore(fit)`: for
each constraint, the test of releasing it alone (univariate, 1 df).

A model with blocks shared across groups (`layout.GroupLayout`) is, in lavaan's terms, the
unconstrained model (each group its own copy of every parameter) with `==` constraints R theta = 0
between the copies, each later group's copy against the first group's. At the constrained
estimates, with s the gradient of log L / N and I the expected information per row, both of the
unconstrained parameters, releasing constraint r gives X2 = N s' Z (Z' I Z)^-1 Z' s, Z spanning
the parameters that the other constraints allow. lavaan 0.6-14 computes this ordinary score test
under MLR as well. Checked against `tests/reference/lavaan_fiml_groups.R`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import linalg

from pipeline.psychometrics.fiml import Sample, score_and_information
from pipeline.psychometrics.layout import GroupLayout, unshared

SCORE_COLUMNS = ["group", "lhs", "op", "rhs", "block", "position", "X2", "df", "p"]


def constraints(layout: GroupLayout, copies: np.ndarray) -> list[tuple[int, int]]:
    """The equality constraints as (first group's copy, later group's copy) of the released
    parameters, in the order of the later copies."""
    first = {}
    pairs = []
    for index, original in enumerate(copies):
        if original in first:
            pairs.append((first[original], index))
        else:
            first[original] = index
    return pairs


def _blocks(free: GroupLayout) -> dict[int, tuple[str, int]]:
    """For each released parameter of the loadings, intercepts and residual variances: (block,
    position), as `layout.group_layout`'s `partial` names an entry."""
    where = {}
    for name, indices in (("loadings", free.lam), ("intercepts", free.nu), ("residuals", free.psi)):
        for row in indices:
            for position, index in enumerate(row):
                where[int(index)] = (name, position)
    return where


def score_tests(
    sample: Sample,
    layout: GroupLayout,
    theta: np.ndarray,
    factors: list[str],
    items: list[str],
) -> pd.DataFrame:
    """The univariate score test of every equality constraint of `layout` at its estimates
    `theta`, named by the later group's parameter (lavaan's `rhs` of the constraint) with its
    block and position for `group_layout`'s `partial`."""
    # not at the top: docs/developer.md#start-up-time
    from scipy import stats

    free, copies = unshared(layout)
    pairs = constraints(free, copies)
    if not pairs:
        return pd.DataFrame(columns=SCORE_COLUMNS)
    gradient, information = score_and_information(theta[copies], free, sample)
    r = np.zeros((len(pairs), free.n_params))
    for row, (a, b) in enumerate(pairs):
        r[row, a], r[row, b] = 1.0, -1.0
    n = int(sample.sizes.sum())
    names = {i: (g, lhs, op, rhs) for g, lhs, op, rhs, i in free.names(factors, items)}
    blocks = _blocks(free)
    rows = []
    for k, (_, later) in enumerate(pairs):
        z = linalg.null_space(np.delete(r, k, axis=0))
        inner = np.linalg.solve(z.T @ information @ z, z.T @ gradient)
        x2 = float(n * (z.T @ gradient) @ inner)
        block, position = blocks.get(later, ("", -1))
        rows.append([*names[later], block, position, x2, 1, float(stats.chi2.sf(x2, 1))])
    return pd.DataFrame(rows, columns=SCORE_COLUMNS)
