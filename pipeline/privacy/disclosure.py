"""Statistical disclosure control within each company, after R's sdcMicro.

Intruder scenarios, as mu-ARGUS and sdcMicro's `localSuppression(combs = m)` set them: an
intruder knows a record's company and up to m of its quasi-identifiers. The frequency fk of a
record on a combination of quasi-identifiers is the number of records of its company that
match it there, a missing (or suppressed) value matching anything, both ways. A record is at
risk when fk < k on some combination of m quasi-identifiers; k-anonymity on every combination of
exactly m implies it on fewer (dropping a variable only adds matches). m = None is all of them
at once. A record's fk below is its smallest over the combinations: the intruder's best one.

Local suppression, as sdcMicro's with its `importance`: while a record is at risk, the record
with the smallest fk (the first in row order on ties) loses, in its worst combination, the value
of the least important variable it still shows (the codebook's `suppression_order`, least
important first). The persons of a wave's company with fewer than k records cannot reach k
there: all their quasi-identifiers are suppressed.

The individual risk is sdcMicro's `measure_risk` without sampling weights, 1/fk, its sum the
expected re-identifications and its mean the global risk: the sample is treated as the
population, which overstates the risk and so errs on the safe side.

Panel members are protected over all waves together (`protect_panel`): an intruder who links a
person's records by `person_id` fills a value blanked in one wave from another wave. So a
record is compared on the values it shows in its wave and on its person's profile over the
waves (per variable, the set of values shown in any wave); a value is suppressed in every wave
of the person at once, and fk is counted among the records of the same wave and company. With
unlinked records (no person) this is sdcMicro's per-company local suppression.

Quasi-identifiers are handled as integer codes per variable, MISSING for a missing value and for
SUPPRESSED, the value a release file shows where one was withheld.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from itertools import combinations

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.sparse.csgraph import connected_components

from pipeline.instrument.codebook import SUPPRESSED, Codebook

MISSING = -1


@dataclass(frozen=True)
class Scenario:
    """The protection of a release: k within each company on every combination of m of the
    quasi-identifiers (None: all at once), given in importance order, least important first."""

    k: int
    m: int | None
    quasi: tuple[str, ...]

    def combinations(self) -> np.ndarray:
        """(combinations, size) column positions of the quasi-identifiers."""
        size = len(self.quasi) if self.m is None else min(self.m, len(self.quasi))
        found = list(combinations(range(len(self.quasi)), size))
        return np.array(found, dtype=np.int64).reshape(len(found), size)


@dataclass(frozen=True)
class Risk:
    """sdcMicro's measure_risk of a wave, on the scenario's fk."""

    records_at_risk: int  # fk < k, in companies of at least k records
    max_individual_risk: float
    expected_reidentifications: float
    global_risk: float


@dataclass(frozen=True)
class DisclosureReport:
    """What the pipeline records per wave and release; counts and risks only, no row data."""

    k: int
    m: int | None
    quasi_identifiers: tuple[str, ...]
    records: int
    at_risk_before: int  # records at risk in companies of at least k records
    at_risk_after: int
    suppressed: dict[str, int]  # values withheld, per quasi-identifier
    k_reached: bool  # in every company of at least k records, every record has fk >= k
    small_companies: int  # fewer than k records: all their quasi-identifiers are suppressed
    risk_before: Risk
    risk_after: Risk
    protected_with: tuple[str, ...]  # the waves whose linked records were protected together
    linked_records: int  # records whose person has a record in another of those waves
    l_diversity: int | None = None  # of the release's answers (`l_diversity`), once made

    def as_dict(self) -> dict:
        return {
            **asdict(self),
            "m": "all" if self.m is None else self.m,
            "quasi_identifiers": list(self.quasi_identifiers),
            "protected_with": list(self.protected_with),
        }


def describe_disclosure(disclosure: dict) -> str:
    """One line of disclosure.json: 'scientific use file: k=3, m=2 reached; records at risk
    212 -> 0; suppressed gender 30, ...; max individual risk 0.33; ... key 3f2a... (file)'."""
    parts = []
    for name, title in (
        ("scientific_use", "scientific use file"),
        ("public_use", "public use file"),
    ):
        d = disclosure[name]
        suppressed = ", ".join(f"{v} {n}" for v, n in d["suppressed"].items() if n) or "nothing"
        parts.append(
            f"{title}: k={d['k']}, m={d['m']} {'reached' if d['k_reached'] else 'NOT reached'}; "
            f"records at risk {d['at_risk_before']} -> {d['at_risk_after']}; suppressed "
            f"{suppressed}; max individual risk {d['risk_after']['max_individual_risk']:.2f}"
        )
    d = disclosure["scientific_use"]
    return (
        f"{'; '.join(parts)}; companies under k {d['small_companies']}; {d['linked_records']} "
        f"records linked to other waves and protected with them; key {disclosure['key_id']} "
        f"({disclosure['key_source']})"
    )


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


