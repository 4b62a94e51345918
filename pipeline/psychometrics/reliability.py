"""Reliability of a scale: alpha, item statistics and omega total, as R's psych computes them.

The items arrive reverse-coded (`pipeline.instrument.scoring.recode_items`), as floats with NaN
for missing. Like `psych::alpha` (use = "pairwise") and `psych::omega`, everything is computed
from the pairwise-complete covariance or correlation matrix, so a respondent who skipped one item
still counts for all the other pairs. Agreement with psych 2.2.9 is checked against fixtures
written by `tests/reference/psych_reliability.R`.
"""

import numpy as np
import pandas as pd
from scipy import optimize

from pipeline.instrument.codebook import Codebook
from pipeline.instrument.scoring import recode_items
from pipeline.lineage.fingerprint import derived_seed

# psych's bounds on the uniquenesses in its minres fit (`fa`: lower = .005, upper = max(smc, 1)).
MIN_UNIQUENESS = 0.005
MAX_UNIQUENESS = 1.0
BOOTSTRAP_REPLICATES = 1000
CI_LEVEL = 0.95
CHUNK_CELLS = 2**21  # bootstrap draws held at once: 16 MiB of row numbers
# Below these numbers of items a statistic is not defined (alpha compares items; a one-factor
# model of two items has more parameters than correlations): left blank, with the reason.
MIN_ITEMS = {"alpha": 2, "omega_total": 3}


def _pairwise_sums(items: pd.DataFrame):
    """For every pair of items (i, j), over the rows where both are present: the count, the sum
    and the sum of squares of item i, and the sum of products; as matrix products, so that a
    100,000-row scale costs milliseconds."""
    x = items.to_numpy(dtype=float)
    present = (~np.isnan(x)).astype(float)
    x0 = np.nan_to_num(x)
    n = present.T @ present
    sums = x0.T @ present  # [i, j]: sum of item i where j is present too
    squares = (x0**2).T @ present
    products = x0.T @ x0
    return n, sums, squares, products


def pairwise_cov(items: pd.DataFrame) -> np.ndarray:
    """R's `cov(x, use = "pairwise")`: each entry from the rows where both items are present."""
    n, sums, _, products = _pairwise_sums(items)
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = (products - sums * sums.T / n) / (n - 1)
    return np.where(n >= 2, cov, np.nan)


def pairwise_cor(items: pd.DataFrame) -> np.ndarray:
    """R's `cor(x, use = "pairwise")`: means and sds of each pair from the rows both answered.

    psych::omega uses this one; psych::alpha instead rescales the pairwise covariances by each
    item's own variance (`cov2cor`). With missing data the two differ slightly.
    """
    n, sums, squares, products = _pairwise_sums(items)
    with np.errstate(invalid="ignore", divide="ignore"):
        centred = products - sums * sums.T / n
        ss = squares - sums**2 / n  # [i, j]: item i's sum of squares where j is present
        cor = centred / np.sqrt(ss * ss.T)
    cor = np.where(n >= 2, cor, np.nan)
    np.fill_diagonal(cor, 1.0)
    return cor


def cov_to_cor(cov: np.ndarray) -> np.ndarray:
    """R's `cov2cor`: the variances on the diagonal come from the same pairwise matrix."""
    scale = 1.0 / np.sqrt(np.diag(cov))
    cor = cov * np.outer(scale, scale)
    np.fill_diagonal(cor, 1.0)
    return cor


def _raw_alpha(cov: np.ndarray) -> float:
    k = cov.shape[0]
    return (1.0 - np.trace(cov) / cov.sum()) * k / (k - 1)


def _std_alpha(cor: np.ndarray) -> float:
    k = cor.shape[0]
    return (1.0 - k / cor.sum()) * k / (k - 1)


def _mean_r(cor: np.ndarray) -> float:
    k = cor.shape[0]
    return (cor.sum() - k) / (k * (k - 1))


def alpha(items: pd.DataFrame) -> dict:
    """Raw alpha, standardised alpha and mean inter-item correlation (psych's `average_r`).

    `n` counts respondents with at least one valid item (psych reports all rows it was given;
    the pipeline's rows without any answer to the scale do not belong to it); `k` the items.
    """
    cov = pairwise_cov(items)
    cor = cov_to_cor(cov)
    return {
        "n": int(items.notna().any(axis=1).sum()),
        "k": items.shape[1],
        "alpha": float(_raw_alpha(cov)),
        "alpha_std": float(_std_alpha(cor)),
        "mean_r": float(_mean_r(cor)),
    }


