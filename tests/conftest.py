import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import dagster as dg
import pandas as pd
import pytest

from assets.definitions import (
    ALL_ASSETS,
    ALL_CHECKS,
    CROSS_WAVE_SELECTION,
    REPORT_SELECTION,
    WAVE_SELECTION,
    build_definitions,
)
from assets.partitions import waves
from assets.resources import ALL_WAVES, resources_for
from pipeline.settings import Settings

SCAN = str(Path(sys.executable).parent / "scan")
ROOT = Path(__file__).resolve().parent.parent
DEMO_RAW = ROOT / "data" / "raw"
CODEBOOK = DEMO_RAW / "codebook.yaml"
WAVES = ["2019-T0", "2021-T1", "2022-T2"]


class DemoRun(NamedTuple):
    settings: Settings
    results: dict[str, dg.ExecuteInProcessResult]  # by wave, ALL_WAVES and "reports/<wave>"
    automation: tuple  # the automation sensor's evaluations before and after the waves


@pytest.fixture(scope="session")
def pipeline_run(tmp_path_factory) -> DemoRun:
    """The demo through the whole pipeline as `scan run` drives it: every wave (assets and
    checks), then the cross-wave assets, then each wave's reports."""
    data = tmp_path_factory.mktemp("run") / "data"
    shutil.copytree(DEMO_RAW, data / "raw", ignore=shutil.ignore_patterns("_staging"))
    settings = Settings(data, data.parent / "reports")
    definitions = build_definitions(settings)

    def materialize(selection, wave):
        return dg.materialize(
            [*ALL_ASSETS, *ALL_CHECKS],
            selection=selection,
            partition_key=wave,
            instance=instance,
            resources=resources_for(settings),
        )

    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(waves.name, WAVES)
        # the automation sensor of `dagster dev` ticks before and after the waves come in
        before = dg.evaluate_automation_conditions(defs=definitions, instance=instance)
        results = {wave: materialize(WAVE_SELECTION, wave) for wave in WAVES}
        after = dg.evaluate_automation_conditions(
            defs=definitions, instance=instance, cursor=before.cursor
        )
        results[ALL_WAVES] = materialize(CROSS_WAVE_SELECTION, None)
        results |= {f"reports/{wave}": materialize(REPORT_SELECTION, wave) for wave in WAVES}
    return DemoRun(settings, results, (before, after))


@pytest.fixture
def codebook_text() -> str:
    return CODEBOOK.read_text(encoding="utf-8")


@pytest.fixture
def demo_data(tmp_path) -> Path:
    """A copy of the committed demo scan (codebook, register, waves, truth) in a fresh data dir."""
    data = tmp_path / "data"
    shutil.copytree(DEMO_RAW, data / "raw", ignore=shutil.ignore_patterns("_staging"))
    return data


@pytest.fixture
def truth_rows() -> pd.DataFrame:
    return pd.read_csv(DEMO_RAW / "_demo_truth" / "rows.csv", dtype=str, keep_default_na=False)


@pytest.fixture
def instance():
    with dg.instance_for_test() as test_instance:
        yield test_instance


@pytest.fixture(scope="session")
def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium)")
    return path


class ScanRun(NamedTuple):
    data: Path
    reports: Path
    home: Path  # DAGSTER_HOME
    stdout: str


def scan(*args, home: Path, cwd: Path, key: str | None = None) -> subprocess.CompletedProcess:
    """The `scan` console script, on the Dagster instance in `home`, with the demo key unless
    `key` is given."""
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    for name in ("SCAN_DATA_DIR", "SCAN_PSEUDONYM_KEY", "SCAN_PSEUDONYM_KEY_FILE"):
        env.pop(name, None)
    if key:
        env["SCAN_PSEUDONYM_KEY"] = key
    return subprocess.run(
        [SCAN, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=600
    )


def statuses(stdout: str) -> dict[str, str]:
    """{wave: status} from the table `scan run` prints."""
    found = re.findall(r"^(\S+)\s+(materialized|up to date|failed|skipped)\b", stdout, re.MULTILINE)
    return dict(found)


@pytest.fixture(scope="session")
def scan_run(tmp_path_factory) -> ScanRun:
    """`scan run` on a copy of the demo, as a data steward starts it: the whole pipeline."""
    root = tmp_path_factory.mktemp("scan_run")
    data, reports, home = root / "data", root / "reports", root / "home"
    shutil.copytree(DEMO_RAW, data / "raw", ignore=shutil.ignore_patterns("_staging"))
    done = scan("--data-dir", str(data), "--reports-dir", str(reports), "run", home=home, cwd=root)
    assert done.returncode == 0, done.stdout + done.stderr
    return ScanRun(data, reports, home, done.stdout)
