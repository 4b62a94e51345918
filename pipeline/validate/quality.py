"""Data contracts and row-level quality rules, generated from the codebook with pandera.

Two schemas:
- `structure_schema`: the columns and types every wave must have. A failure here is structural
  (another instrument version, a broken reader) and stops the wave.
- `row_schema`: one named check per quality rule; the check's name is the reason code. Failing
  rows go to the quarantine with every reason they fail, nothing else is dropped.

All thresholds come from the codebook's `quality:` section. A rule reads only the columns the
codebook gives it (`platform:` roles, `registers:`, a wave's fieldwork window, test codes);
without them it is not applicable, and `rule_status` says so instead of guessing.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pandera.pandas as pa

from pipeline.ingest.readers import DTYPES
from pipeline.instrument.codebook import QUALITY_RULES as REASONS
from pipeline.instrument.codebook import Codebook
from pipeline.instrument.scoring import score_scales

APPLIED = "applied"
COMPLETION = {"percent_complete", "completed"}  # the platform roles that tell finished rows
BOOKKEEPING = {"wave": "string", "_source_file": "string", "_source_row": "int64"}


class StructureError(ValueError):
    """A wave whose columns or types do not match the codebook; the message names the column."""


def normalised(codes: pd.Series) -> pd.Series:
    """Linkage and company codes as compared: trimmed and case-folded."""
    return codes.astype("string").str.strip().str.casefold()


def structure_schema(codebook: Codebook) -> pa.DataFrameSchema:
    columns = {name: pa.Column(dtype) for name, dtype in BOOKKEEPING.items()}
    columns["_parse_errors"] = pa.Column("string")
    for name in codebook.column_order:
        columns[name] = pa.Column(DTYPES[codebook.column_type(name)], nullable=True)
    return pa.DataFrameSchema(columns, strict=True, ordered=True, name="structure")


def check_structure(frame: pd.DataFrame, codebook: Codebook) -> None:
    """Raise StructureError naming the file(s) and the offending columns."""
    try:
        structure_schema(codebook).validate(frame, lazy=True)
    except pa.errors.SchemaErrors as errors:
        cases = errors.failure_cases
        files = ", ".join(sorted(frame["_source_file"].dropna().unique())) or "(no rows)"
        problems = sorted({_structure_problem(row) for row in cases.itertuples()})
        raise StructureError(f"{files}: {'; '.join(problems)}") from errors


def _structure_problem(case) -> str:
    if case.check == "column_in_dataframe":
        return f"column {case.failure_case!r} is missing"
    if case.check == "column_in_schema":
        return f"column {case.failure_case!r} is not in the codebook"
    if case.check == "column_ordered":
        return f"column {case.failure_case!r} is out of the codebook's order"
    return f"column {case.column!r}: expected {case.check}"


def rule_status(codebook: Codebook, wave: str) -> dict[str, str]:
    """Per rule (reason code): "applied", or why not, naming what the codebook would need."""
    platform, q = codebook.platform, codebook.quality
    window = codebook.waves.get(wave)
    needs = {
        "preview": [] if "preview" in platform else ["platform.preview"],
        "test": (
            []
            if q.test_company_codes or q.test_respondent_codes
            else ["quality.test_company_codes or quality.test_respondent_codes"]
        ),
        "unknown_company": [] if codebook.company_register else ["registers.companies"],
        "outside_window": [
            *([] if window is not None and window.start else [f"waves.{wave}.start and end"]),
            *([] if "started" in platform else ["platform.started"]),
        ],
        "incomplete": (
            [] if COMPLETION & set(platform) else ["platform.percent_complete or completed"]
        ),
        "speeder": [] if "duration" in platform else ["platform.duration"],
        "straightliner": (
            []
            if len(codebook.items) >= q.straightline_min_items
            else [
                f"at least {q.straightline_min_items:g} items "
                f"(quality.straightline_min_items; the instrument has {len(codebook.items)})"
            ]
        ),
    }
    status = {}
    for rule in REASONS:
        if rule in q.skip:
            status[rule] = "skipped: switched off in the codebook (quality.skip)"
        elif needs.get(rule):
            status[rule] = f"not applicable: needs {' and '.join(needs[rule])}"
        else:
            status[rule] = APPLIED
    return status


def median_duration(frame: pd.DataFrame, codebook: Codebook) -> float | None:
    """The median of the platform's duration column, None without one."""
    column = codebook.platform.get("duration")
    return None if column is None else float(frame[column].median())


