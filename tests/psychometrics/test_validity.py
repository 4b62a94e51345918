"""Validity evidence agrees with R's lavaan, semTools and cor.test (fixtures from
tests/reference/validity.R; no R needed).

Tolerances, all relative, with the largest differences observed:

- CR, AVE, sqrt(AVE), max r: 1e-12. The module gets the very loadings and factor correlations R
  used (17 significant digits), so only the arithmetic differs: observed 4.4e-16.
- HTMT: 1e-10. Our item correlations come from pairwise sums, R's from its two-pass cov; the
  geometric mean weighs each correlation's relative error, large for a correlation near 0:
  observed 3.3e-13 (arithmetic means: 3.5e-14).
- r and its interval: 1e-10; observed 7.9e-16. p: 1e-9, scipy's t distribution against R's pt,
  for p down to 1e-147: observed 2.5e-13.

Which values R leaves NA (a scale of one item, too few pairs, no variance) must be NaN here too."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.psychometrics import validity

REFERENCE = Path(__file__).parents[1] / "reference"
ARITHMETIC = 1e-12
HTMT = 1e-10
R = 1e-10
P = 1e-9

HS = {"visual": ["x1", "x2", "x3"], "textual": ["x4", "x5", "x6"], "speed": ["x7", "x8", "x9"]}
SCALES = {
    "hs": HS,
    "bfi": {s: [f"{s}{i}" for i in range(1, 6)] for s in "ACENO"},
    "hs_single": {
        "visual": ["x1", "x2", "x3"],
        "textual": ["x4", "x5", "x6"],
        "speed": ["x7", "x8"],
        "single": ["x9"],
    },
}
ROLES = {"hs": (["visual", "textual"], ["speed"]), "bfi": (["A", "C", "E"], ["N", "O"])}


def items_of(data: str) -> pd.DataFrame:
    return pd.read_csv(REFERENCE / f"validity_{data.removesuffix('_single')}.csv").astype(float)


def scores_of(data: str) -> pd.DataFrame:
    return pd.read_csv(REFERENCE / f"validity_{data}_scores.csv").astype(float)


def loadings_of(data: str) -> pd.DataFrame:
    table = pd.read_csv(REFERENCE / "validity_loadings.csv")
    return table[table["data"] == data].drop(columns="data")


def factor_correlations_of(data: str) -> pd.DataFrame:
    table = pd.read_csv(REFERENCE / "validity_factor_cor.csv")
    table = table[table["data"] == data]
    return table.pivot(index="factor_a", columns="factor_b", values="r")


def reference(name: str, data: str) -> pd.DataFrame:
    table = pd.read_csv(REFERENCE / f"validity_{name}.csv")
    return table[table["data"] == data].reset_index(drop=True)


def pairs(table: pd.DataFrame) -> list[tuple[str, str]]:
    return list(zip(table["scale_a"], table["scale_b"], strict=True))


def assert_close(ours, theirs, rtol):
    """Equal within rtol, and NaN exactly where R has NA."""
    ours, theirs = np.asarray(ours, dtype=float), np.asarray(theirs, dtype=float)
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(theirs))
    np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=0)


def test_fixtures_record_versions_and_semtools_defaults():
    versions = json.loads((REFERENCE / "validity_versions.json").read_text())
    assert versions["R"].startswith("R version 4.2")
    assert versions["lavaan"] == "0.6.14"
    assert versions["semTools"] == "0.5.6"
    # the module's defaults are semTools's: listwise correlations, geometric means (htmt2)
    assert versions["htmt_defaults"] == {"missing": "listwise", "absolute": True, "htmt2": True}


def test_fixtures_have_missing_answers_and_negative_correlations():
    for data in ("hs", "bfi"):
        assert items_of(data).isna().mean().mean() > 0.005
    assert (reference("cor", "bfi")["r"] < 0).any()


@pytest.mark.parametrize("data", ["hs", "bfi"])
def test_scale_table_matches_r(data):
    ours = validity.scale_table(SCALES[data], loadings_of(data), factor_correlations_of(data))
    theirs = reference("scales", data)
    assert list(ours["scale"]) == list(theirs["scale"])
    assert list(ours["n_items"]) == list(theirs["n_items"])
    for column in ("cr", "ave", "sqrt_ave", "max_r"):
        assert_close(ours[column], theirs[column], ARITHMETIC)
    assert list(ours["max_r_with"]) == list(theirs["max_r_with"])
    assert list(ours["fornell_larcker_ok"]) == list(theirs["fornell_larcker_ok"])
    assert (ours["note"] == "").all()


def test_fornell_larcker_fails_where_two_factors_overlap():
    """bfi's agreeableness and extraversion correlate .68, more than either sqrt(AVE)."""
    ours = validity.scale_table(SCALES["bfi"], loadings_of("bfi"), factor_correlations_of("bfi"))
    failed = ours[~ours["fornell_larcker_ok"]]
    assert list(failed["scale"]) == ["A", "E"]
    assert (failed["max_r"] > failed["sqrt_ave"]).all()


