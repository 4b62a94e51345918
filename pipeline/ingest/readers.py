"""Survey exports (.sav, .csv, .xlsx) read into one canonical frame per wave.

Each format only gets its cells out of the file (`_Table`); header checks and type conversion
are shared, so every format yields the same columns and types: `wave`, `_source_file`,
`_source_row`, `_parse_errors`, then the codebook's `column_order`. Codes are kept as they are
(missing codes 9 and -99 included); judging them is for later stages. A cell that cannot be read
as its column's type becomes NA and is named in `_parse_errors`, so nothing is lost unnoticed.

Error messages name the file, line, row or column and what was expected, never a cell's content:
they reach the console and the Dagster event log, outside the restricted zone. A library's own
message is passed on only where it cannot hold a cell (`_cause`), and never chained, since Dagster
stores and `scan run` prints the innermost error.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
import json
import math
import numbers
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree.ElementTree import ParseError

import numpy as np
import pandas as pd
import pyreadstat

from pipeline.instrument.codebook import Codebook

SUPPORTED = (".sav", ".csv", ".xlsx")
DTYPES = {"string": "string", "number": "float64", "datetime": "datetime64[ns]"}
FLAGS = {"true": 1.0, "false": 0.0}  # how platforms write metadata flags such as Finished


class ExportError(ValueError):
    """An export that cannot be read; the message names the file and what was expected."""


@dataclass
class _Table:
    """An export's cells as the file holds them, before any checks or conversion."""

    header: list[str]
    records: list[list]
    rows: list[int]  # where each record starts: case number, CSV line or spreadsheet row
    labels: dict[str, str] = field(default_factory=dict)  # variable labels by export header
    value_labels: dict[str, dict] = field(default_factory=dict)


def export_files(wave_dir: Path) -> list[Path]:
    """The wave folder's exports; names starting with '.' or '_' are not exports."""
    if not wave_dir.is_dir():
        return []
    return sorted(p for p in wave_dir.iterdir() if p.is_file() and p.name[0] not in "._")


def read_wave(wave_dir: Path, codebook: Codebook, root: Path) -> pd.DataFrame:
    """All exports of the wave, concatenated; they must hold the same codebook columns.

    attrs: the exports' merged `labels`, and `export_columns` per source file.
    """
    files = export_files(wave_dir)
    if not files:
        raise ExportError(f"{wave_dir}: no exports in this wave folder (expected {_supported()})")
    frames = [read_export(path, codebook, wave_dir.name, root) for path in files]
    first = frames[0]
    for frame in frames[1:]:
        _check_same_columns(first, frame)
    wave = pd.concat(frames, ignore_index=True)
    labels: dict[str, dict] = {"variables": {}, "values": {}}
    for frame in frames:
        for kind in labels:
            labels[kind].update(frame.attrs["labels"][kind])
    wave.attrs = {
        "labels": labels,
        "export_columns": {f["_source_file"].iat[0]: f.attrs["export_columns"] for f in frames},
    }
    return wave


def read_export(path: Path, codebook: Codebook, wave: str, root: Path) -> pd.DataFrame:
    """One export in canonical columns.

    attrs: `labels` (variable and value labels by canonical name: the .sav's own, or the question
    texts of a Qualtrics export's second header row) and `export_columns` (canonical name ->
    the export's header for each column the file has; the others are filled with NA).
    """
    source = path.relative_to(root).as_posix()
    return _canonical(_read_table(path, source), codebook, wave, source)


@dataclass(frozen=True)
class RawExport:
    """An export as the file holds it, without a codebook: its own column names and cells."""

    cells: pd.DataFrame  # one column per export column, by its header name; cells as read
    labels: dict[str, str]  # variable labels (.sav) or question texts (Qualtrics) by name
    value_labels: dict[str, dict]  # value labels (.sav) by name: code -> label


