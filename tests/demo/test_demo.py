"""The demo generator: real files that plain libraries read, byte-identical per seed, and a
ground truth that matches what is in the files (problems, identifiers, planted structure).

The exports are read here with pyreadstat, csv and openpyxl directly, not with the pipeline's
readers, so these tests check the generator on its own; the trajectory register is read with the
pipeline's reader, which defines its format.
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

from pipeline.demo.simulation import PROBLEMS, Params, Simulation
from pipeline.demo.write import write_demo
from pipeline.ingest.trajectories import read_participants, read_trajectories
from pipeline.instrument.codebook import load_codebook
from pipeline.instrument.scoring import score_scales

CB = load_codebook(CODEBOOK)
WAVES = list(CB.waves)
ALLOWED = {c for s in CB.response_scales.values() for c in s.labels} | set(CB.missing_codes)
NUMBERS = [c for c in CB.column_order if CB.column_type(c) == "number"]


def generate(data: Path, codebook_text: str | None = None):
    (data / "raw").mkdir(parents=True)
    if codebook_text is None:
        shutil.copy(CODEBOOK, data / "raw" / "codebook.yaml")
    else:
        (data / "raw" / "codebook.yaml").write_text(codebook_text, encoding="utf-8")
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


# --- development trajectories ----------------------------------------------------------------

SPEC = CB.trajectories
PARTICIPATION = CB.background[SPEC.participation.variable]
TAKES_PART = next(c for c, v in PARTICIPATION.codes.items() if v == SPEC.participation.value)


@pytest.fixture(scope="module")
def trajectories(raw) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The register and participants list, read and validated by the pipeline's reader."""
    companies = set(pd.read_csv(raw / "company_register.csv", dtype=str)["company_code"])
    register = read_trajectories(raw / SPEC.file, CB, companies)
    return register, read_participants(raw / SPEC.participants, CB, register)


def test_trajectory_register_and_participants_match_the_truth(raw, trajectories, truth):
    register, participants = trajectories
    stated = truth["trajectories"]
    assert len(register) == stated["companies_with_trajectory"] >= 10
    assert len(participants) == stated["participants_ever_employed"] > 100
    assert register["company"].is_monotonic_increasing and register["company"].is_unique
    assert set(register["type"]) <= set(SPEC.types) and register["end"].isna().any()
    companies = pd.read_csv(raw / "company_register.csv", dtype=str)
    joined = companies.set_index("company_code")["joined_wave"]
    assert (joined[register["company"]] == WAVES[0]).all(), "present from the first wave"
    # every start lies strictly between two waves; count the companies per first wave after it
    starts = [pd.Timestamp(CB.waves[w].start) for w in WAVES]
    ends = [pd.Timestamp(CB.waves[w].end) for w in WAVES]
    first = [
        next(w for w, s in zip(WAVES, starts, strict=True) if s >= t) for t in register["start"]
    ]
    for t, wave in zip(register["start"], first, strict=True):
        assert ends[WAVES.index(wave) - 1] < t < starts[WAVES.index(wave)]
    counted = {w: first.count(w) for w in WAVES}
    assert stated["companies_after_start_from_wave"] == counted
    assert counted[WAVES[0]] == 0 and all(counted[w] > 0 for w in WAVES[1:])
    assert set(participants["company"]) <= set(register["company"])


def test_participation_answer_says_who_takes_part_after_the_start(responses, trajectories):
    register, participants = trajectories
    people = responses[responses["person_uid"] != ""]
    untypoed = people[people["code_typo"] == "0"]
    code = untypoed.groupby("person_uid")["resp_code"].first().str.strip().str.upper()
    listed = set(zip(participants["company"], participants["person"], strict=True))
    participant = [
        (company, code[uid]) in listed
        for company, uid in zip(people["company_code_true"], people["person_uid"], strict=True)
    ]
    start = people["company_code_true"].map(register.set_index("company")["start"])
    wave_start = people["wave"].map({w: pd.Timestamp(CB.waves[w].start) for w in WAVES})
    expected = np.array(participant) & (start <= wave_start).to_numpy()
    answer = pd.to_numeric(people[SPEC.participation.variable], errors="coerce")
    answered = answer.notna() & (answer != min(CB.missing_codes))
    assert answered.mean() > 0.9 and expected.sum() > 100
    assert ((answer == TAKES_PART) == expected)[answered].all()
    assert set(answer[answered]) == {TAKES_PART, min(set(PARTICIPATION.codes) - {TAKES_PART})}


