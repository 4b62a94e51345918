"""The effect of development trajectories on the culture and outcome scales: a multilevel
difference-in-differences over the waves, and the participants-versus-colleagues contrast.

Per scale, two models, both with an intercept per company and per person within company (lme4's
`lmer(y ~ ... + (1 | company) + (1 | company:person))`, REML), fitted with the multilevel
module's guarded engines (`fit_guarded`) and reported with its between-within df:

- `<scale>/trajectory`, all companies: y ~ wave + has_trajectory + after_start. `wave` is a
  fixed effect per wave (a dummy for every wave but the first), `has_trajectory` marks a company
  that runs a trajectory in some wave of the data, `after_start` its rows in the waves on or
  after the start of its first trajectory (the wave's first fieldwork day on or after the
  start). `after_start` is the difference-in-differences: the change of the company's
  employees after the start beyond the change of the companies without one.
- `<scale>/participants`, the companies with a trajectory: y ~ wave + after_start + participant +
  participant_after_start (`after_start` left out when every trajectory starts before the same
  wave: then the waves' terms hold it). `participant` marks a person who takes part (by the survey's
  participation variable or the participants list), `participant_after_start` is the
  participants' change after the start beyond their colleagues'.

Trajectories of all types pool into one effect: a few dozen companies do not carry one per type.
A trajectory's effect is taken to last after its end (what was learned stays learned), and with
starts staggered over the waves the estimate is the two-way fixed-effects one, unbiased when the
effect is the same whichever wave a trajectory starts in (Goodman-Bacon, 2021).

Agreement with lme4 (fixed effects, SEs and variances within 1e-4 relative) is checked in
tests/models/test_trajectory_models.py against tests/reference/lme4_trajectories.R; the confidence
intervals' coverage of a planted effect over 100 simulated demo scans in the same file.
"""

from collections.abc import Sequence

import numpy as np
import pandas as pd

from pipeline.models.multilevel import (
    COMPANY,
    INTERCEPT,
    PERSON,
    WAVE,
    Design,
    ModelResult,
    NotEstimable,
    fit_model,
)

HAS_TRAJECTORY = "has_trajectory"
AFTER_START = "after_start"
PARTICIPANT = "participant"
PARTICIPANT_AFTER_START = "participant_after_start"
EFFECTS = (AFTER_START, PARTICIPANT_AFTER_START)  # the terms the reports show
MIN_COMPANIES = 2  # with a trajectory started in the data, and without one


def exposure_frame(
    scores: pd.DataFrame,
    trajectories: pd.DataFrame,
    participants: frozenset[str] | None,
    wave_starts: dict[str, pd.Timestamp],
) -> pd.DataFrame:
    """`scores` (company_id, person_id, wave, scales) with `has_trajectory`, `after_start` and,
    when participation is known, `participant` (0/1). `trajectories`: company_id, start."""
    first = trajectories.groupby(COMPANY)["start"].min()
    start = scores[COMPANY].map(first)
    when = scores[WAVE].map(wave_starts)
    after = (start <= when).astype(float)  # a missing start or wave date compares False
    ever = after.groupby(scores[COMPANY]).transform("max")
    frame = scores.assign(**{HAS_TRAJECTORY: ever, AFTER_START: after})
    if participants is not None:
        frame[PARTICIPANT] = scores[PERSON].isin(participants).astype(float)
    return frame


def wave_dummies(waves: pd.Series, order: Sequence[str]) -> dict[str, np.ndarray]:
    present = [w for w in order if w in set(waves)]
    return {f"{WAVE}[{w}]": (waves == w).to_numpy(float) for w in present[1:]}


def company_design(
    frame: pd.DataFrame, scale: str, terms: dict[str, np.ndarray], n_all: int
) -> Design:
    X = np.column_stack([np.ones(len(frame)), *terms.values()])
    return Design(
        y=frame[scale].to_numpy(float),
        X=X,
        names=(INTERCEPT, *terms),
        company=frame[COMPANY].astype(str).to_numpy(),
        person=frame[PERSON].astype(str).to_numpy(),
        wave=None,
        n_dropped=n_all - len(frame),
    )