def read_raw_export(path: Path) -> RawExport:
    """One export's own columns with their labels, for drafting a codebook from it."""
    table = _read_table(path, str(path))
    clashes = [i for i, name in enumerate(table.header, 1) if table.header.count(name) > 1]
    unnamed = [i for i, name in enumerate(table.header, 1) if not name]
    if clashes or unnamed:  # by position: without its header rows, a file's first row is data
        raise ExportError(
            f"{path}: every column needs a name of its own in the first row; "
            f"unnamed: columns {_numbers(unnamed)}; sharing a name: columns {_numbers(clashes)}"
        )
    return RawExport(
        cells=pd.DataFrame(table.records, columns=table.header, dtype=object),
        labels=table.labels,
        value_labels=table.value_labels,
    )


def _read_table(path: Path, source: str) -> _Table:
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise ExportError(
            f"{source}: unsupported file type {path.suffix!r}; expected {_supported()}"
        )
    if path.stat().st_size == 0:
        raise ExportError(f"{source}: empty file (0 bytes)")
    table = reader(path, source)
    if not table.records:
        raise ExportError(f"{source}: has a header but no data rows")
    return table


# --- formats: each returns the file's cells as a _Table ----------------------------------------


def _read_sav(path: Path, source: str) -> _Table:
    try:
        # without user_missing=True, SPSS user-missing codes (9, -99) would arrive as NaN
        frame, meta = pyreadstat.read_sav(path, user_missing=True)
    except (pyreadstat.ReadstatError, pyreadstat.PyreadstatError) as exc:
        # ReadStat's messages are fixed texts ("File did not contain the expected number of rows")
        raise ExportError(f"{source}: not a readable SPSS .sav file ({exc})") from None
    return _Table(
        header=list(frame.columns),
        records=frame.to_numpy(dtype=object).tolist(),
        rows=list(range(1, len(frame) + 1)),
        labels={name: label for name, label in meta.column_names_to_labels.items() if label},
        value_labels=meta.variable_value_labels,
    )


def _read_csv(path: Path, source: str) -> _Table:
    """The csv module, not pandas: it tells where each record starts, even across quoted
    newlines, and strict mode rejects a file cut off inside a quoted field."""
    text = _decode(path.read_bytes(), source)
    first_line = text.partition("\n")[0]
    delimiter = ";" if first_line.count(";") > first_line.count(",") else ","  # Excel NL: ';'
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    records, rows, start = [], [], 1
    try:
        for record in reader:
            if any(not _blank(cell) for cell in record):
                if records and len(record) != len(records[0]):
                    raise ExportError(
                        f"{source}: line {start}: expected {len(records[0])} fields as in the "
                        f"header, found {len(record)} (truncated or damaged file?)"
                    )
                records.append(record)
                rows.append(start)
            start = reader.line_num + 1
    except csv.Error as exc:  # the csv module's messages are fixed texts, naming no field
        raise ExportError(f"{source}: line {start}: malformed CSV ({exc})") from None
    return _split_header(records, rows, source)


def _decode(data: bytes, source: str) -> str:
    """UTF-8 (a byte-order mark makes it certain), else Windows' cp1252. A failure names where
    the first encoding broke off (a file cut inside a character ends "unexpected end of data")."""
    encodings = ("utf-8-sig",) if data.startswith(codecs.BOM_UTF8) else ("utf-8", "cp1252")
    errors = []
    for encoding in encodings:
        try:
            return data.decode(encoding)
        except UnicodeDecodeError as exc:
            errors.append(exc)
    first = errors[0]
    line = data.count(b"\n", 0, first.start) + 1
    raise ExportError(
        f"{source}: line {line}: not readable as {' or '.join(encodings)} "
        f"({first.encoding}: byte {first.start + 1} of the file: {first.reason})"
    ) from None


def _read_xlsx(path: Path, source: str) -> _Table:
    # not at the top: docs/developer.md#start-up-time
    import openpyxl

    try:
        workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
        try:
            sheet = workbook.worksheets[0]
            sheet.reset_dimensions()  # do not trust the size the writer recorded
            cells = [list(row) for row in sheet.iter_rows(values_only=True)]
        finally:
            workbook.close()
    except Exception as exc:  # zipfile, XML and openpyxl errors alike mean a damaged workbook
        raise ExportError(f"{source}: not a readable .xlsx workbook ({_cause(exc)})") from None
    width = max((len(row) for row in cells), default=0)
    numbered = [
        (number, row + [None] * (width - len(row)))
        for number, row in enumerate(cells, start=1)
        if any(not _blank(cell) for cell in row)
    ]
    return _split_header([row for _, row in numbered], [n for n, _ in numbered], source)


