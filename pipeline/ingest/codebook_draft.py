"""A first codebook drafted from a scan's survey exports, for the data steward to confirm.

`draft_codebook(paths)` reads the exports (one or more per wave; the wave is the export's folder
name) with `readers.read_raw_export` and returns a codebook in the format
`codebook.load_codebook` reads, as YAML text in which every guess carries a `# GUESS: ...;
confirm` comment. What it guesses, and how:

- **Columns by their name**: the respondent's linkage code, the company code, direct
  identifiers (response id, IP address, latitude and longitude, e-mail, names, phone, panel
  tokens) and platform metadata (start, end, duration, progress, finished, status or preview,
  language, ...): case-insensitive regular expressions over the name's words (`name_words`), so
  that Qualtrics (`StartDate`, `Duration (in seconds)`), LimeSurvey (`startdate`,
  `interviewtime`) and SPSS-style (`Duration__in_seconds_`) names all match. A platform column
  plays its role for the quality rules (`platform:`) when its cells fit the role's type.
  Columns whose names differ only in case and punctuation, or that have one role and never
  meet in one export, are one column: the name most exports use (as lower-case words) with the
  others as `aliases`.
- **Items and scales**: a number column with whole values is an item when nearly all its
  values lie in an answer scale (or its missing codes) and its name shares a prefix with
  another such column (`X1`, `X2`, `X3`: scale `X`). The answer scale is the widest run of
  consecutive labelled codes; without value labels (or with labels on a scale's ends only), of
  the codes that recur in the prefix's columns (in at least 1% of their answers, or at least
  twice in each of more than half of the columns: a stray code is rare and in few). At most 11
  points (0..10). Items with the same scale and labels share one `response_scales` entry; the
  prefix's items on another scale go to `items:`. Reverse-keyed items are those whose loading
  on the first principal component of their scale's item correlations has the minority's sign.
- **Missing codes**: codes outside an item's answer scale that are labelled (9 "weet niet",
  -99) or recur; and labelled codes outside a background variable's run of labelled codes.
- **Background variables**: the other number columns; coded (`values`: code: label from the
  value labels, else the observed whole numbers) when they hold at most 12 codes, else a
  continuous number (`type: number`) with `bands` cut at its quintiles. All are guessed to be
  quasi-identifiers.
- **Free text**: text columns with an answer of several words; other text and date columns are
  platform metadata under `columns`.

Item wording (`item_text`) and the labels of background variables are the .sav's variable labels
or a Qualtrics export's question texts. A CSV named like a company register that lies beside
the wave folders and has the company column is declared under `registers`.
"""

from __future__ import annotations

import datetime as dt
import numbers
import re
import textwrap
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from pipeline.ingest.readers import FLAGS, RawExport, read_raw_export
from pipeline.instrument.codebook import PLATFORM_ROLES

MAX_POINTS = 11  # an answer scale has at most 11 points (0..10)
MAX_CODES = 12  # a background variable with more distinct values is a continuous number
RECURRING = 0.01  # a code in this share of a prefix's answers is an answer or missing code
IN_SCALE = 0.95  # an item has at least this share of its values in its scale or missing codes
FREE_TEXT_WORDS = 4  # a text column with an answer of this many words is free text
QUINTILES = (0.2, 0.4, 0.6, 0.8)  # where the proposed bands of a continuous number are cut
REQUIRED = ("instrument", "identifiers", "waves", "response_scales", "scales")  # sections
REGISTER = re.compile(r"(?i)(compan|bedrij|organi[sz]ation|employer|werkgever)")

