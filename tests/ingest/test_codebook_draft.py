"""`scan codebook draft`: a first codebook from a scan's exports, every guess marked, that loads
and (on the demo) runs."""

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyreadstat
import pytest
import yaml
from click.testing import CliRunner
from conftest import CODEBOOK, DEMO_RAW, WAVES, scan, statuses

from assets.cli import main
from pipeline.ingest.codebook_draft import draft_codebook, role_of
from pipeline.ingest.readers import ExportError, read_wave
from pipeline.instrument.codebook import PLATFORM_ROLES, load_codebook
from pipeline.validate.quality import stored_counts

DEMO_EXPORTS = sorted(p for wave in WAVES for p in (DEMO_RAW / wave).iterdir())
SAV, CSV, XLSX = DEMO_EXPORTS
DEMO = load_codebook(CODEBOOK)
KEY = "a-real-key-for-this-test-0123456789"


def draft(tmp_path: Path, *exports: Path):
    """The draft's text and the codebook it loads as."""
    path = tmp_path / "draft.yaml"
    path.write_text(draft_codebook(exports), encoding="utf-8")
    return path.read_text(encoding="utf-8"), load_codebook(path)


def guessed(text: str, key: str) -> bool:
    """The entry `key:` has a `# GUESS: ...; confirm` comment right above it."""
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if re.match(rf"\s*{re.escape(key)}:", line))
    comment = []
    for line in reversed(lines[:at]):
        if not line.lstrip().startswith("#"):
            break
        comment.insert(0, line.strip().lstrip("# "))
    text = " ".join(comment)
    return text.startswith("GUESS:") and text.endswith("confirm")


@pytest.mark.parametrize(
    ("names", "section", "key"),
    [
        (["StartDate", "startdate", "start_date", "started"], "platform", "started"),
        (["EndDate", "submitdate", "ended"], "platform", "ended"),
        (
            ["Duration (in seconds)", "Duration__in_seconds_", "interviewtime", "duration"],
            "platform",
            "duration",
        ),
        (["Progress", "progress"], "platform", "percent_complete"),
        (["Finished", "finished"], "platform", "completed"),
        (["Status", "preview"], "platform", "preview"),
        (["ResponseId", "id", "_recordId"], "direct", "response id"),
        (["IPAddress", "ipaddr"], "direct", "IP address"),
        (["LocationLatitude"], "direct", "latitude"),
        (["RecipientEmail", "email", "E-mailadres"], "direct", "e-mail"),
        (["Naam", "RecipientLastName"], "direct", "person's name"),
        (["RespCode", "ParticipantCode"], "identifier", "respondent"),
        (["CompanyCode", "bedrijf", "organisation"], "identifier", "company"),
        (["UserLanguage", "startlanguage"], "metadata", "language"),
        (["lastpage", "RecordedDate"], "metadata", "platform record"),
    ],
)
def test_names_of_every_platform_find_their_role(names, section, key):
    for name in names:
        role = role_of(name)
        assert (role.section, role.key) == (section, key), name


def test_items_and_background_variables_have_no_role():
    assert all(role_of(name) is None for name in ["LT1", "Q5_1", "age_band", "leader", "gender"])
    assert {role for role in PLATFORM_ROLES if role_of(role).key == role} == set(PLATFORM_ROLES)


def test_sav_labels_give_item_text_answer_scales_and_missing_codes(tmp_path):
    text, cb = draft(tmp_path, SAV)
    assert cb.item_text == DEMO.item_text  # the variable labels
    assert cb.missing_codes == DEMO.missing_codes  # labelled, outside the answer range
    assert {s.name: (s.items, s.reverse) for s in cb.scales.values()} == {
        s.name: (s.items, s.reverse) for s in DEMO.scales.values()
    }
    for scale in cb.scales.values():
        assert scale.response_scale.labels == DEMO.scales[scale.name].response_scale.labels
        assert guessed(text, scale.name)
    assert len(cb.response_scales) == 2  # items with the same value labels share one
    assert {n: b.codes for n, b in cb.background.items()} == {
        n: b.codes for n, b in DEMO.background.items()
    }
    assert (
        cb.background["age_band"].label == "Leeftijd" and cb.background["age_band"].quasi_identifier
    )
    assert (cb.respondent_id, cb.company_id) == ("resp_code", "company_code")
    assert set(cb.direct_identifiers) == {"ip_address", "response_id", "name", "email"}
    assert cb.free_text == ("comments",)
    assert cb.platform["duration"] == "duration_in_seconds"
    assert cb.columns["duration_in_seconds"].aliases == ("Duration__in_seconds_",)
    for key in ["respondent", "company", "direct", "free_text", "9", "-99", "age_band", "1to5"]:
        assert guessed(text, key), key
    assert text.startswith("# Codebook DRAFTED") and "`scan run`" in text.split("\n\n")[0]