HTMT_CASES = [(missing, mean) for missing in validity.MISSING for mean in validity.MEANS]


@pytest.mark.parametrize("data", ["hs", "bfi", "hs_single"])
@pytest.mark.parametrize(("missing", "mean"), HTMT_CASES)
def test_htmt_matches_semtools(data, missing, mean):
    scales = SCALES[data]
    theirs = reference("htmt", data)
    theirs = theirs[(theirs["missing"] == missing) & (theirs["mean"] == mean)]
    assert len(theirs) == len(scales) ** 2
    items = items_of(data)[[item for its in scales.values() for item in its]]
    ours = validity.htmt(validity.item_correlations(items, missing), scales, mean)
    assert_close([ours.at[a, b] for a, b in pairs(theirs)], theirs["htmt"], HTMT)
    if "single" in scales:  # one item: no correlation within, NaN as in semTools
        assert ours["single"].isna().all() and ours.loc["single"].isna().all()
        assert ours.drop(index="single", columns="single").notna().all().all()


def test_htmt_options_change_the_values():
    """The four variants differ from each other on hs (missing values), so each is tested."""
    table = reference("htmt", "hs")
    off = table[table["scale_a"] != table["scale_b"]]
    values = off.pivot_table(
        index=["scale_a", "scale_b"], columns=["missing", "mean"], values="htmt"
    )
    assert values.shape[1] == 4
    for first, second in [(0, 1), (0, 2), (1, 3), (2, 3)]:
        assert (abs(values.iloc[:, first] - values.iloc[:, second]) > 1e-3).any()


@pytest.mark.parametrize("data", ["hs", "bfi"])
def test_pair_table_matches_semtools_and_cor_test(data):
    culture, outcomes = ROLES[data]
    ours = validity.pair_table(items_of(data), SCALES[data], scores_of(data), culture, outcomes)
    htmt = reference("htmt", data)
    htmt = htmt[(htmt["missing"] == "listwise") & (htmt["mean"] == "geometric")]
    htmt = htmt.set_index(["scale_a", "scale_b"])["htmt"]
    cor = reference("cor", data)
    cor = pd.concat([cor, cor.rename(columns={"scale_a": "scale_b", "scale_b": "scale_a"})])
    cor = cor.set_index(["scale_a", "scale_b"]).loc[pairs(ours)]
    n_scales = len(SCALES[data])
    assert len(ours) == n_scales * (n_scales - 1) // 2
    assert_close(ours["htmt"], htmt.loc[pairs(ours)], HTMT)
    assert list(ours["n"]) == list(cor["n"])
    for column in ("r", "r_lo", "r_hi"):
        assert_close(ours[column], cor[column], R)
    assert_close(ours["p"], cor["p"], P)
    assert (ours["note"] == "").all()
    crossed = ours[ours["kind"] == "culture-outcome"]
    assert len(crossed) == len(culture) * len(outcomes)
    assert set(crossed["scale_a"]) == set(culture)
    assert set(crossed["scale_b"]) == set(outcomes)


def test_correlation_edge_cases_match_cor_test():
    """tiny: pairs of 3 (no interval), 4, 1 and 0 rows, a constant column; R's NA is NaN."""
    scores = scores_of("tiny")
    theirs = reference("cor", "tiny")
    ours = pd.DataFrame([validity.correlation_test(scores[a], scores[b]) for a, b in pairs(theirs)])
    assert list(ours["n"]) == list(theirs["n"])
    for column in ("r", "r_lo", "r_hi", "p"):
        assert_close(ours[column], theirs[column], R)
    notes = dict(zip(pairs(theirs), ours["note"], strict=True))
    assert notes["a", "c"] == ""
    assert notes["a", "b"] == "no confidence interval: 3 respondents have both scores (needs 4)"
    assert notes["b", "d"] == "r not estimable: 0 respondents have both scores (needs 3)"
    assert notes["d", "e"] == "r not estimable: 2 respondents have both scores (needs 3)"
    assert notes["a", "e"] == (
        "r not estimable: e without variance among the 5 respondents with both scores"
    )


