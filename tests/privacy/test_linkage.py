"""Panel linkage within company that survives a typo (pipeline/privacy/linkage.py): the rule on
hand-made panels, each case beside its opposite; its use by the anonymisation; and what it
recovers of the typos the demo generator plants, over 100 seeded simulations."""

import numpy as np
import pandas as pd
import pytest
from conftest import CODEBOOK, WAVES, typo_links, whole_tokens

from assets.resources import ALL_WAVES
from pipeline.demo.exports import frame as export_frame
from pipeline.demo.simulation import Params, Simulation
from pipeline.instrument.codebook import load_codebook
from pipeline.privacy.anonymise import pseudonymised, trajectory_exposure
from pipeline.privacy.linkage import OUTCOMES, PAIR_COLUMNS, link_panel
from pipeline.privacy.pseudonyms import PseudonymKey
from pipeline.validate.quality import earlier_submissions, normalised

INSTRUMENT = """\
instrument: tiny
identifiers: {respondent: code, company: org}
waves: {w1: first, w2: second, w3: third}
missing_codes: {-99: unanswered}
response_scales: {five: {min: 1, max: 5}}
scales:
  A: {response_scale: five, items: [A1, A2]}
background:
  sex: {values: [m, f]}
  role: {values: [staff, boss]}
  age: {type: number, bands: [30, 40]}
quality: {test_respondent_codes: [test], test_company_codes: [TEST]}
"""
LINKAGE = "linkage: {consistent: [sex, role, age]}\n"
KEY = PseudonymKey(b"k" * 40, "test")
DEMO = load_codebook(CODEBOOK)


@pytest.fixture
def codebook(tmp_path):
    def load(text: str = INSTRUMENT + LINKAGE):
        path = tmp_path / "codebook.yaml"
        path.write_text(text, encoding="utf-8")
        return load_codebook(path)

    return load


def panel(*records) -> pd.DataFrame:
    """Validated rows from (wave, company, code) or (wave, company, code, sex, role, age);
    background left out is the first value, -99 or None is missing."""
    rows = []
    for record in records:
        wave, org, code, *background = record
        sex, role, age = [*background, 1, 1, 35][:3] if background else (1, 1, 35)
        rows.append({"code": code, "org": org, "wave": wave, "sex": sex, "role": role, "age": age})
    frame = pd.DataFrame(rows).astype({"sex": "float64", "role": "float64", "age": "float64"})
    return frame.assign(A1=3.0, A2=4.0)


def linked(frame, cb) -> list:
    """Per row, the index of the first row of the same person (None for an unlinkable row)."""
    key = link_panel(frame, cb).person
    first = {k: i for i, k in reversed(list(key.items())) if pd.notna(k)}
    return [None if pd.isna(k) else first[k] for k in key]


def test_the_same_code_links_whatever_its_spelling(codebook):
    cb = codebook()
    frame = panel(("w1", "C1", "AB12CD"), ("w2", "C1", " ab12cd"), ("w3", "c1 ", "Ab12Cd "))
    result = link_panel(frame, cb)
    assert result.person.nunique() == 1
    assert list(result.outcome) == ["exact"] * 3


def test_the_same_code_with_a_contradicting_background_is_someone_else(codebook):
    # a typo that hit a colleague's code, or the same code chosen twice (found in simulations)
    cb = codebook()
    frame = panel(
        ("w1", "C1", "AB12CD", 1, 1, 35),
        ("w2", "C1", "AB12CD", 2, 1, 35),  # the other sex: not the w1 person
        ("w3", "C1", "AB12CD", 1, None, 35),  # agrees with w1 where answered: the w1 person
    )
    result = link_panel(frame, cb)
    assert linked(frame, cb) == [0, 1, 0]
    assert list(result.outcome) == ["exact", "ambiguous", "exact"]
    pairs = result.pairs.set_index(["wave", "other_wave"])
    assert pairs.loc[("w1", "w2"), "ambiguous"] == pairs.loc[("w2", "w1"), "ambiguous"] == 1
    assert pairs.loc[("w1", "w3"), "linked_exact"] == 1
    assert linked(frame, codebook(INSTRUMENT)) == [0, 0, 0], "without `consistent`, codes link"


