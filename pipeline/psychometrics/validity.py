"""Validity evidence for a wave's scales: composite reliability, AVE and the Fornell-Larcker
criterion from the CFA; HTMT as R's semTools::htmt computes it; and Pearson correlations
between scale scores, with the confidence interval of R's cor.test.

Two tables per wave:

- `validity_scales` (`scale_table`), one row per scale: scale, n_items, cr, ave, sqrt_ave,
  max_r, max_r_with, fornell_larcker_ok, note. From the CFA's standardised loadings l of the
  scale's factor: composite reliability CR = (sum l)^2 / ((sum l)^2 + sum(1 - l^2)) (Fornell &
  Larcker 1981; Raykov's omega for uncorrelated errors) and the average variance extracted
  AVE = mean(l^2). The Fornell-Larcker criterion holds when sqrt(AVE) exceeds max_r, the factor's
  largest absolute correlation with another factor (max_r_with names that factor).
- `validity_pairs` (`pair_table`), one row per pair of scales: scale_a, scale_b, kind, htmt, n,
  r, r_lo, r_hi, p, note. `htmt` is the heterotrait-monotrait ratio of the item correlations
  (Henseler, Ringle & Sarstedt 2015); r is the Pearson correlation of the two scale scores over
  the n respondents who have both, with its 95% interval by Fisher's z and its two-sided p, as
  `cor.test(x, y)`. Which scales are culture and which outcome the caller says; `kind` joins the
  two scales' roles (culture, outcome, other), in that order, and scale_a is the one whose role
  comes first (for equal roles, the first in the scales' order), so the rows of kind
  "culture-outcome" are the culture scales' association with the outcome scales.

HTMT follows semTools 0.5-6's `htmt(model, data)`, defaults included: the item correlations are
lavaan's `lavCor` with `missing = "listwise"` (the rows that answer every item of every scale
given) or `"pairwise"` (each covariance over the rows that answer both items, each variance
over the rows that answer the item, then `cov2cor`: not R's `cor(use = "pairwise")`); absolute
values; then geometric means (`htmt2 = TRUE`, Roemer, Schuberth & Henseler 2021, semTools's
default) or arithmetic means (`htmt2 = FALSE`, the 2015 ratio) of the correlations within each
scale and between the two. An item pair without a correlation is left out of a mean, as
semTools's `na.rm = TRUE` does; a scale of one item has no correlation within it, so its HTMT is
NaN, as in semTools.

A value that cannot be computed is NaN (fornell_larcker_ok: missing) and `note` says why.
Nothing here knows an instrument: scales, items and roles all come from the arguments.
Agreement with R 4.2, lavaan 0.6-14 and semTools 0.5-6 is checked against fixtures written by
`tests/reference/validity.R`.
"""

from itertools import combinations

import numpy as np
import pandas as pd

from pipeline.psychometrics.reliability import cov_to_cor, pairwise_cov

CI_LEVEL = 0.95
MIN_LOADINGS = 2  # a factor of one item has no variance of its own to separate from error
MIN_PAIRS = {"r": 3, "ci": 4}  # cor.test: an error below 3 pairs, no interval below 4
MISSING = ("listwise", "pairwise")
MEANS = ("geometric", "arithmetic")
ROLES = ("culture", "outcome", "other")
SCALE_COLUMNS = [
    "scale",
    "n_items",
    "cr",
    "ave",
    "sqrt_ave",
    "max_r",
    "max_r_with",
    "fornell_larcker_ok",
    "note",
]
PAIR_COLUMNS = ["scale_a", "scale_b", "kind", "htmt", "n", "r", "r_lo", "r_hi", "p", "note"]


def composite_reliability(loadings: np.ndarray) -> float:
    """(sum l)^2 / ((sum l)^2 + sum(1 - l^2)) of standardised loadings l."""
    common = loadings.sum() ** 2
    return float(common / (common + (1.0 - loadings**2).sum()))


def average_variance_extracted(loadings: np.ndarray) -> float:
    """mean(l^2) of standardised loadings l."""
    return float((loadings**2).mean())


def _largest_correlation(scale: str, factor_correlations: pd.DataFrame) -> tuple[float, str]:
    """The factor's largest absolute correlation with another factor, and that factor's name;
    (NaN, "") when it has none."""
    if scale not in factor_correlations.index:
        return np.nan, ""
    others = factor_correlations.loc[scale].drop(scale, errors="ignore").abs().dropna()
    if others.empty:
        return np.nan, ""
    return float(others.max()), str(others.idxmax())