# errors about a workbook's container, whose messages name no cell ("File is not a zip file")
CONTAINER_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, ParseError)


def _cause(exc: Exception) -> str:
    """What went wrong, for an error message: the library's text only where it cannot hold a
    cell's content (openpyxl's conversion errors quote the cell), else the error's type."""
    if isinstance(exc, CONTAINER_ERRORS):
        return f"{type(exc).__name__}: {exc}"
    return f"{type(exc).__name__}; damaged, cut off or not an Excel workbook"


def _split_header(records: list[list], rows: list[int], source: str) -> _Table:
    """Qualtrics writes three header rows (name, question text, ImportId JSON), others one.
    Unnamed columns without any value (trailing separators, empty spreadsheet columns) go."""
    if not records:
        raise ExportError(f"{source}: no header row")
    qualtrics = len(records) >= 3 and _is_import_ids(records[2])
    skip = 3 if qualtrics else 1
    header = ["" if _blank(name) else str(name) for name in records[0]]
    keep = [
        i for i, name in enumerate(header) if name or any(not _blank(r[i]) for r in records[1:])
    ]
    return _Table(
        header=[header[i] for i in keep],
        records=[[record[i] for i in keep] for record in records[skip:]],
        rows=rows[skip:],
        labels={
            header[i]: str(records[1][i]) for i in keep if qualtrics and not _blank(records[1][i])
        },
    )


def _is_import_ids(row: list) -> bool:
    """True for Qualtrics' third header row: every filled cell is {"ImportId": ...}."""
    filled = [cell for cell in row if not _blank(cell)]
    try:
        return bool(filled) and all("ImportId" in json.loads(cell) for cell in filled)
    except (TypeError, ValueError):
        return False


_READERS = {".sav": _read_sav, ".csv": _read_csv, ".xlsx": _read_xlsx}


# --- shared: header check and type conversion --------------------------------------------------


def _canonical(table: _Table, codebook: Codebook, wave: str, source: str) -> pd.DataFrame:
    positions = _match_header(table.header, codebook, source)
    cells = list(zip(*table.records, strict=True))
    n = len(table.records)
    errors: list[list[str]] = [[] for _ in range(n)]
    data = {
        name: _convert(
            name,
            codebook.column_type(name),
            cells[positions[name]] if name in positions else [None] * n,
            flags=name in codebook.columns,
            errors=errors,
        )
        for name in codebook.column_order
    }
    frame = pd.DataFrame(
        {
            "wave": pd.Series([wave] * n, dtype="string"),
            "_source_file": pd.Series([source] * n, dtype="string"),
            "_source_row": pd.Series(table.rows, dtype="int64"),
            "_parse_errors": pd.Series(["; ".join(e) for e in errors], dtype="string"),
            **data,
        }
    )
    header = {name: table.header[i] for name, i in positions.items()}
    frame.attrs = {
        "labels": {
            "variables": {c: table.labels[h] for c, h in header.items() if h in table.labels},
            "values": {
                c: table.value_labels[h] for c, h in header.items() if h in table.value_labels
            },
        },
        "export_columns": header,
    }
    return frame


def _match_header(header: list[str], codebook: Codebook, source: str) -> dict[str, int]:
    """Canonical name -> position of its export column; every mismatch is reported at once."""
    aliases = codebook.aliases
    positions: dict[str, int] = {}
    problems = []
    for i, name in enumerate(header):
        canonical = aliases.get(name)
        if canonical is None:
            continue
        if canonical in positions:
            j = positions[canonical]
            problems.append(
                f"columns {j + 1} ({header[j]!r}) and {i + 1} ({name!r}) are both {canonical!r}"
            )
        positions[canonical] = i
    required = {*codebook.items, *codebook.background, codebook.respondent_id, codebook.company_id}
    missing = sorted(required - set(positions))
    if len(missing) > len(required) / 2:
        # not a header but data (header rows cut off) or another instrument: quote none of it
        raise ExportError(
            f"{source}: the first row is not a header of codebook {codebook.path.name} "
            f"({codebook.instrument} {codebook.version}): it names {len(required) - len(missing)} "
            f"of the {len(required)} required columns, such as {', '.join(missing[:3])} "
            "(were the header rows cut off, or is it another instrument's export?)"
        )
    unknown = sorted({name for name in header if name not in aliases})
    if missing:
        problems.append(f"missing required columns: {', '.join(missing)}")
    if unknown:
        problems.append(
            f"columns the codebook does not know: {', '.join(map(repr, unknown))} "
            "(an export of another instrument version?)"
        )
    if problems:
        raise ExportError(
            f"{source}: header does not match codebook {codebook.path.name} "
            f"({codebook.instrument} {codebook.version}): {'; '.join(problems)}"
        )
    return positions