def test_correlation_of_three_pairs_by_hand():
    # a = 1, 2, 3 and b = 2, 1, 4: sum of products 2, sums of squares 2 and 14/3, r = sqrt(3/7);
    # t = r / sqrt(1 - r^2) = sqrt(3)/2 on 1 df (Cauchy): p = 1 - 2 atan(sqrt(3)/2) / pi.
    result = validity.correlation_test(
        pd.Series([1.0, 2, 3, np.nan], name="a"), pd.Series([2.0, 1, 4, 5], name="b")
    )
    assert result["n"] == 3
    assert result["r"] == pytest.approx(np.sqrt(3 / 7), rel=1e-14)
    assert result["p"] == pytest.approx(1 - 2 * np.arctan(np.sqrt(3) / 2) / np.pi, rel=1e-12)
    assert np.isnan(result["r_lo"]) and np.isnan(result["r_hi"])


def test_fisher_interval_by_hand():
    # n = 28: atanh(r) -+ z_.975 / sqrt(25), z_.975 = 1.959963984540054.
    x = pd.Series(np.arange(28.0), name="x")
    y = pd.Series(np.arange(28.0) % 5, name="y")
    result = validity.correlation_test(x, y)
    assert result["r"] == pytest.approx(np.corrcoef(x, y)[0, 1], rel=1e-14)
    z, half = np.arctanh(result["r"]), 1.959963984540054 / 5
    assert result["r_lo"] == pytest.approx(np.tanh(z - half), rel=1e-14)
    assert result["r_hi"] == pytest.approx(np.tanh(z + half), rel=1e-14)


def test_a_constant_score_has_no_correlation_whatever_its_rounding():
    # 0.1 + 0.1 + 0.1 is not 0.3 in floating point: the mean of 0.1s is not quite 0.1
    x = pd.Series([0.1] * 6, name="flat")
    result = validity.correlation_test(x, pd.Series([1.0, 3, 2, 5, 4, 6], name="y"))
    assert np.isnan(result["r"]) and np.isnan(result["p"])
    assert result["note"] == (
        "r not estimable: flat without variance among the 6 respondents with both scores"
    )


def test_a_perfect_correlation_has_p_zero_and_a_point_interval():
    x = pd.Series([1.0, 2, 3, 4, 5], name="x")
    result = validity.correlation_test(x, 2 * x)
    assert (result["r"], result["r_lo"], result["r_hi"], result["p"]) == (1.0, 1.0, 1.0, 0.0)


def test_cr_and_ave_by_hand():
    # loadings .6, .7, .8: (sum l)^2 = 4.41, sum(1 - l^2) = 3 - 1.49 = 1.51.
    loadings = np.array([0.6, 0.7, 0.8])
    assert validity.composite_reliability(loadings) == pytest.approx(4.41 / 5.92, rel=1e-14)
    assert validity.average_variance_extracted(loadings) == pytest.approx(1.49 / 3, rel=1e-14)


def test_scale_table_edge_cases():
    scales = {"p": ["p1", "p2", "p3"], "q": ["q1", "q2"], "s": ["s1"]}
    loadings = pd.DataFrame(
        {
            "factor": ["p", "p", "p", "q", "q"],
            "item": ["p1", "p2", "p3", "q1", "q2"],
            "std_loading": [0.6, 0.7, 0.8, 0.9, 0.5],
        }
    )
    phi = pd.DataFrame([[1.0, -0.75], [-0.75, 1.0]], index=["p", "q"], columns=["p", "q"])
    table = validity.scale_table(scales, loadings, phi).set_index("scale")
    # p: sqrt(1.49 / 3) = .705 < .75 (the absolute correlation); q: sqrt(.53) = .728 < .75
    assert table.at["p", "max_r"] == 0.75 and table.at["p", "max_r_with"] == "q"
    assert table.at["p", "sqrt_ave"] == pytest.approx(np.sqrt(1.49 / 3))
    assert table.at["q", "ave"] == pytest.approx((0.81 + 0.25) / 2)
    assert not table.at["p", "fornell_larcker_ok"] and not table.at["q", "fornell_larcker_ok"]
    # s: a one-item scale the CFA leaves out
    assert table.at["s", "n_items"] == 1
    assert np.isnan(table.at["s", "cr"]) and np.isnan(table.at["s", "max_r"])
    assert pd.isna(table.at["s", "fornell_larcker_ok"])
    assert table.at["s", "note"] == (
        "cr and ave not estimable: the CFA has 0 loadings of s (needs 2); fornell-larcker not "
        "assessable: the CFA has no correlation of s with another factor"
    )
    assert table.at["p", "note"] == ""
    # no CFA at all: empty frames
    empty = validity.scale_table(scales, loadings.iloc[:0], pd.DataFrame())
    assert empty["cr"].isna().all() and empty["fornell_larcker_ok"].isna().all()
    with pytest.raises(ValueError, match="the loadings of q are on q1, the scale's items"):
        validity.scale_table(scales, loadings.iloc[:4], phi)


