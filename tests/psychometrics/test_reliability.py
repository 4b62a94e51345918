"""Reliability statistics agree with R's psych (fixtures from tests/reference/psych_reliability.R).

No R is needed: the R script's output is committed. Tolerances:

- alpha, standardised alpha, mean r, r_drop, alpha if dropped, item mean and sd: 1e-9. These are
  closed-form functions of the pairwise covariance matrix; observed differences are ~1e-15.
- omega total: 1e-6. psych's minres fit stops at R's L-BFGS-B default tolerance (factr = 1e7), so
  its omega is only accurate to about 1e-7 (observed: up to 2.5e-7 on epi); ours is solved
  tighter. The issue's requirement is 1e-4.
"""

import dataclasses
import json
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import CODEBOOK

from pipeline.instrument.codebook import Scale, load_codebook
from pipeline.lineage.fingerprint import derived_seed
from pipeline.psychometrics import reliability

REFERENCE = Path(__file__).parents[1] / "reference"
SCALES = pd.read_csv(REFERENCE / "psych_reliability_scales.csv")
ITEMS = pd.read_csv(REFERENCE / "psych_reliability_items.csv")
CLOSED_FORM = 1e-9
OMEGA = 1e-6


def load_items(dataset: str) -> pd.DataFrame:
    return pd.read_csv(REFERENCE / f"psych_{dataset}.csv").astype("float64")


def test_fixtures_record_versions():
    versions = json.loads((REFERENCE / "psych_reliability_versions.json").read_text())
    assert versions["r"].startswith("R version")
    assert versions["psych"]


def test_fixtures_include_missing_data():
    missing = [load_items(name).isna().to_numpy().sum() for name in SCALES["dataset"]]
    assert sum(count > 0 for count in missing) >= 3


@pytest.mark.parametrize("row", SCALES.to_dict("records"), ids=list(SCALES["dataset"]))
def test_alpha_matches_psych(row):
    result = reliability.alpha(load_items(row["dataset"]))
    assert result["n"] == row["n_any"]
    assert result["k"] == row["k"]
    assert result["alpha"] == pytest.approx(row["raw_alpha"], abs=CLOSED_FORM)
    assert result["alpha_std"] == pytest.approx(row["std_alpha"], abs=CLOSED_FORM)
    assert result["mean_r"] == pytest.approx(row["average_r"], abs=CLOSED_FORM)


@pytest.mark.parametrize("row", SCALES.to_dict("records"), ids=list(SCALES["dataset"]))
def test_omega_total_matches_psych(row):
    assert reliability.omega_total(load_items(row["dataset"])) == pytest.approx(
        row["omega_tot"], abs=OMEGA
    )


@pytest.mark.parametrize("dataset", list(SCALES["dataset"]))
def test_item_statistics_match_psych(dataset):
    ours = reliability.item_statistics(load_items(dataset))
    theirs = ITEMS[ITEMS["dataset"] == dataset].reset_index(drop=True)
    assert list(ours["item"]) == list(theirs["item"])
    assert list(ours["n"]) == list(theirs["n"])
    for column, reference in [
        ("mean", "mean"),
        ("sd", "sd"),
        ("r_drop", "r_drop"),
        ("alpha_if_dropped", "raw_alpha_if_dropped"),
    ]:
        np.testing.assert_allclose(ours[column], theirs[reference], rtol=0, atol=CLOSED_FORM)


def tiny_items() -> pd.DataFrame:
    """Equal variances 5/3; covariances 1 (x1, x2), 4/3 (x1, x3), 0 (x2, x3)."""
    return pd.DataFrame(
        {"x1": [1.0, 2, 3, 4], "x2": [2.0, 1, 4, 3], "x3": [1.0, 3, 2, 4]},
    )


