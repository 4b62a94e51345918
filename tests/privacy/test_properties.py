"""Property-based tests: clean demo rows, corrupted at random, must be caught, never lost.

Thirty truth-clean rows of a demo wave are written to a small export (a Qualtrics CSV with its
three header rows, a plain Excel-NL CSV, an .xlsx); hypothesis chooses corruptions and where to
apply them. Every example must end in either an `ExportError` that names the file, or a frame in
which every data row of the file is accounted for, validated or quarantined, once; no other
exception may escape. Each property then checks that its corruption is caught with the right
reason and that the other rows are not newly quarantined.

The sample keeps every duration within a factor 2.8 of the others, so no corruption of one row
can move the wave's median far enough to make another row a speeder.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import openpyxl
import pandas as pd
from conftest import CODEBOOK, DEMO_RAW
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.ingest.readers import ExportError, read_wave
from pipeline.instrument.codebook import load_codebook
from pipeline.validate.quality import (
    check_structure,
    normalised,
    quality_reasons,
    read_register,
    split_quarantine,
)

CB = load_codebook(CODEBOOK)
REGISTER = read_register(DEMO_RAW / CB.company_register, CB.company_id)
TRUTH = pd.read_csv(DEMO_RAW / "_demo_truth" / "rows.csv", dtype=str, keep_default_na=False)

SAMPLE_SIZE = 30
DURATION_BAND = (250, 700)  # seconds; max < 3 x min, and min > min_seconds_per_item x items
# database=None: no .hypothesis/ folder in the working tree
SETTINGS = settings(
    max_examples=30,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# What the codebook says about the columns (nothing hard-coded about the instrument)
CODES = [*CB.items, *CB.background]
REQUIRED = {*CODES, CB.respondent_id, CB.company_id}
NUMBER_META = [name for name, c in CB.columns.items() if c.type == "number"]
DATES = [name for name, c in CB.columns.items() if c.type == "datetime"]
STRINGS = [name for name in CB.column_order if CB.column_type(name) == "string"]


def allowed_codes(name: str) -> set[float]:
    missing = set(CB.missing_codes)
    if name in CB.background:
        return {*CB.background[name].codes, *missing}
    scale = CB.scale_of(name).response_scale
    return {*range(scale.min, scale.max + 1), *missing}


BAD_CODES = (0, 6, 7, 55, -1, 2.5)
WRONG_CODES = ("abc", "vijf", "3,5", "n.v.t.", "TRUE", "nan", "inf", "1e999", "#N/A")
WRONG_META = ("abc", "vijf", "3,5", "267 s", "nan", "-inf")  # true/false are flags here
WRONG_DATES = (
    "gisteren",
    "abc",
    "31-12-2021 10:00",  # day first: never guessed
    "2021-13-01 10:00:00",
    "2021-02-30",
    "2021-03-02T09:15:00+01:00",  # time zone offsets are not expected
    "9999-12-31 23:59:59",  # beyond what a timestamp holds
)
# cells only a spreadsheet can hold: a date in a number cell, a number or a time in a date cell
XLSX_WRONG_CODES = (True, dt.datetime(2022, 3, 8, 9, 15))
XLSX_WRONG_META = (dt.datetime(2022, 3, 8, 9, 15),)
XLSX_WRONG_DATES = (44000, 2.5, True, dt.time(9, 15), dt.datetime(1500, 1, 1))
PADDING = ("", " ", "  ", "\t", "\xa0", "\n")
# names the codebook does not know; cp1252 so that the plain CSV can hold them, and no leading
# '=' (openpyxl would store a formula)
UNKNOWN_NAMES = st.one_of(
    st.sampled_from(["Q17", "LT6", "lt1", "LT1 ", " RespCode", "Leeftijd", "Unnamed: 5", "Q3_1"]),
    st.text(
        alphabet=st.characters(codec="cp1252", categories=("L", "N", "P", "S", "Zs")),
        min_size=1,
        max_size=12,
    ),
).filter(lambda name: name.strip() and name not in CB.aliases and not name.startswith("="))


# --- the clean exports ----------------------------------------------------------------------


@dataclass
class Export:
    """An export as the file holds it: header, Qualtrics' extra header rows, data rows."""

    fmt: str  # "qualtrics" (CSV, three header rows), "plain" (CSV, ';', cp1252) or "xlsx"
    wave: str
    header: list[str]
    extra: list[list[str]]
    rows: list[list]

    def copy(self) -> Export:
        return Export(
            self.fmt,
            self.wave,
            list(self.header),
            [list(r) for r in self.extra],
            [list(r) for r in self.rows],
        )

    def canonical(self, position: int) -> str:
        return CB.aliases[self.header[position]]

    def position(self, canonical: str) -> int:
        return [CB.aliases.get(h) for h in self.header].index(canonical)

    def present(self, names) -> list[str]:
        have = {CB.aliases.get(h) for h in self.header}
        return [name for name in names if name in have]

    def set(self, row: int, canonical: str, value) -> None:
        """Put `value` in a cell as this format holds it (text in a CSV)."""
        if self.fmt != "xlsx":
            value = "" if value is None else str(value)
        self.rows[row][self.position(canonical)] = value

    def get(self, row: int, canonical: str):
        return self.rows[row][self.position(canonical)]

    def drop(self, positions) -> None:
        for p in sorted(positions, reverse=True):
            for record in [self.header, *self.extra, *self.rows]:
                del record[p]


