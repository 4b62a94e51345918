"""Scale scores: the mean of a scale's valid items, when enough of them are valid.

A valid answer is one of the response scale's codes (min..max, whole numbers); missing codes
(9, -99) and anything else count as missing. Reverse-keyed items are recoded `min + max - x` first.
"""

import numpy as np
import pandas as pd

from pipeline.instrument.codebook import Codebook

# n_valid / k is compared with min_valid in floating point: 2/3 must pass min_valid = 2/3.
TOLERANCE = 1e-9


def recode_items(frame: pd.DataFrame, codebook: Codebook) -> pd.DataFrame:
    """The items as floats, NaN where not a valid answer, reverse-keyed items recoded."""
    recoded = {}
    for scale in codebook.scales.values():
        low, high = scale.response_scale.min, scale.response_scale.max
        for item in scale.items:
            values = pd.to_numeric(frame[item], errors="coerce").to_numpy(dtype="float64")
            valid = (values >= low) & (values <= high) & (values == np.round(values))
            values = np.where(valid, values, np.nan)
            recoded[item] = low + high - values if item in scale.reverse else values
    return pd.DataFrame(recoded, index=frame.index)


def score_scales(frame: pd.DataFrame, codebook: Codebook) -> pd.DataFrame:
    """Per scale a score column (named as the scale) and `<scale>_n_valid`; same index."""
    items = recode_items(frame, codebook)
    scores = {}
    for scale in codebook.scales.values():
        answers = items[list(scale.items)].to_numpy()
        valid = ~np.isnan(answers)
        n_valid = valid.sum(axis=1)
        enough = n_valid / len(scale.items) >= scale.min_valid - TOLERANCE
        total = np.where(valid, answers, 0.0).sum(axis=1)
        scores[scale.name] = np.where(enough, total / np.maximum(n_valid, 1), np.nan)
        scores[f"{scale.name}_n_valid"] = n_valid.astype("int64")
    return pd.DataFrame(scores, index=frame.index)
