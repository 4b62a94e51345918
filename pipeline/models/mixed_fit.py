"""The result of a linear mixed model fit, whichever engine produced it.

Both engines (the fast profiled nested-intercept path in `nested_lmm` and statsmodels' MixedLM
in `multilevel`) return this, so the model layer, the guards and the output tables do not care
which one ran.
"""

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MixedFit:
    names: tuple[str, ...]  # fixed-effect names, in the order of `fe`
    fe: np.ndarray  # fixed-effect estimates
    cov: np.ndarray  # their covariance matrix
    # "company", "person" (if nested), "wave_slope" (if any), "residual"
    variances: dict[str, float]
    loglik: float  # REML criterion when `reml`, else the ML log-likelihood (lme4's convention)
    reml: bool
    converged: bool
    n_obs: int
    n_groups: dict[str, int]  # "company" and, when nested, "person"
    engine: str  # "nested_lmm" or "statsmodels"
    optimizer: str

    @property
    def se(self) -> np.ndarray:
        return np.sqrt(np.diag(self.cov))
