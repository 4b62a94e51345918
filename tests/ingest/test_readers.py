"""The export readers, on real .sav, .csv and .xlsx files written here (and on the demo waves)."""

import csv
import datetime as dt
import json
import math
import re
import zipfile
from pathlib import Path

import openpyxl
import pandas as pd
import pyreadstat
import pytest
from conftest import CODEBOOK, DEMO_RAW

from pipeline.ingest.readers import (
    ExportError,
    _convert,
    export_files,
    read_export,
    read_raw_export,
    read_wave,
)
from pipeline.instrument.codebook import load_codebook

CB = load_codebook(CODEBOOK)
WAVE = "2021-T1"
CANONICAL = ["wave", "_source_file", "_source_row", "_parse_errors", *CB.column_order]
DTYPES = {"string": "string", "number": "float64", "datetime": "datetime64[ns]"}
QUALTRICS_NAMES = {
    "response_id": "ResponseId",
    "start_date": "StartDate",
    "duration_s": "Duration (in seconds)",
    "finished": "Finished",
}
COMMENT = 'Goed initiatief, maar de "scan" was lang.\r\nGroet, Zoë (één keer ingevuld)'


def record(i: int = 1, **changes) -> dict:
    """A valid response in canonical names: the required columns and a few optional ones."""
    return {
        "response_id": f"R_{i}",
        "start_date": "2021-03-02 09:15:00",
        "status": 0,
        "duration_s": 300 + i,
        "finished": 1,
        CB.respondent_id: f"AB{i:02d}CD",
        CB.company_id: "C017",
        **dict.fromkeys(CB.background, 2),
        **dict.fromkeys(CB.items, 3),
        "comments": "",
        **changes,
    }


def export(*records: dict, rename: dict | None = None, drop=(), **extra) -> pd.DataFrame:
    """Records as an export's table: columns renamed to export headers, some dropped or added."""
    frame = pd.DataFrame(list(records) or [record()]).iloc[: len(records)]
    return frame.drop(columns=list(drop)).assign(**extra).rename(columns=rename or {})


def write_csv(path: Path, frame, encoding="utf-8", delimiter=",", qualtrics=False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding=encoding, newline="") as handle:
        writer = csv.writer(handle, delimiter=delimiter, lineterminator="\r\n")
        writer.writerow(frame.columns)
        if qualtrics:
            writer.writerow([CB.item_text.get(name, name) for name in frame.columns])
            writer.writerow([json.dumps({"ImportId": f"QID_{name}"}) for name in frame.columns])
        writer.writerows(frame.astype(str).itertuples(index=False))
    return path


def write_xlsx(path: Path, frame, qualtrics=False, blank_rows_before=()) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(list(frame.columns))
    if qualtrics:
        sheet.append([CB.item_text.get(name, name) for name in frame.columns])
        sheet.append([json.dumps({"ImportId": f"QID_{name}"}) for name in frame.columns])
    for i, row in enumerate(frame.astype(object).to_numpy().tolist()):
        if i in blank_rows_before:
            sheet.append([])
        sheet.append([None if value == "" else value for value in row])
    workbook.save(path)
    return path


def write_sav(path: Path, frame, **metadata) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pyreadstat.write_sav(frame, path, **metadata)
    return path


def read(path: Path, root: Path) -> pd.DataFrame:
    return read_export(path, CB, WAVE, root)


def error_of(path: Path, root: Path) -> str:
    """The message of the error reading `path`: it names the file, and it is the whole story
    (Dagster stores, and `scan run` prints, the innermost error of a chain)."""
    with pytest.raises(ExportError) as caught:
        read(path, root)
    assert path.name in str(caught.value)
    assert is_innermost(caught.value)
    return str(caught.value)


def is_innermost(error: BaseException) -> bool:
    """No error behind it, as a traceback would show one."""
    return error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)


