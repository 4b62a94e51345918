"""The numbers of the learning communities' reports, per wave: where each community stands on
the culture and outcome scales, against the companies outside it, how its companies spread,
what changed since the previous wave, and which development trajectories run in it. The
spread is the companies' standard deviation only: a percentile, minimum or maximum of five
companies is one company's mean.

Every number is built from the company means the pipeline already publishes (`company_table`:
a company's n and mean per scale, shown when it has at least k scores and is not suppressed, as
company_scores.csv and the company reports give them), never from the respondents directly. A
community's pooled mean is the n-weighted mean of its shown companies' means, the outside mean
that of the other shown companies of the wave. So any difference between published community,
company and wave figures is a union of shown companies, each of at least k respondents, or the
companies the company level already hides, which `company_table`'s secondary suppression keeps
at k or more (the attack in tests/privacy/test_community_disclosure.py tries every difference).
The rules (k is the codebook's `anonymisation.k`, MIN_COMPANIES = 5):

- A community is reported in a wave when at least MIN_COMPANIES of its member companies that
  wave have at least k respondents; otherwise it has no rows at all (no report), and counts only
  in ALL, all communities together.
- Per scale, its figures need at least MIN_COMPANIES shown companies; otherwise the row holds
  only how many there are. The outside figure needs as many shown companies outside it.
- ALL is reported only when the member companies of the communities that are not reported
  (counted as for a community) are none or at least MIN_COMPANIES: otherwise ALL minus the
  reported communities would be a community too small to report.
- Change since the previous wave is the community's reported mean then (with its members then)
  against now; nothing new is computed over the previous wave's data.
- The trajectory counts are companies, not respondents: how many member companies run a
  trajectory of each type in the wave (started on or before the wave's first day, not ended
  before it).

The table is long (`NUMBER_COLUMNS`) so that each number has an id for `scan trace`:
`community_numbers[wave](community_id,table,row,statistic).value`.
"""

from collections.abc import Mapping

import numpy as np
import pandas as pd

from pipeline.ingest.communities import ALL, members_in
from pipeline.instrument.codebook import Codebook
from pipeline.psychometrics.aggregation import company_table
from pipeline.reporting.company_report import previous_wave

MIN_COMPANIES = 5
NUMBER_COLUMNS = ("community_id", "table", "row", "statistic", "value")
MEMBERS_ROW = "community"  # the row of the members table
SCALE_STATISTICS = (
    "companies",
    "n",
    "mean",
    "companies_mean",
    "companies_sd",
    "outside_companies",
    "outside_mean",
    "previous_mean",
    "change",
)


def shown_companies(scores: pd.DataFrame, scale: str, k: int) -> pd.DataFrame:
    """A scale's published company means in a wave's `scores`: company_id, n and mean of the
    companies `company_table` shows (at least k scores, not suppressed)."""
    table = company_table(scores, scale, "company_id", k)
    shown = table[~table["suppressed"]]
    return shown[["company_id", "n", "mean"]].astype({"n": float, "mean": float})


def reported(groups: Mapping[str, set], sizes: pd.Series, k: int) -> dict[str, set]:
    """The groups (id -> member companies) with at least MIN_COMPANIES members of at least k
    respondents (`sizes`: respondents per company), and ALL when the members of the others
    allow it (the module's rules)."""
    large = set(sizes.index[sizes >= k])
    shown = {c: members for c, members in groups.items() if len(members & large) >= MIN_COMPANIES}
    everyone = set().union(*groups.values())
    left = len(unreported(groups, shown) & large)
    if len(everyone & large) >= MIN_COMPANIES and (left == 0 or left >= MIN_COMPANIES):
        shown[ALL] = everyone
    return shown


def unreported(groups: Mapping[str, set], shown: Mapping[str, set]) -> set:
    """The member companies of no reported community."""
    inside = set().union(*(members for c, members in shown.items() if c != ALL))
    return set().union(*groups.values()) - inside


