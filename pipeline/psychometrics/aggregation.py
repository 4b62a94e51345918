"""Aggregation of culture scales to companies, as R's multilevel package computes it.

Culture scales have the company as referent, so their scores are aggregated to company level.
Whether that is justified is shown by the between-company share of variance (ICC(1)), the
reliability of the company means (ICC(2)) and the within-company agreement (rwg(j)). Agreement
with multilevel 2.7 is checked against fixtures written by
`tests/reference/multilevel_aggregation.R`.

The formulas, as multilevel implements them (`print(multilevel::ICC1)` etc.):

- `ICC1(aov(y ~ as.factor(group)))`: MSB and MSW from the one-way ANOVA table and
  k = (df_within + df_between + 1) / (df_between + 1) = N / G, the plain mean group size (not the
  adjusted k0 of unequal-group ANOVA texts); ICC1 = (MSB - MSW) / (MSB + (k - 1) MSW).
- `ICC2(...)` = (MSB - MSW) / MSB.
  `aov` drops respondents with a missing score, so N and G count respondents with a score and
  companies with at least one.
- `rwg.j(x, grpid, ranvar)`: rows with a missing item or group are deleted listwise; per group
  with at least two rows, S = mean of the item variances (n - 1 denominator), truncated at ranvar;
  rwg(j) = J (1 - S / ranvar) / (J (1 - S / ranvar) + S / ranvar). A group of one row gets NA.
  Under the uniform null on A response options ranvar = (A^2 - 1) / 12 (2 for A = 5).
  The mean across groups skips those NAs (`mean(..., na.rm = TRUE)`).

Company tables follow the reporting rule: a company with fewer than `min_n` respondents with a
score is `suppressed`, and its row carries no values at all, not even n. Given the range of the
scale's response scale (`bounds`), a company's 95% t interval is clipped to it: a scale score is
a mean of answers on that scale, so neither it nor its true mean can lie outside, and an interval
that did (as a t interval does for a small company near an end of the scale) would claim
values no company can have. Without `bounds` the interval is R's `t.test(x)$conf.int`, as the
fixtures check.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

COMPANY_COLUMNS = [
    "company_id",
    "scale",
    "n",
    "mean",
    "sd",
    "ci_low",
    "ci_high",
    "rwg",
    "suppressed",
]
AGGREGATION_COLUMNS = ["scale", "icc1", "icc2", "mean_group_size", "rwg_mean", "note"]
NO_CULTURE_SCALES = "not estimable: the codebook has no culture scales"
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Anova:
    """The parts of a one-way ANOVA table that ICC(1) and ICC(2) use."""

    msb: float
    msw: float
    n: int
    groups: int

    @property
    def mean_group_size(self) -> float:
        """multilevel's k: (df_within + df_between + 1) / (df_between + 1) = N / G."""
        return self.n / self.groups


@dataclass(frozen=True)
class RwgJ:
    """rwg(j) per group (NaN for a group of one), the rows each used, and the mean over groups."""

    per_group: pd.Series
    gsize: pd.Series
    mean: float


def one_way_anova(scores: pd.Series, groups: pd.Series) -> Anova:
    """MSB and MSW of `aov(scores ~ as.factor(groups))`; respondents without a score dropped."""
    frame = pd.DataFrame({"y": np.asarray(scores, dtype=float), "g": np.asarray(groups)})
    frame = frame.dropna()
    n = len(frame)
    by_group = frame.groupby("g", sort=False)["y"]
    sizes = by_group.size().to_numpy(dtype=float)
    means = by_group.mean().to_numpy(dtype=float)
    groups_count = len(sizes)
    if groups_count < 2 or n - groups_count < 1:
        return Anova(msb=np.nan, msw=np.nan, n=n, groups=groups_count)
    grand = frame["y"].mean()
    ss_between = float(np.sum(sizes * (means - grand) ** 2))
    deviations = frame["y"] - by_group.transform("mean")
    ss_within = float(np.sum(deviations.to_numpy() ** 2))
    return Anova(
        msb=ss_between / (groups_count - 1),
        msw=ss_within / (n - groups_count),
        n=n,
        groups=groups_count,
    )


