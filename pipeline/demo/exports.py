"""The demo's exports, as real ones arrive: SPSS .sav with variable and value labels, Qualtrics
CSV with its three header rows, Excel. `columns` gives a wave's columns in its layout's order,
`frame` the simulated rows in canonical columns, and each writer in WRITERS returns the line or
row of every record. Dates in the files are fixed, so the same rows give byte-identical files.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
import zipfile
from pathlib import Path

import pandas as pd
import pyreadstat

from pipeline.demo.simulation import CONTACT, QUALTRICS_META, Layout, Row
from pipeline.instrument.codebook import Codebook
from pipeline.lineage.files import fix_sav_timestamp

FIXED_TIME = dt.datetime(2019, 3, 4, 0, 0, 0)  # stamped into file headers instead of the clock
TIMEZONE = "Europe/Amsterdam"
SAV_LABELS = {
    "start_date": "Startdatum",
    "end_date": "Einddatum",
    "status": "Type respons (0 = normaal, 1 = preview)",
    "ip_address": "IP-adres",
    "progress": "Voortgang (%)",
    "duration_s": "Duur (seconden)",
    "finished": "Afgerond",
    "response_id": "Respons-ID",
    "lang": "Taal van de vragenlijst",
    "company": "Bedrijfscode (uit de link)",
    "respondent": "Persoonlijke code",
    **CONTACT,
}
SAV_VALUE_LABELS = {
    "status": {0: "normaal", 1: "preview"},
    "finished": {0: "niet afgerond", 1: "afgerond"},
}
FIRST_QID = 12


def columns(layout: Layout, codebook: Codebook) -> list[tuple[str, str]]:
    """(export header, canonical column) in the export's order."""
    meta = {m[0]: m[1] for m in QUALTRICS_META}
    head = [(h, meta[h]) for h in layout.meta]
    company = layout.company_header or codebook.company_id
    embedded = [(company, codebook.company_id), (codebook.respondent_id, codebook.respondent_id)]
    background = [(b, b) for b in codebook.background]
    items = [(i, i) for i in codebook.items]
    contact = [(c, c) for c in CONTACT]
    if layout.background_first:
        columns = [*head, *embedded, *background, *items, *contact]
    else:
        columns = [*head, *items, *background, *contact, *embedded]
    if layout.ext == "sav":
        columns = [(_spss_name(h), c) for h, c in columns]
    return columns


def check_headers(columns: list[tuple[str, str]], codebook: Codebook) -> None:
    """Every header must be one the codebook knows, or the readers could not map it."""
    for header, canonical in columns:
        if codebook.aliases.get(header) != canonical:
            raise ValueError(
                f"{codebook.path}: export column {header!r} is not a name or alias of {canonical!r}"
            )


def frame(rows: list[Row], codebook: Codebook) -> pd.DataFrame:
    """The rows as one frame of canonical columns."""
    records = []
    for r in rows:
        records.append(
            {
                "start_date": r.start,
                "end_date": r.end,
                "recorded_date": r.end,
                "status": r.status,
                "ip_address": r.ip,
                "progress": r.progress,
                "duration_s": r.duration,
                "finished": int(r.progress == 100),
                "response_id": r.response_id,
                "location_latitude": f"{r.location[0]:.4f}",
                "location_longitude": f"{r.location[1]:.4f}",
                "distribution_channel": r.channel,
                "lang": r.lang,
                codebook.company_id: r.company_code,
                codebook.respondent_id: r.resp_code,
                **r.background,
                **dict(zip(codebook.items, r.items, strict=True)),
                "name": r.name,
                "email": r.email,
                "comments": r.comments,
            }
        )
    return pd.DataFrame.from_records(records)


def _write_sav(frame: pd.DataFrame, columns, codebook: Codebook, path: Path) -> list[int]:
    data = pd.DataFrame({h: frame[c] for h, c in columns})
    labels, values, missing, measure = {}, {}, {}, {}
    for name, canonical in columns:
        if canonical in codebook.item_text:
            rs = codebook.scale_of(canonical).response_scale
            labels[name] = codebook.item_text[canonical]
            values[name] = {**rs.labels, **codebook.missing_codes}
            missing[name] = sorted(codebook.missing_codes)
            measure[name] = "ordinal"
        elif canonical in codebook.background:
            unanswered = min(codebook.missing_codes)
            labels[name] = codebook.background[canonical].label
            values[name] = {
                **codebook.background[canonical].codes,
                unanswered: codebook.missing_codes[unanswered],
            }
            missing[name] = [unanswered]
            measure[name] = "nominal"
        else:
            role = {codebook.company_id: "company", codebook.respondent_id: "respondent"}
            labels[name] = SAV_LABELS[role.get(canonical, canonical)]
            if canonical in SAV_VALUE_LABELS:
                values[name] = SAV_VALUE_LABELS[canonical]
    pyreadstat.write_sav(
        data,
        path,
        file_label=f"{codebook.instrument} {path.stem}",
        column_labels=labels,
        variable_value_labels=values,
        missing_ranges=missing,
        variable_measure=measure,
    )
    fix_sav_timestamp(path)
    return list(range(1, len(frame) + 1))