def simulated_score(inst, k: int, latent: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """Scale k's scores as the pipeline scores them, from item codes drawn as
    `_Instrument.answers` draws them (vectorised over respondents)."""
    items = np.flatnonzero(inst.scale_index == k)
    lam = inst.loadings[items]
    y = lam * latent[:, None] + np.sqrt(1 - lam**2) * noise + inst.intercepts[items]
    cuts = np.column_stack(
        [np.searchsorted(inst.thresholds[i], y[:, j]) for j, i in enumerate(items)]
    )
    codes = inst.low[items] + cuts
    codes = np.where(inst.reverse[items], inst.low[items] + inst.high[items] - codes, codes)
    frame = pd.DataFrame(np.nan, index=range(len(latent)), columns=CB.items)
    frame[[inst.items[i] for i in items]] = codes
    return score_scales(frame, CB)[inst.scales[k].name].to_numpy()


def test_expected_observed_effect_matches_a_monte_carlo(truth):
    stated, p = truth["trajectories"], Params()
    inst = Simulation(CB, p, truth["seed"]).instrument
    loadings = dict(zip(inst.items, np.round(inst.loadings, 4).tolist(), strict=True))
    assert loadings == truth["effects"]["item_loadings"], "the demo's measurement model"
    rng = np.random.default_rng(7)
    culture, outcome = (
        next(s for s in CB.scales.values() if s.level == lv) for lv in ("culture", "outcome")
    )
    for scale in (culture, outcome):
        k = list(CB.scales).index(scale.name)
        moments = stated["latent_without_trajectory"][scale.name]
        latent = rng.normal(moments["mean"], moments["sd"], size=200_000)
        noise = rng.standard_normal((len(latent), len(scale.items)))

        def score(shift, latent=latent, noise=noise, k=k):
            return simulated_score(inst, k, latent + shift, noise).mean()

        before = score(0.0)
        if scale.level == "culture":
            after = score(p.trajectory_culture_effect) - before
            extra = 0.0
        else:
            colleague = score(p.trajectory_outcome_effect)
            participant = score(p.trajectory_outcome_effect + p.participant_outcome_effect)
            after = p.participant_share * participant + (1 - p.participant_share) * colleague
            after, extra = after - before, participant - colleague
        expected = stated["expected_observed_effect"][scale.name]
        assert abs(after - expected["after_start"]) < 0.005, scale.name
        assert abs(extra - expected["participant_after_start"]) < 0.005, scale.name
        assert expected["after_start"] > 0.05
    # the culture latent's mean: the wave shift averaged over the waves on or after some start
    counts = stated["companies_after_start_from_wave"]
    first = min(i for i, w in enumerate(WAVES) if counts[w])
    mean = stated["latent_without_trajectory"][culture.name]["mean"]
    assert mean == pytest.approx(p.wave_effect * np.mean(range(first, len(WAVES))), abs=1e-4)


def test_one_wave_writes_empty_trajectory_files(tmp_path):
    text = CODEBOOK.read_text(encoding="utf-8")
    later = [
        line
        for line in text.splitlines(keepends=True)
        if line.startswith(tuple(f"  {w}:" for w in WAVES[1:]))
    ]
    assert len(later) == 2, "the test's anchor: one line per wave in the demo codebook"
    for line in later:
        text = text.replace(line, "", 1)
    summary = generate(tmp_path / "data", text)
    raw = tmp_path / "data" / "raw"
    assert {SPEC.file, SPEC.participants} <= set(summary.files)
    assert (raw / SPEC.file).read_text(encoding="utf-8").splitlines() == [
        "company_code,trajectory_id,type,start,end,target_group"
    ]
    assert (raw / SPEC.participants).read_text(encoding="utf-8").splitlines() == [
        "company_code,resp_code,trajectory_id"
    ]
    truth = json.loads((raw / "_demo_truth" / "truth.json").read_text(encoding="utf-8"))
    assert truth["trajectories"]["companies_with_trajectory"] == 0
    assert truth["trajectories"]["participants_ever_employed"] == 0
    assert truth["trajectories"]["expected_observed_effect"] == {}
    frame, _ = pyreadstat.read_sav(raw / summary.files[0], user_missing=True)
    rows = pd.read_csv(raw / "_demo_truth" / "rows.csv", dtype=str, keep_default_na=False)
    people = set(rows.loc[rows["person_uid"] != "", "response_id"])
    answers = frame.loc[frame["ResponseId"].isin(people), SPEC.participation.variable].dropna()
    assert len(answers) > 500 and not (answers == TAKES_PART).any(), "nobody takes part"