def cells_of_first_row(path: Path) -> set[str]:
    """The first data row of a demo export, as text: every cell that could mean something."""
    frame = read_export(path, CB, path.parent.name, path.parent.parent).iloc[0]
    values = {str(v) for v in frame.drop(["wave", "_source_file", "_source_row"]).dropna()}
    return {v for v in values if len(v) >= 4}


def whole_tokens(values: set[str]):
    """A regex finding any of `values` as a whole token (not inside a longer number or word)."""
    alternatives = "|".join(re.escape(v) for v in sorted(values, key=len, reverse=True))
    return re.compile(rf"(?<![\w.])(?:{alternatives})(?![\w])")


def assert_canonical(frame: pd.DataFrame) -> None:
    assert frame.columns.tolist() == CANONICAL
    for name in CB.column_order:
        assert frame[name].dtype == DTYPES[CB.column_type(name)], name
    for name in ("wave", "_source_file", "_parse_errors"):
        assert frame[name].dtype == "string", name
    assert frame["_source_row"].dtype == "int64"


# --- formats ------------------------------------------------------------------------------------


def test_export_files_skips_hidden_and_underscore_names_but_not_unknown_types(tmp_path):
    for name in ["b.sav", "a.csv", ".DS_Store", "_notes.csv", "README.txt", "c.XLSX"]:
        (tmp_path / name).write_text("x")
    (tmp_path / "old").mkdir()
    assert [p.name for p in export_files(tmp_path)] == ["README.txt", "a.csv", "b.sav", "c.XLSX"]
    assert export_files(tmp_path / "missing") == []


def test_sav_keeps_user_missing_codes_labels_and_case_numbers(tmp_path):
    frame = export(
        record(1, LT1=9, RF3=-99, finished=0),
        record(2, LT1=5, comments="Prima scan"),
        rename={**QUALTRICS_NAMES, "duration_s": "Duration__in_seconds_"},
    ).assign(StartDate=lambda f: pd.to_datetime(f["StartDate"]))
    missing = {name: [9, -99] for name in CB.items}
    path = write_sav(
        tmp_path / "2019-T0" / "export.sav",
        frame,
        column_labels={"LT1": CB.item_text["LT1"], "StartDate": "Startdatum"},
        variable_value_labels={"LT1": {1: "helemaal oneens", 9: "weet niet / n.v.t."}},
        missing_ranges=missing,
    )
    data = read_export(path, CB, "2019-T0", tmp_path)

    assert_canonical(data)
    assert data["_source_row"].tolist() == [1, 2]
    assert (data["_source_file"] == "2019-T0/export.sav").all() and (
        data["wave"] == "2019-T0"
    ).all()
    assert data["LT1"].tolist() == [9.0, 5.0] and data["RF3"].tolist() == [-99.0, 3.0]
    assert data["duration_s"].tolist() == [301.0, 302.0] and data["finished"].tolist() == [0.0, 1.0]
    assert data["start_date"].tolist() == [pd.Timestamp("2021-03-02 09:15")] * 2
    assert data["comments"].isna().tolist() == [True, False]  # an empty string is NA
    assert data[["email", "recorded_date", "progress"]].isna().all().all()  # optional, absent
    assert (data["_parse_errors"] == "").all()
    labels = data.attrs["labels"]
    assert labels["variables"]["LT1"] == CB.item_text["LT1"]
    assert labels["variables"]["start_date"] == "Startdatum"
    assert labels["values"]["LT1"][9] == "weet niet / n.v.t."
    assert data.attrs["export_columns"]["duration_s"] == "Duration__in_seconds_"


