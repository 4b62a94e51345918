"""Holding a FIML/listwise fit to lavaan's fixtures under `tests/reference/`: the fit measures
(`fitMeasures`) and the parameter estimates (`parameterEstimates`) one R script wrote."""

import numpy as np
import pandas as pd

TOLERANCE = 1e-4
# fitMeasures name -> FimlResult field
MEASURES = {
    "ntotal": "n",
    "logl": "loglik",
    "unrestricted.logl": "saturated_loglik",
    "chisq": "chisq",
    "df": "df",
    "baseline.chisq": "baseline_chisq",
    "baseline.df": "baseline_df",
    "cfi": "cfi",
    "tli": "tli",
    "rmsea": "rmsea",
    "srmr": "srmr",
    "chisq.scaled": "chisq_scaled",
    "chisq.scaling.factor": "scaling_factor",
    "cfi.robust": "cfi_robust",
    "tli.robust": "tli_robust",
    "rmsea.robust": "rmsea_robust",
}


def relative(mine, theirs) -> np.ndarray:
    mine, theirs = np.asarray(mine, dtype=float), np.asarray(theirs, dtype=float)
    return np.abs(mine - theirs) / np.maximum(np.abs(theirs), 1e-12)


def assert_fit_agrees(result, expected: pd.Series, estimator: str) -> None:
    """Every fit measure lavaan reported (`expected`: value by measure) within TOLERANCE
    relative; all of them were reported (the robust ones under MLR)."""
    compared = [m for m in MEASURES if m in expected.index]
    assert len(compared) == (16 if estimator == "MLR" else 11)
    for measure in compared:
        mine = getattr(result, MEASURES[measure])
        assert relative(mine, expected[measure]) < TOLERANCE, (measure, mine, expected[measure])


def assert_estimates_agree(result, expected: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Every lavaan parameter has its twin in `result.parameters` (matched on `keys`); estimates
    within TOLERANCE of max(|estimate|, SE) (a residual variance near 0 is compared on the scale
    of its uncertainty), SEs within TOLERANCE relative. Returns the matched rows."""
    both = result.parameters.merge(expected, on=keys, suffixes=("", "_r"))
    assert len(both) == len(expected)
    theirs = both.est_r.astype(float)
    assert np.all(np.abs(both.est - theirs) < TOLERANCE * np.maximum(np.abs(theirs), both.se))
    assert np.all(relative(both.se, both.se_r.astype(float)) < TOLERANCE)
    return both
