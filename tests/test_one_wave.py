"""One wave is a complete study: `scan run` on the demo's first wave alone goes through to the
reports, and what needs more waves says so in its table and in the reports' words. Its export
is named as a steward might save it, after a company and a contact: no shareable file names it."""

import re
import shutil
from html import unescape
from pathlib import Path
from typing import NamedTuple

import pandas as pd
import pytest
from conftest import DEMO_RAW, WAVES, check_dictionary, scan, statuses
from test_privacy import text_of as content_of

from pipeline.instrument.codebook import load_codebook
from pipeline.models.multilevel import COEFFICIENT_COLUMNS, FIT_COLUMNS
from pipeline.psychometrics.invariance import TABLE_COLUMNS

# With pytest-xdist (`--dist loadgroup`) these tests share one worker, so the run is made once.
pytestmark = pytest.mark.xdist_group("one_wave")
WAVE = WAVES[0]
KEY = "a-key-for-the-one-wave-study-0123456789"  # the demo minus two waves is not the demo
NEEDS_TWO = "not estimable: needs 2 waves (1 in the data)"
MODELS = load_codebook(DEMO_RAW / "codebook.yaml").models
SCALES = [*MODELS.culture, *MODELS.outcomes]
# an export's file name that names a company and its contact (none of it is in the demo data)
EXPORT_NAME = "Houtzagerij Kwakernaak - t.kwakernaak@houtzagerij-kwakernaak.nl"


class OneWave(NamedTuple):
    processed: Path
    reports: Path
    returncode: int
    stdout: str


@pytest.fixture(scope="module")
def one_wave(tmp_path_factory) -> OneWave:
    root = tmp_path_factory.mktemp("one_wave")
    raw = root / "data" / "raw"
    raw.mkdir(parents=True)
    registers = (
        "company_register.csv",
        "trajectory_register.csv",
        "trajectory_participants.csv",
        "community_register.csv",
        "community_partners.csv",
    )
    for name in ("codebook.yaml", *registers):
        shutil.copy(DEMO_RAW / name, raw / name)
    shutil.copytree(DEMO_RAW / WAVE, raw / WAVE)
    (export,) = (raw / WAVE).iterdir()
    export.rename(export.with_stem(EXPORT_NAME))
    reports = root / "reports"
    done = scan(
        "--data-dir", str(root / "data"), "--reports-dir", str(reports), "run",
        home=root / "home", cwd=root, key=KEY,
    )  # fmt: skip
    return OneWave(root / "data" / "processed", reports / WAVE, done.returncode, done.stdout)


def text_of(html: Path) -> str:
    """The visible text of an HTML report, whitespace collapsed."""
    body = re.sub(r"<(script|style)\b.*?</\1>", " ", html.read_text(encoding="utf-8"), flags=re.S)
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", body)).split())


def test_the_run_goes_through_every_stage(one_wave):
    assert one_wave.returncode == 0, one_wave.stdout
    stages = [WAVE, "all_waves", f"reports/{WAVE}", "catalog"]
    assert statuses(one_wave.stdout) == dict.fromkeys(stages, "materialized")


def test_invariance_table_says_it_needs_two_waves(one_wave):
    table = pd.read_csv(one_wave.processed / "all_waves" / "invariance.csv")
    assert list(table.columns) == list(TABLE_COLUMNS)
    assert list(table["model"]) == ["configural", "metric", "scalar"]
    assert (table["decision"] == NEEDS_TWO).all()
    assert table[["chisq", "df", "cfi", "rmsea"]].isna().all().all()
    complete = pd.read_csv(one_wave.processed / WAVE / "cfa_fit.csv")["n"][0]
    assert (table["groups"] == f"{WAVE} ({complete})").all() and (table["n"] == complete).all()


def test_longitudinal_models_say_they_need_two_waves(one_wave):
    folder = one_wave.processed / "all_waves"
    fits = pd.read_csv(folder / "multilevel_fit.csv")
    assert list(fits.columns) == list(FIT_COLUMNS)
    assert list(fits["model"]) == ["SL/longitudinal", "EM/longitudinal"]
    assert (fits["notes"] == NEEDS_TWO).all() and not fits["blocking"].any()
    assert fits["n_obs"].isna().all() and fits["loglik"].isna().all()
    coefficients = pd.read_csv(folder / "multilevel.csv")
    assert coefficients.empty and list(coefficients.columns) == list(COEFFICIENT_COLUMNS)
    # the wave's own models are estimated as always
    wave_fits = pd.read_csv(one_wave.processed / WAVE / "multilevel_fit.csv")
    assert wave_fits["converged"].all() and wave_fits["n_obs"].gt(0).all()