HEADER = """\
# Codebook DRAFTED by `scan codebook draft` from these exports:
{sources}
# Every line marked GUESS was guessed from the exports' column names, labels and values:
# confirm or correct it, above all
# - which columns identify people (identifiers, free_text: they never leave the restricted
#   zone; direct identifiers are dropped),
# - the scales, their items and reverse-keyed items, and each scale's label and level
#   (culture: about the company, aggregated per company | individual | outcome),
# - the answer scales and missing codes, and the background variables' values, bands and
#   quasi-identifiers (which decide the disclosure control).
# Not drafted (see the README, "The codebook"): the waves' fieldwork windows (start, end),
# quality (test codes), management, anonymisation, models.
# Then save it as <data-dir>/raw/codebook.yaml and check it with `scan run`: a codebook error
# names the key to fix, and the run summary says which quality rules are not applicable.
"""


# --- what a column's name says ---------------------------------------------------------------


@dataclass(frozen=True)
class Role:
    """What a column's name says it is, and where the codebook puts it."""

    section: str  # identifier | direct | platform | metadata
    key: str  # the identifiers' or platform's key; what a direct identifier or metadata is
    pattern: re.Pattern[str]  # fully matches the name's words (`name_words`)


def _roles(section: str, patterns: dict[str, str]) -> list[Role]:
    return [Role(section, key, re.compile(pattern)) for key, pattern in patterns.items()]


# One pattern per platform role of the codebook (codebook.PLATFORM_ROLES; a test checks that
# the two name the same roles).
_PLATFORM_PATTERNS = {
    "started": r"(start|begin)(ed)?(_?(date|time|datum|tijd))?(_?time)?|"
    r"(date|time)_?(started|begun)",
    "ended": r"(end|submit|eind)(ed|ted)?(_?(date|time|datum|tijd))?(_?time)?|"
    r"(date|time)_?(ended|submitted)",
    "duration": r"duration(_?(in_?)?(seconds|secs?|s))?|interview_?time|time_?taken|"
    r"elapsed(_?time)?|duur",
    "percent_complete": r"progress(_?(pct|percent(age)?))?|voortgang|percent_?complete",
    "completed": r"finished|completed?|is_?complete|afgerond",
    "preview": r"status|preview|response_?type",
}
ROLES = (
    *_roles(
        "identifier",
        {
            "respondent": r"(resp(ondent)?|person(al|eel|lijke)?|participant|panel|link(age)?|"
            r"self|own|eigen)_?(code|key|nr)",
            "company": r"(company|bedrijf|bedrijfs|organi[sz]ation|organisatie|org|firm|"
            r"employer|werkgever)(_?(code|id|nr|number|nummer))?",
        },
    ),
    *_roles(
        "direct",
        {
            "response id": r"(response|record|submission|result)_?id|id",
            "IP address": r"ip(_?(addr|address|adres))?",
            "latitude": r"(location_?)?lat(itude)?",
            "longitude": r"(location_?)?(lon|lng|long|longitude)",
            "e-mail": r"(\w+_)?e_?mail\w*",
            "person's name": r"(recipient_?|user_?)?(first_?|last_?|full_?|given_?|family_?|"
            r"sur)?name|(voor|achter)?_?naam",
            "phone number": r"(tele)?phone(_?number)?|mobile|telefoon(_?nummer)?",
            "panel token or reference": r"token|external_?(data_?)?ref(erence)?",
        },
    ),
    *_roles("platform", _PLATFORM_PATTERNS),
    *_roles(
        "metadata",
        {
            "platform record": r"recorded_?date|date_?stamp|last_?page|seed|ref_?url|"
            r"distribution_?channel|q_\w+|\w*recaptcha\w*|(\w+_)?time\d*(_\w+)?",
            "language": r"(start_?|user_?)?lang(uage)?",
            "device": r"(browser|device|operating_?system|screen|user_?agent)\w*",
        },
    ),
)


