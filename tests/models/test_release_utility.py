import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.ingest.readers import read_wave
from pipeline.instrument.codebook import Models, load_codebook
from pipeline.instrument.scoring import score_scales
from pipeline.models.multilevel import coefficients_table, model_frame, wave_models
from pipeline.models.release_utility import release_utility
from pipeline.privacy.disclosure import SUPPRESSED, background_labels

ROOT = Path(__file__).resolve().parents[2]
CODEBOOK = load_codebook(ROOT / "data" / "raw" / "codebook.yaml")
K = 5
NA = None
TENURE_COARSER = {"<1": "<3", "1-2": "<3", "6-10": "6+", ">10": "6+"}


def small_codebook(background=("trajectory", "leader"), controls=(), coarser=None):
    """Two one-item scales (SL1 the outcome, LT1 the culture scale), the given background
    variables with their `coarser` maps, the models SL on LT with `controls`."""
    scales = {
        "SL": replace(CODEBOOK.scales["SL"], items=("SL1",), reverse=()),
        "LT": replace(CODEBOOK.scales["LT"], items=("LT1",), reverse=()),
    }
    variables = {
        name: replace(CODEBOOK.background[name], coarser=(coarser or {}).get(name, {}))
        for name in background
    }
    models = Models(outcomes=("SL",), culture=("LT",), controls=tuple(controls))
    return replace(CODEBOOK, scales=scales, background=variables, models=models)


def restricted_frame(background: dict[str, list], sl: list, lt=None, company=None) -> pd.DataFrame:
    n = len(sl)
    frame = pd.DataFrame(
        {
            "person_id": [f"p{i}" for i in range(n)],
            "company_id": company if company is not None else ["c1"] * n,
            "wave": ["T0"] * n,
        }
    ).astype("string")
    for name, values in background.items():
        frame[name] = pd.array(values, dtype="string")
    for item in CODEBOOK.items:
        frame[item] = np.nan
    frame["SL1"] = np.asarray(sl, dtype=float)
    if lt is not None:
        frame["LT1"] = np.asarray(lt, dtype=float)
    return frame


def withhold(frame: pd.DataFrame, name: str, rows) -> pd.DataFrame:
    release = frame.copy()
    release.loc[list(rows), name] = SUPPRESSED
    return release


def public_file(frame: pd.DataFrame, codebook) -> pd.DataFrame:
    """The public use file of `frame`: no person_id, background at the coarser levels."""
    release = frame.drop(columns="person_id")
    for name, variable in codebook.background.items():
        release[name] = release[name].replace(variable.coarser).astype("string")
    return release


def twelve() -> pd.DataFrame:
    """Six with trajectory "nee" and six "ja"; leader "ja" four, "nee" seven, one not given."""
    return restricted_frame(
        {
            "trajectory": ["nee"] * 6 + ["ja"] * 6,
            "leader": ["ja"] * 4 + ["nee"] * 7 + [NA],
        },
        sl=[2, 3, 3, 4, 4, 5] + [1, 2, 3, 4, 5, 5],
    )


def panel(seed: int = 1, companies: int = 8, per: int = 15) -> pd.DataFrame:
    """A scan to fit the models on: SL depends on LT, companies differ; a few controls missing."""
    rng = np.random.default_rng(seed)
    n = companies * per
    firm = np.arange(n) // per
    lt = np.clip(np.round(3 + rng.normal(0, 0.6, companies)[firm] + rng.normal(0, 1, n)), 1, 5)
    sl = np.clip(np.round(1.5 + 0.5 * lt + rng.normal(0, 0.8, n)), 1, 5)
    trajectory = rng.choice(["nee", "ja"], n).astype(object)
    trajectory[::13] = NA
    tenure = rng.choice(CODEBOOK.background["tenure_band"].levels, n)
    return restricted_frame(
        {"trajectory": trajectory, "tenure_band": tenure, "leader": rng.choice(["nee", "ja"], n)},
        sl=sl,
        lt=lt,
        company=[f"c{f}" for f in firm],
    )


# --- suppression and group means --------------------------------------------------------------


def test_a_release_identical_to_the_restricted_data_costs_nothing():
    frame = panel()
    codebook = small_codebook(("trajectory", "leader"), controls=("trajectory",))
    result = release_utility(frame, frame.copy(), codebook, k=K, public=False)
    json.dumps(result, allow_nan=False)
    suppression = result["suppression"]
    assert suppression["values_suppressed"] == {"trajectory": 0, "leader": 0}
    assert suppression["values_suppressed_total"] == 0
    assert suppression["share_suppressed"] == 0.0
    assert suppression["records_changed"] == suppression["values_recoded"] == 0
    means = result["group_means"]
    assert means["groups_compared"] == 2 * 2 * 2  # two variables, two levels, two scales
    assert means["groups_lost"] == 0
    assert means["max_abs_z"] == means["mean_abs_z"] == 0.0
    models = result["models"]
    assert models["reason"] is None
    assert models["models_compared"] == 2
    assert models["coefficients_compared"] == 1 + 4  # Intercept; Intercept, LT w/b, ja
    assert models["max_abs_z"] == models["mean_abs_z"] == 0.0
    assert models["worst"] == models["not_estimable"] == models["notes"] == []
    assert models["complete_cases"]["SL"]["release"] == models["complete_cases"]["SL"]["restricted"]