def _demo_cells(wave: str) -> tuple[list[str], list[list[str]], list[list]]:
    """Header, extra header rows and data rows of the demo wave's export, as its cells."""
    (path,) = (DEMO_RAW / wave).iterdir()
    if path.suffix == ".csv":
        records = list(csv.reader(io.StringIO(path.read_text("utf-8-sig"), newline="")))
        return records[0], records[1:3], records[3:]
    workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
    cells = [list(row) for row in workbook.worksheets[0].iter_rows(values_only=True)]
    workbook.close()
    return cells[0], [], cells[1:]


def _clean_sample(wave: str, header: list[str], rows: list[list]) -> list[list]:
    """SAMPLE_SIZE truth-clean rows spread over the file, with a few multi-line comments."""
    truth = TRUTH[TRUTH["wave"] == wave]
    clean = set(truth.loc[truth["problems"] == "", "response_id"])
    at = {CB.aliases[h]: i for i, h in enumerate(header)}
    low, high = DURATION_BAND
    candidates = [
        i
        for i, r in enumerate(rows)
        if r[at["response_id"]] in clean and low <= float(r[at["duration_s"]]) <= high
    ]
    multiline = [i for i in candidates if "\n" in str(rows[i][at["comments"]] or "")][:3]
    rest = [i for i in candidates if i not in multiline]
    step = len(rest) // (SAMPLE_SIZE - len(multiline))
    picked = sorted(multiline + rest[::step][: SAMPLE_SIZE - len(multiline)])
    return [rows[i] for i in picked]


@cache
def clean_export(fmt: str) -> Export:
    wave = "2022-T2" if fmt == "xlsx" else "2021-T1"
    header, extra, rows = _demo_cells(wave)
    sample = _clean_sample(wave, header, rows)
    return Export(fmt, wave, header, extra if fmt == "qualtrics" else [], sample)


FORMATS = st.sampled_from(["qualtrics", "plain", "xlsx"])


def _count_lines(text: str) -> int:
    return len(io.StringIO(text, newline="").readlines())


def write(export: Export, folder: Path) -> tuple[Path, list[int]]:
    """The export as a file, and where each data row starts (CSV line or spreadsheet row)."""
    folder.mkdir(parents=True, exist_ok=True)
    if export.fmt == "xlsx":
        path = folder / "export.xlsx"
        workbook = openpyxl.Workbook()
        sheet = workbook.active
        for record in [export.header, *export.rows]:
            sheet.append(record)
        workbook.save(path)
        return path, list(range(2, len(export.rows) + 2))
    qualtrics = export.fmt == "qualtrics"
    path = folder / "export.csv"
    text = io.StringIO(newline="")
    writer = csv.writer(text, delimiter="," if qualtrics else ";", lineterminator="\r\n")
    writer.writerows([export.header, *export.extra])
    starts = []
    for record in export.rows:
        starts.append(_count_lines(text.getvalue()) + 1)
        writer.writerow(record)
    path.write_bytes(text.getvalue().encode("utf-8-sig" if qualtrics else "cp1252"))
    return path, starts


# --- running the pipeline's first stages on an export --------------------------------------