def test_qualtrics_csv_with_bom_three_header_rows_and_a_multiline_comment(tmp_path):
    frame = export(
        record(1, finished="True"),
        record(2, finished="False", comments=COMMENT, LT2=-99),
        record(3, finished="True"),
        rename={**QUALTRICS_NAMES, "comments": "Opmerkingen"},
    )
    path = write_csv(tmp_path / WAVE / "qualtrics.csv", frame, "utf-8-sig", qualtrics=True)
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    data = read(path, tmp_path)

    assert_canonical(data)
    assert data["_source_row"].tolist() == [4, 5, 7]  # the comment spans lines 5 and 6
    assert data["comments"].iloc[1] == COMMENT
    assert data["response_id"].tolist() == ["R_1", "R_2", "R_3"]
    assert data["finished"].tolist() == [1.0, 0.0, 1.0]
    assert data["LT2"].tolist() == [3.0, -99.0, 3.0]
    assert data["duration_s"].iloc[0] == 301.0
    assert data["start_date"].iloc[0] == pd.Timestamp("2021-03-02 09:15")
    assert data.attrs["labels"]["variables"]["LT1"] == CB.item_text["LT1"]  # header row 2


@pytest.mark.parametrize(
    ("encoding", "delimiter"), [("utf-8", ","), ("utf-8-sig", ","), ("cp1252", ";")]
)
def test_plain_csv_keeps_dutch_diacritics_in_any_encoding(tmp_path, encoding, delimiter):
    comment = "Café-sessies; financiële steun, geïnteresseerd in één cursus"
    frame = export(record(1, comments=comment), record(2))
    path = write_csv(tmp_path / WAVE / "plain.csv", frame, encoding, delimiter)
    data = read(path, tmp_path)

    assert_canonical(data)
    assert data["_source_row"].tolist() == [2, 3]
    assert data["comments"].iloc[0] == comment
    assert data["LT1"].tolist() == [3.0, 3.0]


@pytest.mark.parametrize("finished", [("True", "False"), ("TRUE", "FALSE"), ("1", "0")])
def test_finished_flags_become_one_and_zero(tmp_path, finished):
    frame = export(record(1, finished=finished[0]), record(2, finished=finished[1]))
    data = read(write_csv(tmp_path / WAVE / "flags.csv", frame), tmp_path)
    assert data["finished"].tolist() == [1.0, 0.0]


def test_unparseable_values_become_na_and_are_listed_per_row(tmp_path):
    frame = export(
        record(1),
        record(2, LT3="abc", start_date="gisteren"),
        record(3, LT1="TRUE", start_date="04-03-2021"),  # words are flags only in metadata
    )
    data = read(write_csv(tmp_path / WAVE / "bad.csv", frame), tmp_path)

    assert data["_parse_errors"].tolist() == [
        "",
        "start_date='gisteren'; LT3='abc'",
        "start_date='04-03-2021'; LT1='TRUE'",  # day-first dates are not guessed
    ]
    assert data["LT3"].isna().tolist() == [False, True, False]
    assert data["start_date"].isna().tolist() == [False, True, True]
    assert data["LT1"].tolist()[:2] == [3.0, 3.0] and pd.isna(data["LT1"].iloc[2])


def convert(values, kind="number", flags=False):
    """`_convert` on one column: (values as a list, NA as None; parse errors per row)."""
    errors = [[] for _ in values]
    series = _convert("x", kind, tuple(values), flags, errors)
    return [None if pd.isna(v) else v for v in series], errors


def test_each_distinct_cell_is_parsed_as_its_own_type():
    """Equal cells of different types (1 == True) are not taken for one another."""
    assert convert([1, True, 1, None]) == ([1.0, None, 1.0, None], [[], ["x='True'"], [], []])
    assert convert([True, "true", True], flags=True) == ([1.0, 1.0, 1.0], [[], [], []])
    assert convert([True, "true", True]) == (
        [None, None, None],
        [["x='True'"], ["x='true'"], ["x='True'"]],
    )
    assert convert(["1", 1, " 1 ", "", "x", "x"]) == (
        [1.0, 1.0, 1.0, None, None, None],
        [[], [], [], [], ["x='x'"], ["x='x'"]],
    )
    assert convert([3.0, 1234, "1234"], kind="string") == (["3", "1234", "1234"], [[]] * 3)


