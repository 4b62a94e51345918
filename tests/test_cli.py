"""End to end through the `scan` console script, on the Dagster instance in DAGSTER_HOME."""

import hashlib
import json
import shutil
from pathlib import Path

import dagster as dg
import pandas as pd
from conftest import DEMO_RAW, WAVES, scan, statuses


def test_scan_run_materializes_each_wave_once_and_runs_show_in_the_instance(scan_run, monkeypatch):
    data, reports, home, stdout = scan_run
    stages = [*WAVES, "all_waves", *(f"reports/{wave}" for wave in WAVES)]
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
        assert len(runs) == 7 and all(r.is_success for r in runs)
        assert sorted(instance.get_dynamic_partitions("waves")) == WAVES


def test_scan_run_reports_a_bad_export_by_file_and_exits_nonzero(demo_data, tmp_path):
    shutil.rmtree(demo_data / "raw" / "2022-T2")  # one good wave is enough here
    (demo_data / "raw" / "2021-T1" / "notes.docx").write_bytes(b"PK\x03\x04")
    home = tmp_path / "home"
    refused = scan("--data-dir", str(demo_data), "run", home=home, cwd=tmp_path)
    assert refused.returncode == 1
    assert "no pseudonymisation key" in refused.stdout, "changed demo data is real data"

    key = "a-real-key-for-this-test-0123456789"
    result = scan("--data-dir", str(demo_data), "run", home=home, cwd=tmp_path, key=key)
    assert result.returncode == 1
    assert "notes.docx" in result.stdout
    assert statuses(result.stdout) == {
        "2019-T0": "materialized",
        "2021-T1": "failed",
        "all_waves": "skipped",
        "reports": "skipped",
    }


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
    rows = summary.set_index("reason")["rows"]
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