def _icc1(anova: Anova) -> float:
    k = anova.mean_group_size
    return (anova.msb - anova.msw) / (anova.msb + (k - 1) * anova.msw)


def _icc2(anova: Anova) -> float:
    if anova.msb == 0:
        return np.nan
    return (anova.msb - anova.msw) / anova.msb


def icc1(scores: pd.Series, groups: pd.Series) -> float:
    """multilevel::ICC1: (MSB - MSW) / (MSB + (k - 1) MSW), k = N / G."""
    return float(_icc1(one_way_anova(scores, groups)))


def icc2(scores: pd.Series, groups: pd.Series) -> float:
    """multilevel::ICC2: (MSB - MSW) / MSB, the reliability of the group means."""
    return float(_icc2(one_way_anova(scores, groups)))


def uniform_null_variance(n_options: int) -> float:
    """Variance of a uniform distribution over A response options: (A^2 - 1) / 12."""
    if n_options < 2:
        raise ValueError(f"a response scale needs at least 2 options, got {n_options}")
    return (n_options**2 - 1) / 12


def rwg_j(items: pd.DataFrame, groups: pd.Series, a: int) -> RwgJ:
    """multilevel::rwg.j(items, groups, ranvar = (a^2 - 1) / 12).

    Rows with any missing item (or group) are deleted listwise, as `na.exclude` does in rwg.j;
    a group left with one row gets NaN and a group left with none is absent.
    """
    ranvar = uniform_null_variance(a)
    frame = pd.DataFrame(items).astype(float).reset_index(drop=True)
    frame["__group__"] = np.asarray(groups)
    frame = frame.dropna()
    item_columns = [column for column in frame.columns if column != "__group__"]
    j = len(item_columns)
    grouped = frame.groupby("__group__", sort=True)
    gsize = grouped.size()
    variance = grouped[item_columns].var(ddof=1).mean(axis=1)
    ratio = np.minimum(variance, ranvar) / ranvar
    agreement = j * (1 - ratio)
    values = agreement / (agreement + ratio)
    values[gsize < 2] = np.nan
    values.name = "rwg_j"
    values.index.name = None
    gsize.name = "gsize"
    gsize.index.name = None
    mean = float(values.mean()) if values.notna().any() else np.nan
    return RwgJ(per_group=values, gsize=gsize, mean=mean)


