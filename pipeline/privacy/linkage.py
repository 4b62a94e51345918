"""Panel linkage within company that survives a typo in a self-made linkage code.

Respondents type their own linkage code in every wave, and some mistype it. The rule, set by the
codebook's `linkage:` section (`max_edits`, `consistent`, `min_agreeing`; docs/auditor.md,
"panel linkage"):

1. Codes are compared as the validation compares them (`normalised`: trimmed, case-folded), and
   only within a company. An empty code, a test code (`quality.test_respondent_codes`) and a
   test company's code (`quality.test_company_codes`) are never linked.
2. The same code in two waves of one company is one person: an exact link, unless a background
   variable listed under `consistent` contradicts (rule 3c) between the code's earliest answers
   and a later wave's: then someone else typed that code (a typo that hit a colleague's code, or
   the same code chosen twice), and the later wave's rows are a person of their own, counted as
   ambiguous.
3. For each pair of waves, a code of one wave with no exact match in the other is linked to a
   code of the other wave, a correction, when
   a. the two are at most `max_edits` edits apart in optimal string alignment distance
      (restricted Damerau-Levenshtein, rapidfuzz's `OSA`: a wrong, missing or extra character,
      or two neighbours swapped, is one edit);
   b. that candidate has no exact match in the first wave either (so it is nobody's code there);
   c. no background variable listed under `consistent` contradicts: two answered values that
      differ (values before generalisation, a number by its band); a missing value never
      contradicts;
   d. each is the other's only candidate (a code that meets a to c): a code with more than one
      candidate, or whose only candidate has another one too, is ambiguous and is not linked;
   e. the background gives evidence: at least `min_agreeing` of the `consistent` variables are
      answered alike on both sides (default 1 when any is listed); a candidate with less to go
      on is ambiguous and is not linked.
4. A correction that would make one person of two persons who are both in some wave (through
   the links of their codes in other waves) is refused; its codes count as ambiguous.
5. A person is a chain of links over the waves; the person's key is their company and the code
   of their earliest wave, so a later wave's typo never changes an earlier wave's key.

Without a `linkage` section, or with `max_edits: 0`, only exact links are made.

Everything here stays in the restricted zone: the keys hold codes. What leaves it is the key's
keyed pseudonym (pipeline/privacy/anonymise.py) and the counts of `LinkedPanel.pairs`.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd
from rapidfuzz.distance import OSA
from rapidfuzz.process import cdist

from pipeline.instrument.codebook import Codebook, Linkage
from pipeline.validate.quality import normalised

# The outcome of a row: its person is in another wave with one code throughout (exact) or
# through a corrected code (corrected); it is in no other wave, with candidates it could not be
# linked to (ambiguous) or none (unmatched); or its code is empty or a test code (unlinkable).
OUTCOMES = ("exact", "corrected", "ambiguous", "unmatched", "unlinkable")
# The report per pair of waves: the rows of `wave`, by their outcome in `other_wave`.
PAIR_COLUMNS = (
    "wave",
    "other_wave",
    "rows",
    "linked_exact",
    "linked_corrected",
    "ambiguous",
    "unmatched",
    "unlinkable",
    "note",
)
SEPARATOR = "\x1f"  # between company and code in a person's key (not NUL: pandas hashes C strings)


@dataclass(frozen=True)
class LinkedPanel:
    """Per row (aligned with the rows linked): `person`, the linked person's key (company and
    code; missing for an unlinkable row) and `outcome` (OUTCOMES); and `pairs`, the counts per
    pair of waves (PAIR_COLUMNS), which hold no code."""

    person: pd.Series
    outcome: pd.Series
    pairs: pd.DataFrame


def link_panel(rows: pd.DataFrame, codebook: Codebook) -> LinkedPanel:
    """Link the validated rows of every wave (`rows`: the codebook's linkage code, company code,
    background, and `wave`) into persons within company, by the rule of the module's opening."""
    rule = codebook.linkage
    # plain Python strings: they are looked up one by one below
    code = normalised(rows[codebook.respondent_id]).fillna("").astype(object)
    company = normalised(rows[codebook.company_id]).fillna("").astype(object)
    wave = rows["wave"].astype("string").fillna("").astype(object)
    quality = codebook.quality
    test = code.isin([c.casefold() for c in quality.test_respondent_codes]) | company.isin(
        [c.casefold() for c in quality.test_company_codes]
    )
    usable = (code != "") & ~test
    declared = list(codebook.waves)  # in the codebook's order, the order of fieldwork
    waves = sorted(
        set(wave), key=lambda w: (declared.index(w) if w in declared else len(declared), w)
    )
    consistent = list(rule.consistent) if rule else []
    background = comparable_background(rows, codebook, consistent)
    code, ambiguous = _reused_codes(company, wave, code, usable, background, waves)
    nodes = (
        pd.concat([company, wave, code, background], axis=1)
        .set_axis(["company", "wave", "code", *consistent], axis=1)[usable]
        .groupby(["company", "wave", "code"], sort=True)
        # the first answered value (the duplicate rule leaves one row per code anyway)
        .agg({"code": "size", **dict.fromkeys(consistent, "first")})
        .drop(columns="code")
    )
    persons = _Persons(nodes.index, waves)
    if rule and rule.max_edits:
        values = nodes.to_numpy(dtype="float64")
        per_company: dict[str, dict[str, dict[str, int]]] = {}  # company: wave: code: node
        for i, (company_code, node_wave, node_code) in enumerate(nodes.index):
            per_company.setdefault(company_code, {}).setdefault(node_wave, {})[node_code] = i
        for company_code, codes in per_company.items():
            found = _corrections(codes, values, waves, rule)
            for (wave_a, code_a), (wave_b, code_b) in found.links:
                if not persons.join((company_code, code_a), (company_code, code_b)):
                    found.ambiguous.update({(wave_a, code_a, wave_b), (wave_b, code_b, wave_a)})
            ambiguous.update((company_code, *node) for node in found.ambiguous)
    person_of, codes_of = persons.keys()
    key = pd.Series(
        [person_of.get((c, k)) for c, k in zip(company, code, strict=True)],
        index=rows.index,
        dtype="string",
    ).where(usable)
    frame = pd.DataFrame(
        {"key": key.astype(object), "code": code, "wave": wave, "company": company}
    )
    doubt = {(c, w, k) for c, w, k, _ in ambiguous}
    return LinkedPanel(
        person=key,
        outcome=_outcomes(frame, usable, codes_of, doubt),
        pairs=_pair_counts(frame, usable, ambiguous, waves, rule),
    )