def _convert(name: str, kind: str, values, flags: bool, errors: list[list[str]]) -> pd.Series:
    """The column as its codebook type; unreadable cells become NA and are noted per row.

    A column holds few distinct codes, so each distinct cell is parsed once where equal cells
    are alike (not so for floats: -0.0 == 0.0, nor for 1 == True); a number column of finite
    floats only (as SPSS gives) converts at once.
    """
    types = set(map(type, values))
    if types <= {str, int, type(None)} or types <= {str, bool, type(None)}:
        lookup = {value: _parse_cell(value, kind, flags) for value in set(values)}
        parsed = [lookup[value] for value in values]
    elif kind == "number" and types == {float} and not np.isinf(values).any():
        return pd.Series(values, dtype=DTYPES[kind])
    else:
        parsed = [_parse_cell(value, kind, flags) for value in values]
    for row, cell in enumerate(parsed):
        if cell is _UNREADABLE:
            parsed[row] = None
            errors[row].append(f"{name}={str(values[row])!r}")
    return pd.Series(parsed, dtype=DTYPES[kind])


_UNREADABLE = object()


def _parse_cell(value, kind: str, flags: bool):
    """None for a blank cell, _UNREADABLE for one that is not a `kind`, else its value."""
    if _blank(value):
        return None
    try:
        return _parse(value, kind, flags)
    except (TypeError, ValueError, OverflowError):
        return _UNREADABLE


def _parse(value, kind: str, flags: bool):
    """One cell as `kind`; only metadata numbers (`flags`) take true/false: in items, junk."""
    if kind == "string":
        # a code stored as a number (Excel, SPSS numeric) reads as "1234", not "1234.0"
        return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
    if kind == "datetime":
        if isinstance(value, str):
            value = dt.datetime.fromisoformat(value.strip())  # never guess day or month first
            if value.tzinfo is not None:
                raise ValueError("time zone offsets are not expected")
        elif not isinstance(value, dt.date):
            raise TypeError(value)
        return pd.Timestamp(value).as_unit("ns")
    if isinstance(value, str):
        text = value.strip().lower()
        number = FLAGS[text] if flags and text in FLAGS else float(text)
    elif isinstance(value, numbers.Real) and (flags or not isinstance(value, bool)):
        number = float(value)
    else:
        raise TypeError(value)
    if not math.isfinite(number):
        raise ValueError(value)
    return number


def _blank(value) -> bool:
    if isinstance(value, str):
        return not value.strip()
    return value is None or bool(pd.isna(value))


def _check_same_columns(first: pd.DataFrame, other: pd.DataFrame) -> None:
    """Exports of one wave must carry the same codebook columns (aliases may differ)."""
    a, b = first.attrs["export_columns"], other.attrs["export_columns"]
    if a.keys() == b.keys():
        return
    name_a, name_b = first["_source_file"].iloc[0], other["_source_file"].iloc[0]
    only_a = ", ".join(sorted(a[c] for c in a.keys() - b.keys())) or "-"
    only_b = ", ".join(sorted(b[c] for c in b.keys() - a.keys())) or "-"
    raise ExportError(
        f"{name_a} and {name_b} disagree on columns: only in {name_a}: {only_a}; "
        f"only in {name_b}: {only_b}"
    )


def _supported() -> str:
    return ", ".join(SUPPORTED)


def _numbers(positions: list[int]) -> str:
    return ", ".join(map(str, positions)) or "none"
