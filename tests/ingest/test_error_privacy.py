"""An attacker reads what a failed run leaves outside the restricted zone: the console of
`scan run`, the Dagster event log (through the instance's API) and every file of DAGSTER_HOME.
Exports whose header rows were cut off make the reader fail on their first data row; no
identifying value of the exports may appear in any of it (whole tokens, as test_privacy)."""

import shutil
from pathlib import Path
from typing import NamedTuple

import dagster as dg
import openpyxl
import pytest
from conftest import DEMO_RAW, scan, whole_tokens

from pipeline.ingest.readers import read_wave
from pipeline.instrument.codebook import load_codebook

CB = load_codebook(DEMO_RAW / "codebook.yaml")
WAVES = {"2021-T1": 3, "2022-T2": 1}  # Qualtrics CSV: three header rows; .xlsx: one


class FailedRun(NamedTuple):
    console: str
    home: Path


def identifying_values(wave: str) -> set[str]:
    """The wave's identifying values (as test_privacy) and every cell of its first data row."""
    raw = read_wave(DEMO_RAW / wave, CB, DEMO_RAW)
    columns = [CB.respondent_id, CB.company_id, *CB.direct_identifiers]
    values = {str(v).strip() for column in columns for v in raw[column].dropna()}
    first = raw.drop(columns=["wave", "_source_file", "_source_row"]).iloc[0].dropna()
    values |= {str(v) for v in first}
    values -= {*CB.quality.test_company_codes, *CB.quality.test_respondent_codes}
    return {v for v in values if len(v) >= 4}


def without_header_rows(source: Path, target: Path, rows: int) -> None:
    target.parent.mkdir(parents=True)
    if source.suffix == ".csv":
        target.write_bytes(b"".join(source.read_bytes().splitlines(keepends=True)[rows:]))
    else:
        workbook = openpyxl.load_workbook(source)
        workbook.active.delete_rows(1, rows)
        workbook.save(target)


@pytest.fixture(scope="module")
def failed_run(tmp_path_factory) -> FailedRun:
    root = tmp_path_factory.mktemp("headless")
    raw = root / "data" / "raw"
    raw.mkdir(parents=True)
    for name in ("codebook.yaml", "company_register.csv"):
        shutil.copy(DEMO_RAW / name, raw / name)
    for wave, rows in WAVES.items():
        export = next((DEMO_RAW / wave).iterdir())
        without_header_rows(export, raw / wave / export.name, rows)
    done = scan(
        "--data-dir", str(root / "data"), "--reports-dir", str(root / "reports"), "run",
        home=root / "home", cwd=root,
    )  # fmt: skip
    assert done.returncode != 0
    return FailedRun(done.stdout + done.stderr, root / "home")


def leaks(text: str, secrets: set[str]) -> list[str]:
    """The secrets in `text` as whole tokens (a longitude 4.7085 is not in 14.708512)."""
    candidates = [v for v in secrets if v in text]  # a fast first pass over large files
    if not candidates:
        return []
    return sorted(set(whole_tokens(candidates).findall(text)))


def event_log(home: Path) -> str:
    """Every event of every run, as the instance serialises it."""
    with dg.DagsterInstance.from_config(str(home)) as instance:
        return "\n".join(
            dg.serialize_value(entry)
            for run in instance.get_runs()
            for entry in instance.all_logs(run.run_id)
        )


def test_the_failure_says_which_file_and_why(failed_run):
    for wave in WAVES:
        name = next((DEMO_RAW / wave).iterdir()).name
        assert f"{wave}/{name}: the first row is not a header" in failed_run.console
        assert "were the header rows cut off" in failed_run.console


@pytest.mark.parametrize("wave", list(WAVES))
def test_no_identifying_value_in_console_event_log_or_dagster_home(failed_run, wave):
    secrets = identifying_values(wave)
    export = next((DEMO_RAW / wave).iterdir())
    assert len(secrets) > 100 and leaks(f"({export.name}: {min(secrets)})", secrets)  # can fail
    assert not leaks(failed_run.console, secrets)
    log = event_log(failed_run.home)
    assert not leaks(log, secrets)
    assert f"{wave}/{export.name}: " in log  # the failure, naming the file, is in it
    for path in sorted(p for p in failed_run.home.rglob("*") if p.is_file()):
        found = leaks(path.read_bytes().decode("utf-8", errors="replace"), secrets)
        assert not found, f"{path.relative_to(failed_run.home)}: {found[:5]}"