def row_schema(
    codebook: Codebook, wave: str, register: set[str], median_seconds: float | None
) -> pa.DataFrameSchema:
    """Every applicable quality rule as a pandera check named by its reason code.

    The speeder limit depends on the wave's median duration, so it is passed in: validating the
    kept rows again must use the median of all raw rows, as the first validation did.
    """
    q = codebook.quality
    platform = codebook.platform
    items = codebook.items
    missing = list(codebook.missing_codes)
    window = codebook.waves.get(wave)
    test_companies = {c.casefold() for c in q.test_company_codes}
    test_respondents = {c.casefold() for c in q.test_respondent_codes}
    known = {c.casefold() for c in register}

    def is_test(df: pd.DataFrame) -> pd.Series:
        return normalised(df[codebook.company_id]).isin(test_companies).fillna(False) | normalised(
            df[codebook.respondent_id]
        ).isin(test_respondents).fillna(False)

    def in_window(df: pd.DataFrame) -> pd.Series:
        # Timestamps, not .dt.date: an all-empty column stays datetime64, which a date
        # cannot be compared with (the rule would crash and pass every row)
        started = df[platform["started"]]
        day = started.dt.normalize()
        return (
            day.ge(pd.Timestamp(window.start)) & day.le(pd.Timestamp(window.end)) & started.notna()
        )

    def not_speeder(df: pd.DataFrame) -> pd.Series:
        limit = max(
            q.min_seconds_per_item * len(items), q.min_share_of_median_duration * median_seconds
        )
        return ~(df[platform["duration"]] < limit)

    def not_incomplete(df: pd.DataFrame) -> pd.Series:
        scores = score_scales(df, codebook)
        scorable = scores[list(codebook.scales)].notna().any(axis=1)
        return ~unfinished(df, codebook) | scorable

    def not_straightlining(df: pd.DataFrame) -> pd.Series:
        answers = df[items].where(~df[items].isin(missing))
        answered = answers.notna().sum(axis=1)
        # one distinct answer: highest == lowest (NaN != NaN when none); as nunique(axis=1),
        # which compares row by row in Python
        varied = answers.max(axis=1) != answers.min(axis=1)
        return varied | (answered < q.straightline_min_share * len(items))

    def not_duplicate(df: pd.DataFrame) -> pd.Series:
        return ~earlier_submissions(df, codebook, candidates=~is_test(df) & preview_free(df))

    def preview_free(df: pd.DataFrame) -> pd.Series:
        if "preview" not in platform:
            return pd.Series(True, index=df.index)
        return df[platform["preview"]].fillna(0) == 0

    frame_checks: dict[str, Callable[[pd.DataFrame], pd.Series]] = {
        "unreadable_value": lambda df: df["_parse_errors"].fillna("") == "",
        "preview": preview_free,
        "test": lambda df: ~is_test(df),
        "unknown_company": lambda df: (
            is_test(df) | normalised(df[codebook.company_id]).isin(known).fillna(False)
        ),
        "outside_window": in_window,
        "incomplete": not_incomplete,
        "speeder": not_speeder,
        "straightliner": not_straightlining,
        "duplicate": not_duplicate,
    }
    status = rule_status(codebook, wave)
    return pa.DataFrameSchema(
        value_columns(codebook),
        checks=[
            pa.Check(fn, name=reason)
            for reason, fn in frame_checks.items()
            if status[reason] == APPLIED
        ],
        name="quality rules",
    )


def value_columns(codebook: Codebook) -> dict[str, pa.Column]:
    """The rule out_of_range per column: each item and background variable holds a valid code
    (a number in its range) or a missing code."""
    missing = list(codebook.missing_codes)
    columns = {}
    for item in codebook.items:
        scale = codebook.response_scale_of(item)
        columns[item] = _codes_column([*range(scale.min, scale.max + 1), *missing])
    for name, variable in codebook.background.items():
        if variable.is_number:
            columns[name] = _number_column(variable.min, variable.max, missing)
        else:
            columns[name] = _codes_column([*variable.codes, *missing])
    return columns