def _mean_ci(
    n: np.ndarray, mean: np.ndarray, sd: np.ndarray, bounds: tuple[float, float] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided t interval for the mean, n - 1 df (R's `t.test(x)$conf.int`), clipped to
    `bounds` (low, high) when given; NaN stays NaN."""
    # not at the top: docs/developer.md#start-up-time
    from scipy import stats

    with np.errstate(invalid="ignore", divide="ignore"):
        df = np.where(n > 1, n - 1, np.nan)
        half = stats.t.ppf(0.5 + CONFIDENCE / 2, df) * sd / np.sqrt(n)
    low, high = mean - half, mean + half
    if bounds is not None:
        low, high = np.clip(low, *bounds), np.clip(high, *bounds)
    return low, high


def company_table(
    scores_frame: pd.DataFrame,
    scale: str,
    company_col: str,
    min_n: int,
    items: Sequence[str] | None = None,
    n_options: int | None = None,
    bounds: tuple[float, float] | None = None,
) -> pd.DataFrame:
    """One row per company: n, mean, sd and 95% t interval of the scale score, and rwg(j).

    `n` counts the company's respondents with a score for `scale`. rwg(j) is computed from the
    item columns `items` of `scores_frame` (recoded, NaN for missing) with `n_options` response
    options; without items it is NaN. `bounds` (the lowest and highest score of the scale's
    response scale) clips the interval to the scale's range; without it the interval is the
    plain t interval. A company with n < `min_n` is `suppressed`: n and every
    value column are blank, so the row shows only that the company was there. So is the
    smallest shown company when the hidden scores would number fewer than `min_n`
    (`_suppress_complement`).
    """
    if min_n < 1:
        raise ValueError(f"min_n must be at least 1, got {min_n}")
    company = scores_frame[company_col]
    present = company.notna()
    score = scores_frame.loc[present, scale].astype(float)
    grouped = score.groupby(company[present], sort=True)
    n = grouped.count().astype(float)
    mean = grouped.mean()
    sd = grouped.std(ddof=1)
    ci_low, ci_high = _mean_ci(n.to_numpy(), mean.to_numpy(), sd.to_numpy(), bounds)
    table = pd.DataFrame(
        {
            "company_id": n.index,
            "scale": scale,
            "n": n.to_numpy(),
            "mean": mean.to_numpy(),
            "sd": sd.to_numpy(),
            "ci_low": ci_low,
            "ci_high": ci_high,
        }
    )
    if items:
        if n_options is None:
            raise ValueError("rwg(j) needs n_options, the number of response options")
        agreement = rwg_j(scores_frame.loc[present, list(items)], company[present], n_options)
        table["rwg"] = table["company_id"].map(agreement.per_group).astype(float)
    else:
        table["rwg"] = np.nan
    table["suppressed"] = table["n"] < min_n
    _suppress_complement(table, int(scores_frame[scale].notna().sum()), min_n)
    value_columns = ["n", "mean", "sd", "ci_low", "ci_high", "rwg"]
    table.loc[table["suppressed"], value_columns] = np.nan
    table["n"] = table["n"].astype("Int64")
    return table[COMPANY_COLUMNS].reset_index(drop=True)


def _suppress_complement(table: pd.DataFrame, total: int, min_n: int) -> None:
    """Secondary suppression: the scores of the scale's hidden rows (suppressed companies and
    rows without a company) are the published total (the wave report's n and mean) minus the
    shown companies; when they are fewer than `min_n` but not none, the shown company with the
    fewest scores is suppressed too, so that no subtraction isolates a group under `min_n`."""
    shown = table.loc[~table["suppressed"]].sort_values(["n", "company_id"], kind="stable")
    hidden = total - int(shown["n"].sum())
    if 0 < hidden < min_n and not shown.empty:
        table.loc[shown.index[0], "suppressed"] = True


def aggregation_table(
    scores_frame: pd.DataFrame,
    scales: Mapping[str, Sequence[str]],
    company_col: str,
    n_options: int | Mapping[str, int],
) -> pd.DataFrame:
    """Per scale: ICC(1), ICC(2), multilevel's mean group size (N / G) and the mean rwg(j).

    `scales` maps each scale (a score column of `scores_frame`) to its item columns; `n_options`
    is the number of response options, one for all scales or per scale. All companies count,
    also those suppressed in the company table: these are sample-level statistics.
    """
    rows = []
    for scale, items in scales.items():
        options = n_options if isinstance(n_options, int) else n_options[scale]
        anova = one_way_anova(scores_frame[scale], scores_frame[company_col])
        rows.append(
            {
                "scale": scale,
                "icc1": float(_icc1(anova)),
                "icc2": float(_icc2(anova)),
                "mean_group_size": anova.mean_group_size if anova.groups else np.nan,
                "rwg_mean": rwg_j(
                    scores_frame[list(items)], scores_frame[company_col], options
                ).mean,
            }
        )
    return pd.DataFrame(rows, columns=AGGREGATION_COLUMNS)


def company_aggregates(
    scores_frame: pd.DataFrame,
    scales: Mapping[str, Sequence[str]],
    company_col: str,
    min_n: int,
    n_options: Mapping[str, int],
    bounds: Mapping[str, tuple[float, float]] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`company_table` of every culture scale (`scales`: scale -> items), one after the other,
    their intervals clipped to the scale's range in `bounds` (scale -> lowest, highest score)
    where given, and their `aggregation_table`. Without culture scales there is nothing to
    aggregate: no company rows, and one aggregation row whose `note` says why."""
    if not scales:
        reason = pd.DataFrame([{"note": NO_CULTURE_SCALES}], columns=AGGREGATION_COLUMNS)
        return pd.DataFrame(columns=COMPANY_COLUMNS), reason
    companies = pd.concat(
        [
            company_table(
                scores_frame,
                scale,
                company_col,
                min_n,
                list(items),
                n_options[scale],
                (bounds or {}).get(scale),
            )
            for scale, items in scales.items()
        ],
        ignore_index=True,
    )
    return companies, aggregation_table(scores_frame, scales, company_col, n_options)