def name_words(name: str) -> str:
    """A column name as lower-case words joined by '_': 'Duration (in seconds)' and
    'Time_Taken__s_' -> 'time_taken_s', 'UserAgent' -> 'user_agent'."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    spaced = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1 \2", spaced)
    return "_".join(re.findall(r"[a-z0-9]+", spaced.lower()))


def role_of(name: str) -> Role | None:
    words = name_words(name)
    return next((role for role in ROLES if role.pattern.fullmatch(words)), None)


# --- columns, merged over the exports ------------------------------------------------------------


@dataclass(eq=False)  # compared and hashed by identity
class Column:
    """A column of the exports, merged over the exports that have it."""

    sources: list[tuple[int, str]]  # (export number, the column's name there)
    cells: pd.Series  # its cells in every export, indexed by (export number, row); blanks NA
    role: Role | None
    label: str = ""  # variable label or question text
    value_labels: dict[int, str] = field(default_factory=dict)
    name: str = ""  # canonical, set by `name_columns`

    @property
    def aliases(self) -> list[str]:
        return [n for n in dict.fromkeys(name for _, name in self.sources) if n != self.name]

    @property
    def exports(self) -> set[int]:
        return {export for export, _ in self.sources}

    @cached_property
    def filled(self) -> pd.Series:
        return self.cells.dropna()

    @cached_property
    def numbers(self) -> pd.Series:
        """The filled cells that read as numbers (flags such as true/false as 1/0)."""
        return pd.to_numeric(self.filled.map(_number_like), errors="coerce").dropna()

    @cached_property
    def kind(self) -> str:
        """'number', 'datetime' or 'string': what every filled cell reads as."""
        filled = self.filled
        if len(self.numbers) == len(filled):
            return "number"
        if all(map(_is_datetime, filled)):
            return "datetime"
        return "string"

    @cached_property
    def codes(self) -> Counter:
        """How often each whole number occurs; empty when a number is not whole."""
        numbers = self.numbers
        if not (numbers == numbers.round()).all():
            return Counter()
        return Counter(numbers.astype(int).tolist())


def _number_like(cell: Any) -> Any:
    """A number, or text that may read as one; None for anything else (dates: not numbers)."""
    if isinstance(cell, str):
        return FLAGS.get(cell.strip().lower(), cell)
    return cell if isinstance(cell, numbers.Real) else None


def _blank(cell: Any) -> bool:
    return cell.strip() == "" if isinstance(cell, str) else bool(pd.isna(cell))


def _is_datetime(cell: Any) -> bool:
    if isinstance(cell, dt.date):
        return True
    try:
        dt.datetime.fromisoformat(str(cell).strip())  # as the readers parse a datetime
    except ValueError:
        return False
    return True


def merge_columns(exports: Sequence[RawExport]) -> list[Column]:
    """One Column for each thing the exports hold: names equal up to case and punctuation,
    then columns of one role that never meet in one export."""
    by_key: dict[str, Column] = {}
    for number, export in enumerate(exports):
        for name in export.cells.columns:
            key = re.sub(r"[^a-z0-9]", "", name.lower())
            if key in by_key and number in by_key[key].exports:
                key = f"{key}\0{name}"  # two such names in one export are two columns
            raw = export.cells[name]
            cells = raw.where(~raw.map(_blank), None)
            cells.index = pd.MultiIndex.from_product([[number], raw.index])
            labels = export.value_labels.get(name, {})
            found = Column(
                [(number, name)],
                cells,
                role_of(name),
                export.labels.get(name, ""),
                {int(c): str(v) for c, v in labels.items() if float(c).is_integer()},
            )
            if key in by_key:
                _absorb(by_key[key], found)
            else:
                by_key[key] = found
    merged: list[Column] = []
    for column in by_key.values():
        partner = next((m for m in merged if _same_role(m, column)), None)
        if partner is None:
            merged.append(column)
        else:
            _absorb(partner, column)
    return merged


def _same_role(a: Column, b: Column) -> bool:
    return a.role is not None and a.role == b.role and not a.exports & b.exports


def _absorb(into: Column, other: Column) -> None:
    into.sources += other.sources
    into.cells = pd.concat([into.cells, other.cells])
    into.label = into.label or other.label
    into.value_labels = into.value_labels or other.value_labels


def name_columns(columns: list[Column], own_names: set[Column]) -> None:
    """Each column's canonical name: the name most of its exports use, as lower-case words
    ('submitted_at'), except for `own_names` (items, background variables), which keep it when
    it is a plain identifier; never a name another column has in some export."""
    taken = {name: column for column in columns for _, name in column.sources}
    used: set[str] = set()
    for column in columns:
        common = Counter(name for _, name in column.sources).most_common(1)[0][0]
        plain = re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", common) is not None
        first = common if column in own_names and plain else name_words(common) or "column"
        candidates = [first, *(f"{first}_{n}" for n in range(2, len(columns) + 2))]
        column.name = next(
            n for n in candidates if n not in used and taken.get(n, column) is column
        )
        used.add(column.name)


# --- answer scales, items and missing codes ----------------------------------------------------


def runs(codes) -> list[list[int]]:
    """Sorted codes in runs of consecutive codes (1, 2, 3 is one run, 5, 9 are two)."""
    found: list[list[int]] = []
    for code in sorted(codes):
        if found and code == found[-1][-1] + 1:
            found[-1].append(code)
        else:
            found.append([code])
    return found


def widest_run(codes) -> tuple[int, int]:
    run = max(runs(codes), key=lambda r: (r[-1] - r[0], len(r)))
    return run[0], run[-1]


def common_codes(columns: list[Column]) -> set[int]:
    """The codes that recur in these columns: in at least RECURRING of their answers, or at
    least twice in each of more than half of the columns (a stray code is rare and in few: in a
    scale of three items, two strays in two of them are not a missing code)."""
    pooled = sum((column.codes for column in columns), Counter())
    spread = Counter(code for column in columns for code, n in column.codes.items() if n >= 2)
    total = pooled.total()
    return {
        code
        for code, n in pooled.items()
        if n >= RECURRING * total or spread[code] > len(columns) / 2
    }


@dataclass(frozen=True)
class Answers:
    """An item's answer scale and the codes outside it that mean missing."""

    low: int
    high: int
    labels: tuple[tuple[int, str], ...]  # the labelled codes of the scale
    missing: dict[int, str]  # code -> label ('' when unlabelled)