def _codes_column(allowed: list[int]) -> pa.Column:
    return pa.Column(
        "float64", pa.Check(lambda s: s.isin(allowed), name="out_of_range"), nullable=True
    )


def _number_column(low: float | None, high: float | None, missing: list[int]) -> pa.Column:
    """A number in its range (when the codebook gives one), or a missing code."""
    low = -np.inf if low is None else low
    high = np.inf if high is None else high
    return pa.Column(
        "float64",
        pa.Check(lambda s: s.between(low, high) | s.isin(missing), name="out_of_range"),
        nullable=True,
    )


def unfinished(df: pd.DataFrame, codebook: Codebook) -> pd.Series:
    """Responses the platform marks as not finished: percent complete under 100, else the
    completed flag not 1."""
    if "percent_complete" in codebook.platform:
        return df[codebook.platform["percent_complete"]] < 100
    return df[codebook.platform["completed"]] != 1


def earlier_submissions(df: pd.DataFrame, codebook: Codebook, candidates: pd.Series) -> pd.Series:
    """Rows superseded by another submission of the same person in the same company.

    Per person (normalised linkage and company code) the last complete submission is kept, or
    the last one when none is complete; every other candidate row of that person is a duplicate.
    "Complete" and "last" use the platform's progress (or finished flag) and submission (or
    start) time where the codebook declares them, else the row order.
    Rows without a linkage code cannot be matched and are never duplicates.
    """
    platform = codebook.platform
    person = normalised(df[codebook.respondent_id])
    company = normalised(df[codebook.company_id])
    usable = candidates & person.notna() & (person != "")
    complete = 0 if COMPLETION.isdisjoint(platform) else ~unfinished(df, codebook)
    when = pd.Series(pd.NaT, index=df.index, dtype="datetime64[ns]")
    for role in ("started", "ended"):  # the submission time where filled, else the start
        if role in platform:
            when = df[platform[role]].combine_first(when)
    ordered = pd.DataFrame(
        {
            "person": person,
            "company": company.fillna(""),
            "complete": pd.Series(complete, index=df.index).astype(int),
            "when": when,
            "row": np.arange(len(df)),
        },
        index=df.index,
    )[usable].sort_values(["complete", "when", "row"])
    kept = ordered.groupby(["person", "company"], sort=False).tail(1).index
    return usable & ~df.index.isin(kept)


def quality_reasons(
    frame: pd.DataFrame,
    codebook: Codebook,
    register: set[str],
    median_seconds: float | None = None,
) -> pd.Series:
    """Per row, its reasons for quarantine joined by ';' (empty for a row that passes).

    `median_seconds` defaults to the median duration of `frame` (the raw rows of one wave).
    """
    waves = frame["wave"].dropna().unique()
    wave = str(waves[0]) if len(waves) else ""
    if median_seconds is None:
        median_seconds = median_duration(frame, codebook)
    failed: dict[int, set[str]] = {}
    plain = frame.copy(deep=False)
    plain.attrs = {}  # pandas deep-copies attrs (the export's labels) into every intermediate
    try:
        row_schema(codebook, wave, register, median_seconds).validate(plain, lazy=True)
    except pa.errors.SchemaErrors as errors:
        cases = errors.failure_cases
        crashed = cases[cases["index"].isna() & cases["check"].isin(REASONS)]
        if len(crashed):  # a rule that raised must not pass every row silently
            problems = "; ".join(f"{c.check}: {c.failure_case}" for c in crashed.itertuples())
            raise RuntimeError(f"quality rule could not be evaluated: {problems}") from errors
        cases = cases.dropna(subset=["index"])
        for index, check in zip(cases["index"], cases["check"], strict=True):
            failed.setdefault(index, set()).add(check)
    return pd.Series(
        [";".join(r for r in REASONS if r in failed.get(i, ())) for i in frame.index],
        index=frame.index,
        dtype="string",
    )