def _reused_codes(company, wave, code, usable, background: pd.DataFrame, waves: list[str]):
    """Rule 2's exception: the codes with a later wave's code made its own (the code, SEPARATOR
    and the wave) where its background contradicts the code's earliest answers (the first
    answered value of each variable, earliest wave first); and both sides of each refused exact
    link as (company, wave, code, other wave), for the report's ambiguous count."""
    refused: set[tuple[str, str, str, str]] = set()
    if background.empty or background.shape[1] == 0:
        return code, refused
    rank = {w: i for i, w in enumerate(waves)}
    names = list(background.columns)
    nodes = (
        pd.concat([company, code, wave, background], axis=1)
        .set_axis(["company", "code", "wave", *names], axis=1)[usable]
        .groupby(["company", "code", "wave"], sort=False)
        .first()
        .reset_index()
    )
    nodes = nodes.assign(rank=nodes["wave"].map(rank)).sort_values(["company", "code", "rank"])
    earliest = nodes.groupby(["company", "code"], sort=False)
    base = earliest[names].transform("first")
    first_wave = earliest["wave"].transform("first")
    values = nodes[names]
    clash = values.notna() & base.notna() & values.ne(base)
    split = nodes.duplicated(["company", "code"]) & clash.any(axis=1)
    if not split.any():
        return code, refused
    moved = set()
    for c, k, w, w0 in zip(
        nodes["company"][split],
        nodes["code"][split],
        nodes["wave"][split],
        first_wave[split],
        strict=True,
    ):
        moved.add((c, k, w))
        refused.update({(c, w0, k, w), (c, w, f"{k}{SEPARATOR}{w}", w0)})
    relabelled = [
        f"{k}{SEPARATOR}{w}" if (c, k, w) in moved else k
        for c, k, w in zip(company, code, wave, strict=True)
    ]
    return pd.Series(relabelled, index=code.index, dtype=object), refused


