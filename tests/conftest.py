import itertools
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import dagster as dg
import frictionless
import pandas as pd
import psycopg2
import pyarrow.parquet as pq
import pytest
import yaml

from assets.catalog import CATALOG
from assets.definitions import (
    ALL_ASSETS,
    ALL_CHECKS,
    CATALOG_SELECTION,
    CROSS_WAVE_SELECTION,
    INGEST_SELECTION,
    REPORT_SELECTION,
    WAVE_SELECTION,
    build_definitions,
)
from assets.partitions import waves
from assets.resources import ALL_WAVES, resources_for
from pipeline.instrument.dictionary import PER_WAVE, table_of
from pipeline.lineage.files import RUN_LOCK, exclusive
from pipeline.lineage.settings import Settings

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


# One BLAS thread in every process of the suite: the xdist workers and every `scan` they start
# inherit it from the controller, which sets it before it starts them. Threads sum in another
# order, so the last digits of a fit would otherwise differ between the in-process run and the
# CLI's runs whose files must be byte-identical to it.
os.environ["OPENBLAS_NUM_THREADS"] = "1"


def pytest_configure(config) -> None:
    """Each pytest-xdist worker on a core of its own, with what it starts: `scan run` renders
    the reports in as many processes as it has cores (`os.sched_getaffinity`), and two workers
    that each spread over both cores of a 2-core machine lose more to waiting and to spawning
    report workers than they gain (the suite took 18:50 so, 15:44 pinned)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    count = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    cores = sorted(os.sched_getaffinity(0))
    if worker and count and int(count) <= len(cores):
        os.sched_setaffinity(0, {cores[int(worker.removeprefix("gw")) % len(cores)]})


# The session fixtures that run the whole demo pipeline. With two pytest-xdist workers
# (`--dist loadgroup`) every test that uses one of them goes to the worker of its group, so that
# each runs once per session, not once per worker: the materializations and the killed run on
# one, the CLI's run on the other; both take from the rest of the suite when done.
DEMO_GROUPS = {"pipeline_run": "demo_runs", "killed_run": "demo_runs", "scan_run": "scan_run"}


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook turns the marks into group ids
def pytest_collection_modifyitems(items) -> None:
    for item in items:
        groups = {DEMO_GROUPS[f] for f in getattr(item, "fixturenames", ()) if f in DEMO_GROUPS}
        if len(groups) > 1:
            raise pytest.UsageError(f"{item.nodeid} would run the demo twice: uses {groups}")
        if groups:
            item.add_marker(pytest.mark.xdist_group(groups.pop()))


class DemoRun(NamedTuple):
    settings: Settings
    # by "validate/<wave>" (up to the privacy boundary), wave (from it on), ALL_WAVES,
    # "reports/<wave>" and CATALOG
    results: dict[str, dg.ExecuteInProcessResult]
    automation: tuple  # the automation sensor's evaluations before and after the waves


@pytest.fixture(scope="session")
def pipeline_run(tmp_path_factory) -> DemoRun:
    """The demo through the whole pipeline as `scan run` drives it: every wave up to the
    privacy boundary, then every wave from it on (assets and checks), then the cross-wave
    assets, then each wave's reports, then the catalog."""
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

    # in memory: an automation evaluation takes a fifth of its time on the sqlite files
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(waves.name, WAVES)
        # the automation sensor of `dagster dev` ticks before and after the waves come in
        before = dg.evaluate_automation_conditions(defs=definitions, instance=instance)
        results = {f"validate/{wave}": materialize(INGEST_SELECTION, wave) for wave in WAVES}
        results |= {wave: materialize(WAVE_SELECTION, wave) for wave in WAVES}
        after = dg.evaluate_automation_conditions(
            defs=definitions, instance=instance, cursor=before.cursor
        )
        results[ALL_WAVES] = materialize(CROSS_WAVE_SELECTION, None)
        results |= {f"reports/{wave}": materialize(REPORT_SELECTION, wave) for wave in WAVES}
        results[CATALOG] = materialize(CATALOG_SELECTION, None)
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
    return subprocess.run(
        [SCAN, *args], env=scan_env(home, key), cwd=cwd, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip


def scan_env(home: Path, key: str | None = None) -> dict[str, str]:
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    for name in ("SCAN_DATA_DIR", "SCAN_PSEUDONYM_KEY", "SCAN_PSEUDONYM_KEY_FILE"):
        env.pop(name, None)
    if key:
        env["SCAN_PSEUDONYM_KEY"] = key
    return env


def linked_attack(records: pd.DataFrame, quasi: list[str], m: int | None = None) -> list[int]:
    """The intruder who links the waves (written apart from the pipeline, loop by loop): knows
    of each record the values it shows and every value its person_id shows in any wave, then
    counts, per record, the records of the same wave and company that match it (a variable
    matches when either side knows nothing of it, or both show the same value and know the same
    set of values), on each combination of m quasi-identifiers (None: all), and keeps the
    smallest count. A value withheld ("[suppressed]") tells nothing.
    `records` has person_id (missing: unlinkable), company_id, wave and the quasi-identifiers."""
    rows = records.reset_index(drop=True).replace("[suppressed]", None)
    if "person_id" not in rows:
        rows["person_id"] = None
    known: dict = {}
    for i, row in rows.iterrows():
        person = row["person_id"] if pd.notna(row["person_id"]) else ("row", i)
        for name in quasi:
            if pd.notna(row[name]):
                known.setdefault((person, name), set()).add(row[name])
    profiles = [
        {
            name: frozenset(
                known.get(
                    (row["person_id"] if pd.notna(row["person_id"]) else ("row", i), name), ()
                )
            )
            for name in quasi
        }
        for i, row in rows.iterrows()
    ]
    cell = list(zip(rows["wave"], rows["company_id"].fillna("<none>"), strict=True))
    members: dict = {}
    for i, key in enumerate(cell):
        members.setdefault(key, []).append(i)

    def same(i: int, j: int, name: str) -> bool:
        if not profiles[i][name] or not profiles[j][name]:
            return True
        own = rows.at[i, name], rows.at[j, name]
        shown = pd.isna(own[0]) or pd.isna(own[1]) or own[0] == own[1]
        return shown and profiles[i][name] == profiles[j][name]

    size = len(quasi) if m is None else min(m, len(quasi))
    return [
        min(
            sum(all(same(i, j, n) for n in combo) for j in members[cell[i]])
            for combo in itertools.combinations(quasi, size)
        )
        for i in range(len(rows))
    ]


def typo_links(frame: pd.DataFrame, key: pd.Series, consistent: list[str]) -> pd.DataFrame:
    """Per mistyped row (`typo`) of a person (`person`, the truth) with another row: whether the
    person has one `key` over all their rows (recovered), and whether every other row shares an
    answered background variable of `consistent` with it (so the panel linkage has evidence to
    go on, pipeline/privacy/linkage.py)."""
    linked = frame.assign(key=key)
    keys = linked.groupby("person")["key"].nunique()
    answered = linked[consistent].apply(pd.to_numeric).gt(0)  # codes, not missing codes
    table = []
    for i, person in linked.loc[linked["typo"], "person"].items():
        others = linked.index[(linked["person"] == person) & (linked.index != i)]
        if len(others):
            shared = (answered.loc[others] & answered.loc[i]).any(axis=1).all()
            table.append({"recovered": keys[person] == 1, "evidence": bool(shared)})
    return pd.DataFrame(table, columns=["recovered", "evidence"])


def whole_tokens(words) -> re.Pattern:
    """A regular expression that finds any of `words` as a whole token (a longitude 4.7085 is
    not in 14.708512), written as a trie of their characters: thousands of alternatives in a
    row make `re` try each at every position, a trie one branch."""
    tree: dict = {}
    for word in words:
        node = tree
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}

    def pattern(node: dict) -> str:
        branches = [re.escape(c) + pattern(rest) for c, rest in sorted(node.items()) if c]
        if not branches:
            return ""
        if "" in node:
            branches.append("")  # a word ends here, and longer ones go on: longest first
        return branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"

    if not tree:
        return re.compile(r"(?!)")  # nothing to find
    return re.compile(rf"(?<![\w.])(?:{pattern(tree)})(?!\w)")


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


