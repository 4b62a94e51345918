import json
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import linked_attack
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.ingest.readers import read_wave
from pipeline.instrument.codebook import load_codebook
from pipeline.privacy.disclosure import (
    SUPPRESSED,
    Scenario,
    anonymise_quasi_identifiers,
    background_labels,
    frequencies,
    linked_exposure,
    protect_panel,
)
from pipeline.privacy.pseudonyms import normalise

ROOT = Path(__file__).resolve().parents[2]
CODEBOOK = load_codebook(ROOT / "data" / "raw" / "codebook.yaml")
NA = None


S = SUPPRESSED
TODAY = Scenario(  # as the pipeline protected before intruder scenarios: all at once, k 5
    CODEBOOK.anonymisation.k, None, CODEBOOK.anonymisation.suppression_order
)


def scenario(k: int, order, m: int | None = None) -> Scenario:
    return Scenario(k, m, tuple(order))


def blank(frame: pd.DataFrame) -> pd.DataFrame:
    """What an intruder reads: a withheld value as missing."""
    return frame.replace(SUPPRESSED, pd.NA)


def strings(rows: list[tuple], columns: list[str], index=None) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=columns, index=index).astype("string")


def fk_by_loop(
    frame: pd.DataFrame, company: pd.Series, columns: list[str], m: int | None = None
) -> list[int]:
    """The oracle: compare every pair of records of a company; missing (and withheld) matches
    anything; the smallest count over the combinations of m columns (None: all)."""
    if m is not None and m < len(columns):
        per = [fk_by_loop(frame, company, list(c)) for c in combinations(columns, m)]
        return [min(counts) for counts in zip(*per, strict=True)]
    rows = [[None if pd.isna(v) or v == SUPPRESSED else v for v in row]
            for row in frame[columns].itertuples(False)]  # fmt: skip
    firms = [None if pd.isna(c) else c for c in company]
    by_company: dict = {}
    for i, firm in enumerate(firms):
        by_company.setdefault(firm, []).append(i)
    fk = [0] * len(rows)
    for members in by_company.values():
        for i in members:
            fk[i] = sum(
                all(a is None or b is None or a == b for a, b in zip(rows[i], rows[j], strict=True))
                for j in members
            )
    return fk


# --- background labels ---------------------------------------------------------------------------


def test_background_labels_map_codes_generalise_and_blank_missing_codes():
    codes = pd.DataFrame(
        {name: [1.0, 9.0, -99.0, np.nan] for name in CODEBOOK.background}, index=[4, 5, 6, 7]
    )
    codes["age_band"] = [1.0, 3.0, 5.0, 9.0]
    codes["education"] = [4.0, 5.0, 3.0, np.nan]
    codes["company_code"] = "C001"
    labels = background_labels(codes, CODEBOOK)
    assert list(labels.columns) == list(CODEBOOK.background)
    assert list(labels.index) == [4, 5, 6, 7]
    assert (labels.dtypes == "string").all()
    assert labels["age_band"].tolist() == ["<35", "35-44", "45+", pd.NA]
    assert labels["education"].tolist() == ["hbo/wo", "hbo/wo", "mbo 3-4", pd.NA]
    assert labels["tenure_band"].tolist() == ["<1", pd.NA, pd.NA, pd.NA]


def test_background_labels_refuse_an_unknown_code():
    codes = pd.DataFrame({name: [1.0] for name in CODEBOOK.background})
    codes["leader"] = [3.0]
    with pytest.raises(ValueError, match=r"leader: codes \[3.0\]"):
        background_labels(codes, CODEBOOK)


# --- frequencies by hand -------------------------------------------------------------------------


def test_frequencies_treat_missing_as_a_wildcard_both_ways_within_company():
    frame = strings(
        [("a", "x"), ("a", NA), ("b", "x"), (NA, NA), ("a", "x")], ["q1", "q2"], index=list("vwxyz")
    )
    company = pd.Series(["A", "A", "A", "A", "B"], index=frame.index)
    # (a,x) ~ (a,-), (-,-) | (a,-) ~ (a,x), (-,-) | (b,x) ~ (-,-) | (-,-) ~ all | alone in B
    expected = [3, 3, 2, 4, 1]
    fk = frequencies(frame, company, ["q1", "q2"])
    assert fk.tolist() == expected == fk_by_loop(frame, company, ["q1", "q2"])
    assert list(fk.index) == list("vwxyz")


def test_frequencies_need_aligned_company():
    frame = strings([("a",), ("b",)], ["q1"])
    with pytest.raises(ValueError, match="same index"):
        frequencies(frame, pd.Series(["A", "A"], index=[5, 6]), ["q1"])


# --- local suppression by hand -------------------------------------------------------------------