def comparable_background(rows: pd.DataFrame, codebook: Codebook, names: list[str]) -> pd.DataFrame:
    """The background variables `names` as compared for consistency: the code (before
    generalisation), or for a number the index of its band; missing codes are missing."""
    missing = list(codebook.missing_codes)
    values = {}
    for name in names:
        variable = codebook.background[name]
        raw = pd.to_numeric(rows[name], errors="coerce").astype("float64")
        raw = raw.mask(raw.isin(missing))
        if variable.is_number:
            raw = pd.Series(
                np.searchsorted(variable.bands, raw, side="right"), index=rows.index
            ).where(raw.notna())
        values[name] = raw
    return pd.DataFrame(values, index=rows.index)


@dataclass
class _Found:
    links: list[tuple[tuple[str, str], tuple[str, str]]]  # ((wave, code), (wave, code))
    ambiguous: set[tuple[str, str, str]]  # (wave, code, other wave)


def _corrections(
    codes: dict[str, dict[str, int]], values: np.ndarray, waves: list[str], rule: Linkage
) -> _Found:
    """Rule 3 for one company: `codes` per wave (each code's row of `values`, its comparable
    background), over each pair of its waves, nearest waves first."""
    rank = {w: i for i, w in enumerate(waves)}
    found = _Found([], set())
    for wave_a, wave_b in sorted(
        combinations([w for w in waves if w in codes], 2),
        key=lambda p: (rank[p[1]] - rank[p[0]], rank[p[0]]),
    ):
        a, b = codes[wave_a], codes[wave_b]
        only_a, only_b = [c for c in a if c not in b], [c for c in b if c not in a]
        if not only_a or not only_b:
            continue
        distance = cdist(only_a, only_b, scorer=OSA.distance, score_cutoff=rule.max_edits)
        close = distance <= rule.max_edits
        confirmed = close.copy()
        for i, j in zip(*np.nonzero(close), strict=True):
            mine, theirs = values[a[only_a[i]]], values[b[only_b[j]]]
            answered = ~np.isnan(mine) & ~np.isnan(theirs)
            same = mine[answered] == theirs[answered]
            close[i, j] = same.all()  # rule 3c: no contradiction, or no candidate
            confirmed[i, j] = same.all() and same.sum() >= rule.min_agreeing
        per_a, per_b = close.sum(axis=1), close.sum(axis=0)
        for i, j in zip(*np.nonzero(close), strict=True):
            if per_a[i] == 1 and per_b[j] == 1 and confirmed[i, j]:
                found.links.append(((wave_a, only_a[i]), (wave_b, only_b[j])))
            else:
                found.ambiguous.update({(wave_a, only_a[i], wave_b), (wave_b, only_b[j], wave_a)})
    return found