def frequencies(
    background: pd.DataFrame, company: pd.Series, columns: Iterable[str], m: int | None = None
) -> pd.Series:
    """fk per record: its matches in its company on `columns`, missing matching anything, the
    smallest over the combinations of m of them."""
    _check_aligned(background, company)
    columns = list(columns)
    combos = Scenario(1, m, tuple(columns)).combinations()
    codes = _encode(background[columns])[:, :, None]
    fk = _frequencies(codes, _strata(company), combos)
    return pd.Series(fk, index=background.index, name="fk")


def anonymise_quasi_identifiers(
    background: pd.DataFrame, company: pd.Series, scenario: Scenario
) -> tuple[pd.DataFrame, DisclosureReport]:
    """k-anonymity within each company of one wave whose records are not linked."""
    _check_aligned(background, company)
    unlinked = pd.Series(pd.NA, index=background.index, dtype="string")
    one_wave = pd.Series("", index=background.index, dtype="string")
    result, reports = protect_panel(background, company, unlinked, one_wave, scenario, [""])
    return result, reports[""]


def protect_panel(
    background: pd.DataFrame,
    company: pd.Series,
    person: pd.Series,
    wave: pd.Series,
    scenario: Scenario,
    waves: Iterable[str] | None = None,
) -> tuple[pd.DataFrame, dict[str, DisclosureReport]]:
    """k-anonymity within each wave and company on the scenario's combinations, on the
    persons' profiles over all waves (module docstring).

    Records with the same `person` (missing: a record of its own) are one person. Returns the
    background with SUPPRESSED where a value was withheld (other columns unchanged) and a report
    per wave of `waves` (default: those in `wave`).
    """
    for series in (company, person, wave):
        _check_aligned(background, series)
    k, quasi, combos = scenario.k, list(scenario.quasi), scenario.combinations()
    unit = _persons(person)
    records = _encode(background[quasi])
    before = _profiles(records, unit)
    after = before.copy()
    strata = _strata(wave.astype("string") + "\0" + company.astype("string"))
    for rows in strata:
        if len(rows) < k:
            after[unit[rows]] = MISSING
    for component in _linked(strata, unit):
        _suppress_together(after, records, unit, component, k, combos)

    suppressed = (records != MISSING) & (after[unit] == MISSING)
    result = background.copy()
    for j, name in enumerate(quasi):
        result[name] = result[name].astype("string").mask(suppressed[:, j], SUPPRESSED)
    in_waves = pd.Series(wave.to_numpy()).groupby(unit).nunique()
    linked = in_waves.reindex(unit).to_numpy() > 1
    waves_seen = tuple(sorted(wave.dropna().unique()))
    reports = {}
    for label in waves_seen if waves is None else waves:
        in_wave = (wave == label).to_numpy()
        local = _local_strata(strata, in_wave)
        fk_before = _frequencies(
            _linked_codes(records[in_wave], before, unit[in_wave]), local, combos
        )
        fk_after = _frequencies(
            _linked_codes(records[in_wave], after, unit[in_wave]), local, combos
        )
        large = _in_large(local, len(fk_after), k)
        risk_before, risk_after = _risk(fk_before, large, k), _risk(fk_after, large, k)
        reports[label] = DisclosureReport(
            k=k,
            m=scenario.m,
            quasi_identifiers=tuple(quasi),
            records=len(fk_after),
            at_risk_before=risk_before.records_at_risk,
            at_risk_after=risk_after.records_at_risk,
            suppressed={
                n: int(c) for n, c in zip(quasi, suppressed[in_wave].sum(axis=0), strict=True)
            },
            k_reached=risk_after.records_at_risk == 0,
            small_companies=sum(len(rows) < k for rows in local),
            risk_before=risk_before,
            risk_after=risk_after,
            protected_with=waves_seen,
            linked_records=int(linked[in_wave].sum()),
        )
    return result, reports


def measure_risk(
    background: pd.DataFrame,
    company: pd.Series,
    person: pd.Series,
    wave: pd.Series,
    scenario: Scenario,
) -> dict[str, Risk]:
    """Per wave, the risk of `background` as it stands (no suppression) for an intruder who
    links the records of a person."""
    fk = linked_frequencies(background[list(scenario.quasi)], company, person, wave, scenario.m)
    risks = {}
    for label in sorted(wave.dropna().unique()):
        mine = (wave == label).to_numpy()
        size = company[mine].groupby(company[mine], dropna=False).transform("size").to_numpy()
        risks[label] = _risk(fk.to_numpy()[mine], size >= scenario.k, scenario.k)
    return risks