def test_htmt_by_hand():
    # within p .6 (one pair), within q .4, between .3 and .2 twice each:
    # arithmetic .25 / sqrt(.24); geometric sqrt(.06) / sqrt(.24) = 1/2.
    names = ["p1", "p2", "q1", "q2"]
    cor = pd.DataFrame(
        [[1, 0.6, 0.3, -0.2], [0.6, 1, 0.2, 0.3], [0.3, 0.2, 1, 0.4], [-0.2, 0.3, 0.4, 1]],
        index=names,
        columns=names,
    )
    scales = {"p": ["p1", "p2"], "q": ["q1", "q2"]}
    arithmetic = validity.htmt(cor, scales, "arithmetic")
    assert arithmetic.at["p", "q"] == pytest.approx(0.25 / np.sqrt(0.24), rel=1e-14)
    assert arithmetic.at["q", "p"] == arithmetic.at["p", "q"]
    assert validity.htmt(cor, scales).at["p", "q"] == pytest.approx(0.5, rel=1e-14)
    assert validity.htmt(cor, scales).at["p", "p"] == pytest.approx(1.0, rel=1e-14)
    with pytest.raises(ValueError, match="mean must be one of"):
        validity.htmt(cor, scales, "harmonic")


def test_pairwise_correlations_are_cov2cor_of_pairwise_covariances():
    # x2 is missing on the row where x1 is 4: cov(x1, x2) comes from 3 rows, var(x1) from 4.
    items = pd.DataFrame({"x1": [1.0, 2, 3, 4], "x2": [1.0, 3, 2, np.nan]})
    pairwise = validity.item_correlations(items, "pairwise")
    assert pairwise.at["x1", "x2"] == pytest.approx(0.5 / np.sqrt(5 / 3 * 1), rel=1e-14)
    listwise = validity.item_correlations(items, "listwise")
    assert listwise.at["x1", "x2"] == pytest.approx(0.5, rel=1e-14)  # 3 complete rows
    with pytest.raises(ValueError, match="missing must be one of"):
        validity.item_correlations(items, "ml")


def small_wave() -> tuple[pd.DataFrame, dict, pd.DataFrame]:
    """Scales p (2 items), q (2 items), s (1 item); q's items are never answered with p's."""
    items = pd.DataFrame(
        {
            "p1": [1.0, 2, 3, 4, np.nan, np.nan, np.nan, np.nan],
            "p2": [2.0, 1, 4, 3, np.nan, np.nan, np.nan, np.nan],
            "q1": [np.nan, np.nan, np.nan, np.nan, 1, 2, 3, 5],
            "q2": [np.nan, np.nan, np.nan, np.nan, 2, 2, 4, 4],
            "s1": [1.0, 3, 2, 4, 5, 4, 2, 1],
        }
    )
    scales = {"p": ["p1", "p2"], "q": ["q1", "q2"], "s": ["s1"]}
    scores = pd.DataFrame({name: items[its].mean(axis=1) for name, its in scales.items()})
    return items, scales, scores


def test_pair_table_edge_cases():
    items, scales, scores = small_wave()
    table = validity.pair_table(items, scales, scores, ["q"], ["p"], missing="pairwise")
    assert list(zip(pairs(table), table["kind"], strict=True)) == [
        (("q", "p"), "culture-outcome"),  # culture first, whatever the order of the scales
        (("p", "s"), "outcome-other"),
        (("q", "s"), "culture-other"),
    ]
    table = table.set_index(["scale_a", "scale_b"])
    assert table["htmt"].isna().all()
    assert table.at[("q", "p"), "n"] == 0
    assert table.at[("q", "p"), "note"] == (
        "htmt not estimable: no correlation between the items of q and of p; "
        "r not estimable: 0 respondents have both scores (needs 3)"
    )
    assert table.at[("p", "s"), "note"] == (
        "htmt not estimable: s has one item, so no correlation within it"
    )
    # p with s over 4 rows: p = 1.5, 1.5, 3.5, 3.5 and s = 1, 3, 2, 4: r = 2 / sqrt(4 * 5)
    assert table.at[("p", "s"), "n"] == 4
    assert table.at[("p", "s"), "r"] == pytest.approx(2 / np.sqrt(20), rel=1e-14)
    # listwise: no row answers every item, so not even a correlation within a scale
    listwise = validity.pair_table(items, scales, scores, ["q"], ["p"])
    assert listwise.at[0, "note"].startswith(
        "htmt not estimable: no correlation between the items of q;"
    )


def test_pair_table_rejects_unknown_or_double_roles():
    items, scales, scores = small_wave()
    with pytest.raises(ValueError, match=r"unknown \['z'\]"):
        validity.pair_table(items, scales, scores, ["p", "z"], ["q"])
    with pytest.raises(ValueError, match=r"both \['p'\]"):
        validity.pair_table(items, scales, scores, ["p"], ["p", "q"])