def test_one_suppressed_value_is_counted_once():
    frame = twelve()
    result = release_utility(
        frame, withhold(frame, "leader", [0]), small_codebook(), k=K, public=False
    )
    suppression = result["suppression"]
    assert suppression == {
        "records": 12,
        "records_changed": 1,
        "values_suppressed": {"trajectory": 0, "leader": 1},
        "values_suppressed_total": 1,
        "share_suppressed": 1 / 23,  # 12 trajectory and 11 leader values were given
        "values_recoded": 0,
    }


def test_a_known_shift_gives_the_z_computed_by_hand():
    # trajectory "ja" scores 1, 2, 3, 4, 5, 5: mean 10/3, sd sqrt(8/3), SE sqrt(8/3) / sqrt(6)
    # = 2/3. Withholding the 1 leaves 2, 3, 4, 5, 5: mean 19/5; z = (19/5 - 10/3) / (2/3) = 0.7
    frame = twelve()
    result = release_utility(
        frame, withhold(frame, "trajectory", [6]), small_codebook(), k=K, public=False
    )
    means = result["group_means"]
    # trajectory nee, ja and leader nee (7) have n >= 5; leader ja has 4; LT has no scores
    assert means["groups_compared"] == 3
    assert means["max_abs_z"] == pytest.approx(0.7)
    assert means["mean_abs_z"] == pytest.approx(round(0.7 / 3, 2))
    text = json.dumps(result)  # no group's size or mean is published
    assert "19" not in text.replace("19.", "") and "3.33" not in text and "3.8" not in text
    assert means["by_variable"]["trajectory"] == {
        "groups_compared": 2,
        "groups_lost": 0,
        "max_abs_z": pytest.approx(0.7),
    }


def test_a_group_under_k_never_appears():
    frame = twelve()
    # trajectory "ja" loses two of its six: 4 < k in the release; leader "ja" has 4 anyway
    release = withhold(frame, "trajectory", [6, 7])
    release.loc[0, "leader"] = SUPPRESSED
    result = release_utility(frame, release, small_codebook(), k=K, public=False)
    means = result["group_means"]
    assert means["groups_lost"] == 1
    assert means["groups_compared"] == 2  # trajectory nee and leader nee
    assert means["by_variable"]["trajectory"]["groups_lost"] == 1
    assert means["by_variable"]["leader"] == {
        "groups_compared": 1,
        "groups_lost": 0,
        "max_abs_z": 0.0,
    }
    text = json.dumps(result)
    assert '"ja"' not in text  # no group is named


def test_the_public_use_file_compares_at_the_coarser_levels():
    codebook = small_codebook(("tenure_band",), coarser={"tenure_band": TENURE_COARSER})
    # "<1" and "1-2" have 3 each (under k), together "<3" has 6: 1, 2, 3, 4, 5, 5 as above
    frame = restricted_frame(
        {"tenure_band": ["<1"] * 3 + ["1-2"] * 3 + ["3-5"] * 5},
        sl=[1, 2, 3, 4, 5, 5] + [3] * 5,
    )
    release = public_file(withhold(frame, "tenure_band", [0]), codebook)
    assert "person_id" not in release.columns
    result = release_utility(frame, release, codebook, k=K, public=True)
    assert result["release"] == "public_use"
    # "<3": 6 restricted, 5 in the release, z = 0.7 as above; "3-5" unchanged
    assert result["group_means"]["max_abs_z"] == pytest.approx(0.7)
    assert result["group_means"]["groups_compared"] == 2  # "<3" and "3-5"
    assert result["suppression"]["values_recoded"] == 5  # the six under 3 years, one withheld
    assert result["suppression"]["records_changed"] == 6
    # the scientific use file of the same rows has no group "<3", and "<1", "1-2" are under k
    scientific = release_utility(
        frame, withhold(frame, "tenure_band", [0]), codebook, k=K, public=False
    )
    assert scientific["group_means"]["groups_compared"] == 1
    assert scientific["group_means"]["max_abs_z"] == 0.0


def test_a_release_that_breaks_the_contract_is_refused():
    codebook = small_codebook(("tenure_band",), coarser={"tenure_band": TENURE_COARSER})
    frame = restricted_frame({"tenure_band": ["<1"] * 6}, sl=[3] * 6)
    with pytest.raises(ValueError, match="expected level"):  # a public use file as scientific
        release_utility(frame, public_file(frame, codebook), codebook, k=K, public=False)
    blanked = frame.copy()
    blanked.loc[0, "tenure_band"] = NA  # withheld must be SUPPRESSED, <NA> is "not given"
    with pytest.raises(ValueError, match="expected level"):
        release_utility(frame, blanked, codebook, k=K, public=False)
    with pytest.raises(ValueError, match="same order"):
        release_utility(
            frame, frame[::-1].assign(company_id=["c2"] + ["c1"] * 5), codebook, k=K, public=False
        )


# --- models ------------------------------------------------------------------------------------


