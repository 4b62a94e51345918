"""Faults: two `scan run` on the same data at once, and a run killed in the middle of a stage
(conftest.killed_run)."""

import json
from pathlib import Path

import pandas as pd
import pypdf
import pyreadstat
from test_lineage import digests


def unreadable(path: Path) -> str | None:
    """Why an output file is incomplete, or None when it reads as a whole."""
    try:
        if path.suffix == ".csv":
            pd.read_csv(path)
        elif path.suffix == ".parquet":
            pd.read_parquet(path)
        elif path.suffix == ".sav":
            pyreadstat.read_sav(path)
        elif path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".pdf":
            pypdf.PdfReader(path, strict=True).pages[0].get_contents()  # parsed, not read out
        elif path.suffix == ".html" and not path.read_text().rstrip().endswith("</html>"):
            return "no </html> at the end"
    except Exception as error:  # noqa: BLE001 - any reader's error means a broken file
        return repr(error)
    return None


def test_a_second_run_on_the_same_data_refuses_and_names_the_first(killed_run):
    refused = killed_run.refused
    assert refused.returncode == 1
    assert "another `scan run` is working on" in refused.stderr
    assert "pid " in refused.stderr and "--wait" in refused.stderr


def test_a_killed_run_leaves_no_partial_output_file(killed_run):
    assert any(p.suffix == ".html" for p in killed_run.left)  # it was writing reports
    broken = {str(p): unreadable(p) for p in killed_run.left if not p.name.endswith(".tmp")}
    assert not {p: why for p, why in broken.items() if why}


def test_the_next_run_waits_then_completes_it_with_the_files_of_a_clean_run(
    killed_run, pipeline_run
):
    """The completed run's shareable files and reports are byte-identical to those of the
    session's materializations (another process, instance and storage, other folders): the
    pipeline writes the same files for the same inputs, killed halfway or not."""
    data, reports = killed_run.data, killed_run.reports
    assert killed_run.rerun_code == 0, killed_run.rerun
    assert "waiting for the other `scan run` (" in killed_run.rerun
    assert ".scan-run.lock is held by pid " in killed_run.rerun
    assert "after an interrupted run: 1 run(s) marked failed" in killed_run.rerun
    assert not [p for p in (*data.rglob("*.tmp"), *reports.rglob("*.tmp"))]
    settings = pipeline_run.settings
    for ours, theirs in (
        (data / "processed", settings.processed_dir),
        (reports, settings.reports_dir),
    ):
        first, second = digests(ours), digests(theirs)
        assert len(first) > 30
        assert not [
            name for name in first.keys() | second.keys() if first.get(name) != second.get(name)
        ]