def test_qualtrics_question_texts_are_the_wording_and_recurring_codes_the_missing(tmp_path):
    text, cb = draft(tmp_path, CSV)
    assert cb.item_text == DEMO.item_text  # the second of Qualtrics' three header rows
    assert cb.background["age_band"].label == "Leeftijd"
    # no value labels: one answer scale from the observed codes; 9 and -99 recur in every
    # item, the planted stray codes (0, 6, 7, 55) do not
    assert [(rs.min, rs.max, rs.labels) for rs in cb.response_scales.values()] == [(1, 5, {})]
    assert cb.missing_codes == {9: "(no label)", -99: "(no label)"}
    assert cb.background["leader"].codes == {1: "1", 2: "2"}
    assert cb.columns["finished"].type == "number"  # True/False flags
    assert cb.platform["completed"] == "finished"
    assert "distribution_channel" in cb.columns and "recorded_date" in cb.columns
    assert guessed(text, "9") and guessed(text, "leader")


def test_xlsx_dates_are_dates_and_its_own_names_stay(tmp_path):
    _, cb = draft(tmp_path, XLSX)
    assert cb.columns["start_date"].type == "datetime" and cb.platform["started"] == "start_date"
    assert cb.company_id == "bedrijf" and len(cb.scales) == len(DEMO.scales)


def write_other_instrument(raw: Path) -> list[Path]:
    """Two waves of another instrument: a .sav (LimeSurvey-style names, 0..10 items labelled at
    the ends, 99 'weet niet', age in years) and a plain CSV (other names for the company and the
    duration); an unlabelled 1..5 scale with -1 for missing in both."""
    rng = np.random.default_rng(7)

    def wave(n: int, start: str) -> pd.DataFrame:
        trait = rng.normal(size=n)
        items = {
            f"WB{i}": np.clip(np.round(5 + 2 * trait + rng.normal(size=n)), 0, 10)
            for i in range(1, 5)
        }
        items["WB4"] = 10 - items["WB4"]  # reverse-keyed
        frame = pd.DataFrame(
            {
                "ParticipantCode": [f"P{i:04d}" for i in range(n)],
                "startdate": pd.Timestamp(start) + pd.to_timedelta(rng.integers(0, 9e5, n), "s"),
                "ipaddr": [f"192.0.2.{i % 250}" for i in range(n)],
                **items,
                "age": rng.integers(18, 66, n).astype(float),
                "sex": rng.integers(0, 2, n).astype(float),
                "team_size": rng.integers(1, 4, n).astype(float),
                "remarks": rng.choice(["", "Meer tijd om te leren zou fijn zijn."], n),
            }
        )
        for item in [f"WB{i}" for i in range(1, 5)]:
            frame.loc[rng.random(n) < 0.04, item] = 99
        for i in range(1, 4):
            frame[f"JS{i}"] = np.where(rng.random(n) < 0.05, -1, rng.integers(1, 6, n))
        return frame

    sav = wave(150, "2024-03-01")
    sav.insert(0, "id", np.arange(1.0, 151.0))
    sav.insert(2, "org", rng.choice(["K01", "K02", "K03"], 150))
    sav["interviewtime"] = rng.integers(200, 900, 150).astype(float)
    sav["lastpage"] = 3.0
    end_labels = {0.0: "helemaal niet", 10.0: "helemaal wel", 99.0: "weet niet"}
    (raw / "2024-A").mkdir(parents=True)
    pyreadstat.write_sav(
        sav,
        raw / "2024-A" / "welzijn_2024-A.sav",
        column_labels={
            **{f"WB{i}": f"Stelling {i} over welzijn" for i in range(1, 5)},
            "age": "Leeftijd in jaren",
            "sex": "Geslacht",
        },
        variable_value_labels={
            **{f"WB{i}": end_labels for i in range(1, 5)},
            "sex": {0.0: "man", 1.0: "vrouw"},
        },
    )

    csv = wave(120, "2025-03-01")
    csv.insert(1, "organisation", rng.choice(["K01", "K02", "K04"], 120))
    csv["Duration (in seconds)"] = rng.integers(200, 900, 120)
    (raw / "2025-B").mkdir()
    csv.to_csv(raw / "2025-B" / "welzijn_2025-B.csv", index=False)
    return [raw / "2024-A" / "welzijn_2024-A.sav", raw / "2025-B" / "welzijn_2025-B.csv"]


