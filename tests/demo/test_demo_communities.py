"""The demo's learning communities (registers.communities): the register and partners list as the
codebook names them, members drawn so that the trajectory and community effects do not confound,
a draw of their own that leaves every non-member's row as it is, and the expected differences on
the observed scales in truth.json.

The demo's files are read as committed (tests/demo/test_demo.py checks that they are what the
generator writes); the rest simulates without writing exports, or writes a small scan, to stay
fast. The expected differences were checked once against a Monte Carlo of the item model (200,000
draws per scale and wave: within 0.001), not here.
"""

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import CODEBOOK, DEMO_RAW

from pipeline.demo.simulation import MIN_REPORTED_MEMBERS, Params, Row, Simulation
from pipeline.demo.truth import community_truth, write_community_register
from pipeline.demo.write import DEFAULT_SEED, write_demo
from pipeline.instrument.codebook import Codebook, load_codebook

CB = load_codebook(CODEBOOK)
SPEC = CB.communities
WAVES = list(CB.waves)
SIZES = sorted(Params().community_sizes)
SMALL = Params(companies=20, late_joiners=2, community_sizes=(6, 5, 3))  # a quick scan with them


def edited_codebook(folder: Path, edit: Callable[[dict], None]) -> Codebook:
    """The demo codebook with `edit` applied to its YAML, written to folder/codebook.yaml."""
    raw = yaml.safe_load(CODEBOOK.read_text(encoding="utf-8"))
    edit(raw)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "codebook.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return load_codebook(path)


def undeclared(raw: dict) -> None:
    del raw["registers"]["communities"]


def stratum(sim: Simulation, company) -> int | None:
    """The first wave on or after the company's trajectory start (None: it runs none)."""
    return next((w for w in range(len(sim.waves)) if sim.after_start(company, w)), None)


@pytest.fixture(scope="module")
def register() -> pd.DataFrame:
    return pd.read_csv(DEMO_RAW / SPEC.file, dtype=str, keep_default_na=False)


@pytest.fixture(scope="module")
def truth() -> dict:
    return json.loads((DEMO_RAW / "_demo_truth" / "truth.json").read_text(encoding="utf-8"))


# --- the register ----------------------------------------------------------------------------


def test_register_lists_four_exclusive_communities_in_codebook_waves(register):
    assert register.columns.tolist() == [
        "community_id",
        "community",
        CB.company_id,
        "joined",
        "left",
    ]
    sizes = register.groupby("community_id").size()
    assert sorted(sizes) == SIZES == [3, 6, 7, 10]
    assert (sizes < MIN_REPORTED_MEMBERS).sum() == 1, "one too small to report"
    assert "all" not in set(register["community_id"])
    names = register.groupby("community_id")["community"]
    assert (names.nunique() == 1).all() and names.first().is_unique
    assert register[CB.company_id].is_unique, "exclusive: no company in two communities"
    assert set(register["joined"]) == set(WAVES[:2]) and set(register["left"]) == {"", WAVES[2]}
    joined = register.groupby("community_id")["joined"].agg(set)
    assert joined.tolist().count({WAVES[1]}) == 1, "one community joins at the second wave"
    assert sum(j == {WAVES[0]} for j in joined) == 3
    leaver = register[register["left"] != ""]
    assert len(leaver) == 1 and sizes[leaver["community_id"].iloc[0]] == max(SIZES)
    companies = pd.read_csv(DEMO_RAW / "company_register.csv", dtype=str)
    first_wave = companies.set_index("company_code")["joined_wave"]
    assert (first_wave[register[CB.company_id]] == WAVES[0]).all(), "present from the first wave"


def test_partners_are_one_to_three_of_the_codebooks_kinds(register):
    partners = pd.read_csv(DEMO_RAW / SPEC.partners, dtype=str, keep_default_na=False)
    assert partners.columns.tolist() == ["community_id", "kind", "partner"]
    assert set(partners["community_id"]) == set(register["community_id"])
    assert partners.groupby("community_id").size().between(1, 3).all()
    assert set(partners["kind"]) <= set(SPEC.partner_kinds)
    assert not partners.duplicated(["community_id", "kind"]).any()
    assert (partners["partner"].str.len() > 5).all()