@dataclass
class Outcome:
    error: str | None
    frame: pd.DataFrame | None = None
    reasons: list[set[str]] | None = None  # per data row of the export, in file order

    def parse_errors(self, row: int) -> set[str]:
        """The columns `_parse_errors` names for a row."""
        text = self.frame["_parse_errors"].iat[row]
        return {error.split("=", 1)[0] for error in text.split("; ")} if text else set()


def run(export: Export) -> Outcome:
    """Read, check the structure, apply the quality rules and split: the general invariant.

    Either a clear ExportError naming the file, or every data row of the file exactly once in
    validated + quarantine. Any other exception is a bug.
    """
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        path, starts = write(export, root / export.wave)
        try:
            frame = read_wave(path.parent, CB, root)
            check_structure(frame, CB)
            reasons = quality_reasons(frame, CB, REGISTER)
            validated, quarantine = split_quarantine(frame, reasons)
        except ExportError as exc:
            assert path.name in str(exc), f"the message does not name the file: {exc}"
            return Outcome(str(exc))
        except Exception as exc:  # anything else escaping is a bug, whatever its type
            raise AssertionError(f"{type(exc).__name__} escaped: {exc}") from exc
    source = f"{export.wave}/{path.name}"
    assert frame["_source_file"].eq(source).all()
    assert frame["_source_row"].tolist() == starts, "rows lost, added or out of order"
    assert len(validated) + len(quarantine) == len(starts)
    keys = lambda f: set(zip(f["_source_file"], f["_source_row"], strict=True))  # noqa: E731
    assert keys(validated) | keys(quarantine) == {(source, row) for row in starts}
    assert not keys(validated) & keys(quarantine)
    per_row = [set(filter(None, r.split(";"))) for r in reasons]
    return Outcome(None, frame, per_row)


def assert_others_unchanged(outcome: Outcome, rows) -> None:
    others = {i: r for i, r in enumerate(outcome.reasons) if i not in rows and r}
    assert not others, f"rows newly quarantined: {others}"


def test_the_clean_samples_pass_every_rule():
    for fmt in ["qualtrics", "plain", "xlsx"]:
        export = clean_export(fmt)
        outcome = run(export)
        assert outcome.error is None, outcome.error
        assert len(outcome.frame) == SAMPLE_SIZE
        assert (outcome.frame["_parse_errors"] == "").all()
        assert not any(outcome.reasons), fmt
        people = normalised(outcome.frame[CB.respondent_id]) + normalised(
            outcome.frame[CB.company_id]
        )
        assert people.is_unique
        if fmt != "xlsx":
            assert outcome.frame["comments"].str.contains("\n").any()  # records over lines


def test_an_export_without_start_dates_is_outside_the_window_not_waved_through():
    """Found by the column property: an all-empty start_date made the window rule crash,
    pandera recorded the crash without a row, and every row passed."""
    for fmt in ["qualtrics", "xlsx"]:
        export = clean_export(fmt).copy()
        export.drop([export.position("start_date")])
        outcome = run(export)
        assert outcome.error is None, outcome.error
        assert all(reasons == {"outside_window"} for reasons in outcome.reasons), fmt


@cache
def baseline(fmt: str) -> pd.DataFrame:
    return run(clean_export(fmt)).frame


def cells(data, export: Export, columns: list[str], most: int = 3) -> list[tuple[int, str]]:
    """One to `most` distinct (row, canonical column) cells, chosen by hypothesis."""
    cell = st.tuples(st.integers(0, len(export.rows) - 1), st.sampled_from(columns))
    return data.draw(st.lists(cell, min_size=1, max_size=most, unique=True), label="cells")


# --- the properties -------------------------------------------------------------------------


@SETTINGS
@given(st.data())
def test_a_code_out_of_range_quarantines_its_row_and_only_that(data):
    export = clean_export(data.draw(FORMATS, label="format")).copy()
    hit = {}
    for row, name in cells(data, export, export.present(CODES)):
        bad = [c for c in BAD_CODES if c not in allowed_codes(name)]
        hit[row, name] = data.draw(st.sampled_from(bad), label=f"{name} in row {row}")
        export.set(row, name, hit[row, name])

    outcome = run(export)
    assert outcome.error is None, outcome.error
    for (row, name), code in hit.items():
        assert outcome.frame[name].iat[row] == code
        assert outcome.reasons[row] == {"out_of_range"}, (row, name, outcome.reasons[row])
    assert_others_unchanged(outcome, {row for row, _ in hit})