def _counts(frame: pd.DataFrame) -> tuple[int, int]:
    """(companies with a trajectory started in the data, companies without)."""
    treated = frame.groupby(COMPANY)[HAS_TRAJECTORY].max()
    return int(treated.sum()), int((treated == 0).sum())


def fit_or_reason(
    name: str, scale: str, design: Design, notes: list[str]
) -> ModelResult | NotEstimable:
    nested = pd.Series(list(zip(design.company, design.person, strict=True))).duplicated().any()
    if not nested:
        notes = [*notes, "person level dropped: every person answered once"]
    try:
        return fit_model(name, scale, design, nested=nested, notes=notes)
    except ValueError as error:  # collinear terms, named by the rank check
        return NotEstimable(name, scale, f"not estimable: {error}")


def trajectory_models(
    frame: pd.DataFrame, scales: Sequence[str], wave_order: Sequence[str]
) -> list[ModelResult | NotEstimable]:
    """Per scale `<scale>/trajectory` and, when `frame` has `participant`, `<scale>/participants`
    (the module's opening); a model the data do not allow is NotEstimable with the reason."""
    results: list[ModelResult | NotEstimable] = []
    waves = frame[WAVE].nunique()
    for scale in scales:
        kept = frame.dropna(subset=[scale, COMPANY, PERSON])
        name = f"{scale}/trajectory"
        treated, control = _counts(kept)
        if waves < 2:
            results.append(NotEstimable(name, scale, f"not estimable: needs 2 waves ({waves})"))
        elif min(treated, control) < MIN_COMPANIES:
            reason = (
                f"not estimable: needs {MIN_COMPANIES} companies with a trajectory started in the "
                f"data and {MIN_COMPANIES} without ({treated} and {control})"
            )
            results.append(NotEstimable(name, scale, reason))
        else:
            terms = wave_dummies(kept[WAVE], wave_order)
            terms |= {t: kept[t].to_numpy(float) for t in (HAS_TRAJECTORY, AFTER_START)}
            notes = [f"{treated} companies with a trajectory, {control} without"]
            results.append(
                fit_or_reason(name, scale, company_design(kept, scale, terms, len(frame)), notes)
            )
        if PARTICIPANT in frame.columns:
            candidates = int((frame[HAS_TRAJECTORY] == 1).sum())
            results.append(_participants(kept, scale, wave_order, treated, candidates))
    return results


def _participants(kept, scale, wave_order, treated, n_all) -> ModelResult | NotEstimable:
    name = f"{scale}/participants"
    rows = kept[kept[HAS_TRAJECTORY] == 1]
    after = rows[rows[AFTER_START] == 1]
    groups = after.groupby(PARTICIPANT)[PERSON].nunique()
    if treated < MIN_COMPANIES or rows[WAVE].nunique() < 2 or len(groups) < 2:
        reason = (
            f"not estimable: needs {MIN_COMPANIES} companies with a trajectory, 2 waves, and "
            "participants and colleagues after a start"
        )
        return NotEstimable(name, scale, reason)
    terms = wave_dummies(rows[WAVE], wave_order)
    if rows.groupby(WAVE)[AFTER_START].nunique().max() > 1:  # else the waves' terms hold it
        terms[AFTER_START] = rows[AFTER_START].to_numpy(float)
    terms[PARTICIPANT] = rows[PARTICIPANT].to_numpy(float)
    terms[PARTICIPANT_AFTER_START] = terms[PARTICIPANT] * rows[AFTER_START].to_numpy(float)
    notes = [
        f"{int(groups.get(1.0, 0))} participants and {int(groups.get(0.0, 0))} colleagues after "
        f"a start, in {treated} companies"
    ]
    return fit_or_reason(name, scale, company_design(rows, scale, terms, n_all), notes)
