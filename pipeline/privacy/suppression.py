"""Statistical disclosure control of what reports print: the reporting minimum n is k
(`codebook.anonymisation.k`).

Counts (`suppress_counts`), for the cells of one variable whose total is published:

1. Primary suppression: a cell with 1 to k-1 respondents is hidden. A 0 is shown (it tells
   nothing about anyone).
2. Complementary suppression: while fewer than two cells are hidden, or the hidden cells add up
   to less than k, the smallest cell still shown (not 0; ties in table order) is hidden too.
   Otherwise the published total minus the shown cells would give the hidden cell back, or
   bound the hidden group below k.

If even hiding every nonzero cell leaves the sum under k, the total itself is under k: the
caller must not publish that total.

Statistics (`shown`, `format_stat`): a mean, sd or interval is printed only when it rests on at
least k respondents; otherwise its cell reads "n < k".
"""

import math

import numpy as np
import pandas as pd

SUPPRESSED = "suppressed"


def suppress_counts(counts: pd.Series, k: int, marker: str = SUPPRESSED) -> pd.Series:
    """The counts as an object Series, hidden cells replaced by `marker` (rules above)."""
    values = _checked_counts(counts)
    hidden = (values >= 1) & (values < k)
    if hidden.any():
        candidates = [i for i in np.argsort(values, kind="stable") if values[i] > 0]
        for i in candidates:
            if hidden.sum() >= 2 and values[hidden].sum() >= k:
                break
            hidden[i] = True
    out = pd.Series(values.tolist(), index=counts.index, dtype=object, name=counts.name)
    out[hidden] = marker
    return out


def _checked_counts(counts: pd.Series) -> np.ndarray:
    if counts.isna().any():
        raise ValueError(f"suppress_counts: {counts.name!r} has missing counts")
    values = counts.to_numpy(dtype=float)
    if (values < 0).any() or (values != np.round(values)).any():
        raise ValueError(f"suppress_counts: {counts.name!r} needs counts (integers >= 0)")
    return values.astype(int)


def shown(n, k: int) -> bool:
    """Whether a statistic based on `n` respondents may be printed."""
    if n is None or pd.isna(n):
        return False
    return int(n) >= k


def format_stat(value, n, k: int, digits: int = 2) -> str:
    """`value` with `digits` decimals; "n < k" when it rests on fewer than k, "–" when absent."""
    if not shown(n, k):
        return f"n < {k}"
    if value is None or pd.isna(value) or not math.isfinite(value):
        return "–"
    return fixed(value, digits)


def fixed(value: float, digits: int) -> str:
    """`value` with `digits` decimals, never "-0.00"."""
    return f"{round(value, digits) + 0.0:.{digits}f}"