def scale_statistics(shown: pd.DataFrame, members: set, rest: set | None) -> dict[str, float]:
    """One scale's figures for a group of `members` (`shown`: the wave's shown companies;
    `rest`: the members of the groups not reported, when figuring ALL: its rows need them to be
    none or MIN_COMPANIES shown companies too)."""
    inside = shown[shown["company_id"].isin(members)]
    outside = shown[~shown["company_id"].isin(members)]
    figures = dict.fromkeys(SCALE_STATISTICS, np.nan) | {"companies": float(len(inside))}
    left = 0 if rest is None else int(shown["company_id"].isin(rest).sum())
    if len(inside) < MIN_COMPANIES or 0 < left < MIN_COMPANIES:
        return figures
    means = inside["mean"].to_numpy()
    figures |= {
        "n": inside["n"].sum(),
        "mean": np.average(means, weights=inside["n"]),
        "companies_mean": means.mean(),
        "companies_sd": means.std(ddof=1),
        "outside_companies": float(len(outside)),
    }
    if len(outside) >= MIN_COMPANIES:
        figures["outside_mean"] = np.average(outside["mean"], weights=outside["n"])
    return figures


def community_numbers(
    wave: str,
    scores_by_wave: Mapping[str, pd.DataFrame],
    members: pd.DataFrame,
    trajectories: pd.DataFrame,
    codebook: Codebook,
) -> pd.DataFrame:
    """The wave's numbers (the module's opening), for the communities reported in `wave`.

    `scores_by_wave`: every wave's scale_scores (this one and earlier ones); `members`: the
    register under the company pseudonyms (community_id, company_id, joined, left);
    `trajectories`: `trajectory_companies` (company_id, type, start, end), empty without a
    trajectory register."""
    scales = [s for s, scale in codebook.scales.items() if scale.level in ("culture", "outcome")]
    groups, now = _wave_figures(wave, scores_by_wave, members, scales, codebook)
    previous = previous_wave(wave, scores_by_wave, codebook)
    before = (
        _wave_figures(previous, scores_by_wave, members, scales, codebook)[1] if previous else {}
    )
    sizes = scores_by_wave[wave].groupby("company_id").size()
    rows = []
    for community, figures in now.items():
        companies = groups[community]
        rows.append((community, "members", MEMBERS_ROW, "companies", float(len(companies))))
        large = float((sizes.reindex(list(companies)).fillna(0) >= codebook.anonymisation.k).sum())
        rows.append((community, "members", MEMBERS_ROW, "companies_reported", large))
        for scale, values in figures.items():
            then = before.get(community, {}).get(scale, {}).get("mean", np.nan)
            values = values | {"previous_mean": then, "change": values["mean"] - then}
            rows += [(community, "scales", scale, s, values[s]) for s in SCALE_STATISTICS]
        if community != ALL:
            rows += _trajectory_rows(community, companies, trajectories, wave, codebook)
    frame = pd.DataFrame(rows, columns=list(NUMBER_COLUMNS))
    return frame.astype({"value": float})


def _groups(members: pd.DataFrame, wave: str, codebook: Codebook) -> dict[str, set]:
    """Community id -> its member companies in `wave` (company pseudonyms)."""
    rows = members_in(members, wave, list(codebook.waves))
    return {c: set(part["company_id"]) for c, part in rows.groupby("community_id", sort=True)}


def _wave_figures(wave, scores_by_wave, members, scales, codebook):
    """The communities (and ALL) reported in `wave` with their member companies, and
    {community: {scale: figures}} of them."""
    k = codebook.anonymisation.k
    scores = scores_by_wave[wave]
    groups = _groups(members, wave, codebook)
    shown_groups = reported(groups, scores.groupby("company_id").size(), k)
    rest = unreported(groups, shown_groups)
    shown = {scale: shown_companies(scores, scale, k) for scale in scales}
    figures = {
        community: {
            scale: scale_statistics(shown[scale], companies, rest if community == ALL else None)
            for scale in scales
        }
        for community, companies in shown_groups.items()
    }
    return shown_groups, figures


def _trajectory_rows(community, companies, trajectories, wave, codebook) -> list[tuple]:
    """Per trajectory type, the member companies running one in `wave` (none without a
    register, or when the codebook gives the wave no start date)."""
    start = codebook.waves[wave].start
    if trajectories.empty or start is None:
        return []
    first_day = pd.Timestamp(start)
    running = trajectories[
        trajectories["company_id"].isin(companies)
        & (pd.to_datetime(trajectories["start"]) <= first_day)
        & ~(pd.to_datetime(trajectories["end"]) < first_day)
    ]
    counts = running.groupby("type")["company_id"].nunique()
    return [(community, "trajectories", str(t), "companies", float(n)) for t, n in counts.items()]