def test_trajectory_models_say_they_need_two_waves(one_wave):
    fits = pd.read_csv(one_wave.processed / "all_waves" / "trajectory_fit.csv")
    assert list(fits["model"]) == [
        f"{scale}/{model}" for scale in SCALES for model in ("trajectory", "participants")
    ]
    assert (
        fits.loc[fits["model"].str.endswith("/trajectory"), "notes"]
        .eq("not estimable: needs 2 waves (1)")
        .all()
    )
    assert fits["n_obs"].isna().all() and not fits["blocking"].any()
    assert pd.read_csv(one_wave.processed / "all_waves" / "trajectory_effects.csv").empty


def test_communities_are_reported_and_their_model_needs_two_waves(one_wave):
    fits = pd.read_csv(one_wave.processed / "all_waves" / "community_fit.csv")
    assert list(fits["model"]) == [f"{scale}/community" for scale in SCALES]
    assert fits["notes"].eq("not estimable: needs 2 waves (1)").all()
    assert pd.read_csv(one_wave.processed / "all_waves" / "community_effects.csv").empty
    numbers = pd.read_csv(one_wave.processed / WAVE / "community_numbers.csv")
    reported = set(numbers["community_id"])
    assert (
        reported and {p.stem for p in (one_wave.reports / "communities").glob("*.pdf")} == reported
    )
    change = numbers[numbers["statistic"].isin(["previous_mean", "change"])]
    assert change["value"].isna().all()  # no wave before the first


def test_the_linkage_report_says_it_needs_two_waves(one_wave):
    table = pd.read_csv(one_wave.processed / "all_waves" / "linkage.csv", keep_default_na=False)
    assert list(table["wave"]) == [WAVE] and table["rows"][0] > 100
    assert table["note"][0] == NEEDS_TWO


def test_the_wave_report_says_what_is_not_possible_yet(one_wave):
    report = text_of(one_wave.reports / "wave_report.html")
    assert (
        "Measurement invariance across the waves needs at least two waves; this study has one "
        "so far, so it is not tested yet." in report
    )
    assert "This is the first wave; there is no earlier wave to compare with." in report
    assert "Waves compared" not in report and "measurement_invariance[" not in report
    assert (one_wave.reports / "wave_report.pdf").stat().st_size > 0


def test_company_reports_exist_and_say_there_is_no_earlier_wave(one_wave):
    listed = pd.read_csv(one_wave.processed / WAVE / "company_reports.csv")
    assert len(listed) > 0
    for company in listed["company_id"]:
        for suffix in (".html", ".pdf"):
            assert (one_wave.reports / "companies" / f"{company}{suffix}").stat().st_size > 0
    report = text_of(one_wave.reports / "companies" / f"{listed['company_id'][0]}.html")
    assert "Dit is de eerste meting; er is nog geen eerdere meting om mee te vergelijken." in report


def test_no_shareable_file_names_the_export(one_wave):
    """Before, the export's file name was in wave_report.html, its PDF and the RO-Crate; now
    they name it `<wave>/export-1` with its sha256."""
    files = [p for zone in (one_wave.processed, one_wave.reports.parent) for p in zone.rglob("*")]
    files = [p for p in files if p.is_file() and "_versions" not in p.parts]  # copies
    assert {".html", ".pdf", ".json", ".csv", ".parquet", ".sav"} <= {p.suffix for p in files}
    # a company report's PDF renders the document of its HTML twin (each read here, and the
    # first PDF): reading every PDF would take 15 s
    companies = sorted(one_wave.reports.glob("companies/*.pdf"))[1:]
    files = [p for p in files if p not in companies]
    words = re.compile("houtzagerij|kwakernaak", re.IGNORECASE)
    assert words.search(f"{EXPORT_NAME}.sav")  # the scan can fail
    for path in files:
        assert not words.search(content_of(path)), path.relative_to(one_wave.reports.parent.parent)
    report = content_of(one_wave.reports / "wave_report.pdf")
    assert f"{WAVE}/export-1" in report and "files / codebook.yaml" in report


def test_the_data_dictionary_describes_the_one_wave(one_wave):
    """With one wave, the dictionary describes that wave's files and the cross-wave ones
    that say they need two waves; nothing of the waves that are not there."""
    package = check_dictionary(one_wave.processed)
    folders = {r["path"].split("/")[0] for r in package["resources"]}
    assert folders == {WAVE, "all_waves"}