def postgres_admin(statement: str) -> None:
    """Run a statement on the server's `postgres` database, outside a transaction (as CREATE
    and DROP DATABASE need)."""
    connection = postgres_connect(postgres_server())
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(statement)
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


def write_postgres_instance(home: Path, database: str) -> None:
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


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for the session, dropped at its end. Fails
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
    postgres_admin(f'DROP DATABASE IF EXISTS "{session}" WITH (FORCE)')


@pytest.fixture(scope="session")
def scan_run(tmp_path_factory) -> ScanRun:
    """`scan run` on a copy of the demo, as a data steward starts it: the whole pipeline."""
    root = tmp_path_factory.mktemp("scan_run")
    data, reports, home = root / "data", root / "reports", root / "home"
    shutil.copytree(DEMO_RAW, data / "raw", ignore=shutil.ignore_patterns("_staging"))
    done = scan("--data-dir", str(data), "--reports-dir", str(reports), "run", home=home, cwd=root)
    assert done.returncode == 0, done.stdout + done.stderr
    return ScanRun(data, reports, home, done.stdout)


class KilledRun(NamedTuple):
    data: Path
    reports: Path
    home: Path  # DAGSTER_HOME, on the production instance (PostgreSQL)
    refused: subprocess.CompletedProcess  # a second `scan run` while the first ran
    left: list[Path]  # the files the killed run left
    rerun: str  # what the next `scan run --wait` printed
    rerun_code: int


