"""End to end through the `scan` console script, on the Dagster instance in DAGSTER_HOME."""

import hashlib
import json
import re
import shutil
from pathlib import Path

import dagster as dg
import pandas as pd
from conftest import DEMO_RAW, WAVES, scan, statuses

from assets.definitions import (
    CATALOG_JOB,
    CROSS_WAVE_JOB,
    PROTECT_JOB,
    REPORT_JOB,
    VALIDATE_JOB,
    build_definitions,
)
from assets.staleness import pipeline_status
from pipeline.lineage.settings import Settings
from pipeline.validate.quality import stored_counts


def test_scan_run_materializes_each_wave_once_and_runs_show_in_the_instance(scan_run, monkeypatch):
    data, reports, home, stdout = scan_run
    stages = [*WAVES, "all_waves", *(f"reports/{wave}" for wave in WAVES), "catalog"]
    assert statuses(stdout) == dict.fromkeys(stages, "materialized")
    for wave in WAVES:
        assert (data / "raw" / "_staging" / "raw_responses" / f"{wave}.parquet").exists()
        assert (data / "processed" / wave / "quality_summary.csv").exists()
        assert (reports / wave / "wave_report.html").exists()
    assert str(data / "processed") in stdout
    invariance = pd.read_csv(data / "processed" / "all_waves" / "invariance.csv")
    assert list(invariance["model"]) == ["configural", "metric", "scalar"]
    assert all(wave in invariance["groups"][0] for wave in WAVES)
    truth = json.loads((DEMO_RAW / "_demo_truth" / "truth.json").read_text())["waves"]["2021-T1"]
    raw, kept = truth["raw_rows"], truth["expected_after_qc"]
    assert f"{raw} raw rows: {kept} validated, {raw - kept} quarantined (preview 3," in stdout

    again = scan(
        "--data-dir", str(data), "--reports-dir", str(reports), "run", home=home, cwd=data.parent
    )
    assert again.returncode == 0, again.stderr
    assert statuses(again.stdout) == dict.fromkeys(stages, "up to date")

    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get() as instance:
        runs = instance.get_runs()
        # per wave one run up to the privacy boundary and one from it on, the cross-wave one,
        # per wave one of the reports, the catalog
        assert len(runs) == 3 * len(WAVES) + 2 and all(r.is_success for r in runs)
        # each under its stage's job, which names it in the UI, and tagged with its wave
        stage_jobs = (VALIDATE_JOB.name, PROTECT_JOB.name, REPORT_JOB.name)
        assert {(r.job_name, r.tags.get("dagster/partition")) for r in runs} == {
            *((job, wave) for job in stage_jobs for wave in WAVES),
            (CROSS_WAVE_JOB.name, None),
            (CATALOG_JOB.name, None),
        }
        assert sorted(instance.get_dynamic_partitions("waves")) == WAVES


def test_scan_run_reports_a_bad_export_by_file_and_exits_nonzero(demo_data, tmp_path, monkeypatch):
    """Changed demo data without a key: refused at anonymisation. Then a wave with a broken
    export fails, naming the file, exit 1. `scan status` says what failed, in which run and
    why, not "never materialized" (#16.8)."""
    shutil.rmtree(demo_data / "raw" / "2022-T2")  # one good wave is enough here
    export = demo_data / "raw" / "2021-T1" / "leercultuurscan_2021-T1.csv"
    export.write_bytes(export.read_bytes() + b"\r\n")  # the same rows, but not the demo's file
    home = tmp_path / "home"
    refused = scan("--data-dir", str(demo_data), "run", home=home, cwd=tmp_path)
    assert refused.returncode == 1
    assert "no pseudonymisation key" in refused.stdout, "changed demo data is real data"

    (demo_data / "raw" / "2021-T1" / "notes.docx").write_bytes(b"PK\x03\x04")
    key = "a-real-key-for-this-test-0123456789"
    result = scan("--data-dir", str(demo_data), "run", home=home, cwd=tmp_path, key=key)
    assert result.returncode == 1
    assert "notes.docx" in result.stdout
    assert statuses(result.stdout) == {
        "2019-T0": "up to date",  # validated in the first run; anonymised with 2021-T1 only
        "2021-T1": "failed",
        "all_waves": "skipped",
        "reports": "skipped",
    }
    runs = [re.search(r"^2019-T0 .*\(run ([0-9a-f-]{36})\)$", refused.stdout, re.M)[1]]
    runs += [re.search(r"^2021-T1 +failed .*\(run ([0-9a-f-]{36})\)$", result.stdout, re.M)[1]]
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("SCAN_PSEUDONYM_KEY", key)
    settings = Settings.from_env(demo_data, tmp_path / "reports" / "output")
    with dg.DagsterInstance.get() as instance:
        found = pipeline_status(instance, build_definitions(settings), settings)
    assert found[("anonymised_responses", "2019-T0")].startswith(
        f"failed in run {runs[0]}: no pseudonymisation key"
    )
    reason = found[("raw_responses", "2021-T1")]
    assert reason.startswith(f"failed in run {runs[1]}: ") and "notes.docx" in reason
    assert found[("validated_responses", "2021-T1")].startswith(
        f"failed in run {runs[1]}: raw_responses failed: "
    )
    assert found[("raw_responses", "2019-T0")] == ""