def split_quarantine(frame: pd.DataFrame, reasons: pd.Series) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(validated rows, quarantined rows with a `_reasons` column); together they are `frame`."""
    bad = reasons != ""
    quarantine = frame[bad].assign(_reasons=reasons[bad])
    return frame[~bad].reset_index(drop=True), quarantine.reset_index(drop=True)


def quality_summary(
    wave: str, raw: int, quarantine: pd.DataFrame, status: dict[str, str]
) -> pd.DataFrame:
    """Counts only, no row data: rows per reason (a row may have several), and the totals; per
    rule its `rule_status` ("applied", or why not: see `rule_status`). Exact counts, for the
    steward; what is published is `published_quality_summary` of it."""
    per_reason = quarantine["_reasons"].str.split(";").explode().value_counts()
    rows = [
        ("raw_rows", raw, ""),
        ("validated", raw - len(quarantine), ""),
        ("quarantined", len(quarantine), ""),
    ]
    rows += [(reason, int(per_reason.get(reason, 0)), status[reason]) for reason in REASONS]
    return pd.DataFrame(rows, columns=["reason", "rows", "rule_status"]).assign(wave=wave)[
        ["wave", "reason", "rows", "rule_status"]
    ]


TOTALS = ("raw_rows", "validated", "quarantined")


def stored_counts(rows: pd.Series) -> pd.Series:
    """A summary's `rows` as an object Series of ints, each hidden cell kept as its marker: as
    computed (ints), or as read back from quality_summary.csv (text once a cell is hidden)."""

    def cell(value):
        text = str(value)
        return int(text) if text.lstrip("-").isdigit() else text

    return rows.map(cell).astype(object)


def published_quality_summary(
    summary: pd.DataFrame,
    k: int,
    suppress_counts: Callable[[pd.Series, int, str], pd.Series],
    marker: str,
) -> pd.DataFrame:
    """`quality_summary` as it may leave the restricted zone: no count of 1 to k-1 quarantined
    rows, and none that follows from the published ones. Hidden cells read `marker`.

    `suppress_counts` and `marker` are pipeline.privacy.suppression's (the validate stage comes
    before privacy, so the caller passes them in). The rule:

    - The reason cells go through `suppress_counts`: primary suppression of 1 to k-1, then
      complementary suppression until at least two cells are hidden and they add up to at least
      k. The reasons do not partition the quarantined rows (a row carries every reason it
      fails), so the cells add up to `quarantined` or more. The published total then gives only
      a lower bound, hidden >= quarantined - shown, where a partition gives equality: what
      protects the hidden cells of a partition protects them here too.
    - A reason cell counts quarantined rows, so none exceeds `quarantined`. With 1 to k-1
      quarantined rows every nonzero cell is hidden, and the total would still bound each below
      k (and be the cell itself when one reason holds every row): no complement can help, so the
      total is hidden, and `raw_rows` with it, since raw_rows - validated gives it back.
      `validated` stays: it is the number of published responses.
    - 0 is shown, as are the rules not applied (0, their `rule_status` says why).

    A summary that already has a hidden cell is returned as it is (the rule is idempotent)."""
    out = summary.copy()
    out["rows"] = stored_counts(out["rows"])
    if out["rows"].eq(marker).any():
        return out
    reason = out["reason"]
    cells = ~reason.isin(TOTALS)
    out.loc[cells, "rows"] = suppress_counts(out.loc[cells, "rows"].astype(int), k, marker)
    quarantined = int(out.loc[reason.eq("quarantined"), "rows"].iloc[0])
    if 0 < quarantined < k:
        out.loc[reason.isin(["raw_rows", "quarantined"]), "rows"] = marker
    return out


def describe_quality(summary: pd.DataFrame) -> str:
    """'690 raw rows: 624 validated, 66 quarantined (preview 3, ...); not applicable: speeder
    (needs platform.duration)'; a hidden count reads as its marker."""
    rows = summary.set_index("reason")
    status = rows["rule_status"].fillna("")
    counts = stored_counts(rows["rows"])
    applied = [r for r in REASONS if status.get(r, APPLIED) == APPLIED]
    reasons = ", ".join(f"{r} {counts[r]}" for r in applied if counts.get(r, 0))
    text = (
        f"{counts['raw_rows']} raw rows: {counts['validated']} validated, "
        f"{counts['quarantined']} quarantined ({reasons or 'none'})"
    )
    skipped = [f"{r} ({status[r]})" for r in REASONS if r not in applied]
    return f"{text}; rules not applied: {', '.join(skipped)}" if skipped else text


class NothingValidated(ValueError):
    """Validation kept no row of a wave: later steps would only fail for want of data."""