@pytest.mark.parametrize(
    ("typed", "why"),
    [
        ("AB13CD", "a wrong character"),
        ("AB21CD", "two neighbours swapped"),
        ("AB2CD", "a missing character"),
        ("AB122CD", "an extra character"),
    ],
)
def test_one_edit_links_a_code_with_no_exact_match(codebook, typed, why):
    cb = codebook()
    frame = panel(("w1", "C1", "AB12CD"), ("w2", "C1", typed), ("w2", "C1", "XY01ZZ"))
    result = link_panel(frame, cb)
    assert linked(frame, cb) == [0, 0, 2], why
    assert list(result.outcome) == ["corrected", "corrected", "unmatched"]
    # the key is the earliest wave's code: the later typo is what was corrected
    assert result.person[0] == result.person[1] and result.person[0].endswith("ab12cd")


def test_two_edits_do_not_link(codebook):
    cb = codebook()
    frame = panel(("w1", "C1", "AB12CD"), ("w2", "C1", "AB34CD"))
    assert linked(frame, cb) == [0, 1]
    assert list(link_panel(frame, cb).outcome) == ["unmatched", "unmatched"]


def test_several_candidates_are_ambiguous_and_not_linked(codebook):
    cb = codebook()
    # AB12CD has two candidates in w2; in w3, ZZ11ZZ's one candidate has another one too
    frame = panel(
        ("w1", "C1", "AB12CD"),
        ("w2", "C1", "AB13CD"),
        ("w2", "C1", "AB14CD"),
        ("w1", "C2", "ZZ11ZZ"),
        ("w1", "C2", "ZZ11ZX"),
        ("w2", "C2", "ZZ11ZY"),
    )
    result = link_panel(frame, cb)
    assert linked(frame, cb) == [0, 1, 2, 3, 4, 5]
    assert list(result.outcome) == ["ambiguous"] * 6
    pairs = result.pairs.set_index(["wave", "other_wave"])
    assert pairs.loc[("w1", "w2"), "ambiguous"] == 3 and pairs.loc[("w2", "w1"), "ambiguous"] == 3


def test_a_candidate_with_its_own_exact_match_is_somebody_else(codebook):
    cb = codebook()
    # AB13CD is in both waves: a person of its own, never AB12CD's correction
    frame = panel(("w1", "C1", "AB12CD"), ("w1", "C1", "AB13CD"), ("w2", "C1", "AB13CD"))
    assert linked(frame, cb) == [0, 1, 1]
    assert list(link_panel(frame, cb).outcome) == ["unmatched", "exact", "exact"]


def test_a_contradicting_background_blocks_a_correction(codebook):
    cb = codebook()
    other_sex = panel(("w1", "C1", "AB12CD", 1, 1, 35), ("w2", "C1", "AB13CD", 2, 1, 35))
    assert linked(other_sex, cb) == [0, 1]
    other_band = panel(("w1", "C1", "AB12CD", 1, 1, 35), ("w2", "C1", "AB13CD", 1, 1, 41))
    assert linked(other_band, cb) == [0, 1]
    same_band = panel(("w1", "C1", "AB12CD", 1, 1, 31), ("w2", "C1", "AB13CD", 1, 1, 39))
    assert linked(same_band, cb) == [0, 0], "a number is compared by its band"


def test_a_missing_value_never_contradicts_but_a_link_needs_evidence(codebook):
    cb = codebook()
    some = panel(("w1", "C1", "AB12CD", 1, -99, None), ("w2", "C1", "AB13CD", 1, 2, 35))
    assert linked(some, cb) == [0, 0]
    nothing = panel(("w1", "C1", "AB12CD", 1, -99, None), ("w2", "C1", "AB13CD", -99, 2, 35))
    assert linked(nothing, cb) == [0, 1]
    assert list(link_panel(nothing, cb).outcome) == ["ambiguous", "ambiguous"]
    anything = codebook(INSTRUMENT + "linkage: {consistent: [sex, role, age], min_agreeing: 0}\n")
    assert linked(nothing, anything) == [0, 0], "min_agreeing: 0 links on the code alone"
    everything = codebook(INSTRUMENT + "linkage: {consistent: [sex, role, age], min_agreeing: 3}\n")
    assert linked(some, everything) == [0, 1]