def answers_of(column: Column, common: set[int]) -> Answers | None:
    """From the value labels, else (or when only a scale's ends are labelled) from the `common`
    codes of the column's prefix; None without a scale of 2 to 11 points."""
    codes = set(column.value_labels)
    if not codes or max(map(len, runs(codes))) < 3:
        codes |= common
    if not codes:
        return None
    low, high = widest_run(codes)
    if not 0 < high - low < MAX_POINTS:
        return None
    labels = tuple((c, v) for c, v in sorted(column.value_labels.items()) if low <= c <= high)
    outside = sorted(c for c in codes if not low <= c <= high)
    return Answers(low, high, labels, {c: column.value_labels.get(c, "") for c in outside})


def prefix(name: str) -> str | None:
    """'X12' and 'X_12' -> 'X'; None for a name that does not end in a number."""
    match = re.fullmatch(r"(.+?)[_.]?\d+", name)
    return match.group(1) if match and re.search(r"[A-Za-z]", match.group(1)) else None


def fits(column: Column, answers: Answers) -> bool:
    """Nearly all its values (whole numbers) are in the answer scale or its missing codes."""
    codes = column.codes
    inside = sum(
        n for c, n in codes.items() if answers.low <= c <= answers.high or c in answers.missing
    )
    return bool(codes) and inside >= IN_SCALE * sum(codes.values())