def test_large_communities_have_companies_that_reliably_have_k_respondents(register, truth):
    sim = Simulation(CB, Params(), DEFAULT_SEED)
    large = [c for c in sim.communities if len(c.members) >= MIN_REPORTED_MEMBERS]
    assert len(large) == 3 and all(sim.reliable(m.company) for c in large for m in c.members)
    assert min(m.company.size for c in large for m in c.members) > Params().size_range[0]
    stated = truth["communities"]["communities"]
    assert sorted(c["size"] for c in stated.values()) == SIZES
    assert {k: c["companies"] for k, c in stated.items()} == {
        k: group[CB.company_id].tolist() for k, group in register.groupby("community_id")
    }
    reportable = {k: c["reportable_by_design"] for k, c in stated.items()}
    assert sorted(reportable.values()) == [False, True, True, True]
    late = register.loc[register["joined"] == WAVES[1], "community_id"].iloc[0]
    assert stated[late]["members_per_wave"][WAVES[0]] == 0
    assert stated[late]["reportable_waves"] == WAVES[1:]


def test_members_have_trajectories_as_often_as_the_other_companies(register, truth):
    """As often, and starting as often before each wave, as the companies present from the
    first wave (those that can run one)."""
    companies = pd.read_csv(DEMO_RAW / "company_register.csv", dtype=str)
    first_wave = companies.loc[companies["joined_wave"] == WAVES[0], "company_code"]
    trajectories = set(pd.read_csv(DEMO_RAW / CB.trajectories.file, dtype=str)["company_code"])
    members = register[CB.company_id]
    share, overall = members.isin(trajectories).mean(), first_wave.isin(trajectories).mean()
    assert abs(share - overall) < 0.03 and 0.2 < overall < 0.5
    stated = truth["communities"]["trajectory_share"]
    assert (stated["members"], stated["companies_from_first_wave"]) == (
        round(share, 4),
        round(overall, 4),
    )
    shares = []  # per draw and stratum: among the members, and among the companies
    for seed in range(20):
        sim = Simulation(CB, Params(), seed)
        first = [c for c in sim.companies if c.joined == 0]
        members = [m.company for c in sim.communities for m in c.members]
        assert len({c.code for c in members}) == len(members) == sum(SIZES)
        for w in (None, *range(1, len(WAVES))):
            share = np.mean([stratum(sim, c) == w for c in first])
            shares.append((np.mean([stratum(sim, c) == w for c in members]), share))
            for community in sim.communities:
                count = sum(stratum(sim, m.company) == w for m in community.members)
                assert abs(count - share * len(community.members)) < 2, (seed, w)
    among_members, among_companies = np.array(shares).T
    assert np.abs(among_members - among_companies).max() < 0.1, "as far as the reliable go"
    assert np.abs(among_members - among_companies).mean() < 0.02


# --- what the draw leaves alone --------------------------------------------------------------


def row_fields(row: Row) -> dict:
    """Everything of a row but its answers and the Person object (its uid instead)."""
    fields = {k: v for k, v in vars(row).items() if k not in ("person", "items")}
    return fields | {"person": row.person.uid if row.person else ""}


def rows(sim: Simulation) -> list[Row]:
    """Every wave's rows, in order."""
    return [row for w in range(len(sim.waves)) for row in sim.wave(w)]


def test_the_planted_draw_leaves_non_member_rows_as_they_are(tmp_path):
    without = Simulation(edited_codebook(tmp_path, undeclared), Params(), DEFAULT_SEED)
    sim = Simulation(CB, Params(), DEFAULT_SEED)
    members, changed = 0, 0
    for a, b in zip(rows(sim), rows(without), strict=True):
        assert row_fields(a) == row_fields(b)
        same = np.array_equal(a.items, b.items, equal_nan=True)
        if a.person is not None and a.person.company.community is not None:
            members, changed = members + 1, changed + (not same)
        else:
            assert same, "a non-member's answers"
    assert members > 1000 and changed > 0.8 * members, "only the members' answers move"


