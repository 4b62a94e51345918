"""Company aggregation agrees with R's multilevel (fixtures from multilevel_aggregation.R).

No R is needed: the R script's output is committed. Tolerance 1e-8 for everything: ICC(1),
ICC(2), rwg(j), means, sds and t intervals are closed-form; observed differences are ~1e-15.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.psychometrics import aggregation

REFERENCE = Path(__file__).parents[1] / "reference"
TOL = 1e-8
ICC = pd.read_csv(REFERENCE / "aggregation_icc.csv")
RWG = pd.read_csv(REFERENCE / "aggregation_rwg.csv", dtype={"group": str})
COMPANY = pd.read_csv(REFERENCE / "aggregation_company.csv", dtype={"group": str})
RWG_ITEMS = {
    "LEAD": [f"LEAD{i:02d}" for i in range(1, 12)],
    "TSIG": [f"TSIG{i:02d}" for i in range(1, 4)],
    "HOSTIL": [f"HOSTIL{i:02d}" for i in range(1, 6)],
    "HOSTIL_A7": [f"HOSTIL{i:02d}" for i in range(1, 6)],
    "LEAD_NA": [f"LEAD{i:02d}_NA" for i in range(1, 4)],
    "tiny": ["I1", "I2"],
}
GROUP = {"bh1996": "GRP", "lq2002": "COMPID", "tiny": "company"}


def load(dataset: str) -> pd.DataFrame:
    frame = pd.read_csv(REFERENCE / f"aggregation_{dataset}.csv")
    frame[GROUP[dataset]] = frame[GROUP[dataset]].astype(str)
    return frame


def test_fixtures_record_versions():
    versions = json.loads((REFERENCE / "aggregation_versions.json").read_text())
    assert versions["r"].startswith("R version")
    assert versions["multilevel"]


@pytest.mark.parametrize(
    "row", ICC.to_dict("records"), ids=[f"{r.dataset}-{r.variable}" for r in ICC.itertuples()]
)
def test_icc_matches_multilevel(row):
    data = load(row["dataset"])
    scores, groups = data[row["variable"]], data[GROUP[row["dataset"]]]
    anova = aggregation.one_way_anova(scores, groups)
    assert (anova.n, anova.groups) == (row["n"], row["groups"])
    assert anova.mean_group_size == pytest.approx(row["gsize"], abs=TOL)
    assert aggregation.icc1(scores, groups) == pytest.approx(row["icc1"], abs=TOL)
    assert aggregation.icc2(scores, groups) == pytest.approx(row["icc2"], abs=TOL)


@pytest.mark.parametrize("scale", list(RWG_ITEMS))
def test_rwg_j_matches_multilevel(scale):
    expected = RWG[RWG["scale"] == scale].set_index("group")
    dataset = expected["dataset"].iloc[0]
    data = load(dataset)
    result = aggregation.rwg_j(
        data[RWG_ITEMS[scale]], data[GROUP[dataset]], int(expected["options"].iloc[0])
    )
    assert sorted(result.per_group.index) == sorted(expected.index)
    ours = result.per_group.reindex(expected.index)
    np.testing.assert_allclose(ours, expected["rwg_j"], atol=TOL, rtol=0)
    np.testing.assert_array_equal(result.gsize.reindex(expected.index), expected["gsize"])
    assert result.mean == pytest.approx(expected["rwg_j"].mean(), abs=TOL)


def test_rwg_j_missing_items_fixture_covers_the_edge_cases():
    expected = RWG[RWG["scale"] == "LEAD_NA"].set_index("group")
    assert "2" not in expected.index  # every row of company 2 has a missing item
    assert expected.loc["3", "gsize"] == 1 and np.isnan(expected.loc["3", "rwg_j"])


@pytest.mark.parametrize("variable", ["LEAD", "LEAD_NA"])
def test_company_table_matches_t_test(variable):
    expected = COMPANY[(COMPANY["dataset"] == "bh1996") & (COMPANY["variable"] == variable)]
    table = aggregation.company_table(load("bh1996"), variable, "GRP", min_n=1)
    table = table.set_index("company_id").loc[expected["group"]]
    assert not table["suppressed"].any()
    np.testing.assert_array_equal(table["n"].to_numpy(dtype=int), expected["n"])
    for column in ["mean", "sd", "ci_low", "ci_high"]:
        np.testing.assert_allclose(table[column], expected[column], atol=TOL, rtol=0)


def test_tiny_example_by_hand():
    tiny = load("tiny")
    # Worked out in multilevel_aggregation.R: MSB = 175/36, MSW = 5/12, k = 3.
    anova = aggregation.one_way_anova(tiny["score"], tiny["company"])
    assert anova.msb == pytest.approx(175 / 36, abs=1e-12)
    assert anova.msw == pytest.approx(5 / 12, abs=1e-12)
    assert anova.mean_group_size == 3
    assert aggregation.icc1(tiny["score"], tiny["company"]) == pytest.approx(32 / 41, abs=1e-12)
    assert aggregation.icc2(tiny["score"], tiny["company"]) == pytest.approx(32 / 35, abs=1e-12)
    rwg = aggregation.rwg_j(tiny[["I1", "I2"]], tiny["company"], a=5)
    assert rwg.per_group.to_dict() == pytest.approx({"A": 6 / 7, "B": 0.0, "C": 1.0}, abs=1e-12)
    assert rwg.mean == pytest.approx((6 / 7 + 1) / 3, abs=1e-12)

    table = aggregation.company_table(
        tiny, "score", "company", min_n=2, items=["I1", "I2"], n_options=5
    )
    assert list(table.columns) == aggregation.COMPANY_COLUMNS
    a = table.set_index("company_id").loc["A"]
    assert (a["n"], a["mean"], a["sd"]) == (3, 2.0, 1.0)
    half = 4.302652729749464 / np.sqrt(3)  # qt(.975, 2) * sd / sqrt(n)
    assert (a["ci_low"], a["ci_high"]) == pytest.approx((2 - half, 2 + half), abs=1e-12)
    assert a["rwg"] == pytest.approx(6 / 7, abs=1e-12)
    c = table.set_index("company_id").loc["C"]
    assert (c["ci_low"], c["ci_high"], c["rwg"]) == (2.0, 2.0, 1.0)

    expected = COMPANY[COMPANY["dataset"] == "tiny"].set_index("group")
    unsuppressed = aggregation.company_table(tiny, "score", "company", min_n=1).set_index(
        "company_id"
    )
    for column in ["mean", "sd", "ci_low", "ci_high"]:
        np.testing.assert_allclose(
            unsuppressed.loc[expected.index, column], expected[column], atol=TOL, rtol=0
        )


def test_suppressed_company_reveals_nothing():
    tiny = load("tiny")
    table = aggregation.company_table(
        tiny, "score", "company", min_n=3, items=["I1", "I2"], n_options=5
    )
    b = table.set_index("company_id").loc["B"]  # 2 respondents, under the minimum of 3
    assert bool(b["suppressed"])
    assert b["scale"] == "score"
    assert pd.isna(b["n"])
    for column in ["mean", "sd", "ci_low", "ci_high", "rwg"]:
        assert np.isnan(b[column]), column
    assert table["n"].dtype == "Int64"
    # the total minus the shown companies would be B's 2 scores: A, the smallest shown, goes too
    assert table.set_index("company_id")["suppressed"].to_dict() == {
        "A": True,
        "B": True,
        "C": False,
    }


def test_secondary_suppression_only_when_the_hidden_scores_are_under_the_minimum():
    tiny = load("tiny")
    more = pd.concat([tiny, tiny[tiny["company"] == "B"].assign(company="D")], ignore_index=True)
    table = aggregation.company_table(more, "score", "company", min_n=3).set_index("company_id")
    # B and D hide 4 scores together: no subtraction gives fewer than 3
    assert table["suppressed"].to_dict() == {"A": False, "B": True, "C": False, "D": True}
    alone = more.assign(company=more["company"].where(more["company"] != "B"))  # B: no company
    table = aggregation.company_table(alone, "score", "company", min_n=3).set_index("company_id")
    assert table["suppressed"].to_dict() == {"A": False, "C": False, "D": True}


def test_suppression_counts_respondents_with_a_score():
    tiny = load("tiny")
    tiny.loc[0, "score"] = np.nan  # company A: 3 respondents, 2 scores
    table = aggregation.company_table(tiny, "score", "company", min_n=3).set_index("company_id")
    assert table.loc["A", "suppressed"] and pd.isna(table.loc["A", "n"])
    assert not table.loc["C", "suppressed"] and table.loc["C", "n"] == 4


def test_company_without_any_score_is_suppressed():
    tiny = load("tiny")
    tiny.loc[tiny["company"] == "C", "score"] = np.nan
    table = aggregation.company_table(tiny, "score", "company", min_n=1).set_index("company_id")
    assert table.loc["C", "suppressed"] and pd.isna(table.loc["C", "n"])


def test_aggregation_table_matches_multilevel():
    lq = load("lq2002")
    lq["LEAD"] = lq[RWG_ITEMS["LEAD"]].mean(axis=1)
    lq["HOSTIL"] = lq[RWG_ITEMS["HOSTIL"]].mean(axis=1)
    table = aggregation.aggregation_table(
        lq,
        {"LEAD": RWG_ITEMS["LEAD"], "HOSTIL": RWG_ITEMS["HOSTIL"]},
        "COMPID",
        n_options={"LEAD": 5, "HOSTIL": 7},
    ).set_index("scale")
    assert list(table.reset_index().columns) == aggregation.AGGREGATION_COLUMNS
    lead = RWG[RWG["scale"] == "LEAD"]["rwg_j"].mean()
    hostil = RWG[RWG["scale"] == "HOSTIL_A7"]["rwg_j"].mean()
    assert table.loc["LEAD", "rwg_mean"] == pytest.approx(lead, abs=TOL)
    assert table.loc["HOSTIL", "rwg_mean"] == pytest.approx(hostil, abs=TOL)
    assert table.loc["LEAD", "mean_group_size"] == pytest.approx(len(lq) / 49, abs=TOL)

    bh = load("bh1996")
    icc = ICC[ICC["dataset"] == "bh1996"].set_index("variable")
    table = aggregation.aggregation_table(bh, {"LEAD_NA": ["LEAD_NA"]}, "GRP", 5).iloc[0]
    assert table["icc1"] == pytest.approx(icc.loc["LEAD_NA", "icc1"], abs=TOL)
    assert table["icc2"] == pytest.approx(icc.loc["LEAD_NA", "icc2"], abs=TOL)
    assert table["mean_group_size"] == pytest.approx(icc.loc["LEAD_NA", "gsize"], abs=TOL)


def test_rwg_j_rejects_a_scale_without_options():
    with pytest.raises(ValueError):
        aggregation.uniform_null_variance(1)
    assert aggregation.uniform_null_variance(5) == 2.0


def test_company_aggregates_of_every_culture_scale_or_a_row_that_says_why():
    tiny = load("tiny").assign(other=lambda d: 6 - d["score"])
    scales = {"score": ["I1", "I2"], "other": ["I1", "I2"]}
    companies, summary = aggregation.company_aggregates(
        tiny, scales, "company", 3, {"score": 5, "other": 5}
    )
    each = [aggregation.company_table(tiny, s, "company", 3, ["I1", "I2"], 5) for s in scales]
    pd.testing.assert_frame_equal(companies, pd.concat(each, ignore_index=True))
    expected = aggregation.aggregation_table(tiny, scales, "company", 5)
    pd.testing.assert_frame_equal(summary, expected)
    assert list(summary["scale"]) == ["score", "other"] and summary["note"].isna().all()

    companies, summary = aggregation.company_aggregates(tiny, {}, "company", 3, {})
    assert companies.empty and list(companies.columns) == aggregation.COMPANY_COLUMNS
    assert list(summary.columns) == aggregation.AGGREGATION_COLUMNS
    (row,) = summary.to_dict("records")
    assert row["note"] == "not estimable: the codebook has no culture scales"
    assert all(pd.isna(row[c]) for c in aggregation.AGGREGATION_COLUMNS[:-1])


def test_company_interval_is_clipped_to_the_scale_given_its_bounds():
    tiny = load("tiny")
    plain = aggregation.company_table(tiny, "score", "company", min_n=1).set_index("company_id")
    clipped = aggregation.company_table(tiny, "score", "company", min_n=1, bounds=(1, 5)).set_index(
        "company_id"
    )
    assert plain.loc["A", "ci_low"] < 1  # 2 - 2.48: the t interval leaves a 1-to-5 scale
    assert clipped.loc["A", "ci_low"] == 1.0
    assert clipped.loc["A", "ci_high"] == plain.loc["A", "ci_high"]  # inside: unchanged
    assert ((clipped["ci_low"] >= 1) & (clipped["ci_high"] <= 5)).all()
    pd.testing.assert_frame_equal(
        clipped.drop(columns=["ci_low", "ci_high"]), plain.drop(columns=["ci_low", "ci_high"])
    )
    companies, _ = aggregation.company_aggregates(
        tiny, {"score": ["I1", "I2"]}, "company", 1, {"score": 5}, {"score": (1, 5)}
    )
    assert companies.set_index("company_id").loc["A", "ci_low"] == 1.0