def find_items(columns: list[Column]) -> dict[str, list[tuple[Column, Answers]]]:
    """The items, by the prefix they share with at least one other item."""
    groups: dict[str, list[Column]] = {}
    for column in columns:
        shared = prefix(column.sources[0][1])
        if column.role is None and shared and column.kind == "number" and column.codes:
            groups.setdefault(shared, []).append(column)
    found = {}
    for shared, members in groups.items():
        common = common_codes(members)
        fitting = [(m, a) for m in members if (a := answers_of(m, common)) and fits(m, a)]
        if len(fitting) >= 2:
            found[shared] = fitting
    return found


def reversed_items(items: list[tuple[Column, Answers]]) -> list[Column]:
    """The items keyed against the others: the sign of their loading on the first principal
    component of the items' correlations is the minority's (a tie: the first item's is not)."""
    answers = pd.DataFrame(
        {i: c.numbers.where(c.numbers.between(a.low, a.high)) for i, (c, a) in enumerate(items)}
    )
    loadings = np.linalg.eigh(answers.corr().fillna(0).to_numpy())[1][:, -1]
    negative, positive = (loadings < 0).sum(), (loadings > 0).sum()
    if negative > positive or (negative == positive and loadings[0] < 0):
        loadings = -loadings
    return [column for (column, _), loading in zip(items, loadings, strict=True) if loading < 0]


# --- where each column goes --------------------------------------------------------------------


@dataclass
class Placed:
    """Where each column goes in the codebook."""

    items: dict[str, list[tuple[Column, Answers]]]  # by shared prefix
    respondent: Column | None = None
    company: Column | None = None
    direct: list[tuple[Column, str]] = field(default_factory=list)  # with what it is
    free_text: list[Column] = field(default_factory=list)
    platform: dict[str, Column] = field(default_factory=dict)  # by role
    declared: list[tuple[Column, str, str]] = field(default_factory=list)  # type, why
    background: list[Column] = field(default_factory=list)
    stand_in: bool = False  # the response id stands in for a missing linkage code


def place_columns(columns: list[Column]) -> Placed:
    """Items first; then each column by its name's role, else by its content."""
    placed = Placed(find_items(columns))
    items = {column for group in placed.items.values() for column, _ in group}
    for column in columns:
        role = column.role
        if column in items:
            continue
        if role is None:
            _place_by_content(placed, column)
        elif role.section == "identifier" and getattr(placed, role.key) is None:
            setattr(placed, role.key, column)
            placed.declared.append((column, "string", f"named like the {role.key} code"))
        elif role.section in ("identifier", "direct"):
            placed.direct.append((column, role.key))
            placed.declared.append((column, "string", f"a direct identifier ({role.key})"))
        elif (
            role.section == "platform"
            and role.key not in placed.platform
            and (column.kind == PLATFORM_ROLES[role.key])
        ):
            placed.platform[role.key] = column
            placed.declared.append((column, column.kind, f"platform metadata ({role.key})"))
        else:
            placed.declared.append((column, column.kind, f"platform metadata ({role.key})"))
    if placed.respondent is None:
        _stand_in_respondent(placed)
    return placed


def _place_by_content(placed: Placed, column: Column) -> None:
    kind = column.kind
    if column.filled.empty:
        placed.declared.append((column, "string", "empty in every export"))
    elif kind == "number":
        placed.background.append(column)
    elif kind == "string" and column.filled.map(lambda c: len(str(c).split())).max() >= (
        FREE_TEXT_WORDS
    ):
        placed.free_text.append(column)
        placed.declared.append((column, "string", "free text: answers of several words"))
    else:
        placed.declared.append((column, kind, f"{kind} column: platform metadata"))


def _stand_in_respondent(placed: Placed) -> None:
    """Without a linkage code the response id stands in (it links nobody across waves)."""
    for column, what in placed.direct:
        if what == "response id":
            placed.direct.remove((column, what))
            placed.respondent, placed.stand_in = column, True
            return


# --- the draft's sections ----------------------------------------------------------------------


@dataclass
class Entry:
    key: Any
    value: Any
    guess: str = ""  # why it is guessed; empty when it is read from the exports


