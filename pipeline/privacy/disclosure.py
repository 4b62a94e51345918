"""Statistical disclosure control within each company, after R's sdcMicro.

k-anonymity by local suppression (`localSuppression(k, strataVars=company)`) and the individual
risk of `measure_risk`, without sampling weights: the sample is treated as the population, which
overstates the risk and so errs on the safe side.

The frequency fk of a record is the number of records of its company that match it on every
quasi-identifier, where a missing value matches anything (both ways). A record is at risk when
fk < k. Quasi-identifiers are handled as integer codes per column, -1 for missing.

Panel members are protected over all waves together (`protect_panel`): an intruder who links a
person's records by `person_id` fills a value blanked in one wave from another wave. So a
record is compared on the values it shows in its wave and on its person's profile over the
waves (per variable, the set of values shown in any wave); a value is suppressed in every wave
of the person at once, and fk is counted among the records of the same wave and company. With
one wave and unlinked records this is sdcMicro's per-company local suppression.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.sparse.csgraph import connected_components

from pipeline.instrument.codebook import Codebook

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
    protected_with: tuple[str, ...]  # the waves whose linked records were protected together
    linked_records: int  # records whose person has a record in another of those waves

    def as_dict(self) -> dict:
        return {
            **asdict(self),
            "quasi_identifiers": list(self.quasi_identifiers),
            "protected_with": list(self.protected_with),
        }


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
    """k-anonymity within each company of one wave whose records are not linked."""
    _check_aligned(background, company)
    unlinked = pd.Series(pd.NA, index=background.index, dtype="string")
    one_wave = pd.Series("", index=background.index, dtype="string")
    result, reports = protect_panel(background, company, unlinked, one_wave, codebook, [""])
    return result, reports[""]


def protect_panel(
    background: pd.DataFrame,
    company: pd.Series,
    person: pd.Series,
    wave: pd.Series,
    codebook: Codebook,
    waves: Iterable[str] | None = None,
) -> tuple[pd.DataFrame, dict[str, DisclosureReport]]:
    """k-anonymity within each wave and company, on the persons' profiles over all waves.

    Records with the same `person` (missing: a record of its own) are one person. While a
    record is at risk, the at-risk record with the smallest fk (the first in row order on ties)
    has its person lose the first non-missing profile value in the codebook's
    `suppression_order`, in every wave. The persons of a wave's company with fewer than k records
    cannot reach k there: all their quasi-identifiers are suppressed. Returns the background
    (other columns unchanged) and a report per wave of `waves` (default: those in `wave`).
    """
    for series in (company, person, wave):
        _check_aligned(background, series)
    k = codebook.anonymisation.k
    quasi = list(codebook.anonymisation.suppression_order)
    unit = _persons(person)
    records = _encode(background[quasi])
    before = _profiles(records, unit)
    after = before.copy()
    strata = _strata(wave.astype("string") + "\0" + company.astype("string"))
    for rows in strata:
        if len(rows) < k:
            after[unit[rows]] = MISSING
    for component in _linked(strata, unit):
        _suppress_together(after, records, unit, component, k)

    suppressed = (records != MISSING) & (after[unit] == MISSING)
    result = background.copy()
    for j, name in enumerate(quasi):
        result[name] = result[name].mask(suppressed[:, j])
    in_waves = pd.Series(wave.to_numpy()).groupby(unit).nunique()
    linked = in_waves.reindex(unit).to_numpy() > 1
    waves_seen = tuple(sorted(wave.dropna().unique()))
    reports = {}
    for label in waves_seen if waves is None else waves:
        in_wave = (wave == label).to_numpy()
        positions = np.flatnonzero(in_wave)
        local = [np.searchsorted(positions, rows) for rows in strata if in_wave[rows[0]]]
        reports[label] = _report(
            k,
            quasi,
            local,
            _linked_codes(records[in_wave], before, unit[in_wave]),
            _linked_codes(records[in_wave], after, unit[in_wave]),
            suppressed[in_wave],
            panel=(waves_seen, int(linked[in_wave].sum())),
        )
    return result, reports


def linked_frequencies(
    background: pd.DataFrame, company: pd.Series, person: pd.Series, wave: pd.Series
) -> pd.Series:
    """fk per record as an intruder counts it after linking a person's records over the waves:
    on its own values and its person's profile (`protect_panel`), among the records of the same
    wave and company."""
    for series in (company, person, wave):
        _check_aligned(background, series)
    unit = _persons(person)
    records = _encode(background)
    codes = _linked_codes(records, _profiles(records, unit), unit)
    strata = _strata(wave.astype("string") + "\0" + company.astype("string"))
    return pd.Series(_frequencies(codes, strata), index=background.index, name="fk")


def linked_exposure(responses: pd.DataFrame, quasi: list[str], k: int) -> pd.DataFrame:
    """Per wave of the shareable `responses` (all waves; person_id, company_id, wave): what an
    intruder who links the waves finds. `under_k` counts records of companies with at least k
    records in the wave whose linked fk is below k; `small_company_exposed` records of smaller
    companies of which any quasi-identifier is known from some wave. Both must be 0."""
    frame = responses.reset_index(drop=True)
    fk = linked_frequencies(frame[quasi], frame["company_id"], frame["person_id"], frame["wave"])
    size = frame.groupby(["wave", "company_id"], dropna=False)["wave"].transform("size")
    large = (size >= k).to_numpy()
    known = (_profiles(_encode(frame[quasi]), _persons(frame["person_id"])) != MISSING).any(axis=1)
    in_waves = frame.groupby("person_id")["wave"].nunique()
    table = pd.DataFrame(
        {
            "wave": frame["wave"],
            "records": 1,
            "linked_records": (frame["person_id"].map(in_waves) > 1).fillna(False).astype(int),
            "under_k": (large & (fk < k).to_numpy()).astype(int),
            "small_company_exposed": (~large & known[_persons(frame["person_id"])]).astype(int),
        }
    )
    counts = table.groupby("wave", sort=True).sum()
    counts["min_fk"] = fk[large].groupby(frame["wave"][large]).min()
    return counts.reset_index().astype({"min_fk": "Int64"})


def _persons(person: pd.Series) -> np.ndarray:
    """A person number per record: equal `person` values are one person; a missing one is a
    person of its own."""
    codes = pd.factorize(person)[0]
    alone = codes < 0
    codes[alone] = codes.max(initial=-1) + 1 + np.arange(alone.sum())
    return codes


def _profiles(records: np.ndarray, unit: np.ndarray) -> np.ndarray:
    """(persons, columns) codes of each person's set of values per column over their records;
    MISSING when none. A person with one value keeps that value's code; a set of several values
    gets a code of its own, shared with the persons of the same set."""
    persons = unit.max(initial=-1) + 1
    profiles = np.full((persons, records.shape[1]), MISSING, dtype=np.int64)
    for j in range(records.shape[1]):
        shown = pd.DataFrame({"unit": unit, "value": records[:, j]})
        shown = shown[shown["value"] != MISSING].drop_duplicates().sort_values(["unit", "value"])
        several = shown["unit"].duplicated(keep=False).to_numpy()
        single = shown[~several]
        profiles[single["unit"].to_numpy(), j] = single["value"].to_numpy()
        if several.any():
            sets = shown[several].groupby("unit")["value"].agg(lambda v: ",".join(map(str, v)))
            first = records[:, j].max() + 1
            profiles[sets.index.to_numpy(), j] = first + pd.factorize(sets)[0]
    return profiles


def _linked_codes(records: np.ndarray, profiles: np.ndarray, unit: np.ndarray) -> np.ndarray:
    """(records, 2 * columns): what an intruder who links the waves knows of each record, its
    own values (blanked where its person's profile value is suppressed) beside the profile."""
    mine = profiles[unit]
    return np.hstack([np.where(mine == MISSING, MISSING, records), mine])


def _linked(strata: list[np.ndarray], unit: np.ndarray) -> list[list[np.ndarray]]:
    """The strata grouped so that no person has records in two groups: suppressing a person's
    value only changes the frequencies within its group."""
    n_strata = len(strata)
    if not n_strata:
        return []
    stratum_of = np.empty(len(unit), dtype=np.int64)
    for s, rows in enumerate(strata):
        stratum_of[rows] = s
    graph = sparse.coo_matrix(
        (np.ones(len(unit)), (stratum_of, n_strata + unit)),
        shape=(n_strata + unit.max() + 1,) * 2,
    )
    _, label = connected_components(graph, directed=False)
    groups: dict[int, list[np.ndarray]] = {}
    for s, rows in enumerate(strata):
        groups.setdefault(int(label[s]), []).append(rows)
    return list(groups.values())


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


def _suppress_together(
    profiles: np.ndarray, records: np.ndarray, unit: np.ndarray, strata: list[np.ndarray], k: int
) -> None:
    """Local suppression on `profiles` (in place) for the linked `strata` (`_linked`), the
    records compared on `_linked_codes`.

    Suppressing a value only adds matches, and only those of its person's records, so per
    stratum one row and column of the match matrix are updated per step instead of recomputing
    it. The loop ends: a record whose person has no value left matches every record of its
    stratum, and strata under k hold only persons without values.
    """
    rows = np.concatenate(strata)
    order = np.argsort(rows, kind="stable")  # ties go to the first record in row order
    rows = rows[order]
    where = np.concatenate([np.full(len(r), s) for s, r in enumerate(strata)])[order]
    local = [np.flatnonzero(where == s) for s in range(len(strata))]
    matches = [
        _matches(_linked_codes(records[rows[pos]], profiles, unit[rows[pos]])) for pos in local
    ]
    fk = np.empty(len(rows), dtype=np.int64)
    for pos, m in zip(local, matches, strict=True):
        fk[pos] = m.sum(axis=1)
    large = np.zeros(len(rows), dtype=bool)
    for pos in local:
        large[pos] = len(pos) >= k
    while (fk[large] < k).any():
        i = int(np.argmin(np.where(large, fk, np.iinfo(np.int64).max)))
        person = unit[rows[i]]
        profiles[person, np.argmax(profiles[person] != MISSING)] = MISSING
        for pos, m in zip(local, matches, strict=True):
            mine = np.flatnonzero(unit[rows[pos]] == person)
            if not len(mine):
                continue
            codes = _linked_codes(records[rows[pos]], profiles, unit[rows[pos]])
            for r in mine:
                row = ((codes == codes[r]) | (codes == MISSING) | (codes[r] == MISSING)).all(axis=1)
                fk[pos] += row & ~m[r]
                fk[pos[r]] = row.sum()
                m[r], m[:, r] = row, row


def _report(k, quasi, strata, before, after, suppressed, panel) -> DisclosureReport:
    fk_before, fk_after = _frequencies(before, strata), _frequencies(after, strata)
    large = np.zeros(len(fk_after), dtype=bool)
    for rows in strata:
        large[rows] = len(rows) >= k
    risk = 1.0 / fk_after
    waves, linked = panel
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
        protected_with=waves,
        linked_records=linked,
    )