def test_a_float_column_keeps_signed_zeros_and_rejects_infinity():
    zeros, errors = convert([0.0, -0.0, float("nan")])
    assert [math.copysign(1, z) for z in zeros[:2]] == [1, -1] and zeros[2] is None
    assert errors == [[], [], []]
    assert convert([1.0, float("inf")]) == ([1.0, None], [[], ["x='inf'"]])


def test_xlsx_one_header_row_alias_real_datetimes_and_spreadsheet_rows(tmp_path):
    start = dt.datetime(2022, 3, 8, 14, 30, 5)
    frame = export(
        record(1, start_date=start, resp_code=1234),
        record(2, start_date=start, LT1=9),
        rename={CB.company_id: "bedrijf"},
    )
    path = write_xlsx(tmp_path / "2022-T2" / "export.xlsx", frame, blank_rows_before={1})
    data = read_export(path, CB, "2022-T2", tmp_path)

    assert_canonical(data)
    assert data["_source_row"].tolist() == [2, 4]  # row 3 is empty
    assert data["start_date"].tolist() == [pd.Timestamp(start)] * 2
    assert data[CB.company_id].tolist() == ["C017", "C017"]
    assert data[CB.respondent_id].tolist() == ["1234", "AB02CD"]  # a number typed as a code
    assert data["LT1"].tolist() == [3.0, 9.0]
    assert data.attrs["labels"] == {"variables": {}, "values": {}}


def test_xlsx_with_qualtrics_header_rows(tmp_path):
    frame = export(record(1, finished=True), record(2, finished=False), rename=QUALTRICS_NAMES)
    path = write_xlsx(tmp_path / WAVE / "qualtrics.xlsx", frame, qualtrics=True)
    data = read(path, tmp_path)

    assert_canonical(data)
    assert data["_source_row"].tolist() == [4, 5]
    assert data["finished"].tolist() == [1.0, 0.0]
    assert data.attrs["labels"]["variables"]["EM4"] == CB.item_text["EM4"]


# --- errors -------------------------------------------------------------------------------------


def test_unsupported_file_type(tmp_path):
    path = tmp_path / WAVE / "export.txt"
    path.parent.mkdir()
    path.write_text("LT1\n3\n")
    message = error_of(path, tmp_path)
    assert "'.txt'" in message and ".sav, .csv, .xlsx" in message


@pytest.mark.parametrize("suffix", [".sav", ".csv", ".xlsx"])
def test_empty_file(tmp_path, suffix):
    path = tmp_path / WAVE / f"export{suffix}"
    path.parent.mkdir()
    path.touch()
    assert "empty file (0 bytes)" in error_of(path, tmp_path)


@pytest.mark.parametrize(
    "write",
    [
        lambda path, frame: write_csv(path.with_suffix(".csv"), frame),
        lambda path, frame: write_csv(path.with_suffix(".csv"), frame, qualtrics=True),
        lambda path, frame: write_xlsx(path.with_suffix(".xlsx"), frame),
        lambda path, frame: write_sav(path.with_suffix(".sav"), frame),
    ],
    ids=["csv", "qualtrics-csv", "xlsx", "sav"],
)
def test_header_without_data_rows(tmp_path, write):
    path = write(tmp_path / WAVE / "export", export())
    assert "has a header but no data rows" in error_of(path, tmp_path)


@pytest.mark.parametrize(
    ("suffix", "problem"),
    [
        (".sav", "not a readable SPSS .sav file (File did not contain the expected number"),
        (".xlsx", "not a readable .xlsx workbook (BadZipFile: File is not a zip file)"),
    ],
)
def test_truncated_sav_or_xlsx(tmp_path, suffix, problem):
    """Before, the library's own error ("File is not a zip file") came last, without the file."""
    frame = export(*(record(i) for i in range(1, 40)))
    path = tmp_path / WAVE / f"export{suffix}"
    write_sav(path, frame) if suffix == ".sav" else write_xlsx(path, frame)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert problem in error_of(path, tmp_path)