def test_another_instrument_from_a_sav_and_a_plain_csv(tmp_path):
    raw = tmp_path / "raw"
    exports = write_other_instrument(raw)
    text, cb = draft(tmp_path, *exports)
    assert cb.instrument == "welzijn" and list(cb.waves) == ["2024-A", "2025-B"]
    assert cb.scales["WB"].items == ("WB1", "WB2", "WB3", "WB4")
    assert cb.scales["WB"].reverse == ("WB4",)
    wb = cb.scales["WB"].response_scale  # labelled at its ends only: the observed codes between
    assert (wb.min, wb.max, wb.labels) == (0, 10, {0: "helemaal niet", 10: "helemaal wel"})
    js = cb.scales["JS"].response_scale  # without labels
    assert (js.min, js.max, js.labels) == (1, 5, {})
    assert cb.missing_codes == {99: "weet niet", -1: "(no label)"}
    assert cb.item_text["WB1"] == "Stelling 1 over welzijn" and "JS1" not in cb.item_text

    age = cb.background["age"]  # many distinct values: a number with proposed bands
    assert age.is_number and age.label == "Leeftijd in jaren" and age.quasi_identifier
    assert 18 < age.bands[0] < age.bands[-1] <= 65 and len(age.bands) >= 3
    assert cb.background["sex"].codes == {0: "man", 1: "vrouw"}
    assert cb.background["team_size"].codes == {1: "1", 2: "2", 3: "3"}

    # names of one role in different exports are one column, the others its aliases
    assert cb.company_id == "org" and cb.columns["org"].aliases == ("organisation",)
    assert cb.platform["duration"] == "interviewtime"
    assert cb.columns["interviewtime"].aliases == ("Duration (in seconds)",)
    assert cb.respondent_id == "participant_code"
    assert cb.columns["participant_code"].aliases == ("ParticipantCode",)
    assert set(cb.direct_identifiers) == {"id", "ipaddr"} and cb.free_text == ("remarks",)
    assert cb.platform == {"started": "startdate", "duration": "interviewtime"}
    assert cb.columns["lastpage"].type == "number" and "lastpage" not in cb.background
    assert cb.company_register is None  # no register beside the waves
    for key in ["WB", "JS", "0to10", "1to5", "99", "-1", "age", "sex", "started", "company"]:
        assert guessed(text, key), key

    for wave in cb.waves:  # the exports read under the draft, every cell as its type
        frame = read_wave(raw / wave, cb, raw)
        assert (frame["_parse_errors"] == "").all()


def test_the_command_writes_to_stdout_or_a_file_it_does_not_overwrite(tmp_path):
    runner = CliRunner()
    printed = runner.invoke(main, ["codebook", "draft", str(SAV)])
    assert printed.exit_code == 0, printed.output
    assert yaml.safe_load(printed.stdout)["scales"]["LT"]["reverse"] == ["LT4"]

    target = tmp_path / "codebook.yaml"
    target.write_text("mine\n")
    refused = runner.invoke(main, ["codebook", "draft", str(SAV), "-o", str(target)])
    assert refused.exit_code == 1 and "--force" in refused.output
    assert target.read_text() == "mine\n"
    forced = runner.invoke(main, ["codebook", "draft", str(SAV), "-o", str(target), "--force"])
    assert forced.exit_code == 0 and target.read_text() == printed.stdout

    (tmp_path / "notes.txt").write_text("not an export")
    bad = runner.invoke(main, ["codebook", "draft", str(tmp_path / "notes.txt")])
    assert bad.exit_code == 1 and "unsupported file type '.txt'" in bad.output


def test_a_draft_from_the_demo_exports_runs_the_whole_pipeline(demo_data, tmp_path):
    raw = demo_data / "raw"
    exports = [str(raw / p.relative_to(DEMO_RAW)) for p in DEMO_EXPORTS]
    home = tmp_path / "home"
    # the command in this process (as the test above): a `scan` of its own only adds its start
    drafted = CliRunner().invoke(
        main, ["codebook", "draft", *exports, "-o", str(raw / "codebook.yaml"), "--force"]
    )
    assert drafted.exit_code == 0, drafted.output
    cb = load_codebook(raw / "codebook.yaml")
    assert cb.company_register == "company_register.csv"  # beside the waves
    assert cb.aliases["bedrijf"] == cb.company_id  # the .xlsx's name for the company code
    assert cb.aliases["Duration__in_seconds_"] == cb.aliases["Duration (in seconds)"]

    run = scan("--data-dir", str(demo_data), "--reports-dir", str(tmp_path / "reports"), "run",
               home=home, cwd=tmp_path, key=KEY)  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert set(statuses(run.stdout).values()) == {"materialized"}
    summary = pd.read_csv(demo_data / "processed" / "2021-T1" / "quality_summary.csv")
    rows = stored_counts(summary.set_index("reason")["rows"])
    assert rows["unknown_company"] != 0  # the register is read (a count, or a small cell hidden)


def test_an_export_whose_columns_share_a_name_is_refused(tmp_path):
    export = tmp_path / "2024-A" / "export.csv"
    export.parent.mkdir()
    export.write_text("Q1,Q1,\n1,2,3\n")
    with pytest.raises(ExportError, match=r"unnamed: columns 3; sharing a name: columns 1, 2"):
        draft_codebook([export])