@dataclass
class Section:
    key: str
    value: Any = None  # a value on the key's line, or
    entries: list[Entry] | None = None  # a mapping, one entry per line
    guess: str = ""
    note: str = ""  # a comment above the section that is no guess


def draft_codebook(paths: Sequence[Path]) -> str:
    """The codebook drafted from the exports at `paths` (their folders' names are the waves),
    as YAML text with a comment on every guess."""
    paths = [Path(p) for p in paths]
    columns = merge_columns([read_raw_export(p) for p in paths])
    placed = place_columns(columns)
    items = [column for group in placed.items.values() for column, _ in group]
    name_columns(columns, {*items, *placed.background})
    missing = {code: label for code, (label, _) in item_missing_codes(placed).items()}
    background = [background_entry(column, missing) for column in placed.background]
    scales, unscaled = split_scales(placed)
    sections = [
        Section("instrument", instrument_name(paths), guess="from the exports' file names"),
        Section("version", "1"),
        identifiers_section(placed),
        Section(
            "free_text",
            [c.name for c in placed.free_text],
            guess="text answers of several words, kept in the restricted zone",
        ),
        missing_section(placed, missing),
        Section(
            "columns",
            entries=[
                Entry(c.name, {"type": kind} | ({"aliases": c.aliases} if c.aliases else {}), why)
                for c, kind, why in placed.declared
            ],
        ),
        Section(
            "platform",
            entries=[
                Entry(role, column.name, f"by its name {column.sources[0][1]!r}")
                for role in PLATFORM_ROLES
                if (column := placed.platform.get(role))
            ],
        ),
        waves_section(paths),
        registers_section(paths, placed.company),
        *scale_sections(scales, unscaled),
        Section(
            "item_text",
            entries=[Entry(c.name, c.label) for c in items if c.label],
            note="the items' wording, from the exports' variable labels or question texts",
        ),
        Section("background", entries=background),
    ]
    return render([s for s in sections if s.key in REQUIRED or s.entries or s.value], paths)


def instrument_name(paths: list[Path]) -> str:
    """The words the export files' names share, without the wave."""
    stems = [name_words(p.stem.replace(p.parent.name, "")).replace("_", "-") for p in paths]
    common = Counter(stem for stem in stems if stem).most_common(1)
    return common[0][0] if common else "my-scan"


def identifiers_section(placed: Placed) -> Section:
    entries = []
    for key, column in (("respondent", placed.respondent), ("company", placed.company)):
        if column is None:
            entries.append(Entry(key, None, f"no column is named like the {key} code: name it"))
        elif key == "respondent" and placed.stand_in:
            why = "no column is named like a linkage code: the response id stands in"
            entries.append(Entry(key, column.name, f"{why}, and links nobody across waves"))
        else:
            entries.append(Entry(key, column.name, f"by its name {column.sources[0][1]!r}"))
    direct = [column.name for column, _ in placed.direct]
    what = ", ".join(dict.fromkeys(what for _, what in placed.direct))
    why = f"by their names ({what}); they are dropped" if direct else "none named like one"
    entries.append(Entry("direct", direct, why))
    return Section("identifiers", entries=entries)


def item_missing_codes(placed: Placed) -> dict[int, tuple[str, int]]:
    """code -> (label, how many items have it), from the items' answers."""
    codes: dict[int, tuple[str, int]] = {}
    for group in placed.items.values():
        for _, answers in group:
            for code, label in answers.missing.items():
                known, n = codes.get(code, ("", 0))
                codes[code] = (known or label, n + 1)
    return codes