def test_xlsx_with_a_damaged_sheet(tmp_path):
    path = write_xlsx(tmp_path / WAVE / "export.xlsx", export(record(1), record(2)))
    with zipfile.ZipFile(path) as workbook:
        members = {name: workbook.read(name) for name in workbook.namelist()}
    sheet = "xl/worksheets/sheet1.xml"
    members[sheet] = members[sheet][: len(members[sheet]) // 2]  # cut inside the XML
    with zipfile.ZipFile(path, "w") as workbook:
        for name, data in members.items():
            workbook.writestr(name, data)
    assert "not a readable .xlsx workbook (ParseError: " in error_of(path, tmp_path)


def test_utf8_csv_cut_inside_a_character(tmp_path):
    """A file with a byte-order mark is UTF-8 or nothing: cut inside "Zoë" it ends in the middle
    of a character, and the error names the file and the (physical) line."""
    frame = export(record(1), record(2, comments=COMMENT))
    path = write_csv(tmp_path / WAVE / "export.csv", frame, encoding="utf-8-sig")
    data = path.read_bytes()
    path.write_bytes(data[: data.index("ë".encode()) + 1])
    message = error_of(path, tmp_path)
    assert "line 4: not readable as utf-8-sig (utf-8: byte" in message
    assert message.endswith("unexpected end of data)")


@pytest.mark.parametrize(
    ("cut", "problem"),
    [
        ("AB03CD", "line 5: expected 55 fields"),  # the last record, after a two-line one
        ("Groet", "line 3: malformed CSV (unexpected end of data)"),  # inside a quoted comment
    ],
)
def test_truncated_csv_names_the_line(tmp_path, cut, problem):
    frame = export(record(1), record(2, comments=COMMENT), record(3))
    path = write_csv(tmp_path / WAVE / "export.csv", frame)
    text = path.read_text(encoding="utf-8")
    path.write_text(text[: text.index(cut)], encoding="utf-8", newline="")
    assert problem in error_of(path, tmp_path)


def test_csv_in_no_known_encoding(tmp_path):
    path = write_csv(tmp_path / WAVE / "export.csv", export(record(1)))
    path.write_bytes(path.read_bytes().replace(b"AB01CD", b"AB\x81CD"))  # undefined in cp1252
    message = error_of(path, tmp_path)
    assert "line 2: not readable as utf-8 or cp1252 (utf-8: byte " in message
    assert "AB" not in message  # the cell is not quoted


@pytest.mark.parametrize(
    ("wave", "header_rows"), [("2021-T1", 3), ("2022-T2", 1)], ids=["qualtrics-csv", "xlsx"]
)
def test_an_export_without_its_header_rows_quotes_none_of_its_cells(tmp_path, wave, header_rows):
    """Before, the first respondent's IP address, location, linkage and company codes came back
    as "columns the codebook does not know", into the console and the Dagster event log."""
    demo = next((DEMO_RAW / wave).iterdir())
    path = tmp_path / wave / demo.name
    path.parent.mkdir()
    if demo.suffix == ".csv":
        lines = demo.read_bytes().splitlines(keepends=True)
        path.write_bytes(b"".join(lines[header_rows:]))
    else:
        workbook = openpyxl.load_workbook(demo)
        workbook.active.delete_rows(1, header_rows)
        workbook.save(path)
    secrets = cells_of_first_row(demo)
    pattern = whole_tokens(secrets)
    assert len(secrets) > 5 and all(pattern.search(f"x {v} y") for v in secrets)
    with pytest.raises(ExportError) as caught:
        read_export(path, CB, wave, tmp_path)
    message = str(caught.value)
    assert message.startswith(f"{wave}/{demo.name}: the first row is not a header of codebook")
    assert "were the header rows cut off" in message and is_innermost(caught.value)
    assert not pattern.findall(message), message


def test_the_codebook_draft_names_columns_by_position_only(tmp_path):
    """Without its header, a file's first row is data: a repeated code must not be quoted."""
    path = tmp_path / "export.csv"
    path.write_text("R_5x,AB12CD,K9QX,K9QX,\nR_6y,EF34GH,4,2,1\n")
    with pytest.raises(ExportError) as caught:
        read_raw_export(path)
    message = str(caught.value)
    assert message.endswith("unnamed: columns 5; sharing a name: columns 3, 4")
    assert not whole_tokens({"R_5x", "AB12CD", "K9QX"}).findall(message)


def test_missing_required_and_unknown_columns_are_all_listed(tmp_path):
    frame = export(record(1), drop=["LT1", "EM4", CB.company_id], Q99=1, LT6=3)
    message = error_of(write_csv(tmp_path / WAVE / "other_version.csv", frame), tmp_path)
    assert f"missing required columns: EM4, LT1, {CB.company_id}" in message
    assert "columns the codebook does not know: 'LT6', 'Q99'" in message


def test_optional_columns_may_be_absent(tmp_path):
    frame = export(record(1), drop=["response_id", "start_date", "status", "comments"])
    data = read(write_csv(tmp_path / WAVE / "minimal.csv", frame), tmp_path)
    assert_canonical(data)
    assert data[["response_id", "start_date", "status", "comments"]].isna().all().all()


def test_two_columns_with_one_canonical_name(tmp_path):
    frame = export(record(1), ResponseId="R_9")
    message = error_of(write_csv(tmp_path / WAVE / "export.csv", frame), tmp_path)
    assert "(response_id) and" in message.replace("'", "") and "ResponseId" in message


# --- waves --------------------------------------------------------------------------------------


def test_read_wave_concatenates_the_exports_in_file_order(tmp_path):
    wave_dir = tmp_path / WAVE
    write_csv(wave_dir / "a.csv", export(record(1), record(2)))
    write_xlsx(wave_dir / "b.xlsx", export(record(3), rename={CB.company_id: "bedrijf"}))
    (wave_dir / "_notes.csv").write_text("not an export")
    data = read_wave(wave_dir, CB, tmp_path)

    assert_canonical(data)
    assert data["response_id"].tolist() == ["R_1", "R_2", "R_3"]
    assert data["_source_file"].tolist() == [f"{WAVE}/a.csv"] * 2 + [f"{WAVE}/b.xlsx"]
    assert data["_source_row"].tolist() == [2, 3, 2]
    assert (data["wave"] == WAVE).all()


def test_read_wave_without_exports(tmp_path):
    (tmp_path / WAVE).mkdir()
    (tmp_path / WAVE / ".DS_Store").write_text("")
    with pytest.raises(ExportError, match=f"{WAVE}: no exports"):
        read_wave(tmp_path / WAVE, CB, tmp_path)


def test_read_wave_rejects_exports_that_disagree_on_columns(tmp_path):
    wave_dir = tmp_path / WAVE
    write_csv(wave_dir / "a.csv", export(record(1), email="a@example.com"))
    write_csv(wave_dir / "b.csv", export(record(2), Naam="Jan"))
    with pytest.raises(ExportError) as caught:
        read_wave(wave_dir, CB, tmp_path)
    assert str(caught.value) == (
        f"{WAVE}/a.csv and {WAVE}/b.csv disagree on columns: "
        f"only in {WAVE}/a.csv: email; only in {WAVE}/b.csv: Naam"
    )


@pytest.mark.parametrize("wave", list(CB.waves))
def test_demo_waves_match_the_generator_truth(wave, truth_rows):
    data = read_wave(DEMO_RAW / wave, CB, DEMO_RAW)
    truth = truth_rows[truth_rows["wave"] == wave]

    assert_canonical(data)
    assert len(data) == len(truth)
    got = zip(
        data["_source_file"], data["_source_row"].astype(str), data["response_id"], strict=True
    )
    assert list(got) == list(
        zip(truth["source_file"], truth["source_row"], truth["response_id"], strict=True)
    )
    assert (data["_parse_errors"] == "").all()
    assert data[list(CB.items)].isin(list(CB.missing_codes)).any().any()
