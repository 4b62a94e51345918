"""Faults: two `scan run` on the same data at once, and a run killed in the middle of a stage."""

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pypdf
import pyreadstat
import pytest
from conftest import DEMO_RAW, SCAN, scan, statuses
from test_lineage import digests

from pipeline.files import RUN_LOCK, exclusive


def wait_for(condition, what: str, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout} s for {what}")
        time.sleep(0.2)


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
            pypdf.PdfReader(path, strict=True).pages[0].extract_text()
        elif path.suffix == ".html" and not path.read_text().rstrip().endswith("</html>"):
            return "no </html> at the end"
    except Exception as error:  # noqa: BLE001 - any reader's error means a broken file
        return repr(error)
    return None


@pytest.fixture(scope="module")
def killed(tmp_path_factory):
    """A `scan run` on a fresh copy of the demo, killed (SIGKILL, with its report workers) once
    the reports stage is writing company reports; a second `scan run` tried meanwhile."""
    root = tmp_path_factory.mktemp("killed")
    data, reports, home = root / "data", root / "reports", root / "home"
    shutil.copytree(DEMO_RAW, data / "raw", ignore=shutil.ignore_patterns("_staging"))
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    for name in ("SCAN_DATA_DIR", "SCAN_PSEUDONYM_KEY", "SCAN_PSEUDONYM_KEY_FILE"):
        env.pop(name, None)
    with open(root / "first.log", "w") as log:
        first = subprocess.Popen(
            [SCAN, "--data-dir", str(data), "--reports-dir", str(reports), "run"],
            env=env, cwd=root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        wait_for(lambda: any(reports.glob("*/companies/*.html")), "the first company report")
        second = scan("--data-dir", str(data), "--reports-dir", str(reports), "run",
                      home=home, cwd=root)  # fmt: skip
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    outputs = [p for p in (*data.rglob("*"), *reports.rglob("*")) if p.is_file()]
    return data, reports, home, root, second, outputs


def test_a_second_run_on_the_same_data_refuses_and_names_the_first(killed):
    *_, second, _ = killed
    assert second.returncode == 1
    assert "another `scan run` is working on" in second.stderr
    assert "--wait" in second.stderr


def test_a_killed_run_leaves_no_partial_output_file(killed):
    *_, outputs = killed
    broken = {str(p): unreadable(p) for p in outputs if not p.name.endswith(".tmp")}
    assert not {p: why for p, why in broken.items() if why}


def test_the_next_run_completes_it_with_the_files_of_a_clean_run(killed, scan_run):
    data, reports, home, root, *_ = killed
    rerun = scan("--data-dir", str(data), "--reports-dir", str(reports), "run", home=home, cwd=root)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "after an interrupted run: 1 run(s) marked failed" in rerun.stdout
    assert not [p for p in (*data.rglob("*.tmp"), *reports.rglob("*.tmp"))]
    assert digests(data / "processed") == digests(scan_run.data / "processed")
    assert digests(reports) == digests(scan_run.reports)

    # a run that waits for the lock instead of refusing: nothing left to do after the holder
    log = root / "waiting.log"
    with exclusive(data / RUN_LOCK), open(log, "w") as out:
        waiting = subprocess.Popen(
            [SCAN, "--data-dir", str(data), "--reports-dir", str(reports), "run", "--wait"],
            env={**os.environ, "DAGSTER_HOME": str(home)}, cwd=root, text=True,
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
        wait_for(lambda: "waiting for the other `scan run`" in log.read_text(), "--wait", 120)
        assert waiting.poll() is None  # still waiting
    assert waiting.wait(timeout=600) == 0, log.read_text()
    assert set(statuses(log.read_text()).values()) == {"up to date"}