def test_local_suppression_follows_smallest_fk_and_the_suppression_order():
    # Columns in another order than the suppression order [g, a, d]; k = 2, all at once.
    background = strings(
        [
            ("x", "1", "m", "keep"),  # fk 2
            ("x", "1", "m", NA),  # fk 2
            ("x", "2", "v", "keep"),  # fk 1: first at risk
            ("y", "3", "m", "keep"),  # fk 1
            ("x", "1", "m", "keep"),  # company B: 1 record, under k
        ],
        ["d", "a", "g", "note"],
    )
    company = pd.Series(["A", "A", "A", "A", "B"])
    # Row 2: withholding g, a or d alone leaves it at 1: the least important, g, goes. Then a
    # lifts it to 3 (d = x: rows 0, 1, 2): a goes.
    # Row 3: g -> (a, d) = (3, y) and a -> (g, d) = (m, y) leave it at 1, d -> (g, a) = (m, 3)
    # matches row 2 too (both withheld there): 2. So only d goes, the least important that is
    # enough.
    # Row 4: alone in B, so all its quasi-identifiers go at once.
    expected = strings(
        [
            ("x", "1", "m", "keep"),
            ("x", "1", "m", NA),
            ("x", S, S, "keep"),
            (S, "3", "m", "keep"),
            (S, S, S, "keep"),
        ],
        ["d", "a", "g", "note"],
    )
    result, report = anonymise_quasi_identifiers(background, company, scenario(2, ["g", "a", "d"]))
    pd.testing.assert_frame_equal(result, expected)
    assert report.suppressed == {"g": 2, "a": 2, "d": 2}
    assert report.quasi_identifiers == ("g", "a", "d")
    # at risk: rows 2 and 3 of A; B's one record is a company under k, counted apart
    assert (report.records, report.at_risk_before, report.at_risk_after) == (5, 2, 0)
    assert report.k_reached and report.small_companies == 1
    # fk before: 2, 2, 1, 1 in A and 1 in B; after: 3, 3, 4, 2 and 1 (sdcMicro: risk 1/fk)
    assert report.risk_before.expected_reidentifications == pytest.approx(4.0)
    assert report.risk_after.max_individual_risk == 1.0
    assert report.risk_after.expected_reidentifications == pytest.approx(
        1 / 3 + 1 / 3 + 1 / 4 + 1 / 2 + 1
    )
    assert report.risk_after.global_risk == pytest.approx((1 / 3 + 1 / 3 + 1 / 4 + 1 / 2 + 1) / 5)
    json.dumps(report.as_dict())


def test_a_pair_scenario_withholds_only_what_makes_a_pair_rare():
    """m = 2: every pair of (g, d, f) is shared by k = 2 records of the company, which costs
    fewer withheld values than all three at once, and the least important variable (g) loses
    most."""
    background = strings(
        [
            ("m", "x", "1"),
            ("v", "x", "1"),
            ("m", "y", "2"),
            ("v", "x", "2"),
        ],
        ["g", "d", "f"],
    )
    company = pd.Series(["A"] * 4)
    order = ["g", "d", "f"]
    # pairs: (g,d): m-x 1, v-x 2, m-y 1, v-x 2 -> rows 0 and 2 under 2; (g,f): m1 1, v1 1, m2 1,
    # v2 1 -> every row; (d,f): x1 2, x1 2, y2 1, x2 1 -> rows 2 and 3.
    fk = frequencies(background, company, order, m=2)
    assert fk.tolist() == [1, 1, 1, 1] == fk_by_loop(background, company, order, m=2)
    result, report = anonymise_quasi_identifiers(background, company, scenario(2, order, m=2))
    # Row 0 first (fk 1, first in row order), worst pair (g,d): withholding g lifts it to 2
    # (d = x: rows 0, 1, 3), so g goes, the least important that is enough.
    assert result.loc[0, "g"] == SUPPRESSED and result.loc[0, "d"] == "x"
    after = fk_by_loop(result, company, order, m=2)
    assert min(after) >= 2 and report.k_reached
    assert report.suppressed["f"] <= report.suppressed["g"]
    assert result.eq(SUPPRESSED).sum().sum() == sum(report.suppressed.values())
    everything, _ = anonymise_quasi_identifiers(background, company, scenario(2, order))
    assert everything.eq(SUPPRESSED).sum().sum() >= sum(report.suppressed.values())


def test_nothing_changes_when_k_already_holds():
    background = strings([("a", "x")] * 3 + [(NA, "y")] * 2, ["q1", "q2"])
    company = pd.Series(["A"] * 5)
    result, report = anonymise_quasi_identifiers(background, company, scenario(2, ["q1", "q2"]))
    pd.testing.assert_frame_equal(result, background)
    assert report.suppressed == {"q1": 0, "q2": 0}
    assert report.at_risk_before == report.at_risk_after == 0
    assert report.risk_after.max_individual_risk == 0.5


