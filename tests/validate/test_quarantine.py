"""`scan quarantine WAVE`: the quarantined rows as a data steward fixes them at the source, by
export file and row as the file counts them, with their reasons, and none of their values."""

import csv
import io
import re
import shutil

import openpyxl
import pandas as pd
import pyreadstat
from conftest import DEMO_RAW, WAVES, scan, whole_tokens

from pipeline.ingest.readers import read_wave
from pipeline.instrument.codebook import load_codebook
from pipeline.validate.quality import (
    REASON_TEXT,
    REASONS,
    ROW_NUMBERING,
    quality_reasons,
    quarantine_listing,
    read_register,
    split_quarantine,
)

CB = load_codebook(DEMO_RAW / "codebook.yaml")
WAVE = "2021-T1"  # a Qualtrics CSV: three header lines, so a line is not a data row's number


def truth_of(truth_rows: pd.DataFrame, wave: str) -> dict[tuple[str, int], set[str]]:
    """{(file, row): reasons} of the rows the demo generator made faulty."""
    bad = truth_rows[(truth_rows["wave"] == wave) & (truth_rows["problems"] != "")]
    return {
        (r.source_file, int(r.source_row)): set(r.problems.split(";")) for r in bad.itertuples()
    }


def quarantined(scan_run, wave: str) -> pd.DataFrame:
    return pd.read_parquet(scan_run.data / "raw" / "_staging" / "quarantine" / f"{wave}.parquet")


def test_scan_quarantine_lists_each_row_by_file_and_line_with_its_reasons(scan_run, truth_rows):
    done = scan(
        "--data-dir", str(scan_run.data), "--reports-dir", str(scan_run.reports),
        "quarantine", WAVE, home=scan_run.home, cwd=scan_run.data.parent,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = re.findall(
        r"^(\S+)\s+(line|row|case) (\d+)\s+([a-z_]+(?:, [a-z_]+)*)", done.stdout, re.MULTILINE
    )
    listed = {(file, int(row)): set(reasons.split(", ")) for file, _, row, reasons in rows}
    expected = truth_of(truth_rows, WAVE)
    assert len(rows) == len(listed) == len(expected) > 50
    assert {counted for _, counted, _, _ in rows} == {"line"}
    assert listed == expected
    assert f"{WAVE}: {len(expected)} quarantined row(s)" in done.stdout
    assert "line: the line of the CSV file where the row starts, its header lines" in done.stdout
    assert f"  duplicate: {REASON_TEXT['duplicate']}" in done.stdout
    # nothing of the rows themselves: no identifier, free text or other text or time cell
    rows = quarantined(scan_run, WAVE)
    text_columns = [c for c in CB.columns if CB.column_type(c) != "number"]
    values = {
        str(value).strip()
        for column in {*CB.identifying, *text_columns}
        for value in rows[column].dropna()
    }
    values.update(v for ids in truth_rows["planted_identifiers"] for v in ids.split(";"))
    values = {v for v in values if len(v) >= 3} - set(REASONS)  # a preview's channel "preview"
    assert len(values) > 200
    pattern = whole_tokens(values)
    assert pattern.search(f"a leak: {rows[CB.respondent_id].dropna().iloc[0].strip()}.")
    leaked = sorted(set(pattern.findall(done.stdout + done.stderr)))
    assert not leaked, leaked[:5]


def test_each_listed_row_is_that_row_of_the_export_as_its_program_counts(scan_run, truth_rows):
    """A .sav's case number, a CSV's line (header lines counted), a spreadsheet's row number:
    the truth's response id is in exactly that row of the file, read with the format's own
    library."""
    for wave in WAVES:
        listing = quarantine_listing(quarantined(scan_run, wave), CB)
        where = list(zip(listing["file"], listing["row"], strict=True))
        assert dict(zip(where, listing["reasons"], strict=True)) == {
            where: ", ".join(r for r in REASONS if r in reasons)
            for where, reasons in truth_of(truth_rows, wave).items()
        }
        ids = truth_rows.set_index(["source_file", "source_row"])["response_id"]
        path = DEMO_RAW / listing["file"].iloc[0]
        assert set(listing["counted"]) == {ROW_NUMBERING[path.suffix]}
        if path.suffix == ".csv":
            lines = path.read_text(encoding="utf-8-sig").splitlines()
            found = [lines[row - 1] for row in listing["row"]]
        elif path.suffix == ".xlsx":
            sheet = openpyxl.load_workbook(path, read_only=True).worksheets[0]
            cells = list(sheet.iter_rows(values_only=True))
            found = [" ".join(map(str, cells[row - 1])) for row in listing["row"]]
        else:
            frame, _ = pyreadstat.read_sav(path)
            found = [" ".join(map(str, frame.iloc[row - 1])) for row in listing["row"]]
        expected = [ids[(file, str(row))] for file, row in where]
        assert all(i in text for i, text in zip(expected, found, strict=True)), wave
        # the numbering is the file's own, not the data row's: they differ by the header
        assert path.suffix == ".sav" or min(listing["row"]) > 1


def test_an_unreadable_cell_is_named_by_its_column_never_by_its_value(tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(DEMO_RAW / WAVE, raw / WAVE)
    export = next((raw / WAVE).glob("*.csv"))
    lines = export.read_text(encoding="utf-8-sig").splitlines(keepends=True)
    header = next(csv.reader([lines[0]]))
    item = CB.items[1]
    record = next(csv.reader([lines[19]]))  # line 20
    assert len(record) == len(header)
    record[header.index(item)] = "zq-secret-9; other=1"
    out = io.StringIO()
    csv.writer(out, lineterminator=lines[19][len(lines[19].rstrip("\r\n")) :]).writerow(record)
    lines[19] = out.getvalue()
    export.write_text("".join(lines), encoding="utf-8-sig")

    frame = read_wave(raw / WAVE, CB, raw)
    register = read_register(DEMO_RAW / CB.company_register, CB.company_id)
    _, quarantine = split_quarantine(frame, quality_reasons(frame, CB, register))
    listing = quarantine_listing(quarantine, CB).set_index("row")
    assert "unreadable_value" in listing.loc[20, "reasons"]
    assert listing.loc[20, "columns"] == item
    assert "zq-secret" not in listing.to_csv() and "other" not in listing.to_csv()
    assert set(REASON_TEXT) == set(REASONS)
