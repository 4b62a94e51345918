"""The community models: membership and its growth over the waves against lme4, who counts as a
member, and what the data do not allow.

Fixtures come from `tests/reference/lme4_communities.R` (lme4 1.1-31, bobyqa with
rhoend = 1e-12).
"""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.models.communities import (
    CAVEAT,
    COMMUNITY,
    COMMUNITY_GROWTH,
    community_frame,
    community_models,
)
from pipeline.models.multilevel import ModelResult, NotEstimable, coefficients_table

REFERENCE = Path(__file__).parents[1] / "reference"
WAVES = ["w1", "w2", "w3"]
LME4_REL = 1e-4  # the tolerance of the other lme4 comparisons


def read(name: str) -> pd.DataFrame:
    return pd.read_csv(REFERENCE / f"lme4_communities_{name}.csv")


@pytest.fixture(scope="module")
def result() -> ModelResult:
    data = read("data").astype({"company_id": str, "person_id": str})
    members = pd.DataFrame({"company_id": data.loc[data[COMMUNITY] == 1, "company_id"].unique()})
    frame = community_frame(data.drop(columns=[COMMUNITY, COMMUNITY_GROWTH]), members, WAVES)
    (fitted,) = community_models(frame, ["y"], WAVES, communities=2)
    return fitted


def relative(ours, theirs) -> float:
    return float(np.max(np.abs(np.asarray(ours) - theirs) / np.maximum(np.abs(theirs), 1e-8)))


def test_the_frame_marks_members_and_their_wave_position():
    data = read("data").astype({"company_id": str, "person_id": str})
    members = pd.DataFrame({"company_id": data.loc[data[COMMUNITY] == 1, "company_id"].unique()})
    frame = community_frame(data.drop(columns=[COMMUNITY, COMMUNITY_GROWTH]), members, WAVES)
    assert frame[COMMUNITY].tolist() == data[COMMUNITY].astype(float).tolist()
    assert frame[COMMUNITY_GROWTH].tolist() == data[COMMUNITY_GROWTH].astype(float).tolist()


def test_the_model_agrees_with_lme4(result):
    fixef, varcomp, fit = read("fixef").set_index("term"), read("varcomp"), read("fit").iloc[0]
    assert isinstance(result, ModelResult) and not result.guarded.blocking
    assert list(result.fit.names) == list(fixef.index)
    assert relative(result.fit.fe, fixef["estimate"]) < LME4_REL
    assert relative(result.fit.se, fixef["se"]) < LME4_REL
    variances = varcomp.set_index("component")["variance"]
    assert relative([result.fit.variances[c] for c in variances.index], variances) < LME4_REL
    assert result.fit.loglik == pytest.approx(fit["loglik"], abs=1e-6)
    assert result.fit.n_obs == fit["nobs"] and result.fit.n_groups["company"] == fit["companies"]


def test_membership_is_a_company_level_term_with_the_caveat(result):
    table = coefficients_table([result]).set_index("term")
    # company level: 30 companies - intercept and community
    assert table.loc[COMMUNITY, "df"] == 30 - 2
    growth = table.loc[COMMUNITY_GROWTH]
    assert growth["ci_low"] < 0.15 < growth["ci_high"]  # the planted growth per wave
    assert CAVEAT in result.notes


def scores(rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["company_id", "person_id", "wave", "y"])


def test_what_the_data_do_not_allow():
    members = pd.DataFrame({"company_id": ["a", "b"]})
    one_wave = scores([(c, f"{c}{i}", "w1", float(i)) for c in "abcdefgh" for i in range(3)])
    (fit,) = community_models(community_frame(one_wave, members, WAVES), ["y"], WAVES, 1)
    assert isinstance(fit, NotEstimable) and "needs 2 waves (1)" in fit.reason
    two = scores(
        [(c, f"{c}{i}", w, float(i)) for c in "abcdefgh" for i in range(3) for w in WAVES[:2]]
    )
    lone = pd.DataFrame({"company_id": ["a"]})
    (fit,) = community_models(community_frame(two, lone, WAVES), ["y"], WAVES, 1)
    assert isinstance(fit, NotEstimable) and "(1 and 7)" in fit.reason
    (fit,) = community_models(community_frame(two, members, WAVES), ["y"], WAVES, 1)
    assert isinstance(fit, ModelResult)
