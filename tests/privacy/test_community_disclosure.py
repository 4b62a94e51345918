"""Disclosure across levels: an intruder who holds every published wave, company and community
figure (counts and means) and knows which companies belong to which community adds and
subtracts them in every way; no combination may isolate fewer than k respondents. And the
community rules: at least 5 companies of at least k respondents, the aggregate of all
communities only when it does not give away a community too small to report."""

from dataclasses import replace
from itertools import combinations

import numpy as np
import pandas as pd
import pytest
from conftest import CODEBOOK, WAVES

from pipeline.ingest.communities import ALL, members_in
from pipeline.instrument.codebook import load_codebook
from pipeline.psychometrics.aggregation import company_table
from pipeline.reporting.communities import (
    MEMBERS_ROW,
    community_numbers,
    reported,
    shown_companies,
)
from pipeline.reporting.wave_report import numbers_of

NO_COMPANY = ""  # the cell of the rows without a company


def isolated(aggregates: list[frozenset], counts: dict[str, int], k: int) -> list[frozenset]:
    """Every set of cells (companies) holding 0 < n < k scores whose total and sum follow from
    the `aggregates` (each a set of cells whose n and sum are published) by adding and
    subtracting: its indicator lies in the span of theirs. Cells that every aggregate holds
    together are one atom; a set under k is made of atoms under k, which are few."""
    cells = sorted(c for c, n in counts.items() if n > 0)
    A = np.array([[c in a for c in cells] for a in aggregates], dtype=float).reshape(-1, len(cells))
    atoms: dict[tuple, list[str]] = {}
    for j, cell in enumerate(cells):
        atoms.setdefault(tuple(A[:, j]), []).append(cell)
    small = [cells for cells in atoms.values() if sum(counts[c] for c in cells) < k]
    found = []
    for size in range(1, len(small) + 1):
        for combo in combinations(small, size):
            group = frozenset(c for atom in combo for c in atom)
            if sum(counts[c] for c in group) >= k:
                continue
            target = np.array([c in group for c in cells], dtype=float)
            x = np.linalg.lstsq(A.T, target, rcond=None)[0]
            if np.allclose(A.T @ x, target, atol=1e-8):
                found.append(group)
    return found


def score_counts(scores: pd.DataFrame, scale: str) -> dict[str, int]:
    company = scores["company_id"].fillna(NO_COMPANY)
    return scores[scale].notna().groupby(company).sum().astype(int).to_dict()


# --- a wave built to leak: one company of 3 respondents beside large ones --------------------

K = 5
SIZES = {"a": 20, "b": 15, "c": 12, "d": 10, "e": 9, "f": 8, "g": 8, "h": 7, "i": 6, "j": 6}
SMALL = {"s": 3}  # under k: suppressed, and alone in what the wave minus the companies leaves