def test_no_records():
    background = strings([], ["q1"])
    result, report = anonymise_quasi_identifiers(
        background, pd.Series([], dtype="string"), scenario(5, ["q1"])
    )
    assert result.empty and report.records == 0 and report.k_reached
    assert report.risk_after.max_individual_risk == report.risk_after.global_risk == 0.0


# --- properties ----------------------------------------------------------------------------------


@st.composite
def microdata(draw):
    """A few companies of 1-40 records, 3-5 quasi-identifiers of 2-5 categories, some missing."""
    categories = draw(st.lists(st.integers(2, 5), min_size=3, max_size=5))
    names = [f"q{j}" for j in range(len(categories))]
    sizes = draw(st.lists(st.integers(1, 40), min_size=1, max_size=4))
    firms = draw(
        st.permutations(
            [f for f, n in zip(["A", "B", "C", NA], sizes, strict=False) for _ in range(n)]
        )
    )
    value = [st.integers(0, m).map(lambda v: None if v == 0 else f"v{v}") for m in categories]
    rows = draw(
        st.lists(
            st.tuples(*value, st.sampled_from(["x", "y", NA])),
            min_size=len(firms),
            max_size=len(firms),
        )
    )
    index = pd.Index(draw(st.permutations(range(len(firms))))) * 3
    background = strings(rows, [*names, "note"], index=index)
    company = pd.Series(firms, index=index, dtype="string")
    k = draw(st.integers(2, 5))
    m = draw(st.sampled_from([1, 2, 3, None]))
    return background, company, k, draw(st.permutations(names)), m


@settings(max_examples=150, deadline=None)
@given(microdata())
def test_local_suppression_reaches_k_and_only_withholds_quasi_identifiers(data):
    background, company, k, order, m = data
    result, report = anonymise_quasi_identifiers(background, company, scenario(k, order, m))

    size = company.map(company.value_counts(dropna=False)).fillna(company.isna().sum())
    large = (size >= k).to_numpy()
    fk = np.array(fk_by_loop(result, company, order, m))
    assert (fk[large] >= k).all()
    shown = result[order].notna() & result[order].ne(SUPPRESSED).fillna(True)
    assert not shown[~large].any().any()

    assert result.index.equals(background.index)
    assert list(result.columns) == list(background.columns)
    pd.testing.assert_series_equal(result["note"], background["note"])
    assert (result[order][shown] == background[order][shown]).all().all()
    # withheld only where there was a value; a missing value stays missing
    changed = result[order].eq(SUPPRESSED).fillna(False)
    assert (background[order].notna() | ~changed).all().all()
    assert (result[order].isna() | background[order].notna()).all().all()

    fk_before = np.array(fk_by_loop(background, company, order, m))
    assert report.suppressed == {name: int(changed[name].sum()) for name in order}
    assert report.records == len(background)
    assert report.at_risk_before == int(((fk_before < k) & large).sum())
    assert report.at_risk_after == 0 and report.k_reached
    assert report.small_companies == int((company.value_counts(dropna=False) < k).sum())
    assert report.risk_after.max_individual_risk == pytest.approx((1 / fk).max())
    assert report.risk_after.expected_reidentifications == pytest.approx((1 / fk).sum())
    assert report.risk_after.global_risk == pytest.approx((1 / fk).mean())
    assert report.risk_before.expected_reidentifications == pytest.approx((1 / fk_before).sum())

    again, _ = anonymise_quasi_identifiers(background, company, scenario(k, order, m))
    pd.testing.assert_frame_equal(again, result)


@settings(max_examples=50, deadline=None)
@given(microdata())
def test_frequencies_agree_with_the_pairwise_loop(data):
    background, company, _, order, m = data
    fk = frequencies(background, company, order, m)
    assert fk.tolist() == fk_by_loop(background, company, order, m)


# --- the demo data -------------------------------------------------------------------------------


def test_demo_wave_reaches_k_within_companies():
    raw = ROOT / "data" / "raw"
    wave = read_wave(raw / "2021-T1", CODEBOOK, raw)
    company = wave[CODEBOOK.company_id]
    labels = background_labels(wave, CODEBOOK)
    result, report = anonymise_quasi_identifiers(labels, company, TODAY)

    quasi = list(CODEBOOK.anonymisation.suppression_order)
    k = CODEBOOK.anonymisation.k
    size = company.map(company.value_counts()).to_numpy()
    fk = np.array(fk_by_loop(result, company, quasi))
    assert report.k_reached and (fk[size >= k] >= k).all()
    assert report.records == len(wave) and report.at_risk_before > report.at_risk_after == 0
    assert report.suppressed == {name: int(result[name].eq(SUPPRESSED).sum()) for name in quasi}


# --- panel members over the waves ----------------------------------------------------------------