def test_codes_link_only_within_their_company(codebook):
    cb = codebook()
    frame = panel(
        ("w1", "C1", "AB12CD"),
        ("w2", "C2", "AB12CD"),
        ("w2", "C2", "AB13CD"),
        ("w1", "C3", "QQ12QQ"),
        ("w2", "C4", "QQ13QQ"),
    )
    assert linked(frame, cb) == [0, 1, 2, 3, 4]
    assert set(link_panel(frame, cb).outcome) == {"unmatched"}


def test_test_codes_and_empty_codes_are_never_linked(codebook):
    cb = codebook()
    frame = panel(
        ("w1", "C1", "test"),
        ("w2", "C1", "tesT "),
        ("w2", "C1", "tent"),
        ("w1", "C1", ""),
        ("w2", "C1", None),
        ("w1", "TEST", "AB12CD"),
        ("w2", "test", "AB12CD"),
    )
    result = link_panel(frame, cb)
    assert linked(frame, cb) == [None, None, 2, None, None, None, None]
    assert list(result.outcome) == ["unlinkable"] * 2 + ["unmatched"] + ["unlinkable"] * 4
    assert result.pairs.set_index(["wave", "other_wave"]).loc[("w2", "w1"), "unlinkable"] == 3


def test_a_correction_never_merges_two_persons_of_one_wave(codebook):
    cb = codebook()
    # AB12CD and AB13CD are both in w3: two persons, so w2's AB13CD is not w1's AB12CD
    frame = panel(
        ("w1", "C1", "AB12CD"),
        ("w2", "C1", "AB13CD"),
        ("w3", "C1", "AB12CD"),
        ("w3", "C1", "AB13CD"),
    )
    result = link_panel(frame, cb)
    assert linked(frame, cb) == [0, 1, 0, 1]
    pairs = result.pairs.set_index(["wave", "other_wave"])
    assert pairs.loc[("w2", "w1"), "ambiguous"] == 1 and pairs.loc[("w2", "w1"), "unmatched"] == 0


def test_a_person_is_a_chain_of_links_keyed_by_the_first_wave(codebook):
    # waves in the codebook's order, not by name: the first wave is "later"'s
    text = INSTRUMENT.replace("{w1: first, w2: second, w3: third}", "{z: first, a: second, m: 3}")
    cb = codebook(text + LINKAGE)
    frame = panel(("a", "C1", "AB13CD"), ("z", "C1", "AB12CD"), ("m", "C1", "AB21CD"))
    result = link_panel(frame, cb)
    assert result.person.nunique() == 1 and result.person[0].endswith("ab12cd")
    pairs = result.pairs.set_index(["wave", "other_wave"])
    # a and m are linked through z, with codes that differ by two edits
    assert pairs.loc[("a", "m"), "linked_corrected"] == 1
    assert list(result.pairs["wave"].drop_duplicates()) == ["z", "a", "m"]


def test_without_a_linkage_section_only_exact_codes_link(codebook):
    frame = panel(("w1", "C1", "AB12CD"), ("w2", "C1", "AB13CD"), ("w2", "C1", "XY01ZZ"))
    for text, note in [
        (INSTRUMENT, "the codebook has no linkage section"),
        (INSTRUMENT + "linkage: {max_edits: 0}\n", "linkage.max_edits is 0"),
    ]:
        result = link_panel(frame, codebook(text))
        assert linked(frame, codebook(text)) == [0, 1, 2]
        assert set(result.pairs["note"]) == {f"exact codes only: {note}"}
    assert set(link_panel(frame, codebook()).pairs["note"]) == {""}


def test_the_report_counts_every_row_per_pair_of_waves_and_holds_no_code(codebook):
    cb = codebook()
    frame = panel(
        ("w1", "C1", "AB12CD"),
        ("w1", "C1", "EF34GH"),
        ("w1", "C1", "test"),
        ("w2", "C1", "AB12CD"),
        ("w2", "C1", "EF34HG"),
        ("w2", "C1", "IJ56KL"),
        ("w3", "C1", "EF34GH"),
    )
    result = link_panel(frame, cb)
    pairs = result.pairs
    assert list(pairs.columns) == list(PAIR_COLUMNS)
    assert len(pairs) == 6  # every ordered pair of the three waves
    counts = pairs[["linked_exact", "linked_corrected", "ambiguous", "unmatched", "unlinkable"]]
    assert (counts.sum(axis=1) == pairs["rows"]).all()
    assert dict(zip(pairs["wave"], pairs["rows"], strict=False)) == {"w1": 3, "w2": 3, "w3": 1}
    w1_w2 = pairs.set_index(["wave", "other_wave"]).loc[("w1", "w2")]
    assert (w1_w2["linked_exact"], w1_w2["linked_corrected"], w1_w2["unlinkable"]) == (1, 1, 1)
    text = pairs.to_csv().casefold()
    assert not [code for code in frame["code"] if len(code) > 4 and code.casefold() in text]
    assert set(result.outcome) <= set(OUTCOMES)