def test_a_wave_whose_validation_keeps_nothing_stops_there_with_the_counts(demo_data, tmp_path):
    """Every row outside the fieldwork window: the wave fails at validation, saying why by
    reason, not later for want of data; the counts are stored and printed."""
    for wave in ("2021-T1", "2022-T2"):
        shutil.rmtree(demo_data / "raw" / wave)
    codebook = demo_data / "raw" / "codebook.yaml"
    text = codebook.read_text(encoding="utf-8")
    codebook.write_text(text.replace("start: 2019-03-04, end: 2019-04-26", "start: 2018-03-05, "
                                     "end: 2018-04-27"), encoding="utf-8")  # fmt: skip
    key = "a-real-key-for-this-test-0123456789"
    result = scan(
        "--data-dir", str(demo_data), "run", home=tmp_path / "home", cwd=tmp_path, key=key
    )
    assert result.returncode == 1
    assert statuses(result.stdout)["2019-T0"] == "failed"
    summary = pd.read_csv(demo_data / "processed" / "2019-T0" / "quality_summary.csv")
    rows = stored_counts(summary.set_index("reason")["rows"])
    assert rows["validated"] == 0 and rows["outside_window"] == rows["raw_rows"] > 0
    assert "validation kept no rows" in result.stdout
    assert f"outside_window {rows['raw_rows']}" in result.stdout, result.stdout
    for later in ("0 complete rows", "ZeroDivisionError", "IndexError", "concatenate"):
        assert later not in result.stdout
    assert not (demo_data / "processed" / "2019-T0" / "responses.parquet").exists()


def test_scan_run_without_waves_explains_what_to_do(tmp_path):
    (tmp_path / "data" / "raw").mkdir(parents=True)
    (tmp_path / "data" / "raw" / "codebook.yaml").write_bytes(
        (DEMO_RAW / "codebook.yaml").read_bytes()
    )
    result = scan("--data-dir", str(tmp_path / "data"), "run", home=tmp_path / "h", cwd=tmp_path)
    assert result.returncode != 0
    assert "scan demo" in result.stderr


def test_scan_demo_regenerates_the_committed_exports_byte_for_byte(tmp_path):
    data = tmp_path / "data"
    (data / "raw").mkdir(parents=True)
    (data / "raw" / "codebook.yaml").write_bytes((DEMO_RAW / "codebook.yaml").read_bytes())
    result = scan("--data-dir", str(data), "demo", home=tmp_path / "h", cwd=tmp_path)
    assert result.returncode == 0, result.stderr

    def digests(root: Path) -> dict[str, str]:
        return {
            p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*"))
            if p.is_file() and "_staging" not in p.parts
        }

    assert digests(data / "raw") == digests(DEMO_RAW)


def test_scan_run_refuses_undeclared_and_reserved_wave_folders_up_front(demo_data, tmp_path):
    export = next((demo_data / "raw" / "2021-T1").glob("*.csv"))
    for stray in ("2024-T4", "all_waves"):
        (demo_data / "raw" / stray).mkdir()
        shutil.copy(export, demo_data / "raw" / stray / export.name)
    home = tmp_path / "home"
    refused = scan("--data-dir", str(demo_data), "run", home=home, cwd=tmp_path)
    assert refused.returncode == 1
    assert "wave folder '2024-T4' is not declared under the codebook's waves" in refused.stderr
    assert "wave folder 'all_waves': the name is reserved" in refused.stderr
    assert not (demo_data / "processed").exists() and not (home / "storage").exists()
