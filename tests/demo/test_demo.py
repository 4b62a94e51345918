"""The demo generator: real files that plain libraries read, byte-identical per seed, and a
ground truth that matches what is in the files (problems, identifiers, planted structure).

The exports are read here with pyreadstat, csv and openpyxl directly, not with the pipeline's
readers, so these tests check the generator on its own.
"""

import csv
import datetime as dt
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd
import pyreadstat
import pytest
from conftest import CODEBOOK, DEMO_RAW

from pipeline.demo.simulation import PROBLEMS
from pipeline.demo.write import write_demo
from pipeline.instrument.codebook import load_codebook

CB = load_codebook(CODEBOOK)
WAVES = list(CB.waves)
ALLOWED = {c for s in CB.response_scales.values() for c in s.labels} | set(CB.missing_codes)
NUMBERS = [c for c in CB.column_order if CB.column_type(c) == "number"]


def generate(data: Path):
    (data / "raw").mkdir(parents=True)
    shutil.copy(CODEBOOK, data / "raw" / "codebook.yaml")
    return write_demo(data)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    data = tmp_path_factory.mktemp("demo")
    return data / "raw", generate(data)


@pytest.fixture(scope="module")
def raw(demo) -> Path:
    return demo[0]


@pytest.fixture(scope="module")
def truth_table(raw) -> pd.DataFrame:
    return pd.read_csv(raw / "_demo_truth" / "rows.csv", dtype=str, keep_default_na=False)