def test_one_wave_has_nothing_to_link_and_says_so(codebook):
    frame = panel(("w1", "C1", "AB12CD"), ("w1", "C1", "AB13CD"))
    result = link_panel(frame, codebook())
    assert list(result.outcome) == ["unmatched", "unmatched"]
    [row] = result.pairs.to_dict("records")
    assert (row["wave"], row["other_wave"], row["rows"]) == ("w1", "", 2)
    assert pd.isna(row["linked_exact"]) and pd.isna(row["unmatched"])
    assert row["note"] == "not estimable: needs 2 waves (1 in the data)"


def test_pseudonymisation_gives_a_corrected_code_its_matchs_pseudonym(codebook):
    cb = codebook()
    frame = panel(
        ("w1", "C1", "AB12CD"),
        ("w1", "C2", "AB12CD"),
        ("w2", "C1", "AB13CD"),
        ("w2", "C2", "AB12CD"),
    )
    validated = {wave: rows.reset_index(drop=True) for wave, rows in frame.groupby("wave")}
    first, second = pseudonymised(validated, cb, KEY).values()
    assert list(first["person_id"]) == list(second["person_id"])
    assert first["person_id"].nunique() == 2, "the same code at two companies: two persons"
    assert np.all(first["person_id"].str.fullmatch(r"p_[0-9a-f]{16}"))


def test_trajectory_exposure_uses_the_shareable_pseudonyms_and_a_corrected_code(codebook):
    register = (
        "registers: {trajectories: {file: t.csv, participation: {variable: role, value: boss}, "
        "participants: p.csv}}\n"
    )
    stable = "linkage: {consistent: [sex, age]}\n"  # the role changes: taking part
    cb = codebook(INSTRUMENT + stable + register)
    frame = panel(
        ("w1", "C1", "AB12CD"),
        ("w2", "C1", "AB13CD"),  # the same person, mistyped: listed under the typo
        ("w1", "C1", "XY01ZZ"),
        ("w2", "C1", "XY01ZZ", 1, 2, 35),  # says so in the survey, in w2 only
        ("w1", "C2", "QQ05RR"),
    )
    validated = {wave: rows.reset_index(drop=True) for wave, rows in frame.groupby("wave")}
    trajectories = pd.DataFrame(
        {"company": [" c1"], "trajectory_id": ["T1"], "start": pd.to_datetime(["2021-01-01"])}
    )
    listed = pd.DataFrame({"company": ["C1"], "person": ["ab13cd "], "trajectory_id": ["T1"]})
    companies, persons = trajectory_exposure(validated, trajectories, listed, cb, KEY)
    shared = pd.concat(pseudonymised(validated, cb, KEY).values())
    assert companies.columns.tolist() == ["company_id", "trajectory_id", "start"]
    assert companies["company_id"].tolist() == [shared["company_id"].iat[0]]
    assert set(persons["person_id"]) == set(shared["person_id"].iloc[[0, 1]])
    assert len(persons) == 2, "the typo and its match are one person"
    shown = companies.to_csv() + persons.to_csv()
    assert not whole_tokens(["AB12CD", "AB13CD", "XY01ZZ", "C1", "c1"]).search(shown)
    survey_only = codebook(INSTRUMENT + stable + register.replace(", participants: p.csv", ""))
    _, only = trajectory_exposure(validated, trajectories, pd.DataFrame(), survey_only, KEY)
    assert set(only["person_id"]) == set(shared["person_id"].iloc[[1]])
    unknown = codebook(INSTRUMENT + "registers: {trajectories: {file: t.csv}}\n")
    assert not unknown.trajectories.knows_participants
    assert trajectory_exposure(validated, trajectories, listed, unknown, KEY)[1].empty