@SETTINGS
@given(st.data())
def test_a_dropped_or_renamed_column_is_named_or_harmless(data):
    export = clean_export(data.draw(FORMATS, label="format")).copy()
    optional_only = data.draw(st.booleans(), label="only optional columns")
    pool = [
        i
        for i in range(len(export.header))
        if not optional_only or export.canonical(i) not in REQUIRED
    ]
    chosen = data.draw(st.lists(st.sampled_from(pool), min_size=1, max_size=3, unique=True))
    dropped, renamed = [], {}
    for i in chosen:
        if data.draw(st.booleans(), label=f"rename {export.header[i]!r} (else drop)"):
            renamed[i] = data.draw(UNKNOWN_NAMES, label="new name")
        else:
            dropped.append(i)
    gone = {export.canonical(i) for i in chosen}
    missing = gone & REQUIRED
    for i, name in renamed.items():
        export.header[i] = name
    export.drop(dropped)

    outcome = run(export)
    if missing or renamed:
        assert outcome.error is not None, "a missing or unknown column must stop the file"
        listed = re.search(r"missing required columns: ([^;]*)", outcome.error)
        assert set(listed.group(1).split(", ") if listed else ()) == missing, outcome.error
        for name in renamed.values():
            assert repr(name) in outcome.error, (name, outcome.error)
        return
    # only optional columns dropped: read as empty, nothing newly quarantined
    assert outcome.error is None, outcome.error
    assert outcome.frame[sorted(gone)].isna().all().all()
    expected = {"outside_window"} if "start_date" in gone else set()  # start date unknown
    assert all(reasons == expected for reasons in outcome.reasons), outcome.reasons


@SETTINGS
@given(st.data())
def test_a_duplicated_row_keeps_exactly_the_last_copy(data):
    export = clean_export(data.draw(FORMATS, label="format")).copy()
    source = data.draw(st.integers(0, len(export.rows) - 1), label="row")
    original = export.rows[source]
    marked = [i == source for i in range(len(export.rows))]
    for _ in range(data.draw(st.integers(1, 2), label="copies")):
        copy = list(original)
        at = data.draw(st.integers(0, len(export.rows)), label="inserted at")
        export.rows.insert(at, copy)
        marked.insert(at, True)
        for name in (CB.respondent_id, CB.company_id):  # as retyped by the same person
            pad = data.draw(st.sampled_from(PADDING), label=f"padding {name}")
            case = data.draw(st.sampled_from([str, str.lower, str.upper]), label="case")
            export.set(at, name, f"{pad}{case(export.get(at, name))}{pad}")

    outcome = run(export)
    assert outcome.error is None, outcome.error
    copies = [i for i, m in enumerate(marked) if m]
    kept = [i for i in copies if not outcome.reasons[i]]
    assert kept == [copies[-1]], f"copies at {copies}, kept {kept}"
    for i in copies[:-1]:
        assert outcome.reasons[i] == {"duplicate"}, (i, outcome.reasons[i])
    assert_others_unchanged(outcome, copies)


@SETTINGS
@given(st.data())
def test_a_value_of_the_wrong_type_is_named_and_quarantined(data):
    export = clean_export(data.draw(FORMATS, label="format")).copy()
    xlsx = export.fmt == "xlsx"
    columns = export.present([*CODES, *NUMBER_META, *DATES])
    hit: dict[int, set[str]] = {}
    for row, name in cells(data, export, columns):
        if name in DATES:
            wrong = WRONG_DATES + (XLSX_WRONG_DATES if xlsx else ())
        elif name in NUMBER_META:
            wrong = WRONG_META + (XLSX_WRONG_META if xlsx else ())
        else:
            wrong = WRONG_CODES + (XLSX_WRONG_CODES if xlsx else ())
        export.set(row, name, data.draw(st.sampled_from(wrong), label=f"{name} in row {row}"))
        hit.setdefault(row, set()).add(name)

    outcome = run(export)
    assert outcome.error is None, outcome.error
    for row, names in hit.items():
        assert outcome.parse_errors(row) == names, outcome.frame["_parse_errors"].iat[row]
        assert outcome.frame.loc[row, sorted(names)].isna().all()
        allowed = {"unreadable_value"}
        allowed |= {"outside_window"} if "start_date" in names else set()
        allowed |= {"straightliner", "incomplete"} if names & set(CB.items) else set()
        assert "unreadable_value" in outcome.reasons[row], outcome.reasons[row]
        assert outcome.reasons[row] <= allowed, (names, outcome.reasons[row])
    assert_others_unchanged(outcome, hit)