def test_tiny_example_by_hand():
    # sum C = 5 + 2 (1 + 4/3) = 29/3, trace 5: alpha = (1 - 15/29) 3/2 = 21/29.
    result = reliability.alpha(tiny_items())
    assert result["alpha"] == pytest.approx(21 / 29)
    assert result["mean_r"] == pytest.approx((3 / 5 + 4 / 5 + 0) / 3)
    assert result["alpha_std"] == pytest.approx(21 / 29)  # equal variances
    stats = reliability.item_statistics(tiny_items()).set_index("item")
    # x1 with x2 + x3: cov 7/3, var(x2 + x3) = 10/3.
    assert stats.loc["x1", "r_drop"] == pytest.approx((7 / 3) / np.sqrt(5 / 3 * 10 / 3))
    # without x3: sum C = 16/3, trace 10/3, alpha = (1 - 10/16) 2.
    assert stats.loc["x3", "alpha_if_dropped"] == pytest.approx(3 / 4)
    assert stats.loc["x1", "sd"] == pytest.approx(np.sqrt(5 / 3))


def test_missing_answers_use_pairwise_covariances():
    # A respondent answering only x1 changes x1's variance but no covariance.
    items = pd.concat([tiny_items(), pd.DataFrame({"x1": [2.5]})], ignore_index=True)
    cov = reliability.pairwise_cov(items)
    assert cov[0, 1] == pytest.approx(1.0)
    assert cov[0, 0] == pytest.approx(np.var([1, 2, 3, 4, 2.5], ddof=1))
    assert reliability.alpha(items)["n"] == 5
    assert list(reliability.item_statistics(items)["n"]) == [5, 4, 4]


def exact_one_factor_sample(loadings: np.ndarray, n: int = 50) -> pd.DataFrame:
    """Data whose sample correlation matrix is exactly that of a one-factor model."""
    cor = np.outer(loadings, loadings)
    np.fill_diagonal(cor, 1.0)
    noise = np.random.default_rng(1).standard_normal((n, len(loadings)))
    noise -= noise.mean(axis=0)
    white = np.linalg.qr(noise)[0]  # orthonormal, centred columns
    return pd.DataFrame(white @ np.linalg.cholesky(cor).T)


def test_omega_of_an_exact_one_factor_model():
    loadings = np.array([0.8, 0.7, 0.6, 0.5])
    items = exact_one_factor_sample(loadings)
    np.testing.assert_allclose(
        reliability.one_factor_minres(reliability.pairwise_cor(items)), loadings, atol=1e-6
    )
    common = loadings.sum() ** 2
    expected = common / (common + (1 - loadings**2).sum())
    assert reliability.omega_total(items) == pytest.approx(expected, abs=1e-6)


def test_omega_flips_a_negatively_loading_item():
    loadings = np.array([0.8, 0.7, 0.6, 0.5])
    items = exact_one_factor_sample(loadings)
    flipped = items.copy()
    flipped[3] = -flipped[3]
    assert reliability.omega_total(flipped) == pytest.approx(
        reliability.omega_total(items), abs=1e-9
    )


def test_resampled_alphas_are_alpha_of_each_resample():
    """The vectorised bootstrap (weighted pairwise sums) equals alpha() on the resampled rows,
    missing answers included."""
    items = load_items("bfi_agreeableness")
    assert items.isna().any().any()
    rows = np.random.default_rng(7).integers(0, len(items), size=(5, len(items)))
    weights = reliability.draw_counts(rows, len(items))
    by_weights = reliability.resampled_alphas(reliability.pair_products(items.to_numpy()), weights)
    by_rows = [reliability.alpha(items.iloc[r].reset_index(drop=True))["alpha"] for r in rows]
    np.testing.assert_allclose(by_weights, by_rows, rtol=1e-12)


def test_draw_counts_count_each_row_per_resample():
    draws = np.array([[0, 0, 2], [1, 2, 2], [3, 3, 3]])
    expected = [[2, 0, 1, 0], [0, 1, 2, 0], [0, 0, 0, 3]]
    np.testing.assert_array_equal(reliability.draw_counts(draws, 4), expected)