def l_diversity(release: pd.DataFrame, quasi: list[str], sensitive: list[str]) -> int:
    """Distinct l-diversity (Machanavajjhala et al. 2007; pycanon's `l_diversity`): the fewest
    distinct values of a sensitive column within a class of records that share their company
    and every quasi-identifier as the file shows them (a withheld or missing value is a value
    of its own). 1 means that some class gave one answer: knowing a person's class tells it."""
    if release.empty:
        return 0
    classes = release.groupby(["company_id", *quasi], dropna=False)[sensitive]
    return int(classes.nunique(dropna=False).min().min())


def linked_frequencies(
    background: pd.DataFrame,
    company: pd.Series,
    person: pd.Series,
    wave: pd.Series,
    m: int | None = None,
) -> pd.Series:
    """fk per record as an intruder counts it after linking a person's records over the waves:
    on its own values and its person's profile (`protect_panel`), among the records of the same
    wave and company, the smallest over the combinations of m columns."""
    for series in (company, person, wave):
        _check_aligned(background, series)
    unit = _persons(person)
    records = _encode(background)
    codes = _linked_codes(records, _profiles(records, unit), unit)
    strata = _strata(wave.astype("string") + "\0" + company.astype("string"))
    combos = Scenario(1, m, tuple(background.columns)).combinations()
    return pd.Series(_frequencies(codes, strata, combos), index=background.index, name="fk")


def linked_exposure(
    responses: pd.DataFrame, quasi: list[str], k: int, m: int | None = None
) -> pd.DataFrame:
    """Per wave of the shareable `responses` (all waves; person_id, company_id, wave): what an
    intruder who links the waves finds. `under_k` counts records of companies with at least k
    records in the wave whose linked fk is below k; `small_company_exposed` records of smaller
    companies of which any quasi-identifier is known from some wave. Both must be 0."""
    frame = responses.reset_index(drop=True)
    fk = linked_frequencies(frame[quasi], frame["company_id"], frame["person_id"], frame["wave"], m)
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
    """(records, columns, 2): what an intruder who links the waves knows of each record per
    variable, its own value (blanked where its person's profile value is suppressed) beside the
    profile."""
    mine = profiles[unit]
    return np.stack([np.where(mine == MISSING, MISSING, records), mine], axis=2)


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
    """(records, columns) integer codes; MISSING for a missing or SUPPRESSED value."""
    codes = np.full((len(frame), frame.shape[1]), MISSING, dtype=np.int64)
    for j, name in enumerate(frame.columns):
        column = frame[name]
        codes[:, j] = pd.factorize(column.mask(column.isin([SUPPRESSED])))[0]
    return codes


def _strata(company: pd.Series) -> list[np.ndarray]:
    """Row positions per company, ascending; records without a company form one stratum."""
    codes = pd.factorize(company, use_na_sentinel=False)[0]
    order = np.argsort(codes, kind="stable")
    return np.split(order, np.flatnonzero(np.diff(codes[order])) + 1) if len(order) else []


def _local_strata(strata: list[np.ndarray], mine: np.ndarray) -> list[np.ndarray]:
    """The strata within the records `mine`, as positions among them."""
    positions = np.flatnonzero(mine)
    return [np.searchsorted(positions, rows) for rows in strata if mine[rows[0]]]


def _in_large(strata: list[np.ndarray], n: int, k: int) -> np.ndarray:
    large = np.zeros(n, dtype=bool)
    for rows in strata:
        large[rows] = len(rows) >= k
    return large


def _matches(codes: np.ndarray) -> np.ndarray:
    """(variables, n, n): whether records i and j agree on each variable (all its columns),
    missing matching anything; `codes` is (n, variables, columns)."""
    by_variable = np.ascontiguousarray(codes.transpose(1, 2, 0))  # (variables, columns, n)
    missing = by_variable == MISSING
    agree = by_variable[:, :, :, None] == by_variable[:, :, None, :]
    agree |= missing[:, :, :, None]
    agree |= missing[:, :, None, :]
    return agree.all(axis=1)


def _combination_fk(matches: np.ndarray, combos: np.ndarray) -> np.ndarray:
    """(combinations, n): each record's matches on every variable of each combination."""
    return matches[combos].all(axis=1).sum(axis=2)