def scale_table(
    scales: dict[str, list[str]], loadings: pd.DataFrame, factor_correlations: pd.DataFrame
) -> pd.DataFrame:
    """`validity_scales`: CR, AVE and the Fornell-Larcker criterion per scale.

    `loadings` is the CFA's `cfa_loadings` (factor, item, std_loading; a factor is named as its
    scale), `factor_correlations` the CFA's standardised factor correlations as a square frame,
    index and columns the factor names. A scale the CFA left out (fewer than two items, or no
    fit at all: empty frames) gets NaN and a note.
    """
    rows = []
    for scale, items in scales.items():
        own = loadings[loadings["factor"] == scale]
        if len(own) and set(own["item"]) != set(items):
            raise ValueError(
                f"the loadings of {scale} are on {', '.join(own['item'])}, "
                f"the scale's items are {', '.join(items)}"
            )
        values = own["std_loading"].to_numpy(dtype=float)
        row = {"scale": scale, "n_items": len(items)}
        notes = []
        if len(values) >= MIN_LOADINGS:
            row["cr"] = composite_reliability(values)
            row["ave"] = average_variance_extracted(values)
        else:
            row["cr"] = row["ave"] = np.nan
            notes.append(
                f"cr and ave not estimable: the CFA has {len(values)} loadings of {scale} "
                f"(needs {MIN_LOADINGS})"
            )
        row["sqrt_ave"] = float(np.sqrt(row["ave"]))
        row["max_r"], row["max_r_with"] = _largest_correlation(scale, factor_correlations)
        if np.isnan(row["max_r"]):
            notes.append(
                f"fornell-larcker not assessable: the CFA has no correlation of {scale} with "
                "another factor"
            )
        assessable = not (np.isnan(row["sqrt_ave"]) or np.isnan(row["max_r"]))
        row["fornell_larcker_ok"] = bool(row["sqrt_ave"] > row["max_r"]) if assessable else pd.NA
        row["note"] = "; ".join(notes)
        rows.append(row)
    table = pd.DataFrame(rows, columns=SCALE_COLUMNS)
    return table.astype({"n_items": "int64", "fornell_larcker_ok": "boolean"})


def item_correlations(items: pd.DataFrame, missing: str = "listwise") -> pd.DataFrame:
    """lavaan's `lavCor(items, missing = missing)` for continuous items: the Pearson
    correlations of the complete rows (listwise), or `cov2cor` of the pairwise covariances
    (pairwise). NaN where a correlation has too few rows or an item no variance."""
    if missing not in MISSING:
        raise ValueError(f"missing must be one of {', '.join(MISSING)}, not {missing!r}")
    rows = items.dropna() if missing == "listwise" else items
    with np.errstate(invalid="ignore", divide="ignore"):
        cor = cov_to_cor(pairwise_cov(rows))
    return pd.DataFrame(cor, index=items.columns, columns=items.columns)


def _mean(values: np.ndarray, mean: str) -> float:
    """The arithmetic or geometric mean of the values that are not NaN; NaN if none are."""
    values = values[~np.isnan(values)]
    if not len(values):
        return np.nan
    if mean == "arithmetic":
        return float(values.mean())
    with np.errstate(divide="ignore"):  # a correlation of 0: log 0 = -inf, the mean 0, as in R
        return float(np.exp(np.log(values).mean()))


def htmt(cor: pd.DataFrame, scales: dict[str, list[str]], mean: str = "geometric") -> pd.DataFrame:
    """semTools's HTMT matrix (scales by scales, 1 on the diagonal) from item correlations
    `cor` (index and columns the items): the mean absolute correlation between two scales'
    items over sqrt(product of the two scales' mean absolute correlations within), every mean
    geometric or arithmetic as `mean` says."""
    if mean not in MEANS:
        raise ValueError(f"mean must be one of {', '.join(MEANS)}, not {mean!r}")
    r = cor.abs()
    r = r.mask(np.eye(len(r), dtype=bool))  # the diagonal is left out, as semTools does
    within = {s: _mean(r.loc[items, items].to_numpy(), mean) for s, items in scales.items()}
    names = list(scales)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = [
            [
                _mean(r.loc[scales[a], scales[b]].to_numpy(), mean) / np.sqrt(within[a] * within[b])
                for b in names
            ]
            for a in names
        ]
    return pd.DataFrame(ratio, index=names, columns=names)