def test_without_a_declaration_nothing_is_planted_or_written(tmp_path):
    data = tmp_path / "data"
    codebook = edited_codebook(data / "raw", undeclared)
    summary = write_demo(data, params=SMALL)
    assert not {SPEC.file, SPEC.partners} & set(summary.files)
    assert not (data / "raw" / SPEC.file).exists() and not (data / "raw" / SPEC.partners).exists()
    truth = json.loads((data / "raw" / "_demo_truth" / "truth.json").read_text(encoding="utf-8"))
    assert truth["communities"]["declared"] is False and truth["communities"]["communities"] == {}
    assert truth["communities"]["expected_observed_level"] == {}
    # undeclared, the simulation is the declared one with no community effects at all
    sim = Simulation(codebook, SMALL, 3)
    assert sim.communities == [] and all(c.community is None for c in sim.companies)
    zero = replace(
        SMALL,
        community_culture_level=0.0,
        community_culture_growth=0.0,
        community_outcome_growth=0.0,
    )
    declared = Simulation(CB, zero, 3)
    assert declared.communities, "the small scan has communities when declared"
    for a, b in zip(rows(sim), rows(declared), strict=True):
        assert row_fields(a) == row_fields(b)
        assert np.array_equal(a.items, b.items, equal_nan=True)


def test_a_scan_too_small_for_them_writes_the_header_only(tmp_path):
    sim = Simulation(CB, Params(companies=10, late_joiners=1), DEFAULT_SEED)
    assert sim.communities == []
    assert write_community_register(sim, tmp_path) == (SPEC.file, SPEC.partners)
    assert (tmp_path / SPEC.file).read_text(encoding="utf-8").splitlines() == [
        f"community_id,community,{CB.company_id},joined,left"
    ]
    assert community_truth(sim)["expected_observed_growth"] == {}


def test_one_wave_writes_the_register_without_growth(tmp_path):
    def first_wave_only(raw: dict) -> None:
        raw["waves"] = {WAVES[0]: raw["waves"][WAVES[0]]}

    sim = Simulation(edited_codebook(tmp_path, first_wave_only), Params(), DEFAULT_SEED)
    write_community_register(sim, tmp_path)
    register = pd.read_csv(tmp_path / SPEC.file, dtype=str, keep_default_na=False)
    assert sorted(register.groupby("community_id").size()) == SIZES
    assert set(register["joined"]) == {WAVES[0]} and set(register["left"]) == {""}
    truth = community_truth(sim)
    assert truth["expected_observed_growth"] == {}
    assert list(truth["expected_observed_difference"]) == [WAVES[0]]
    assert all(0.08 < v < 0.2 for v in truth["expected_observed_level"].values())


# --- the truth -------------------------------------------------------------------------------


def test_truth_states_the_planted_level_and_growth_on_the_observed_scales(truth):
    stated, p = truth["communities"], Params()
    assert stated["declared"] is True and stated["member_companies"] == sum(SIZES)
    assert stated["latent_effect_sd"] == {
        "culture_level": p.community_culture_level,
        "culture_growth_per_wave": p.community_culture_growth,
        "outcome_growth_per_wave": p.community_outcome_growth,
    }
    levels = {s.name: s.level for s in CB.scales.values() if s.level != "individual"}
    culture = [name for name, level in levels.items() if level == "culture"]
    assert set(stated["expected_observed_level"]) == set(culture)
    assert set(stated["expected_observed_growth"]) == set(levels)
    differences = stated["expected_observed_difference"]
    assert list(differences) == WAVES
    for name, level in levels.items():
        over_waves = [differences[w][name] for w in WAVES]
        assert over_waves == sorted(over_waves) and over_waves[-1] > 0.1, name
        growth = stated["expected_observed_growth"][name]
        assert growth == pytest.approx((over_waves[-1] - over_waves[0]) / 2, abs=2e-4), name
        if level == "culture":
            assert 0.08 < over_waves[0] == stated["expected_observed_level"][name] < 0.2, name
            assert 0.05 < growth < 0.12, name
        else:
            assert over_waves[0] == 0.0 and 0.03 < growth < 0.1, name