def background_entry(column: Column, missing: dict[int, str]) -> Entry:
    """A coded variable, or a continuous number with proposed bands; adds its labelled codes
    outside its run of labelled codes to `missing`."""
    numbers = column.numbers[~column.numbers.isin(list(missing))]
    labelled = {c: v for c, v in column.value_labels.items() if c not in missing}
    spec: dict[str, Any] = {"label": column.label} if column.label else {}
    others = numbers[~numbers.isin(list(labelled))]
    if others.nunique() > MAX_CODES or not (others == others.round()).all():
        missing.update(labelled)
        spec |= {"type": "number", "bands": bands(others), "quasi_identifier": True}
        why = f"a number ({others.nunique()} distinct values), bands cut at its quintiles"
    elif labelled:
        low, high = widest_run(labelled)
        missing.update({c: v for c, v in labelled.items() if not low <= c <= high})
        spec |= {"values": {c: v for c, v in sorted(labelled.items()) if low <= c <= high}}
        why = "coded, from its value labels"
    else:
        spec |= {"values": sorted(int(v) for v in others.unique())}
        why = "coded, the whole numbers it holds"
    return Entry(column.name, spec | {"quasi_identifier": True}, f"{why}; a quasi-identifier")


def bands(values: pd.Series) -> list[float]:
    """Cut points at the quintiles, whole where the values are, inside the observed range."""
    whole = bool((values == values.round()).all())
    cuts = [int(round(q)) if whole else float(f"{q:.2g}") for q in np.quantile(values, QUINTILES)]
    inside = sorted({c for c in cuts if values.min() < c <= values.max()})
    return inside or [float(values.median())]


@dataclass
class Scale:
    items: list[tuple[Column, Answers]]
    response_scale: str


def split_scales(placed: Placed) -> tuple[dict[str, Scale], list[tuple[Column, Answers, str]]]:
    """Per prefix, the items on its most common answer scale form a scale (two or more); the
    others are items in no scale. Answer scales are named '1to5', then '1to5b', ..."""
    names: dict[tuple, str] = {}
    per_range: Counter = Counter()
    for group in placed.items.values():
        for _, answers in group:
            key = (answers.low, answers.high, answers.labels)
            if key not in names:
                base = f"{answers.low}to{answers.high}"
                names[key] = base + ("", *"bcdefghijklmnopqrstuvwxyz")[per_range[base]]
                per_range[base] += 1
    scales, unscaled = {}, []
    for shared, group in placed.items.items():
        named = [(c, a, names[(a.low, a.high, a.labels)]) for c, a in group]
        common, count = Counter(name for _, _, name in named).most_common(1)[0]
        if count < 2:
            unscaled += named
            continue
        scales[shared] = Scale([(c, a) for c, a, name in named if name == common], common)
        unscaled += [entry for entry in named if entry[2] != common]
    return scales, unscaled


def missing_section(placed: Placed, missing: dict[int, str]) -> Section:
    """The missing codes, but none inside an item's answer scale (the loader refuses those)."""
    answers = [(c, a) for group in placed.items.values() for c, a in group]
    counts = item_missing_codes(placed)
    entries, dropped = [], []
    for code, label in sorted(missing.items(), key=lambda c: (c[0] < 0, c[0])):
        inside = [c.name for c, a in answers if a.low <= code <= a.high]
        if inside:
            dropped.append(f"{code} (an answer of {inside[0]})")
            continue
        where = (
            f"outside the answer scale of {counts[code][1]} items"
            if code in counts
            else "outside a background variable's codes"
        )
        kind = "a labelled code" if label else "an unlabelled code that recurs"
        entries.append(Entry(code, label or "(no label)", f"{kind} {where}"))
    note = f"left out, as they are answers elsewhere: {', '.join(dropped)}" if dropped else ""
    return Section("missing_codes", entries=entries, note=note)


def waves_section(paths: list[Path]) -> Section:
    waves = dict.fromkeys(p.parent.name for p in paths)
    return Section(
        "waves",
        entries=[Entry(wave, wave) for wave in waves],
        note="the export folders, in the order given (time order); a wave is `name: label`, or "
        "`name: {label: ..., start: YYYY-MM-DD, end: YYYY-MM-DD}` to check the fieldwork window",
    )