def correlation_test(x: pd.Series, y: pd.Series) -> dict:
    """`cor.test(x, y)` over the rows where both are present: n, r, the 95% interval r_lo, r_hi
    (tanh(atanh(r) -+ z_.975 / sqrt(n - 3))) and the two-sided p of t = r sqrt((n - 2) /
    (1 - r^2)) on n - 2 df, with a note on what could not be computed."""
    # not at the top: docs/developer.md#start-up-time
    from scipy import stats

    both = x.notna() & y.notna()
    n = int(both.sum())
    result = {"n": n} | dict.fromkeys(["r", "r_lo", "r_hi", "p"], np.nan) | {"note": ""}
    if n < MIN_PAIRS["r"]:
        result["note"] = (
            f"r not estimable: {n} respondents have both scores (needs {MIN_PAIRS['r']})"
        )
        return result
    flat = [str(s.name) for s in (x, y) if s[both].min() == s[both].max()]
    if flat:
        result["note"] = (
            f"r not estimable: {' and '.join(flat)} without variance among the {n} "
            "respondents with both scores"
        )
        return result
    dx = x[both].to_numpy(dtype=float) - x[both].mean()
    dy = y[both].to_numpy(dtype=float) - y[both].mean()
    r = float(np.clip((dx * dy).sum() / np.sqrt((dx**2).sum() * (dy**2).sum()), -1.0, 1.0))
    df = n - 2
    with np.errstate(divide="ignore"):  # r = +-1: t infinite, p 0, the interval [r, r]
        t = np.sqrt(df) * r / np.sqrt(1.0 - r**2)
        z = np.arctanh(r)
    result |= {"r": r, "p": float(2 * stats.t.sf(abs(t), df))}
    if n < MIN_PAIRS["ci"]:
        result["note"] = (
            f"no confidence interval: {n} respondents have both scores (needs {MIN_PAIRS['ci']})"
        )
        return result
    half = stats.norm.ppf((1 + CI_LEVEL) / 2) / np.sqrt(n - 3)
    result["r_lo"], result["r_hi"] = float(np.tanh(z - half)), float(np.tanh(z + half))
    return result


def _htmt_note(a: str, b: str, scales: dict[str, list[str]], cor: pd.DataFrame) -> str:
    """Why the HTMT of scales a and b is not a number."""
    for s in (a, b):
        if len(scales[s]) == 1:
            return f"htmt not estimable: {s} has one item, so no correlation within it"
        block = cor.loc[scales[s], scales[s]].to_numpy()
        if np.isnan(block[~np.eye(len(block), dtype=bool)]).all():
            return f"htmt not estimable: no correlation between the items of {s}"
    return f"htmt not estimable: no correlation between the items of {a} and of {b}"


def pair_table(
    items: pd.DataFrame,
    scales: dict[str, list[str]],
    scores: pd.DataFrame,
    culture: list[str],
    outcomes: list[str],
    missing: str = "listwise",
    mean: str = "geometric",
) -> pd.DataFrame:
    """`validity_pairs`: HTMT and the correlation of the scale scores for every pair of scales.

    `items` holds the reverse-coded answers (NaN for missing; other columns are ignored),
    `scores` a column per scale named as the scale (as `scale_scores`), one row per respondent.
    `missing` and `mean` choose the item correlations and the means of the HTMT (see the
    module's docstring); the defaults are semTools's.
    """
    unknown = [name for name in [*culture, *outcomes] if name not in scales]
    both = set(culture) & set(outcomes)
    if unknown or both:
        raise ValueError(
            f"culture and outcomes must be distinct scales: unknown {unknown}, both {sorted(both)}"
        )
    role = {
        s: "culture" if s in culture else "outcome" if s in outcomes else "other" for s in scales
    }
    all_items = list(dict.fromkeys(item for its in scales.values() for item in its))
    cor = item_correlations(items[all_items], missing)
    ratios = htmt(cor, scales, mean)
    rows = []
    for a, b in combinations(scales, 2):
        if ROLES.index(role[b]) < ROLES.index(role[a]):
            a, b = b, a
        test = correlation_test(scores[a], scores[b])
        value = float(ratios.at[a, b])
        notes = [_htmt_note(a, b, scales, cor)] if np.isnan(value) else []
        notes += [note] if (note := test.pop("note")) else []
        rows.append(
            {"scale_a": a, "scale_b": b, "kind": f"{role[a]}-{role[b]}", "htmt": value}
            | test
            | {"note": "; ".join(notes)}
        )
    return pd.DataFrame(rows, columns=PAIR_COLUMNS).astype({"n": "int64"})