def nothing_validated(wave: str, summary: pd.DataFrame) -> NothingValidated:
    return NothingValidated(
        f"{wave}: validation kept no rows, so the wave stops here: {describe_quality(summary)}"
    )


def read_register(path: Path, column: str) -> set[str]:
    """The company codes of the study's register (restricted zone), in its column named as the
    codebook's company identifier."""
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: company register not found (the codebook's registers.companies)"
        )
    register = pd.read_csv(path, dtype=str)
    if column not in register:
        raise ValueError(
            f"{path}: the company register needs a column {column} (the codebook's "
            f"identifiers.company); it has {', '.join(register.columns)}"
        )
    return set(register[column].dropna().str.strip())


# How the readers number an export's rows (`_source_row`, pipeline/ingest/readers.py), so that the
# steward finds a row again in the file as the tool that opens it counts.
ROW_NUMBERING = {".csv": "line", ".xlsx": "row", ".sav": "case"}
ROW_NUMBERING_TEXT = (
    "line: the line of the CSV file where the row starts, its header lines counted; "
    "row: the spreadsheet row, its header rows counted; case: the case number in SPSS"
)
# What each reason means at the source, for the steward who fixes it there.
REASON_TEXT = {
    "unreadable_value": "a cell not of its column's type (the columns named): correct the export",
    "preview": "a survey preview, not a response: leave it out of the export",
    "test": "a test response (a test company or linkage code): leave it out of the export",
    "unknown_company": "a company code not in the register: correct the code, or register the "
    "company",
    "outside_window": "started outside the wave's fieldwork window, or no start time: check that "
    "the export belongs to this wave, and the window in the codebook",
    "out_of_range": "a code that is neither an answer nor a missing code (the columns named): "
    "correct the export, or the codebook's codes",
    "incomplete": "not finished, with too few answers for any score: nothing to fix unless the "
    "platform's progress is wrong",
    "speeder": "faster than the codebook's speed limits: nothing to fix unless the duration is "
    "wrong",
    "straightliner": "the same answer on nearly every item: nothing to fix unless the export "
    "mixed up the answers",
    "duplicate": "an earlier submission of the same person and company (the last complete one "
    "is kept): nothing to fix unless two people typed the same linkage code",
}


def quarantine_listing(quarantine: pd.DataFrame, codebook: Codebook) -> pd.DataFrame:
    """Where a steward finds each quarantined row in its export and why, with none of its
    values: `file`, `row` as `counted` there (ROW_NUMBERING), `reasons`, and the `columns` at
    fault for unreadable_value and out_of_range (names from the codebook, never a cell)."""
    frame = quarantine.reset_index(drop=True)
    unreadable = [
        {c for c in codebook.column_order if re.search(rf"(^|; ){re.escape(c)}=", errors)}
        for errors in frame["_parse_errors"].fillna("")
    ]
    out_of_range = _out_of_range_columns(frame, codebook)
    suffix = frame["_source_file"].str.extract(r"(\.[^./]+)$", expand=False).str.lower()
    listing = pd.DataFrame(
        {
            "file": frame["_source_file"].astype(str),
            "counted": suffix.map(ROW_NUMBERING).astype(str),
            "row": frame["_source_row"].astype(int),
            "reasons": frame["_reasons"].str.replace(";", ", ").astype(str),
            "columns": [
                ", ".join(c for c in codebook.column_order if c in a | b)
                for a, b in zip(unreadable, out_of_range, strict=True)
            ],
        }
    )
    return listing.sort_values(["file", "row"], ignore_index=True)


def _out_of_range_columns(frame: pd.DataFrame, codebook: Codebook) -> list[set[str]]:
    """Per row of `frame` (a default index), the columns failing the rule out_of_range."""
    found: list[set[str]] = [set() for _ in range(len(frame))]
    plain = frame.copy(deep=False)
    plain.attrs = {}
    try:
        pa.DataFrameSchema(value_columns(codebook)).validate(plain, lazy=True)
    except pa.errors.SchemaErrors as errors:
        cases = errors.failure_cases
        cases = cases[(cases["check"] == "out_of_range") & cases["index"].notna()]
        for index, column in zip(cases["index"], cases["column"], strict=True):
            found[int(index)].add(str(column))
    return found