def pipeline_estimates(frame: pd.DataFrame, codebook, controls: dict) -> pd.DataFrame:
    """`wave_models` as the pipeline fits them, on the rows with every control given."""
    given = np.logical_and.reduce([(frame[c].notna() & (frame[c] != SUPPRESSED)) for c in controls])
    scores = pd.concat([frame[["company_id"]], score_scales(frame, codebook)], axis=1)[given]
    models = codebook.models
    results = wave_models(
        model_frame(scores, frame[given], controls),
        models.outcomes,
        models.culture,
        models.controls,
    )
    return coefficients_table(results).set_index(["model", "term"])


def test_the_models_are_the_pipelines_on_complete_cases():
    frame = panel()
    codebook = small_codebook(("trajectory",), controls=("trajectory",))
    release = withhold(frame, "trajectory", np.flatnonzero(frame["trajectory"].notna())[::4])
    result = release_utility(frame, release, codebook, k=K, public=False)
    models = result["models"]
    assert models["coefficients_compared"] == 5
    assert models["notes"] == []
    rows = models["complete_cases"]["SL"]
    assert rows["restricted"] == frame["trajectory"].notna().sum()
    assert rows["release"] == rows["restricted"] - (release["trajectory"] == SUPPRESSED).sum()
    levels = {"trajectory": CODEBOOK.background["trajectory"].levels}
    before = pipeline_estimates(frame, codebook, levels)
    after = pipeline_estimates(release, codebook, levels)
    assert len(models["worst"]) == 5
    for row in models["worst"]:
        key = (row["model"], row["term"])
        assert row["estimate_restricted"] == pytest.approx(before.loc[key, "estimate"], rel=1e-9)
        assert row["std_error_restricted"] == pytest.approx(before.loc[key, "std_error"], rel=1e-9)
        assert row["estimate_release"] == pytest.approx(after.loc[key, "estimate"], rel=1e-9)
        shift = row["estimate_release"] - row["estimate_restricted"]
        assert row["z"] == pytest.approx(shift / row["std_error_restricted"])
    assert models["max_abs_z"] == pytest.approx(abs(models["worst"][0]["z"]))


@pytest.mark.parametrize(
    ("coarser", "compared", "notes"),
    [
        ({"tenure_band": TENURE_COARSER}, 1 + 2, 1),  # Intercept; LT within and between
        ({"leader": {"ja": "yes"}}, 1 + 1 + 2 + 4, 0),  # the controls are not recoded
    ],
)
def test_the_public_use_file_compares_the_terms_that_keep_their_meaning(coarser, compared, notes):
    frame = panel()
    codebook = small_codebook(("tenure_band", "leader"), ("tenure_band",), coarser)
    release = public_file(withhold(frame, "tenure_band", [0, 5, 9]), codebook)
    models = release_utility(frame, release, codebook, k=K, public=True)["models"]
    assert models["models_compared"] == 2
    assert models["coefficients_compared"] == compared
    assert models["not_estimable"] == []
    assert len(models["notes"]) == notes
    if notes:
        assert models["notes"][0].startswith("SL/full: the release's controls make another design")
        assert {row["term"] for row in models["worst"]} <= {"Intercept", "LT_within", "LT_between"}


def test_without_controls_the_models_are_not_fitted():
    frame = panel()
    release = withhold(frame, "trajectory", [1, 2, 3])
    models = release_utility(frame, release, small_codebook(), k=K, public=False)["models"]
    assert "no background controls" in models["reason"]
    assert models["coefficients_compared"] == models["models_compared"] == 0
    assert models["max_abs_z"] is None and models["worst"] == [] and not models["complete_cases"]


# --- real data ---------------------------------------------------------------------------------


def test_a_demo_wave_gives_a_readable_json_without_groups_under_k():
    raw = read_wave(ROOT / "data" / "raw" / "2021-T1", CODEBOOK, ROOT / "data" / "raw")
    raw = raw[raw["status"] == 0].reset_index(drop=True)
    items = raw[CODEBOOK.items].astype(float)
    restricted = pd.concat(
        [
            pd.DataFrame(
                {
                    "person_id": raw[CODEBOOK.respondent_id],
                    "company_id": raw[CODEBOOK.company_id],
                    "wave": raw["wave"],
                }
            ).astype("string"),
            background_labels(raw, CODEBOOK),
            items.mask(items.isin(list(CODEBOOK.missing_codes))),
        ],
        axis=1,
    )
    release = restricted.copy()
    for name in ("gender", "department", "function_group"):
        given = np.flatnonzero(restricted[name].notna())
        release.loc[given[::7], name] = SUPPRESSED
    result = release_utility(restricted, release, CODEBOOK, k=K, public=False)
    text = json.dumps(result, allow_nan=False)
    assert len(text) < 20_000
    assert result["suppression"]["values_suppressed_total"] == sum(
        -(-restricted[name].notna().sum() // 7)
        for name in ("gender", "department", "function_group")
    )
    assert result["models"]["models_compared"] == 4
    assert result["models"]["coefficients_compared"] > 4
    assert "n_restricted" not in text and "mean_restricted" not in text
