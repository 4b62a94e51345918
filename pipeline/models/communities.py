"""Learning-community membership as a company-level predictor of the culture and outcome scales
and of their growth over the waves.

Per scale one model, `<scale>/community`, with an intercept per company and per person within
company (lme4's `lmer(y ~ wave + community + community_growth + (1 | company) +
(1 | company:person))`, REML), fitted with the multilevel module's guarded engines and reported
with its between-within df:

- `wave`: a fixed effect per wave (a dummy for every wave but the first);
- `community`: the company is a member of a learning community in some wave (the register's
  joined and left waves), so the difference of member companies at the first wave;
- `community_growth`: community times the wave's position in the codebook's order (0, 1, ...),
  the member companies' change per wave beyond the others'.

Membership counts from the first wave whenever a company joined (an intention-to-treat reading:
the companies that form the communities), and all communities pool into one term. A handful of
communities is too few for a community variance: membership is a fixed effect, and a community
of its own would rest on 5 to 12 companies. Both are stated in the fit's notes and in
docs/researcher.md.

Agreement with lme4 (fixed effects, SEs and variances within 1e-4 relative) is checked in
tests/models/test_community_models.py against tests/reference/lme4_communities.R.
"""

from collections.abc import Sequence

import pandas as pd

from pipeline.models.multilevel import COMPANY, PERSON, WAVE, ModelResult, NotEstimable
from pipeline.models.trajectories import MIN_COMPANIES, company_design, fit_or_reason, wave_dummies

COMMUNITY = "community"
COMMUNITY_GROWTH = "community_growth"
EFFECTS = (COMMUNITY, COMMUNITY_GROWTH)  # the terms the reports show
CAVEAT = "membership is a fixed effect: too few communities for a variance"


def community_frame(
    scores: pd.DataFrame, members: pd.DataFrame, wave_order: Sequence[str]
) -> pd.DataFrame:
    """`scores` (company_id, person_id, wave, scales) with `community` (0/1: the company is a
    member in some wave of the register `members`, by company_id) and `community_growth`."""
    member = scores[COMPANY].isin(set(members[COMPANY])).astype(float)
    position = scores[WAVE].map({w: float(i) for i, w in enumerate(wave_order)})
    return scores.assign(**{COMMUNITY: member, COMMUNITY_GROWTH: member * position})


def community_models(
    frame: pd.DataFrame, scales: Sequence[str], wave_order: Sequence[str], communities: int
) -> list[ModelResult | NotEstimable]:
    """Per scale `<scale>/community` (the module's opening); a model the data do not allow is
    NotEstimable with the reason. `communities`: how many the register has (for the notes)."""
    results: list[ModelResult | NotEstimable] = []
    waves = frame[WAVE].nunique()
    for scale in scales:
        name = f"{scale}/community"
        kept = frame.dropna(subset=[scale, COMPANY, PERSON])
        member = kept.groupby(COMPANY)[COMMUNITY].max()
        inside, outside = int(member.sum()), int((member == 0).sum())
        if waves < 2:
            results.append(NotEstimable(name, scale, f"not estimable: needs 2 waves ({waves})"))
            continue
        if min(inside, outside) < MIN_COMPANIES:
            reason = (
                f"not estimable: needs {MIN_COMPANIES} member companies and {MIN_COMPANIES} "
                f"others ({inside} and {outside})"
            )
            results.append(NotEstimable(name, scale, reason))
            continue
        terms = wave_dummies(kept[WAVE], wave_order)
        terms |= {t: kept[t].to_numpy(float) for t in EFFECTS}
        notes = [
            f"{inside} member companies of {communities} communities, {outside} others",
            CAVEAT,
        ]
        design = company_design(kept, scale, terms, len(frame))
        results.append(fit_or_reason(name, scale, design, notes))
    return results
