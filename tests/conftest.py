import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import dagster as dg
import pandas as pd
import psycopg2
import pytest
import yaml

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
# The production instance's configuration, which the session's `scan run` uses (README,
# "Production instance: PostgreSQL and Kubernetes"), and the server the tests use when
# DAGSTER_PG_HOST, _PORT, _USER and _PASSWORD are not set: the local one, as README "Install"
# sets it up.
DEPLOY_INSTANCE = ROOT / "deploy" / "dagster.yaml"
POSTGRES_DEFAULTS = {
    "DAGSTER_PG_HOST": "localhost",
    "DAGSTER_PG_PORT": "5432",
    "DAGSTER_PG_USER": "postgres",
    "DAGSTER_PG_PASSWORD": "postgres",
}
POSTGRES_START = (
    "apt-get install -y -qq postgresql && service postgresql start && "
    "runuser -u postgres -- psql -qc \"ALTER ROLE postgres PASSWORD 'postgres'\""
)
POSTGRES_HOME = "postgres-home.json"  # in a DAGSTER_HOME on PostgreSQL: whose database it is


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
    own_postgres_database(home)
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


def postgres_server() -> dict[str, str]:
    """DAGSTER_PG_HOST, _PORT, _USER and _PASSWORD: from the environment, else the defaults."""
    return {name: os.environ.get(name, default) for name, default in POSTGRES_DEFAULTS.items()}


def postgres_connect(server: dict[str, str], database: str = "postgres"):
    return psycopg2.connect(
        host=server["DAGSTER_PG_HOST"],
        port=int(server["DAGSTER_PG_PORT"]),
        user=server["DAGSTER_PG_USER"],
        password=server["DAGSTER_PG_PASSWORD"],
        dbname=database,
        connect_timeout=10,
    )


def postgres_admin(*statements: str) -> list[tuple]:
    """Run statements on the server's `postgres` database, outside a transaction (as CREATE and
    DROP DATABASE need); the rows of the last one."""
    connection = postgres_connect(postgres_server())
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
            return cursor.fetchall() if cursor.description else []
    finally:
        connection.close()


def fill_env(node, values: dict):
    """deploy/dagster.yaml with every `{env: NAME}` replaced by values[NAME]."""
    if isinstance(node, dict):
        if set(node) == {"env"}:
            return values[node["env"]]
        return {key: fill_env(value, values) for key, value in node.items()}
    if isinstance(node, list):
        return [fill_env(value, values) for value in node]
    return node


def write_postgres_instance(home: Path, database: str, session: str) -> None:
    """DAGSTER_HOME/dagster.yaml: the shipped deploy/dagster.yaml, on `database` of the server."""
    server = postgres_server()
    values = {
        **server,
        "DAGSTER_PG_PORT": int(server["DAGSTER_PG_PORT"]),
        "DAGSTER_PG_DB": database,
    }
    config = fill_env(yaml.safe_load(DEPLOY_INSTANCE.read_text()), values)
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    owner = {"home": str(home), "database": database, "session": session}
    (home / POSTGRES_HOME).write_text(json.dumps(owner))


def own_postgres_database(home: Path) -> None:
    """A copy of a DAGSTER_HOME on PostgreSQL gets its own copy of the database (as a copy of a
    SQLite home has its own files), so that `scan` in the copy leaves the original's runs alone."""
    marker = home / POSTGRES_HOME
    if not marker.exists():
        return
    owner = json.loads(marker.read_text())
    if owner["home"] == str(home):
        return
    copy = f"{owner['session']}_{hashlib.sha256(str(home).encode()).hexdigest()[:12]}"
    postgres_admin(f'CREATE DATABASE "{copy}" TEMPLATE "{owner["database"]}"')
    write_postgres_instance(home, copy, owner["session"])


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for the session, dropped at its end with its copies. Fails
    (never skips) when the server is not reachable: CI proves the production instance."""
    session = f"scan_test_{os.getpid()}_{secrets.token_hex(4)}"
    server = postgres_server()
    try:
        postgres_admin(f'CREATE DATABASE "{session}"')
        problem = None
    except psycopg2.OperationalError as error:
        problem = " ".join(str(error).split())
    if problem:
        where = f"{server['DAGSTER_PG_USER']}@{server['DAGSTER_PG_HOST']}:"
        pytest.fail(
            f"PostgreSQL is not reachable as {where}{server['DAGSTER_PG_PORT']} ({problem}). "
            f"Start it as README 'Install' does (as root): {POSTGRES_START}; or point "
            "DAGSTER_PG_HOST, DAGSTER_PG_PORT, DAGSTER_PG_USER and DAGSTER_PG_PASSWORD at a "
            "server where that role may create databases.",
            pytrace=False,
        )
    yield session
    found = postgres_admin(f"SELECT datname FROM pg_database WHERE datname LIKE '{session}%'")
    postgres_admin(*(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)' for (name,) in found))


@pytest.fixture(scope="session")
def scan_run(tmp_path_factory, postgres_database) -> ScanRun:
    """`scan run` on a copy of the demo, as a data steward starts it: the whole pipeline, on the
    production instance (deploy/dagster.yaml: runs, events and schedules in PostgreSQL)."""
    root = tmp_path_factory.mktemp("scan_run")
    data, reports, home = root / "data", root / "reports", root / "home"
    shutil.copytree(DEMO_RAW, data / "raw", ignore=shutil.ignore_patterns("_staging"))
    write_postgres_instance(home, postgres_database, postgres_database)
    done = scan("--data-dir", str(data), "--reports-dir", str(reports), "run", home=home, cwd=root)
    assert done.returncode == 0, done.stdout + done.stderr
    return ScanRun(data, reports, home, done.stdout)