def registers_section(paths: list[Path], company: Column | None) -> Section:
    """A CSV beside the wave folders, named like a company register, with the company column."""
    folders = {p.resolve().parent.parent for p in paths}
    if company is None or len(folders) != 1:
        return Section("registers")
    for path in sorted(folders.pop().glob("*.csv")):
        if path.name[0] in "._" or not REGISTER.search(path.stem):
            continue
        try:
            header = pd.read_csv(path, nrows=0, dtype=str).columns
        except (ValueError, UnicodeDecodeError):
            continue
        if company.name in header:
            return Section(
                "registers",
                entries=[Entry("companies", path.name, "the companies taking part, by its name")],
            )
    return Section("registers")


def scale_sections(scales: dict[str, Scale], unscaled: list) -> list[Section]:
    used = [(s.response_scale, s.items) for s in scales.values()]
    used += [(name, [(c, a)]) for c, a, name in unscaled]
    response_scales: dict[str, list] = {}
    for name, items in used:
        response_scales.setdefault(name, []).extend(items)
    return [
        Section(
            "response_scales",
            entries=[response_scale_entry(n, i) for n, i in response_scales.items()],
        ),
        Section("scales", entries=[scale_entry(shared, s) for shared, s in scales.items()]),
        Section(
            "items",
            entries=[
                Entry(
                    c.name,
                    {"response_scale": name},
                    "shares a prefix with other items, but not their answer scale",
                )
                for c, _, name in unscaled
            ],
        ),
    ]


def response_scale_entry(name: str, items: list[tuple[Column, Answers]]) -> Entry:
    answers = items[0][1]
    spec: dict[str, Any] = {"min": answers.low, "max": answers.high}
    if answers.labels:
        spec["labels"] = dict(answers.labels)
        why = f"from the value labels of {len(items)} items"
        if len(answers.labels) <= answers.high - answers.low:
            why += ", labelled in part: the codes between are those that recur"
    else:
        why = f"the recurring answers of {len(items)} items (no value labels)"
    return Entry(name, spec, why)


def scale_entry(shared: str, scale: Scale) -> Entry:
    reverse = reversed_items(scale.items)
    spec = {
        "level": "individual",
        "response_scale": scale.response_scale,
        "items": [column.name for column, _ in scale.items],
        "reverse": [column.name for column in reverse],
    }
    why = f"the items named {shared}...; level individual by default"
    if reverse:
        why += "; reverse-keyed: they load against the others on the first principal component"
    return Entry(shared, spec, why)


# --- YAML with comments ------------------------------------------------------------------------


def render(sections: list[Section], paths: list[Path]) -> str:
    sources = "\n".join(f"#   {p.parent.name}/{p.name}" for p in paths)
    lines = HEADER.format(sources=sources).splitlines()
    for section in sections:
        lines += ["", *_comment(section.note, ""), *_comment(_guess(section.guess), "")]
        if section.entries is None:
            lines.append(_line(section.key, section.value))
            continue
        lines.append(f"{section.key}:" if section.entries else f"{section.key}: {{}}")
        for entry in section.entries:
            lines += [*_comment(_guess(entry.guess), "  "), "  " + _line(entry.key, entry.value)]
    return "\n".join(lines) + "\n"


def _guess(why: str) -> str:
    return f"GUESS: {why}; confirm" if why else ""


def _comment(text: str, indent: str) -> list[str]:
    return [
        f"{indent}# {line}"
        for line in textwrap.wrap(text, 96 - len(indent), break_on_hyphens=False)
    ]


def _line(key: Any, value: Any) -> str:
    """`key: value` on one line (YAML flow style)."""
    text = yaml.safe_dump(
        {key: value}, default_flow_style=True, allow_unicode=True, sort_keys=False, width=10**6
    )
    return text.strip()[1:-1]