def item_statistics(items: pd.DataFrame) -> pd.DataFrame:
    """Per item: n, mean, sd, r_drop (item-rest correlation) and alpha if the item is dropped.

    As in psych, r_drop is computed from the pairwise covariance matrix C, not from scores:
    (sum of the item's covariances with the other items) / sqrt(C_ii * sum of C without the
    item's row and column), i.e. the item's correlation with the sum of the other items.
    alpha_if_dropped is raw alpha of C without the item; it needs at least three items (psych
    reports a different quantity for two items, we report NaN).
    """
    cov = pairwise_cov(items)
    k = cov.shape[0]
    rows = []
    for i, name in enumerate(items.columns):
        rest = np.arange(k) != i
        rest_cov = cov[np.ix_(rest, rest)]
        covariance_with_rest = cov[i, rest].sum()
        rows.append(
            {
                "item": name,
                "n": int(items[name].notna().sum()),
                "mean": float(items[name].mean()),
                "sd": float(items[name].std(ddof=1)),
                "r_drop": (
                    float(covariance_with_rest / np.sqrt(cov[i, i] * rest_cov.sum()))
                    if k > 1
                    else np.nan
                ),
                "alpha_if_dropped": float(_raw_alpha(rest_cov)) if k > 2 else np.nan,
            }
        )
    return pd.DataFrame(rows, columns=["item", "n", "mean", "sd", "r_drop", "alpha_if_dropped"])


def squared_multiple_correlations(cor: np.ndarray) -> np.ndarray:
    """1 - 1 / diag(R^-1), psych's `smc`; the minres fit starts from 1 - smc."""
    try:
        return 1.0 - 1.0 / np.diag(np.linalg.inv(cor))
    except np.linalg.LinAlgError:
        return np.full(cor.shape[0], 0.5)


def _one_factor_loadings(cor: np.ndarray, uniqueness: np.ndarray) -> np.ndarray:
    """First principal axis of R with communalities 1 - uniqueness on the diagonal."""
    reduced = cor - np.diag(uniqueness)
    values, vectors = np.linalg.eigh(reduced)
    return vectors[:, -1] * np.sqrt(max(values[-1], 0.0))


def _uls_objective(uniqueness: np.ndarray, cor: np.ndarray) -> tuple[float, np.ndarray]:
    """Half the squared residual of the best rank-one fit to R - diag(uniqueness), and gradient.

    Minimising it over the uniquenesses is psych's minres: its gradient (FAgr.minres) is
    diag(LL' + Psi - R), which vanishes where the off-diagonal residuals are least squares.
    """
    reduced = cor - np.diag(uniqueness)
    values, vectors = np.linalg.eigh(reduced)
    loadings = vectors[:, -1] * np.sqrt(max(values[-1], 0.0))
    residual = reduced - np.outer(loadings, loadings)
    gradient = -np.diag(residual)
    return 0.5 * float((residual**2).sum()), gradient


def one_factor_minres(cor: np.ndarray) -> np.ndarray:
    """Loadings of psych's `fa(R, nfactors = 1, fm = "minres")`, signed so that they sum >= 0."""
    start = np.clip(1.0 - squared_multiple_correlations(cor), MIN_UNIQUENESS, MAX_UNIQUENESS)
    result = optimize.minimize(
        _uls_objective,
        start,
        args=(cor,),
        jac=True,
        method="L-BFGS-B",
        bounds=[(MIN_UNIQUENESS, MAX_UNIQUENESS)] * len(start),
        options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 10_000},
    )
    loadings = _one_factor_loadings(cor, result.x)
    return -loadings if loadings.sum() < 0 else loadings


def omega_total(items: pd.DataFrame) -> float:
    """Omega total for one factor, as `psych::omega(x, nfactors = 1)$omega.tot`.

    psych: R = pairwise correlations (`cor`, not alpha's `cov2cor`); minres loadings L;
    uniquenesses u2 = 1 - L^2; items with a negative loading are flipped (flip = TRUE), which
    changes sum(R); then
    omega_t = (sum(R) - sum(u2)) / sum(R). With sum(R) over the full (flipped) matrix rather than
    (sum L)^2 + sum(u2), the off-diagonal misfit of the one-factor model counts as true variance.
    """
    cor = pairwise_cor(items)
    loadings = one_factor_minres(cor)
    signs = np.where(loadings < 0, -1.0, 1.0)
    flipped = cor * np.outer(signs, signs)
    total = flipped.sum()
    uniqueness = 1.0 - loadings**2
    return float((total - uniqueness.sum()) / total)


def pair_products(x: np.ndarray) -> np.ndarray:
    """Per row of items `x`, flattened: for every pair of items (i, j) whether both are present,
    item i where j is present too, and the product of the two; `alpha`'s pairwise sums are the
    column sums, a resample's are weighted sums (a row drawn twice weighs twice)."""
    n, k = x.shape
    present = (~np.isnan(x)).astype(float)
    x0 = np.nan_to_num(x)
    return np.concatenate(
        [
            (present[:, :, None] * present[:, None, :]).reshape(n, k * k),
            (x0[:, :, None] * present[:, None, :]).reshape(n, k * k),
            (x0[:, :, None] * x0[:, None, :]).reshape(n, k * k),
        ],
        axis=1,
    )


def draw_counts(draws: np.ndarray, n: int) -> np.ndarray:
    """How often each of 0..n-1 occurs in each row of `draws`, as float weights."""
    offsets = np.arange(len(draws))[:, None] * n
    counts = np.bincount((draws + offsets).ravel(), minlength=len(draws) * n)
    return counts.reshape(len(draws), n).astype(float)