@st.composite
def panels(draw):
    """Persons of 2-3 companies, each answering in some of 3 waves, with quasi-identifiers that
    mostly stay the same between waves; some records are not linkable (no person)."""
    categories = draw(st.lists(st.integers(2, 4), min_size=2, max_size=4))
    names = [f"q{j}" for j in range(len(categories))]
    persons = draw(st.integers(4, 30))
    rows = []
    for p in range(persons):
        firm = draw(st.sampled_from(["A", "B", "C"]))
        values = [draw(st.integers(0, m)) for m in categories]
        for wave in draw(st.sets(st.sampled_from(["w1", "w2", "w3"]), min_size=1)):
            changed = [draw(st.integers(0, m)) if draw(st.booleans()) and draw(st.booleans())
                       else v for v, m in zip(values, categories, strict=True)]  # fmt: skip
            person = None if draw(st.integers(0, 9)) == 0 else f"p{p}"
            rows.append((person, firm, wave, *[None if v == 0 else f"v{v}" for v in changed]))
    frame = pd.DataFrame(rows, columns=["person_id", "company_id", "wave", *names])
    m = draw(st.sampled_from([1, 2, None]))
    return frame.astype("string"), draw(st.integers(2, 4)), draw(st.permutations(names)), m


@settings(max_examples=120, deadline=None)
@given(panels())
def test_panel_protection_holds_when_an_intruder_links_the_waves(data):
    frame, k, order, m = data
    result, reports = protect_panel(
        frame[order], frame["company_id"], frame["person_id"], frame["wave"],
        scenario(k, order, m),
    )  # fmt: skip
    shared = frame.assign(**{name: result[name] for name in order})
    fk = np.array(linked_attack(shared, order, m))
    size = shared.groupby(["wave", "company_id"])["wave"].transform("size").to_numpy()
    assert (fk[size >= k] >= k).all()
    assert blank(shared.loc[size < k, order]).isna().all().all()
    for wave in reports:  # and each wave alone, as the k_anonymity check counts it
        mine = (shared["wave"] == wave).to_numpy()
        alone = frequencies(shared.loc[mine, order], shared.loc[mine, "company_id"], order, m)
        assert (alone[size[mine] >= k] >= k).all()
    # a person's value is withheld in every wave or in none
    linked = blank(shared[shared["person_id"].notna()])
    original = frame[frame["person_id"].notna()]
    for name in order:
        hidden = original[name].notna() & linked[name].isna()
        shown = original[name].notna() & linked[name].notna()
        both = set(linked.loc[hidden, "person_id"]) & set(linked.loc[shown, "person_id"])
        assert not both, name
    kept = blank(result[order]).notna()
    assert (result[order][kept] == frame[order][kept]).all().all()
    exposure = linked_exposure(shared, order, k, m)
    assert exposure["under_k"].sum() == 0 and exposure["small_company_exposed"].sum() == 0
    assert sorted(reports) == sorted(frame["wave"].unique())
    for wave, report in reports.items():
        changed = result[order].eq(SUPPRESSED).fillna(False)
        assert report.suppressed == {n: int(changed[n][frame["wave"] == wave].sum()) for n in order}
        assert report.k_reached


def test_protecting_each_wave_alone_is_undone_by_linking_the_waves():
    """The attack of issue 16 on the demo exports: k-anonymous per wave, under k once a person's
    blanked values are filled in from the other waves; protected together, nothing falls."""
    raw = ROOT / "data" / "raw"
    waves = pd.concat(
        [read_wave(raw / w, CODEBOOK, raw) for w in ("2019-T0", "2021-T1", "2022-T2")],
        ignore_index=True,
    )
    waves = waves[waves[CODEBOOK.respondent_id].notna()].reset_index(drop=True)
    quasi = list(CODEBOOK.anonymisation.suppression_order)
    k = CODEBOOK.anonymisation.k
    labels = background_labels(waves, CODEBOOK)
    company = waves[CODEBOOK.company_id].astype("string")
    person = waves[CODEBOOK.respondent_id].astype("string").map(normalise, na_action="ignore")
    wave = waves["wave"].astype("string")
    shared = pd.DataFrame({"person_id": person, "company_id": company, "wave": wave})
    size = shared.groupby(["wave", "company_id"])["wave"].transform("size").to_numpy()

    alone = pd.concat(
        [anonymise_quasi_identifiers(labels[wave == w], company[wave == w], TODAY)[0]
         for w in sorted(wave.unique())]
    ).loc[labels.index]  # fmt: skip
    fk = np.array(linked_attack(shared.join(alone[quasi]), quasi))
    assert ((fk < k) & (size >= k)).sum() > 100

    together, _ = protect_panel(labels, company, person, wave, TODAY)
    fk = np.array(linked_attack(shared.join(together[quasi]), quasi))
    assert ((fk < k) & (size >= k)).sum() == 0