class _Persons:
    """Union-find over (company, code), each with the waves it is in (rule 4)."""

    def __init__(self, nodes: pd.MultiIndex, waves: list[str]):
        rank = {w: i for i, w in enumerate(waves)}
        self.parent: dict[tuple[str, str], tuple[str, str]] = {}
        self.waves: dict[tuple[str, str], set[str]] = {}
        self.first: dict[tuple[str, str], tuple[int, str]] = {}  # earliest (wave rank, code)
        for company_code, wave, code in nodes:
            node = (company_code, code)
            self.parent[node] = node
            self.waves.setdefault(node, set()).add(wave)
            self.first[node] = min(self.first.get(node, (rank[wave], code)), (rank[wave], code))

    def root(self, node: tuple[str, str]) -> tuple[str, str]:
        while self.parent[node] != node:
            self.parent[node] = self.parent[self.parent[node]]
            node = self.parent[node]
        return node

    def join(self, one: tuple[str, str], other: tuple[str, str]) -> bool:
        """Link the two persons; False (and no link) when both are in some wave."""
        one, other = self.root(one), self.root(other)
        if one == other:
            return True
        if self.waves[one] & self.waves[other]:
            return False
        self.parent[other] = one
        self.waves[one] |= self.waves.pop(other)
        self.first[one] = min(self.first[one], self.first.pop(other))
        return True

    def keys(self) -> tuple[dict[tuple[str, str], str], dict[str, set[str]]]:
        """The key of each (company, code), and the codes of each key."""
        person_of: dict[tuple[str, str], str] = {}
        codes: dict[str, set[str]] = {}
        for node in self.parent:
            root = self.root(node)
            key = f"{node[0]}{SEPARATOR}{self.first[root][1]}"
            person_of[node] = key
            codes.setdefault(key, set()).add(node[1])
        return person_of, codes


def _outcomes(frame: pd.DataFrame, usable: pd.Series, codes_of, doubt) -> pd.Series:
    """Each row's outcome over all waves (OUTCOMES)."""
    in_waves = frame[usable].groupby("key")["wave"].nunique()
    linked = (frame["key"].map(in_waves).fillna(0) > 1).to_numpy()
    several = np.array([len(codes_of.get(k, ())) > 1 for k in frame["key"].fillna("")], dtype=bool)
    had_candidates = np.array(
        [
            node in doubt
            for node in zip(frame["company"], frame["wave"], frame["code"], strict=True)
        ],
        dtype=bool,
    )
    outcome = np.select(
        [~usable.to_numpy(), linked & ~several, linked, had_candidates],
        ["unlinkable", "exact", "corrected", "ambiguous"],
        default="unmatched",
    )
    return pd.Series(outcome, index=frame.index, dtype="string")


def _pair_counts(frame, usable, ambiguous, waves, rule) -> pd.DataFrame:
    """Per ordered pair of waves: the rows of `wave` by their outcome in `other_wave`."""
    rows = frame[usable]
    code_in = dict(zip(zip(rows["key"], rows["wave"], strict=True), rows["code"], strict=True))
    note = (
        ""
        if rule and rule.max_edits
        else "exact codes only: "
        + ("linkage.max_edits is 0" if rule else "the codebook has no linkage section")
    )
    if len(waves) < 2:  # nothing to link to: the rows, and why
        alone = f"not estimable: needs 2 waves ({len(waves)} in the data)"
        return (
            pd.DataFrame(
                [
                    {"wave": w, "other_wave": "", "rows": int((frame["wave"] == w).sum())}
                    for w in waves
                ],
                columns=list(PAIR_COLUMNS),
            )
            .astype({name: "Int64" for name in PAIR_COLUMNS[2:-1]})
            .assign(note=alone)
        )
    table = []
    for this, other in ((w, o) for w in waves for o in waves if w != o):
        mine = frame[frame["wave"] == this]
        there = pd.Series(
            [code_in.get((k, other)) for k in mine["key"]], index=mine.index, dtype="object"
        )
        ok = usable[mine.index]
        linked = ok & there.notna()
        exact = linked & (there == mine["code"])
        doubt = pd.Series(
            [
                (c, this, k, other) in ambiguous
                for c, k in zip(mine["company"], mine["code"], strict=True)
            ],
            index=mine.index,
            dtype=bool,
        )
        table.append(
            {
                "wave": this,
                "other_wave": other,
                "rows": len(mine),
                "linked_exact": int(exact.sum()),
                "linked_corrected": int((linked & ~exact).sum()),
                "ambiguous": int((ok & ~linked & doubt).sum()),
                "unmatched": int((ok & ~linked & ~doubt).sum()),
                "unlinkable": int((~ok).sum()),
                "note": note,
            }
        )
    return pd.DataFrame(table, columns=list(PAIR_COLUMNS))