def distinct_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of `x`, compared bit for bit (so NaN matches NaN), and per row of `x`
    the index of its distinct row."""
    keys = np.ascontiguousarray(x).view(np.dtype((np.void, x.dtype.itemsize * x.shape[1])))
    _, first, inverse = np.unique(keys.ravel(), return_index=True, return_inverse=True)
    return x[first], inverse.ravel()


def resampled_alphas(products: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Raw alpha of each resample (a row of `weights` over the rows of `pair_products`), from
    its weighted pairwise sums as `alpha` computes it."""
    k = round(np.sqrt(products.shape[1] / 3))
    # einsum, not BLAS's matmul: OpenBLAS threads would spin on the second core between the
    # many small products; the sums are small enough
    totals = np.einsum("bp,pm->bm", weights, products)
    count, sums, squares = totals.reshape(-1, 3, k, k).transpose(1, 0, 2, 3)
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = (squares - sums * sums.transpose(0, 2, 1) / count) / (count - 1)
        trace = np.trace(cov, axis1=1, axis2=2)
        return (1.0 - trace / cov.sum(axis=(1, 2))) * k / (k - 1)


def bootstrap_alphas(
    items: pd.DataFrame, seed: int, replicates: int, chunk_cells: int = CHUNK_CELLS
) -> np.ndarray:
    """Raw alpha of `replicates` resamples of the rows.

    The rows are drawn as one `rng.integers(0, n, (replicates, n))` would draw them, but about
    `chunk_cells` at a time: the generator's stream does not depend on how it is split, so
    neither do the alphas, while memory stays bounded whatever n. A resample is weighed by
    answer pattern rather than by row (a scale of a few items has far fewer patterns than
    respondents). For the whole-number codes of a response scale the weighted sums are exact,
    so the alphas are those of summing row by row.
    """
    rng = np.random.default_rng(seed)
    patterns, pattern_of = distinct_rows(items.to_numpy(dtype=float))
    products = pair_products(patterns)
    n, p = len(items), len(patterns)
    per_chunk = max(1, chunk_cells // max(n, 1))
    sizes = [min(per_chunk, replicates - start) for start in range(0, replicates, per_chunk)]
    return np.concatenate(
        [
            resampled_alphas(products, draw_counts(pattern_of[rng.integers(0, n, (size, n))], p))
            for size in sizes
        ]
    )


def bootstrap_alpha_ci(
    items: pd.DataFrame, seed: int, replicates: int = BOOTSTRAP_REPLICATES
) -> tuple[float, float]:
    """Percentile bootstrap interval (CI_LEVEL) of raw alpha over resampled respondents."""
    answered = items[items.notna().any(axis=1)]
    tail = (1 - CI_LEVEL) / 2
    low, high = np.nanquantile(bootstrap_alphas(answered, seed, replicates), [tail, 1 - tail])
    return float(low), float(high)


def reliability_tables(
    frame: pd.DataFrame,
    codebook: Codebook,
    seed_label: str,
    replicates: int = BOOTSTRAP_REPLICATES,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`reliability.csv` (one row per scale) and `item_statistics.csv` (one row per item) of a
    wave, computed on the reverse-coded items with missing codes removed. Each scale's bootstrap
    seed is derived from `seed_label` (the wave) and the scale's name, and written beside it;
    `replicates=0` skips the bootstrap (the interval is then NaN)."""
    recoded = recode_items(frame, codebook)
    scales, items = [], []
    for scale in codebook.scales.values():
        block = recoded[list(scale.items)]
        seed = derived_seed("reliability", seed_label, scale.name)
        row = {
            "scale": scale.name,
            "n": int(block.notna().any(axis=1).sum()),
            "k": len(scale.items),
        }
        row |= dict.fromkeys(["alpha", "alpha_std", "mean_r", "omega_total"], np.nan)
        row |= {"alpha_ci_low": np.nan, "alpha_ci_high": np.nan, "bootstrap_seed": seed}
        if len(scale.items) >= MIN_ITEMS["alpha"]:
            row |= alpha(block)
            if replicates:
                row["alpha_ci_low"], row["alpha_ci_high"] = bootstrap_alpha_ci(
                    block, seed, replicates
                )
        if len(scale.items) >= MIN_ITEMS["omega_total"]:
            row["omega_total"] = omega_total(block)
        row["note"] = "; ".join(
            f"{name} not estimable: needs {least} items, the scale has {len(scale.items)}"
            for name, least in MIN_ITEMS.items()
            if len(scale.items) < least
        )
        scales.append(row)
        stats = item_statistics(block)
        stats.insert(0, "scale", scale.name)
        stats.insert(2, "reversed", stats["item"].isin(scale.reverse))
        items.append(stats)
    columns = [
        "scale",
        "n",
        "k",
        "alpha",
        "alpha_ci_low",
        "alpha_ci_high",
        "alpha_std",
        "omega_total",
        "mean_r",
        "bootstrap_seed",
        "note",
    ]
    return pd.DataFrame(scales)[columns], pd.concat(items, ignore_index=True)