def test_distinct_rows_rebuild_the_rows_missing_answers_included():
    x = np.array([[1.0, np.nan], [2.0, 3.0], [1.0, np.nan], [np.nan, np.nan], [2.0, 3.0]])
    patterns, pattern_of = reliability.distinct_rows(x)
    assert len(patterns) == 3
    np.testing.assert_array_equal(patterns[pattern_of], x)  # NaN where x has NaN


# Intervals of the bootstrap as first written (all 1,000 x n draws at once, one weight per
# row): drawing in chunks and weighing answer patterns must not change a single bit.
BEFORE_CHUNKING = {
    ("bfi_agreeableness", 11, 1000): (0.680662599594644, 0.722191501489257),
    ("bfi_conscientiousness", 11, 1000): (0.7082823983028586, 0.7437059048840087),
    ("bfi_neuroticism", 11, 1000): (0.8016651847504193, 0.8260469189912317),
    ("epi_v1_v10", 11, 1000): (0.23701323144617265, 0.3043766307589618),
    ("sat_act", 11, 1000): (0.5819678105380489, 0.6410081914246961),
    ("bfi_agreeableness", 5, 200): (0.682012934853494, 0.7226856890656219),
    ("epi_v1_v10", 5, 200): (0.23849133943358297, 0.31392870357595004),
    ("sat_act", 5, 200): (0.5827414112153646, 0.6378416444304467),
}


@pytest.mark.parametrize(("dataset", "seed", "replicates"), list(BEFORE_CHUNKING))
def test_bootstrap_interval_is_unchanged_by_chunking(dataset, seed, replicates):
    interval = reliability.bootstrap_alpha_ci(load_items(dataset), seed, replicates)
    assert interval == BEFORE_CHUNKING[dataset, seed, replicates]


def test_bootstrap_alphas_do_not_depend_on_the_chunk_size():
    items = load_items("bfi_agreeableness")
    items = items[items.notna().any(axis=1)]
    n = len(items)
    whole = reliability.bootstrap_alphas(items, seed=3, replicates=50, chunk_cells=50 * n)
    for chunk_cells in (1, n, 7 * n + 3):
        chunked = reliability.bootstrap_alphas(items, 3, 50, chunk_cells=chunk_cells)
        np.testing.assert_array_equal(chunked, whole)


def test_bootstrap_memory_is_bounded_by_the_chunk():
    """All draws at once would take replicates x n x 8 bytes twice over (160 MB here)."""
    rng = np.random.default_rng(0)
    items = pd.DataFrame(rng.integers(1, 6, size=(50_000, 4)).astype(float))
    tracemalloc.start()
    try:
        reliability.bootstrap_alphas(items, seed=1, replicates=200, chunk_cells=2**18)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20


def test_bootstrap_interval_is_reproducible_from_its_seed_and_covers_alpha():
    items = load_items("bfi_agreeableness")
    estimate = reliability.alpha(items)["alpha"]
    low, high = reliability.bootstrap_alpha_ci(items, seed=11)
    assert low < estimate < high and high - low < 0.1
    assert reliability.bootstrap_alpha_ci(items, seed=11) == (low, high)
    assert reliability.bootstrap_alpha_ci(items, seed=12) != (low, high)


def two_item_codebook():
    codebook = load_codebook(CODEBOOK)
    agree5 = codebook.response_scales["agree5"]
    scale = Scale("A", "A", "culture", agree5, ("A1", "A2"), (), 0.5)
    return dataclasses.replace(codebook, scales={"A": scale})


def test_each_scale_has_its_own_derived_seed():
    tables = {
        label: reliability.reliability_tables(
            pd.DataFrame({"A1": [1, 2, 3, 4, 5, 2], "A2": [2, 2, 3, 5, 4, 1]}),
            two_item_codebook(),
            label,
            replicates=200,
        )[0]
        for label in ("2019-T0", "2021-T1")
    }
    seeds = {label: t["bootstrap_seed"][0] for label, t in tables.items()}
    assert seeds["2019-T0"] == derived_seed("reliability", "2019-T0", "A") != seeds["2021-T1"]
    assert derived_seed("reliability", "2019-T0", "A") == 0x16C32C2D  # fixed forever