def wave_scores(sizes: dict[str, int], seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = [(c, f"{c}{i}") for c, n in sizes.items() for i in range(n)]
    frame = pd.DataFrame(rows, columns=["company_id", "person_id"])
    return frame.assign(wave="w1", LT=rng.normal(3.5, 0.6, len(frame)).round(2))


def test_the_attack_finds_a_company_under_k_that_naive_publication_gives_away():
    scores = wave_scores(SIZES | SMALL)
    counts = score_counts(scores, "LT")
    naive = [frozenset(counts)] + [frozenset([c]) for c, n in counts.items() if n >= K]
    assert isolated(naive, counts, K) == [frozenset(["s"])]
    table = company_table(scores, "LT", "company_id", K)
    shown = table.loc[~table["suppressed"], "company_id"]
    assert len(shown) == len(SIZES) - 1  # the smallest shown company is suppressed too
    published = [frozenset(counts)] + [frozenset([c]) for c in shown]
    assert isolated(published, counts, K) == []


@pytest.fixture(scope="module")
def codebook():
    return load_codebook(CODEBOOK)


def members(groups: dict[str, list[str]], joined: str = "2019-T0") -> pd.DataFrame:
    rows = [(g, f"Gemeenschap {g}", c, joined, "") for g, cs in groups.items() for c in cs]
    return pd.DataFrame(rows, columns=["community_id", "community", "company_id", "joined", "left"])


def test_all_communities_only_when_no_small_community_can_be_subtracted():
    sizes = pd.Series(SIZES | SMALL)
    five, six = list("abcde"), list("fghij") + ["s"]
    # the second community's members of at least k: 5 (s is under k)
    assert set(reported({"A": set(five), "B": set(six)}, sizes, K)) == {"A", "B", ALL}
    # a community of 4: ALL minus A would be it
    assert set(reported({"A": set(five), "B": set("fghi")}, sizes, K)) == {"A"}
    # two small communities of 5 companies together: ALL minus A is both, as big as one
    two = {"A": set(five), "C": {"f", "g"}, "D": {"h", "i", "j"}}
    assert set(reported(two, sizes, K)) == {"A", ALL}


def test_the_numbers_follow_the_rules_and_survive_the_attack(codebook):
    sizes = SIZES | SMALL | {"k": 12, "l": 9, "m": 4}
    scores = {"2019-T0": wave_scores(sizes, 2), "2021-T1": wave_scores(sizes, 3)}
    for frame, wave in zip(scores.values(), scores, strict=True):
        frame["wave"] = wave
    register = members({"A": list("abcdef"), "B": list("ghijkm"), "C": ["l", "s"]})
    only_lt = _only(codebook, "LT")
    no_trajectories = pd.DataFrame(columns=["company_id"])
    numbers = community_numbers("2021-T1", scores, register, no_trajectories, only_lt)
    got = numbers.set_index(["community_id", "table", "row", "statistic"])["value"]
    # B has 5 members of at least k (m has 4 respondents), its mean rests on the shown ones
    assert got[("B", "members", MEMBERS_ROW, "companies_reported")] == 5
    assert set(numbers["community_id"]) == {"A", "B"}  # C too small, and ALL would give it
    shown = shown_companies(scores["2021-T1"], "LT", K).set_index("company_id")
    b = shown.loc[shown.index.isin(list("ghijkm"))]
    assert got[("B", "scales", "LT", "companies")] == len(b)
    assert got[("B", "scales", "LT", "mean")] == pytest.approx(
        np.average(b["mean"], weights=b["n"])
    )
    assert got[("A", "scales", "LT", "change")] == pytest.approx(
        got[("A", "scales", "LT", "mean")] - got[("A", "scales", "LT", "previous_mean")]
    )
    means = {"LT": set(shown.index)}
    assert attack_wave(scores["2021-T1"], means, numbers, register, "2021-T1", K) == {}


def test_all_communities_are_published_with_their_figures_when_allowed(codebook):
    sizes = SIZES | {"k": 12, "l": 9, "m": 7, "n": 8, "o": 6}
    scores = {"2019-T0": wave_scores(sizes, 4).assign(wave="2019-T0")}
    # A and B reported; C and D (5 companies together) only inside ALL
    register = members({"A": list("abcde"), "B": list("fghij"), "C": ["k", "l"], "D": list("mno")})
    numbers = community_numbers(
        "2019-T0", scores, register, pd.DataFrame(columns=["company_id"]), _only(codebook, "LT")
    )
    got = numbers.set_index(["community_id", "table", "row", "statistic"])["value"]
    assert set(numbers["community_id"]) == {"A", "B", ALL}
    assert got[(ALL, "members", MEMBERS_ROW, "companies")] == 15
    shown = shown_companies(scores["2019-T0"], "LT", K).set_index("company_id")
    assert got[(ALL, "scales", "LT", "mean")] == pytest.approx(
        np.average(shown["mean"], weights=shown["n"])
    )
    means = {"LT": set(shown.index)}
    assert attack_wave(scores["2019-T0"], means, numbers, register, "2019-T0", K) == {}


def _only(codebook, scale: str):
    return replace(codebook, scales={scale: codebook.scales[scale]})


def attack_wave(scores, means: dict[str, set], numbers, register, wave, k) -> dict:
    """{scale: isolated groups} over the wave's published figures: the wave's total (its n and
    mean are in the wave report), each company whose mean is published (`means`: per scale),
    each community's pooled figure and the companies outside it, as an intruder who knows the
    membership reads them."""
    waves = list(load_codebook(CODEBOOK).waves)
    groups = {
        c: set(part["company_id"])
        for c, part in members_in(register, wave, waves).groupby("community_id")
    }
    groups[ALL] = set().union(*groups.values()) if groups else set()
    published = numbers.set_index(["community_id", "table", "row", "statistic"])["value"]
    leaks = {}
    for scale, shown in means.items():
        counts = score_counts(scores, scale)
        aggregates = [frozenset(counts)] + [frozenset([c]) for c in shown]
        for community in numbers["community_id"].unique():
            inside = groups[community] & shown
            assert published[(community, "scales", scale, "companies")] == len(inside)
            if not np.isnan(published[(community, "scales", scale, "mean")]):
                aggregates.append(frozenset(inside))
            if not np.isnan(published[(community, "scales", scale, "outside_mean")]):
                aggregates.append(frozenset(shown - inside))
        if found := isolated(aggregates, counts, k):
            leaks[scale] = found
    return leaks


def published_means(folder) -> dict[str, set]:
    """Per scale, the companies whose mean a shareable file gives: company_scores.csv (culture
    scales) and the company reports' numbers (culture and outcome scales)."""
    company = pd.read_csv(folder / "company_scores.csv")
    company = company[~company["suppressed"] & company["mean"].notna()]
    reports = pd.read_csv(folder / "company_report_numbers.csv")
    reports = reports[reports["mean"].notna()]
    both = pd.concat([company[["scale", "company_id"]], reports[["scale", "company_id"]]])
    return {scale: set(part["company_id"]) for scale, part in both.groupby("scale")}


def test_no_published_figure_of_the_demo_isolates_fewer_than_k(pipeline_run):
    settings = pipeline_run.settings
    codebook = load_codebook(settings.codebook_path)
    k = codebook.anonymisation.k
    register = pd.read_parquet(settings.staging_dir / "community_members" / "all.parquet")
    for wave in WAVES:
        folder = settings.processed_dir / wave
        scores = pd.read_parquet(folder / "scale_scores.parquet")
        means = published_means(folder)
        scales = [s for s, scale in codebook.scales.items() if scale.level != "individual"]
        assert set(means) == set(scales)  # culture and outcome scales
        for scale, shown in means.items():  # the communities rest on exactly these
            assert set(shown_companies(scores, scale, k)["company_id"]) == shown
        numbers = pd.read_csv(folder / "community_numbers.csv")
        descriptives = numbers_of(pd.read_csv(folder / "wave_report_numbers.csv"), "descriptives")
        assert descriptives["n"].notna().all()  # the attack uses the wave totals
        assert attack_wave(scores, means, numbers, register, wave, k) == {}