def _frequencies(codes: np.ndarray, strata: list[np.ndarray], combos: np.ndarray) -> np.ndarray:
    """fk per record, the smallest over `combos`; `codes` is (n, variables, columns)."""
    fk = np.zeros(len(codes), dtype=np.int64)
    for rows in strata:
        fk[rows] = _combination_fk(_matches(codes[rows]), combos).min(axis=0)
    return fk


def _risk(fk: np.ndarray, large: np.ndarray, k: int) -> Risk:
    risk = 1.0 / fk if len(fk) else np.zeros(0)
    return Risk(
        records_at_risk=int((large & (fk < k)).sum()),
        max_individual_risk=float(risk.max()) if len(risk) else 0.0,
        expected_reidentifications=float(risk.sum()),
        global_risk=float(risk.mean()) if len(risk) else 0.0,
    )


def _suppress_together(
    profiles: np.ndarray,
    records: np.ndarray,
    unit: np.ndarray,
    strata: list[np.ndarray],
    k: int,
    combos: np.ndarray,
) -> None:
    """Local suppression on `profiles` (in place) for the linked `strata` (`_linked`), the
    records compared on `_linked_codes`.

    Once a person's value of a variable is suppressed, their records match every record on it:
    per step the variable's match matrix gets a row and column of True per such record, and the
    counts of the combinations with that variable grow by the pairs this makes match (the
    other variables of the combination agree, this one did not). The loop ends: a record whose
    person shows no value of a combination matches every record of its stratum there, and
    strata under k hold only persons without values.
    """
    rows = np.concatenate(strata)
    order = np.argsort(rows, kind="stable")  # ties go to the first record in row order
    rows = rows[order]
    where = np.concatenate([np.full(len(r), s) for s, r in enumerate(strata)])[order]
    local = [np.flatnonzero(where == s) for s in range(len(strata))]
    within = np.empty(len(rows), dtype=np.int64)  # a record's position in its stratum
    for pos in local:
        within[pos] = np.arange(len(pos))
    persons = unit[rows]
    records_of: dict[int, list[tuple[int, np.ndarray]]] = {}  # person -> (stratum, positions)
    for s, pos in enumerate(local):
        order = np.argsort(persons[pos], kind="stable")
        found, starts = np.unique(persons[pos][order], return_index=True)
        for person, mine in zip(found.tolist(), np.split(order, starts[1:]), strict=True):
            records_of.setdefault(person, []).append((s, mine))
    matches = [_matches(_linked_codes(records[rows[p]], profiles, persons[p])) for p in local]
    counts = [_combination_fk(m, combos) for m in matches]
    fk = np.full(len(rows), np.iinfo(np.int64).max)  # strata under k never count as at risk
    worst = np.zeros(len(rows), dtype=np.int64)
    for pos, c in zip(local, counts, strict=True):
        if len(pos) >= k:
            worst[pos] = c.argmin(axis=0)
            fk[pos] = c[worst[pos], np.arange(len(pos))]
    having = [np.flatnonzero((combos == j).any(axis=1)) for j in range(records.shape[1])]
    # per variable, the other variables of each combination that has it
    others = [combos[h][combos[h] != j].reshape(len(h), -1) for j, h in enumerate(having)]
    while True:
        i = int(np.argmin(fk))
        if fk[i] >= k:
            return
        person = int(persons[i])
        j = _to_suppress(matches[where[i]], within[i], combos[worst[i]], profiles[person], k)
        profiles[person, j] = MISSING
        for s, mine in records_of[person]:
            m, c, pos = matches[s], counts[s], local[s]
            for r in mine.tolist():
                made = m[others[j], :, r].all(axis=1) & ~m[j, :, r]  # (combinations, records)
                c[having[j]] += made
                c[having[j], r] += made.sum(axis=1)
                m[j, r, :] = True
                m[j, :, r] = True
            if len(pos) >= k:
                worst[pos] = c.argmin(axis=0)
                fk[pos] = c[worst[pos], np.arange(len(pos))]


def _to_suppress(matches: np.ndarray, r: int, combo: np.ndarray, shown: np.ndarray, k: int) -> int:
    """Which variable of `combo` record `r` (of the stratum of `matches`) loses: the least
    important whose suppression lifts it to k there, else the one that lifts it most (the least
    important of those). Variables are numbered in importance order, least important first."""
    rows = matches[combo, r]  # (variables, records)
    others = rows.sum(axis=0) - rows  # per variable left out: how many of the others match
    lifted = np.where(shown[combo] != MISSING, (others == len(combo) - 1).sum(axis=1), -1)
    enough = np.flatnonzero(lifted >= k)
    return int(combo[enough[0] if len(enough) else np.argmax(lifted)])