def _spss_name(header: str) -> str:
    """Qualtrics' SPSS export: characters SPSS does not allow in names become '_'."""
    return re.sub(r"\W", "_", header)


def _csv_value(value, canonical: str) -> str:
    if isinstance(value, dt.datetime | pd.Timestamp):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if canonical == "finished":
        return "True" if value else "False"
    if isinstance(value, str):
        return value
    return "" if pd.isna(value) else str(int(value))


def _import_ids(columns, codebook: Codebook) -> list[str]:
    """Qualtrics' third header row: a matrix QID per scale, a QID per question, else a tag."""
    qualtrics = {m[0]: m[3] for m in QUALTRICS_META}
    scales = list(codebook.scales)
    background = list(codebook.background)
    contact_qid = FIRST_QID + len(scales) + len(background)
    ids = []
    for header, canonical in columns:
        if header in qualtrics:
            tag = {"ImportId": qualtrics[header]}
            if canonical.endswith("_date"):
                tag["timeZone"] = TIMEZONE
        elif canonical in codebook.item_text:
            scale = codebook.scale_of(canonical)
            position = scale.items.index(canonical) + 1
            tag = {"ImportId": f"QID{FIRST_QID + scales.index(scale.name)}_{position}"}
        elif canonical in codebook.background:
            tag = {"ImportId": f"QID{FIRST_QID + len(scales) + background.index(canonical)}"}
        elif canonical in CONTACT:
            tag = {"ImportId": f"QID{contact_qid + list(CONTACT).index(canonical)}_TEXT"}
        else:
            tag = {"ImportId": header}
        ids.append(json.dumps(tag, separators=(",", ":")))
    return ids


def _question_texts(columns, codebook: Codebook) -> list[str]:
    qualtrics = {m[0]: m[2] for m in QUALTRICS_META}
    labels = {name: variable.label for name, variable in codebook.background.items()}
    texts = {**codebook.item_text, **labels, **CONTACT}
    return [qualtrics.get(h) or texts.get(c, h) for h, c in columns]


def _write_csv(frame: pd.DataFrame, columns, codebook: Codebook, path: Path) -> list[int]:
    """Qualtrics CSV: UTF-8 with BOM, three header rows, CRLF; returns each record's line."""
    records = [
        [_csv_value(row[c], c) for _, c in columns] for row in frame.to_dict(orient="records")
    ]
    lines, line = [], 4
    for record in records:
        lines.append(line)
        line += 1 + sum(value.count("\n") for value in record)
    with path.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.writer(handle, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
        writer.writerow([h for h, _ in columns])
        writer.writerow(_question_texts(columns, codebook))
        writer.writerow(_import_ids(columns, codebook))
        writer.writerows(records)
    return lines


def _xlsx_value(value, canonical: str, codebook: Codebook):
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if isinstance(value, str):
        return value or None
    if pd.isna(value):
        return None
    return int(value) if codebook.column_type(canonical) == "number" else value


def _write_xlsx(frame: pd.DataFrame, columns, codebook: Codebook, path: Path) -> list[int]:
    """One header row, real datetimes and numbers; fixed timestamps, so byte-identical."""
    # not at the top: docs/developer.md#start-up-time
    import openpyxl
    from openpyxl.writer.excel import ExcelWriter

    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = "Responses"
    sheet.append([h for h, _ in columns])
    for row in frame.to_dict(orient="records"):
        sheet.append([_xlsx_value(row[c], c, codebook) for _, c in columns])
    for col, (_, canonical) in enumerate(columns, start=1):
        if codebook.column_type(canonical) == "datetime":
            for (cell,) in sheet.iter_rows(min_row=2, min_col=col, max_col=col):
                cell.number_format = "yyyy-mm-dd hh:mm:ss"
    workbook.properties.created = workbook.properties.modified = FIXED_TIME
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        ExcelWriter(workbook, archive).write_data()  # unlike save(), keeps `modified`
    _rezip(buffer.getvalue(), path)
    return list(range(2, len(frame) + 2))


def _rezip(data: bytes, path: Path) -> None:
    """Copy a zip with every entry's date set to FIXED_TIME."""
    with (
        zipfile.ZipFile(io.BytesIO(data)) as source,
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as target,
    ):
        for info in source.infolist():
            entry = zipfile.ZipInfo(info.filename, date_time=FIXED_TIME.timetuple()[:6])
            entry.compress_type = zipfile.ZIP_DEFLATED
            target.writestr(entry, source.read(info.filename))


WRITERS = {"sav": _write_sav, "csv": _write_csv, "xlsx": _write_xlsx}
