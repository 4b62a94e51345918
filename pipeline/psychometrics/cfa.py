"""The measurement model of the scan's scales: each item on its scale, every scale of at least
two items a factor, the factors correlated (lavaan's `cfa()` defaults: the first loading of each
factor fixed to 1, ML with `likelihood = "normal"`), fitted by `fiml.fit_fiml` with the
codebook's estimator (ML or MLR) and missing-data treatment (FIML or listwise), as lavaan's
`cfa(model, data, estimator =, missing = "ml" or "listwise")`. What cannot be fitted is said in
the fit table's note."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.psychometrics.fiml import FIT_MEASURES, FimlResult, fit_fiml
from pipeline.psychometrics.layout import layout_of

MIN_FACTOR_ITEMS = 2  # a factor of one item has no variance of its own to separate from error
FIT_COLUMNS = ["model", "estimator", "missing", "n", *FIT_MEASURES, "note"]


def degrees_of_freedom(model: dict[str, list[str]]) -> int:
    """The model's df: distinct (co)variances of its items minus its free parameters."""
    items = [item for its in model.values() for item in its]
    p = len(items)
    return p * (p + 1) // 2 - layout_of(items, model).n_params


def scale_model(scales: dict[str, list[str]]) -> tuple[dict[str, list[str]], list[str]]:
    """The measurement model of the scales ({factor: items}) that can be fitted, and notes on
    what is left out: scales of fewer than MIN_FACTOR_ITEMS items, or everything when the rest
    has no degrees of freedom to test (one factor of two items, say)."""
    model = {name: items for name, items in scales.items() if len(items) >= MIN_FACTOR_ITEMS}
    notes = [
        f"{name} left out: a factor needs at least {MIN_FACTOR_ITEMS} items"
        for name, items in scales.items()
        if len(items) < MIN_FACTOR_ITEMS
    ]
    if model and degrees_of_freedom(model) < 1:
        notes.append(
            f"not estimable: the model of {', '.join(model)} has {degrees_of_freedom(model)} "
            "degrees of freedom (a fit needs at least 1)"
        )
        model = {}
    elif not model:
        notes.append(f"not estimable: no scale has {MIN_FACTOR_ITEMS} or more items")
    return model, notes


def rows_used(data: pd.DataFrame, items: list[str], missing: str) -> int:
    """The rows a fit keeps: with an answer to an item (FIML) or to every item (listwise)."""
    answered = data[items].notna()
    return int((answered.all(axis=1) if missing == "listwise" else answered.any(axis=1)).sum())


def measurement_tables(
    data: pd.DataFrame, scales: dict[str, list[str]], estimator: str, missing: str
) -> tuple[pd.DataFrame, pd.DataFrame, FimlResult | None]:
    """`cfa_fit` (one row, model "scales", saying the estimator and missing-data treatment, with
    a `note` on what was not estimable) and `cfa_loadings` of the scales' measurement model on
    `data` (reverse-coded items), and the fit itself (None when nothing could be fitted). The
    robust columns are empty under ML."""
    model, notes = scale_model(scales)
    items = [item for its in model.values() for item in its]
    n = rows_used(data, items, missing) if items else 0
    if model and n <= len(items):
        kind = "complete rows" if missing == "listwise" else "rows with an answer"
        notes.append(f"not estimable: {n} {kind} for {len(items)} items")
        model = {}
    result = fit_fiml(data, model, estimator, missing=missing) if model else None
    fit = {name: np.nan for name in FIT_COLUMNS} | {
        "model": "scales",
        "estimator": estimator,
        "missing": missing,
        "n": n,
        "note": "; ".join(notes),
    }
    if result is not None:
        fit |= {name: getattr(result, name) for name in FIT_MEASURES}
        loadings = result.loadings
    else:
        loadings = pd.DataFrame({"factor": [], "item": [], "std_loading": []})
    return pd.DataFrame([fit])[FIT_COLUMNS], loadings, result
