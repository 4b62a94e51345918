"""Reproducibility and lineage: the same inputs and code give the same files."""

import hashlib
import re
import shutil
from pathlib import Path

import pytest
from conftest import WAVES, scan, statuses

from pipeline.pseudonyms import DEMO_KEY

REPORT_ASSETS = {"company_reports", "wave_report"}


def digests(root) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_two_clean_runs_in_separate_folders_write_identical_files(scan_run, pipeline_run):
    """`scan run` (one process, the CLI) and the session's materializations (another instance,
    other folders) of the same demo write byte-identical shareable files and reports."""
    settings = pipeline_run.settings
    for ours, theirs in (
        (scan_run.data / "processed", settings.processed_dir),
        (scan_run.reports, settings.reports_dir),
    ):
        first, second = digests(ours), digests(theirs)
        assert first.keys() == second.keys()
        assert len(first) > 30
        differ = [name for name in first if first[name] != second[name]]
        assert not differ, differ


@pytest.fixture
def copied_run(scan_run, tmp_path) -> tuple[Path, Path, Path]:
    """The session's finished `scan run` (data, reports and Dagster instance), copied."""
    for name in ("data", "reports", "home"):
        shutil.copytree(getattr(scan_run, name), tmp_path / name)
    return tmp_path / "data", tmp_path / "reports", tmp_path / "home"


def status(data: Path, reports: Path, home: Path, key=None) -> dict[tuple[str, str], str]:
    done = scan(
        "--data-dir", str(data), "--reports-dir", str(reports), "status",
        home=home, cwd=data.parent, key=key,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = re.findall(r"^(\S+)\s+(\S+)\s+(.+)$", done.stdout, re.MULTILINE)
    return {(asset, wave): reason for asset, wave, reason in rows if "up to date;" not in reason}


def test_status_after_a_run_is_all_up_to_date(copied_run):
    found = status(*copied_run)
    assert len(found) > 50 and set(found.values()) == {"up to date"}


def test_a_changed_export_makes_exactly_its_wave_the_cross_wave_assets_and_reports_stale(
    copied_run,
):
    data, reports, home = copied_run
    export = next((data / "raw" / "2021-T1").glob("*.csv"))
    export.write_bytes(export.read_bytes() + b"\r\n")
    key = DEMO_KEY.decode()  # the same key as before, now named explicitly (not the demo's data)
    found = status(data, reports, home, key=key)
    stale = {where for where, reason in found.items() if reason != "up to date"}
    per_wave = {asset for asset, wave in found if wave == "2021-T1"} - REPORT_ASSETS
    assert found[("raw_responses", "2021-T1")] == f"changed file 2021-T1/{export.name}"
    assert found[("validated_responses", "2021-T1")] == "upstream raw_responses changed"
    expected = {(asset, "2021-T1") for asset in per_wave}
    expected |= {(asset, wave) for asset, wave in found if wave == "all_waves"}
    expected |= {(asset, wave) for asset, wave in found if asset in REPORT_ASSETS}
    assert stale == expected

    rerun = scan(
        "--data-dir", str(data), "--reports-dir", str(reports), "run",
        home=home, cwd=data.parent, key=key,
    )  # fmt: skip
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert statuses(rerun.stdout) == {
        "2019-T0": "up to date",
        "2021-T1": "materialized",
        "2022-T2": "up to date",
        "all_waves": "materialized",
        **{f"reports/{wave}": "materialized" for wave in WAVES},
    }
    assert set(status(data, reports, home, key=key).values()) == {"up to date"}


def test_a_new_key_or_codebook_is_named_as_the_reason(copied_run):
    data, reports, home = copied_run
    found = status(data, reports, home, key="another-key-for-this-test-0123456789")
    assert {found[("anonymised_responses", w)] for w in WAVES} == {"pseudonymisation key changed"}
    assert found[("raw_responses", "2019-T0")] == "up to date"
    with (data / "raw" / "codebook.yaml").open("a") as codebook:
        codebook.write("# a comment\n")
    found = status(data, reports, home)
    assert {found[("raw_responses", w)] for w in WAVES} == {"changed codebook"}
