"""Statistical disclosure control within each company, after R's sdcMicro.

k-anonymity by local suppression (`localSuppression(k, strataVars=company)`) and the individual
risk of `measure_risk`, without sampling weights: the sample is treated as the population, which
overstates the risk and so errs on the safe side.

The frequency fk of a record is the number of records of its company that match it on every
quasi-identifier, where a missing value matches anything (both ways). A record is at risk when
fk < k. Quasi-identifiers are handled as integer codes per column, -1 for missing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from pipeline.codebook import Codebook

MISSING = -1


@dataclass(frozen=True)
class DisclosureReport:
    """What the pipeline records per wave; counts and risks only, no row data."""

    k: int
    quasi_identifiers: tuple[str, ...]
    records: int
    at_risk_before: int  # records whose combination occurs fewer than k times in their company
    at_risk_after: int
    suppressed: dict[str, int]  # values set to missing, per quasi-identifier
    k_reached: bool  # in every company of at least k records, every record has fk >= k
    small_companies: int  # fewer than k records: all their quasi-identifiers are suppressed
    max_individual_risk: float  # risks are 1/fk per record, after suppression
    expected_reidentifications: float
    global_risk: float

    def as_dict(self) -> dict:
        return {**asdict(self), "quasi_identifiers": list(self.quasi_identifiers)}


def background_labels(frame: pd.DataFrame, codebook: Codebook) -> pd.DataFrame:
    """The background variables as their generalised value labels ("string"; missing codes ->
    <NA>): codes by their value, numbers by their band."""
    missing = list(codebook.missing_codes)
    labels = {}
    for name, variable in codebook.background.items():
        raw = frame[name].mask(frame[name].isin(missing))
        if variable.is_number:
            cuts = [-np.inf, *variable.bands, np.inf]
            values = pd.cut(raw, cuts, right=False, labels=list(variable.values)).astype("string")
        else:
            unknown = raw.notna() & ~raw.isin(list(variable.codes))
            if unknown.any():
                raise ValueError(
                    f"{name}: codes {sorted(set(raw[unknown]))} are neither the codebook's codes "
                    f"({', '.join(map(str, variable.codes))}) nor missing codes"
                )
            values = raw.map(variable.codes).astype("string")
        labels[name] = values.replace(variable.generalise).astype("string")
    return pd.DataFrame(labels, index=frame.index)


def frequencies(background: pd.DataFrame, company: pd.Series, columns: Iterable[str]) -> pd.Series:
    """fk per record: its matches in its company on `columns`, missing matching anything."""
    _check_aligned(background, company)
    codes = _encode(background[list(columns)])
    return pd.Series(_frequencies(codes, _strata(company)), index=background.index, name="fk")


def anonymise_quasi_identifiers(
    background: pd.DataFrame, company: pd.Series, codebook: Codebook
) -> tuple[pd.DataFrame, DisclosureReport]:
    """k-anonymity within each company by local suppression of quasi-identifier values.

    Within a company, while a record is at risk, the at-risk record with the smallest fk (the
    first in row order on ties) loses its first non-missing value in the codebook's
    `suppression_order`. A company with fewer than k records cannot reach k: all its
    quasi-identifiers are suppressed. Other columns are returned unchanged.
    """
    _check_aligned(background, company)
    k = codebook.anonymisation.k
    quasi = list(codebook.anonymisation.suppression_order)
    strata = _strata(company)
    before = _encode(background[quasi])
    after = before.copy()
    for rows in strata:
        after[rows] = _suppress_locally(after[rows], k)

    suppressed = (before != MISSING) & (after == MISSING)
    result = background.copy()
    for j, name in enumerate(quasi):
        result[name] = result[name].mask(suppressed[:, j])
    report = _report(k, quasi, strata, before, after, suppressed)
    return result, report


def _check_aligned(background: pd.DataFrame, company: pd.Series) -> None:
    if not company.index.equals(background.index):
        raise ValueError("company and background must have the same index")


def _encode(frame: pd.DataFrame) -> np.ndarray:
    """(records, columns) integer codes; MISSING for a missing value."""
    codes = np.full((len(frame), frame.shape[1]), MISSING, dtype=np.int64)
    for j, name in enumerate(frame.columns):
        codes[:, j] = pd.factorize(frame[name])[0]
    return codes


def _strata(company: pd.Series) -> list[np.ndarray]:
    """Row positions per company, ascending; records without a company form one stratum."""
    codes = pd.factorize(company, use_na_sentinel=False)[0]
    order = np.argsort(codes, kind="stable")
    return np.split(order, np.flatnonzero(np.diff(codes[order])) + 1) if len(order) else []


def _matches(codes: np.ndarray) -> np.ndarray:
    """(n, n): whether records i and j agree on every column, missing matching anything."""
    a, b = codes[:, None, :], codes[None, :, :]
    return ((a == b) | (a == MISSING) | (b == MISSING)).all(axis=2)


def _frequencies(codes: np.ndarray, strata: list[np.ndarray]) -> np.ndarray:
    fk = np.zeros(len(codes), dtype=np.int64)
    for rows in strata:
        fk[rows] = _matches(codes[rows]).sum(axis=1)
    return fk


def _suppress_locally(codes: np.ndarray, k: int) -> np.ndarray:
    """One company's codes (columns in suppression order) after local suppression.

    Suppressing a value only adds matches, and only those of its own record, so one row and
    column of the match matrix are updated per step instead of recomputing it. The loop ends:
    with at least k records, a record with no value left matches all of them.
    """
    codes = codes.copy()
    if len(codes) < k:
        codes[:] = MISSING
        return codes
    matches = _matches(codes)
    fk = matches.sum(axis=1)
    while fk.min() < k:
        i = int(np.argmin(fk))
        codes[i, np.argmax(codes[i] != MISSING)] = MISSING
        row = ((codes == codes[i]) | (codes == MISSING) | (codes[i] == MISSING)).all(axis=1)
        fk += row & ~matches[i]
        fk[i] = row.sum()
        matches[i], matches[:, i] = row, row
    return codes


def _report(k, quasi, strata, before, after, suppressed) -> DisclosureReport:
    fk_before, fk_after = _frequencies(before, strata), _frequencies(after, strata)
    large = np.zeros(len(fk_after), dtype=bool)
    for rows in strata:
        large[rows] = len(rows) >= k
    risk = 1.0 / fk_after
    return DisclosureReport(
        k=k,
        quasi_identifiers=tuple(quasi),
        records=len(fk_after),
        at_risk_before=int((fk_before < k).sum()),
        at_risk_after=int((fk_after < k).sum()),
        suppressed={name: int(n) for name, n in zip(quasi, suppressed.sum(axis=0), strict=True)},
        k_reached=bool((fk_after[large] >= k).all()),
        small_companies=sum(len(rows) < k for rows in strata),
        max_individual_risk=float(risk.max()) if len(risk) else 0.0,
        expected_reidentifications=float(risk.sum()),
        global_risk=float(risk.mean()) if len(risk) else 0.0,
    )