def wait_for(condition, what: str, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout} s for {what}")
        time.sleep(0.2)


@pytest.fixture(scope="session")
def killed_run(tmp_path_factory, postgres_database) -> KilledRun:
    """`scan run` on a fresh copy of the demo, on the production instance (deploy/dagster.yaml,
    PostgreSQL), frozen (SIGSTOP) and then killed with its report workers (SIGKILL to its process
    group) once the reports stage writes the last wave's company reports; a second `scan run`
    tried meanwhile; then, holding the data folder's lock, the files left are listed and `scan
    run --wait` started, which goes on when the lock is let go and completes the pipeline."""
    root = tmp_path_factory.mktemp("killed")
    data, reports, home = root / "data", root / "reports", root / "home"
    shutil.copytree(DEMO_RAW, data / "raw", ignore=shutil.ignore_patterns("_staging"))
    write_postgres_instance(home, postgres_database)
    command = [SCAN, "--data-dir", str(data), "--reports-dir", str(reports), "run"]
    first_log, rerun_log = root / "first.log", root / "rerun.log"
    with open(first_log, "w") as out:
        first = subprocess.Popen(
            command, env=scan_env(home), cwd=root, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        # in the last wave's report run: what the next run has to redo is that run and the catalog
        last = reports / WAVES[-1] / "companies"
        wait_for(lambda: any(last.glob("*.html")), "a company report of the last wave")
        # frozen first, so that it cannot finish while the second `scan run` starts up (which
        # takes seconds on a loaded machine); the lock stays held
        os.killpg(first.pid, signal.SIGSTOP)
        refused = scan(*command[1:], home=home, cwd=root)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    with exclusive(data / RUN_LOCK), open(rerun_log, "w") as out:
        left = [p for p in (*data.rglob("*"), *reports.rglob("*")) if p.is_file()]
        rerun = subprocess.Popen(
            [*command, "--wait"], env=scan_env(home), cwd=root, stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        wait_for(lambda: "waiting for the other" in rerun_log.read_text(), "scan run --wait", 120)
        assert rerun.poll() is None, rerun_log.read_text()  # it waits while the lock is held
    code = rerun.wait(timeout=600)
    return KilledRun(data, reports, home, refused, left, rerun_log.read_text(), code)


def contract_files(processed: Path) -> dict[str, list[str]]:
    """Every table of the contract on disk: its path under `processed` and its columns."""
    found = {}
    for folder in sorted(p for p in processed.iterdir() if p.is_dir() and p.name != "_versions"):
        kind = ALL_WAVES if folder.name == ALL_WAVES else PER_WAVE
        for path in sorted(folder.iterdir()):
            if table_of(kind, path.name) is not None:
                frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
                found[f"{folder.name}/{path.name}"] = list(frame.columns)
    return found


def readme_columns(text: str) -> dict[str, list[str]]:
    """Per section of data/processed/README.md (`<wave>/file` or `all_waves/file`), the
    columns its table lists."""
    sections = re.split(r"^## `([^`]+)`$", text, flags=re.M)[1:]
    return {
        title: re.findall(r"^\| `([^`]+)` \|", body, flags=re.M)
        for title, body in zip(sections[::2], sections[1::2], strict=True)
    }


def check_dictionary(processed: Path) -> dict:
    """What every run's dictionary must satisfy, against the files on disk; returns the
    package for further checks."""
    package = json.loads((processed / "datapackage.json").read_text(encoding="utf-8"))
    on_disk = contract_files(processed)
    described = {
        r["path"]: [f["name"] for f in r["schema"]["fields"]] for r in package["resources"]
    }
    assert described == on_disk  # every table, every column, in order; nothing absent
    for resource in package["resources"]:
        for field in resource["schema"]["fields"]:
            assert field["description"].strip() and field["type"], (resource["path"], field)
    report = frictionless.Package(package, basepath=str(processed)).validate()
    assert report.valid, report.flatten(["resourcePath", "fieldName", "type", "note"])[:5]
    # the README: per file (waves together), the columns of its files, nothing else
    readme = readme_columns((processed / "README.md").read_text(encoding="utf-8"))
    expected: dict[str, list[str]] = {}
    for path, columns in on_disk.items():
        folder, file = path.split("/", 1)
        title = path if folder == ALL_WAVES else f"<wave>/{file}"
        expected.setdefault(title, [])
        expected[title] += [c for c in columns if c not in expected[title]]
    assert readme == expected
    # the parquet files carry the same descriptions
    by_path = {r["path"]: r for r in package["resources"]}
    for path in (p for p in on_disk if p.endswith(".parquet")):
        schema = pq.read_schema(processed / path)
        stored = {f.name: f.metadata[b"description"].decode() for f in schema}
        assert stored == {f["name"]: f["description"] for f in by_path[path]["schema"]["fields"]}
    return package