@pytest.fixture(scope="module")
def truth(raw) -> dict:
    return json.loads((raw / "_demo_truth" / "truth.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def responses(raw, truth_table) -> pd.DataFrame:
    """Every export row in canonical columns (raw codes, 9 and -99 kept), joined to its truth."""
    frames = []
    for source in sorted(truth_table["source_file"].unique()):
        frame = read_export(raw / source).rename(columns=CB.aliases)
        frames.append(frame.assign(source_file=source))
    data = pd.concat(frames, ignore_index=True)
    data[NUMBERS] = data[NUMBERS].apply(pd.to_numeric, errors="coerce")
    return data.merge(truth_table, on=["source_file", "response_id"], validate="one_to_one")


def read_export(path: Path) -> pd.DataFrame:
    """The export's rows with `row`: .sav case number, CSV start line, spreadsheet row."""
    if path.suffix == ".sav":
        frame, _ = pyreadstat.read_sav(path, user_missing=True)
        return frame.assign(row=range(1, len(frame) + 1))
    if path.suffix == ".csv":
        header, lines, records = qualtrics_csv(path)
        frame = pd.DataFrame(records, columns=header[0]).assign(row=lines)
        return frame.assign(Finished=frame["Finished"].map({"True": 1, "False": 0}))
    sheet = openpyxl.load_workbook(path, read_only=True)["Responses"]
    header, *records = sheet.values
    return pd.DataFrame(records, columns=header).assign(row=range(2, len(records) + 2))


def qualtrics_csv(path: Path):
    """(three header rows, the line each record starts on, the records)."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        header = [next(reader) for _ in range(3)]
        lines, records, previous = [], [], reader.line_num
        for record in reader:
            lines.append(previous + 1)
            records.append(record)
            previous = reader.line_num
    return header, lines, records


def digests(root: Path, names) -> dict[str, str]:
    return {n: hashlib.sha256((root / n).read_bytes()).hexdigest() for n in names}


# --- files -----------------------------------------------------------------------------------


def test_writes_the_three_exports_register_and_truth(raw, demo):
    summary = demo[1]
    written = sorted(
        p.relative_to(raw).as_posix()
        for p in raw.rglob("*")
        if p.is_file() and p.name != "codebook.yaml"
    )
    assert written == sorted(summary.files)
    assert [f.split("/")[0] for f in summary.files[:3]] == WAVES
    assert [Path(f).suffix for f in summary.files[:3]] == [".sav", ".csv", ".xlsx"]
    assert all(600 <= n <= 900 for n in summary.raw_rows.values())
    assert (raw / "codebook.yaml").read_bytes() == CODEBOOK.read_bytes()


def test_two_runs_write_byte_identical_files(demo, tmp_path):
    raw, summary = demo
    again = generate(tmp_path / "data")
    assert again == summary
    assert digests(tmp_path / "data" / "raw", again.files) == digests(raw, summary.files)


def test_committed_demo_files_are_what_the_generator_writes(demo):
    raw, summary = demo
    assert digests(DEMO_RAW, summary.files) == digests(raw, summary.files)


def test_sav_has_qualtrics_names_labels_and_user_missing_codes(raw):
    path = raw / WAVES[0] / f"leercultuurscan_{WAVES[0]}.sav"
    frame, meta = pyreadstat.read_sav(path, user_missing=True)
    assert frame.columns[:11].tolist() == [
        "StartDate", "EndDate", "Status", "IPAddress", "Progress", "Duration__in_seconds_",
        "Finished", "ResponseId", "UserLanguage", "company_code", "resp_code",
    ]  # fmt: skip
    assert frame.columns[11:].tolist() == [*CB.background, *CB.items, "name", "email", "comments"]
    labels = meta.column_names_to_labels
    assert labels["RF3"] == CB.item_text["RF3"]
    assert labels["gender"] == CB.background["gender"].label
    assert labels["StartDate"] == "Startdatum"
    rf3 = meta.variable_value_labels["RF3"]
    assert rf3[1] == "helemaal oneens" and rf3[9] == CB.missing_codes[9] and -99 in rf3
    assert meta.variable_value_labels["gender"][2] == "vrouw"
    assert meta.missing_ranges["RF3"] == [{"lo": -99.0, "hi": -99.0}, {"lo": 9.0, "hi": 9.0}]
    assert meta.original_variable_types["StartDate"].startswith("DATETIME")
    assert frame["StartDate"].dtype.kind == "M"
    assert frame[CB.items].isin(list(CB.missing_codes)).any().any()
    plain, _ = pyreadstat.read_sav(path)  # user-missing codes become NaN
    assert not plain[CB.items].isin(list(CB.missing_codes)).any().any()


def test_qualtrics_csv_has_bom_three_header_rows_and_multiline_comments(raw):
    path = raw / WAVES[1] / f"leercultuurscan_{WAVES[1]}.csv"
    data = path.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf") and b"\r\n" in data
    (names, texts, import_ids), lines, records = qualtrics_csv(path)
    assert names[:13] == [
        "StartDate", "EndDate", "Status", "IPAddress", "Progress", "Duration (in seconds)",
        "Finished", "RecordedDate", "ResponseId", "LocationLatitude", "LocationLongitude",
        "DistributionChannel", "UserLanguage",
    ]  # fmt: skip
    assert names[-2:] == ["company_code", "resp_code"]
    column = dict(zip(names, range(len(names)), strict=True))
    assert texts[column["Duration (in seconds)"]] == "Duration (in seconds)"
    assert texts[column["LT1"]] == CB.item_text["LT1"]
    assert json.loads(import_ids[column["StartDate"]]) == {
        "ImportId": "startDate",
        "timeZone": "Europe/Amsterdam",
    }
    assert json.loads(import_ids[column["LT1"]]) == {"ImportId": "QID12_1"}
    assert lines[0] == 4
    assert any(b - a > 1 for a, b in zip(lines, lines[1:], strict=False)), "a multi-line comment"
    first = dict(zip(names, records[0], strict=True))
    assert dt.datetime.strptime(first["StartDate"], "%Y-%m-%d %H:%M:%S")
    assert {r[column["Finished"]] for r in records} == {"True", "False"}
    comments = " ".join(r[column["comments"]] for r in records)
    assert '"' in comments and "," in comments and "ë" in comments


def test_xlsx_has_one_header_row_company_alias_and_real_datetimes(raw):
    path = raw / WAVES[2] / f"leercultuurscan_{WAVES[2]}.xlsx"
    sheet = openpyxl.load_workbook(path)["Responses"]
    header = [c.value for c in sheet[1]]
    assert "bedrijf" in header and "company_code" not in header
    assert not any(h.startswith("Location") for h in header)
    row = dict(zip(header, (c.value for c in sheet[2]), strict=True))
    assert isinstance(row["StartDate"], dt.datetime)
    assert isinstance(row["Duration (in seconds)"], int) and isinstance(row["Status"], int)


def test_register_lists_the_companies(raw, truth_table):
    register = pd.read_csv(raw / "company_register.csv", dtype={"employees": int})
    assert register.columns.tolist() == [
        "company_code", "company_name", "sector", "employees", "joined_wave",
    ]  # fmt: skip
    assert 30 <= len(register) <= 50 and register["company_code"].is_unique
    assert register["employees"].between(5, 60).all()
    assert set(register["joined_wave"]) == set(WAVES[:2])
    true_codes = set(truth_table["company_code_true"]) - {""}
    assert true_codes == set(register["company_code"])
    late = set(register.loc[register["joined_wave"] == WAVES[1], "company_code"])
    assert not late & set(truth_table.loc[truth_table["wave"] == WAVES[0], "company_code_true"])


# --- truth -----------------------------------------------------------------------------------


def test_truth_rows_point_at_the_export_rows(responses, truth_table):
    assert len(responses) == len(truth_table)
    assert (responses["row"].astype(str) == responses["source_row"]).all()


def test_truth_counts_match_the_rows(truth, truth_table):
    assert truth["seed"] == 20190304
    for wave in WAVES:
        rows = truth_table[truth_table["wave"] == wave]
        problems = rows["problems"].str.split(";").explode()
        assert set(problems) - {""} <= set(PROBLEMS)
        counted = {p: int((problems == p).sum()) for p in PROBLEMS}
        stated = truth["waves"][wave]
        assert stated["raw_rows"] == len(rows)
        assert stated["rows_per_problem"] == counted
        assert all(counted[p] >= 1 for p in PROBLEMS), f"{wave}: every problem is planted"
        assert stated["expected_after_qc"] == int((rows["problems"] == "").sum())
        assert stated["unfinished_but_scorable"] >= 1, f"{wave}: some break-offs stay in"


def test_planted_problems_are_in_the_files(responses):
    def rows_with(problem):
        return responses[responses["problems"].str.contains(problem)]

    assert (rows_with("preview")["status"] == 1).all()
    assert (responses.loc[~responses["problems"].str.contains("preview"), "status"] == 0).all()
    median = responses.groupby("wave")["duration_s"].transform("median")
    limit = np.maximum(2 * len(CB.items), median / 3)
    assert (responses["duration_s"] < limit).eq(responses["problems"].str.contains("speeder")).all()
    incomplete = rows_with("incomplete")
    assert (incomplete["progress"] < 100).all() and (incomplete["finished"] == 0).all()
    straight = rows_with("straightliner")[CB.items]
    assert (straight.nunique(axis=1) == 1).all() and straight.notna().all().all()

    def allowed(frame):
        return frame[CB.items].isin(ALLOWED) | frame[CB.items].isna()

    assert (~allowed(rows_with("out_of_range"))).any(axis=1).all()
    assert allowed(responses[responses["problems"] == ""]).all().all()
    is_test = (responses["company_code"] == "TEST") | (
        responses["resp_code"].str.strip().str.lower() == "test"
    )
    assert (is_test == responses["problems"].str.contains("test")).all()


def test_identifiers_are_planted_and_recorded(responses):
    planted = responses["planted_identifiers"].str.split(";")
    for row, ids in zip(responses.itertuples(), planted, strict=True):
        assert row.ip_address in ids
        for column in ("name", "email"):
            value = getattr(row, column)
            if isinstance(value, str) and value:
                assert value in ids
        comment = row.comments if isinstance(row.comments, str) else ""
        others = set(ids) - {row.ip_address, row.name, row.email}
        assert all(other in comment for other in others)
    emails = responses["email"].dropna().loc[lambda s: s != ""]
    assert 0.05 < len(emails) / len(responses) < 0.15
    assert emails.str.fullmatch(r"[a-z.]+@(example|voorbeeld)\.(com|nl)").all()
    assert responses["comments"].fillna("").str.contains("@").sum() >= 5
    ips = responses["ip_address"]
    assert ips.str.match(r"(192\.0\.2|198\.51\.100|203\.0\.113)\.|2001:db8:").all()


def test_resp_codes_link_most_repeat_respondents(responses):
    """The codes as typed: case and space variants, and a few real typos that exact codes do
    not link (the panel linkage corrects them: tests/privacy/test_linkage.py)."""
    people = responses[responses["person_uid"] != ""]
    typed = people["resp_code"].fillna("")
    assert (typed != typed.str.strip().str.upper()).mean() > 0.02, "case and space variants"
    codes = people.assign(code=typed.str.strip().str.upper()).groupby("person_uid")["code"]
    repeat = codes.nunique()[people.groupby("person_uid")["wave"].nunique() > 1]
    assert len(repeat) > 300
    assert 0.005 < (repeat > 1).mean() < 0.1, "a few typos that exact codes do not link"


# --- planted structure -----------------------------------------------------------------------


def scale_items(frame: pd.DataFrame, scale) -> pd.DataFrame:
    """The scale's items, missing codes and out-of-range codes removed, reverse-keyed recoded."""
    rs = scale.response_scale
    items = frame[list(scale.items)]
    items = items.where((items >= rs.min) & (items <= rs.max))
    for item in scale.reverse:
        items[item] = rs.min + rs.max - items[item]
    return items


def scale_scores(frame: pd.DataFrame) -> pd.DataFrame:
    scores = {}
    for scale in CB.scales.values():
        items = scale_items(frame, scale)
        enough = items.notna().mean(axis=1) >= scale.min_valid
        scores[scale.name] = items.mean(axis=1).where(enough)
    return pd.DataFrame(scores)


def icc1(values: pd.Series, groups: pd.Series) -> float:
    """ICC(1) from a one-way ANOVA, with the adjusted mean group size for unequal groups."""
    data = pd.DataFrame({"y": values, "g": groups}).dropna()
    by = data.groupby("g")["y"]
    n, total = by.size(), len(data)
    msb = (n * (by.mean() - data["y"].mean()) ** 2).sum() / (len(n) - 1)
    msw = ((data["y"] - by.transform("mean")) ** 2).sum() / (total - len(n))
    k0 = (total - (n**2).sum() / total) / (len(n) - 1)
    return (msb - msw) / (msb + (k0 - 1) * msw)


def cronbach_alpha(frame: pd.DataFrame, scale) -> float:
    items = scale_items(frame, scale).dropna()
    k = len(scale.items)
    return k / (k - 1) * (1 - items.var().sum() / items.sum(axis=1).var())


def test_planted_structure_is_in_the_clean_rows(responses):
    clean = responses[responses["problems"] == ""]
    scores = scale_scores(clean)
    for scale in CB.scales.values():
        assert 0.70 <= cronbach_alpha(clean, scale) <= 0.85, scale.name
        if scale.level == "culture":
            assert 0.03 <= icc1(scores[scale.name], clean["company_code_true"]) <= 0.25, scale.name
        if scale.level == "outcome":
            means = scores[scale.name].groupby(clean["wave"]).mean()
            assert means[WAVES[0]] < means[WAVES[-1]], scale.name
    culture = [s.name for s in CB.scales.values() if s.level == "culture"]
    correlations = scores[culture].corr().to_numpy()[np.triu_indices(len(culture), 1)]
    assert 0.3 < correlations.mean() < 0.7