@SETTINGS
@given(st.data())
def test_an_empty_cell_is_missing_and_an_empty_company_code_unknown(data):
    export = clean_export(data.draw(FORMATS, label="format")).copy()
    columns = export.present(CB.column_order)
    hit: dict[int, set[str]] = {}
    for row, name in cells(data, export, columns):
        export.set(row, name, data.draw(st.sampled_from(["", " ", "\t "]), label="empty"))
        hit.setdefault(row, set()).add(name)

    outcome = run(export)
    assert outcome.error is None, outcome.error
    for row, names in hit.items():
        assert outcome.frame.loc[row, sorted(names)].isna().all()
        assert outcome.parse_errors(row) == set()
        reasons = outcome.reasons[row]
        if CB.company_id in names:
            assert "unknown_company" in reasons, reasons
        allowed = {"unknown_company"} if CB.company_id in names else set()
        allowed |= {"outside_window"} if "start_date" in names else set()
        allowed |= {"straightliner", "incomplete"} if names & set(CB.items) else set()
        assert reasons <= allowed, (names, reasons)
    assert_others_unchanged(outcome, hit)


@SETTINGS
@given(st.data())
def test_stray_whitespace_around_codes_changes_nothing(data):
    export = clean_export(data.draw(FORMATS, label="format")).copy()
    columns = export.present([*CODES, *NUMBER_META, *DATES, CB.company_id, CB.respondent_id])
    for row, name in cells(data, export, columns, most=4):
        left, right = data.draw(
            st.tuples(st.sampled_from(PADDING), st.sampled_from(PADDING)).filter(any),
            label="padding",
        )
        value = export.get(row, name)
        text = value.isoformat(sep=" ") if isinstance(value, dt.datetime) else value
        export.set(row, name, f"{left}{'' if text is None else text}{right}")

    outcome = run(export)
    assert outcome.error is None, outcome.error
    assert not any(outcome.reasons), outcome.reasons
    assert (outcome.frame["_parse_errors"] == "").all()
    clean = baseline(export.fmt)
    values = [name for name in CB.column_order if name not in STRINGS]
    pd.testing.assert_frame_equal(outcome.frame[values], clean[values])
    for name in STRINGS:  # codes equal up to the stray whitespace
        assert outcome.frame[name].str.strip().equals(clean[name].str.strip()), name


CORRUPTIONS = ("out_of_range", "wrong_type", "empty", "whitespace", "duplicate", "drop", "rename")


@SETTINGS
@given(st.data())
def test_any_mix_of_corruptions_is_an_export_error_or_every_row_accounted_for(data):
    """Several corruptions at once: only the general invariant, checked inside `run`."""
    export = clean_export(data.draw(FORMATS, label="format")).copy()
    kinds = data.draw(st.lists(st.sampled_from(CORRUPTIONS), min_size=1, max_size=4))
    for kind in kinds:
        row = data.draw(st.integers(0, len(export.rows) - 1), label="row")
        column = data.draw(st.integers(0, len(export.header) - 1), label="column")
        name = CB.aliases.get(export.header[column])
        if kind == "duplicate":
            export.rows.insert(data.draw(st.integers(0, len(export.rows))), export.rows[row][:])
        elif kind == "drop" and len(export.header) > 1:
            export.drop([column])
        elif kind == "rename":
            export.header[column] = data.draw(UNKNOWN_NAMES, label="new name")
        elif name is None:
            continue  # a renamed column: its cells are no longer the codebook's
        elif kind == "out_of_range":
            export.set(row, name, data.draw(st.sampled_from(BAD_CODES)))
        elif kind == "wrong_type":
            export.set(row, name, data.draw(st.sampled_from(WRONG_CODES + WRONG_DATES)))
        elif kind == "empty":
            export.set(row, name, "")
        elif kind == "whitespace":
            value = export.get(row, name)
            export.rows[row][column] = f" {'' if value is None else value}\t"
    run(export)