# The demo's parameters with a quarter of its companies (as large as the demo's): 100 seeds in
# about 20 s. With Params() itself, 100 seeds take about 3 minutes (docs/auditor.md has both).
SIMULATED = Params(companies=10, late_joiners=1)
SEEDS = range(100)


def simulated_panel(seed: int, params: Params = SIMULATED) -> pd.DataFrame:
    """The rows a validation keeps of one simulated scan (the planted problems out, and of two
    submissions with one company and code the last), with the truth: `person`, and `typo`
    when the code was mistyped (not just typed in another case or with spaces)."""
    sim = Simulation(DEMO, params, seed)
    waves = []
    for w, wave in enumerate(sim.waves):
        rows = sim.wave(w)
        median = float(np.median([row.duration for row in rows]))
        kept = [row for row in rows if not sim.problems(row, w, median)]
        frame = export_frame(kept, DEMO).assign(
            wave=wave.name,
            person=[row.person.uid for row in kept],
            typo=[row.resp_code.strip().upper() != row.person.resp_code for row in kept],
        )
        waves.append(frame[~earlier_submissions(frame, DEMO, pd.Series(True, frame.index))])
    return pd.concat(waves, ignore_index=True)


def test_the_rule_recovers_the_planted_typos_without_a_false_link():
    links, false_links, corrected = [], 0, 0
    for seed in SEEDS:
        frame = simulated_panel(seed)
        result = link_panel(frame, DEMO)
        persons = frame.assign(key=result.person).groupby("key")["person"].nunique()
        false_links += int((persons > 1).sum())
        corrected += int((result.outcome == "corrected").sum())
        links.append(typo_links(frame, result.person, list(DEMO.linkage.consistent)))
    links = pd.concat(links, ignore_index=True)
    assert len(links) > 500 and corrected > len(links), "the simulations plant enough typos"
    assert false_links == 0, "no key joins two persons"
    with_evidence = links[links["evidence"]]
    assert with_evidence["recovered"].mean() >= 0.99
    # A mistyped row with no background answered (a break-off before the background) has
    # nothing to confirm a correction, and linking on the code alone joins two persons in about
    # one of three such corrections: the rule leaves it unlinked, so about 5% stay lost.
    assert 0.93 <= links["recovered"].mean() < with_evidence["recovered"].mean()


def test_the_demo_runs_linkage_report_counts_every_row_and_names_no_code(pipeline_run):
    settings, results, _ = pipeline_run
    table = pd.read_csv(
        settings.processed_dir / ALL_WAVES / "linkage.csv", keep_default_na=False
    ).set_index(["wave", "other_wave"])
    validated = {
        wave: pd.read_parquet(settings.staging_dir / "validated_responses" / f"{wave}.parquet")
        for wave in WAVES
    }
    assert sorted(table.index) == sorted((w, o) for w in WAVES for o in WAVES if w != o)
    counts = ["linked_exact", "linked_corrected", "ambiguous", "unmatched", "unlinkable"]
    assert (table[counts].sum(axis=1) == table["rows"]).all()
    for (wave, other), row in table.iterrows():
        assert row["rows"] == len(validated[wave])
        back = table.loc[(other, wave)]  # a link joins one row of each wave
        assert (row["linked_exact"], row["linked_corrected"]) == (
            back["linked_exact"],
            back["linked_corrected"],
        )
    assert table["linked_exact"].min() > 200 and table["linked_corrected"].sum() > 10
    assert (table["note"] == "").all()
    [event] = [
        e
        for e in results[ALL_WAVES].get_asset_materialization_events()
        if e.asset_key.to_user_string() == "panel_linkage"
    ]
    metadata = event.step_materialization_data.materialization.metadata
    assert {name: metadata[name].value for name in counts} == table[counts].sum().to_dict()
    codes = {
        form
        for rows in validated.values()
        for code in normalised(rows[DEMO.respondent_id]).dropna()
        for form in (code, code.upper())
        if len(code) >= 3
    }
    assert len(codes) > 1000
    pattern = whole_tokens(codes)
    written = (settings.processed_dir / ALL_WAVES / "linkage.csv").read_text()
    assert not pattern.search(written + repr(metadata))
    assert pattern.search(f"a leak: {sorted(codes)[0]}."), "the scan can fail"
