"""The risk measures against independent computations (issue 21).

- sdcMicro's `measure_risk` without sampling weights (R/measure_risk.R, R/indivRisk.R with
  survey = FALSE): the individual risk is 1/fk, `global_risk_ER` their sum and `global_risk` their
  mean; `freqCalc` counts a missing value as matching any category. sdcMicro does not install
  here, so the cases are computed by hand, within 1e-6.
- pycanon (Sainz-Pardo Díaz and López García, 2022): k-anonymity and distinct l-diversity over
  equivalence classes of exactly equal values, on data without missing values (where the
  pipeline's matching, a missing value matching anything, is the same).
"""

from itertools import combinations
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycanon import anonymity

from pipeline.ingest.readers import read_wave
from pipeline.instrument.codebook import load_codebook
from pipeline.privacy.anonymise import pseudonymised, public_use, scientific_use
from pipeline.privacy.disclosure import Scenario, frequencies, l_diversity, measure_risk
from pipeline.privacy.pseudonyms import DEMO_KEY, PseudonymKey
from pipeline.validate.quality import quality_reasons, read_register, split_quarantine

ROOT = Path(__file__).resolve().parents[2]
RAW = ROOT / "data" / "raw"
CB = load_codebook(RAW / "codebook.yaml")
TOL = 1e-6


def risks(rows, m=None, persons=None, waves=None) -> dict:
    """measure_risk of records (company, q1, q2) of one wave unless `waves` says otherwise."""
    frame = pd.DataFrame(rows, columns=["company", "q1", "q2"]).astype("string")
    person = pd.Series(persons or [pd.NA] * len(frame), dtype="string")
    wave = pd.Series(waves or ["w"] * len(frame), dtype="string")
    scenario = Scenario(2, m, ("q1", "q2"))
    return measure_risk(frame[["q1", "q2"]], frame["company"], person, wave, scenario)


def test_individual_and_global_risk_by_hand():
    # A: (x,1) (x,1) (x,-) (y,2); B: (x,1). fk: (x,1) ~ both (x,1) and (x,-): 3; (x,-) ~ the
    # three x: 3; (y,2) ~ itself: 1; B alone: 1. Risks 1/3, 1/3, 1/3, 1, 1.
    found = risks([("A", "x", "1"), ("A", "x", "1"), ("A", "x", None), ("A", "y", "2"),
                   ("B", "x", "1")])["w"]  # fmt: skip
    assert found.expected_reidentifications == pytest.approx(3.0, abs=TOL)
    assert found.global_risk == pytest.approx(3.0 / 5, abs=TOL)
    assert found.max_individual_risk == pytest.approx(1.0, abs=TOL)
    assert found.records_at_risk == 1  # (y,2) in A, of at least k = 2 records; B is under k


def test_the_risk_of_a_scenario_is_that_of_its_worst_combination():
    rows = [("A", "x", "1"), ("A", "x", "2"), ("A", "y", "1"), ("A", "y", "2")]
    one = risks(rows, m=1)["w"]  # each value is shared by two records: fk 2
    assert one.expected_reidentifications == pytest.approx(2.0, abs=TOL)
    assert one.global_risk == pytest.approx(0.5, abs=TOL)
    both = risks(rows, m=2)["w"]  # each pair is unique: fk 1
    assert both.expected_reidentifications == pytest.approx(4.0, abs=TOL)
    assert both.global_risk == pytest.approx(1.0, abs=TOL) == both.max_individual_risk


def test_linking_a_persons_waves_raises_the_risk_by_hand():
    # w1: p (x,-), q (x,1), r (x,2); p shows q2 = 1 in w2. Unlinked, p matches all three (3),
    # q matches p and q (2), r matches p and r (2). Linked, p's profile q2 = {1} tells p from r:
    # p 2, q 2, r 1.
    rows = [("A", "x", None), ("A", "x", "1"), ("A", "x", "2"), ("A", "x", "1")]
    waves = ["w1", "w1", "w1", "w2"]
    alone = risks(rows, waves=waves)["w1"]
    assert alone.expected_reidentifications == pytest.approx(1 / 3 + 1 / 2 + 1 / 2, abs=TOL)
    linked = risks(rows, persons=["p", "q", "r", "p"], waves=waves)["w1"]
    assert linked.expected_reidentifications == pytest.approx(1 / 2 + 1 / 2 + 1, abs=TOL)
    assert linked.global_risk == pytest.approx(2.0 / 3, abs=TOL)


@st.composite
def complete_microdata(draw):
    """Records of 1-3 companies, 2-4 quasi-identifiers and one sensitive value, none missing."""
    n = draw(st.integers(2, 40))
    q = draw(st.integers(2, 4))
    column = st.lists(st.sampled_from("abc"), min_size=n, max_size=n)
    frame = pd.DataFrame({f"q{j}": draw(column) for j in range(q)})
    frame["company_id"] = draw(st.lists(st.sampled_from(["A", "B", "C"]), min_size=n, max_size=n))
    frame["s"] = draw(st.lists(st.integers(1, 4), min_size=n, max_size=n))
    return frame, [f"q{j}" for j in range(q)], draw(st.sampled_from([1, 2, None]))


@settings(max_examples=60, deadline=None)
@given(complete_microdata())
def test_k_and_l_agree_with_pycanon(data):
    frame, quasi, m = data
    size = len(quasi) if m is None else min(m, len(quasi))
    expected_k = min(
        anonymity.k_anonymity(frame, ["company_id", *combo]) for combo in combinations(quasi, size)
    )
    assert frequencies(frame[quasi], frame["company_id"], quasi, m).min() == expected_k
    expected_l = anonymity.l_diversity(frame, ["company_id", *quasi], ["s"])
    assert l_diversity(frame, quasi, ["s"]) == expected_l


def test_the_demo_release_files_l_diversity_agrees_with_pycanon():
    """On the demo's release files as published: a withheld or missing value is a value of its
    own to pycanon (and to `l_diversity`), the answers to the items the sensitive values."""
    register = read_register(RAW / CB.company_register, CB.company_id)
    validated = {}
    for wave in ("2019-T0", "2021-T1"):
        raw = read_wave(RAW / wave, CB, RAW)
        validated[wave] = split_quarantine(raw, quality_reasons(raw, CB, register))[0]
    restricted = pseudonymised(validated, CB, PseudonymKey(DEMO_KEY, "demo key"))
    scientific, report, _ = scientific_use(restricted, "2021-T1", CB)
    public, public_report, _ = public_use(scientific, CB)
    quasi, items = list(CB.anonymisation.suppression_order), list(CB.items)
    for release, found in ((scientific, report), (public, public_report)):
        filled = release[["company_id", *quasi, *items]].astype("string").fillna("(missing)")
        expected = anonymity.l_diversity(filled, ["company_id", *quasi], items)
        assert found.l_diversity == expected == l_diversity(release, quasi, items)
