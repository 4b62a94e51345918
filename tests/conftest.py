import shutil
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent
DEMO_RAW = ROOT / "data" / "raw"
CODEBOOK = DEMO_RAW / "codebook.yaml"


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
