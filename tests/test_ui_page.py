"""The Dagster UI's asset page of a shareable table as a researcher opens it after `scan run`:
`dagster-webserver` on the CLI's instance and the project's workspace, the page in headless
Chromium. Its Overview shows the latest materialization's column schema
(`dagster/column_schema`, which the shareable IO manager writes from the data dictionary): every
column of the file, with the dictionary's description. That the metadata is in the instance is
checked in tests/instrument/test_dictionary.py; this checks what the UI makes of it."""

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import matplotlib.image
import pyarrow.parquet as pq
import yaml
from browser import html_tables, run_chromium
from conftest import ROOT, scan_env

WEBSERVER = str(Path(sys.executable).parent / "dagster-webserver")
ASSET = "anonymised_responses"
# Apollo Client's notice, which the UI's bundle logs on every page; any other console message
# (a failed query, a resource it could not load offline) fails the test
APOLLO_NOTICE = '"Download the Apollo DevTools for a better development experience'
LOCATIONS = """{ workspaceOrError { ... on Workspace { locationEntries {
  name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }"""
# the loopback server directly, whatever proxy the environment names
LOCAL = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def location_entries(base: str) -> list[dict]:
    request = urllib.request.Request(
        f"{base}/graphql", data=json.dumps({"query": LOCATIONS}).encode(),
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    with LOCAL.open(request, timeout=10) as response:
        return json.load(response)["data"]["workspaceOrError"]["locationEntries"]


@contextlib.contextmanager
def webserver(home: Path, data: Path, reports: Path, log: Path) -> Iterator[str]:
    """`dagster-webserver` (read-only) on the instance in `home` and the project's workspace,
    its code location on `data` and `reports`; yields its address once the code location is
    loaded, and stops it with its code server."""
    env = scan_env(home) | {"SCAN_DATA_DIR": str(data), "SCAN_REPORTS_DIR": str(reports)}
    base = f"http://127.0.0.1:{free_port()}"
    command = [WEBSERVER, "-h", "127.0.0.1", "-p", base.rsplit(":", 1)[1],
               "-w", str(ROOT / "workspace.yaml"), "--read-only"]  # fmt: skip
    with open(log, "w") as out:
        server = subprocess.Popen(
            command, env=env, cwd=log.parent, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, f"dagster-webserver exited:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"no answer in 120 s:\n{log.read_text()}"
            with contextlib.suppress(OSError):
                LOCAL.open(f"{base}/server_info", timeout=2).close()
                entries = location_entries(base)
                if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                    break
            time.sleep(0.5)
        for entry in entries:
            loaded = entry["locationOrLoadError"]
            assert loaded["__typename"] == "RepositoryLocation", (entry["name"], loaded)
        yield base
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def test_the_asset_page_shows_each_column_with_its_description(scan_run, chromium, tmp_path):
    # a copy of the session's instance, so that the server writes nothing into it, without the
    # first-visit dialog (`nux`) that the UI would lay over the page on 127.0.0.1
    home = tmp_path / "home"
    shutil.copytree(scan_run.home, home)
    config = yaml.safe_load((home / "dagster.yaml").read_text()) or {}
    (home / "dagster.yaml").write_text(yaml.safe_dump(config | {"nux": {"enabled": False}}))
    with dg.DagsterInstance.from_config(str(home)) as instance:
        latest = instance.fetch_materializations(dg.AssetKey(ASSET), limit=1).records[0]
    path = Path(latest.asset_materialization.metadata["path"].value)
    processed = scan_run.data / "processed"
    package = json.loads((processed / "datapackage.json").read_text())
    (resource,) = [
        r for r in package["resources"] if r["path"] == path.relative_to(processed).as_posix()
    ]
    # as the UI renders a description (Markdown): code spans without their backticks
    expected = [
        (field["name"], " ".join(field["description"].replace("`", "").split()))
        for field in resource["schema"]["fields"]
    ]
    assert [name for name, _ in expected] == pq.read_schema(path).names

    shot, dom = tmp_path / "shot.png", tmp_path / "dom.html"
    with webserver(home, scan_run.data, scan_run.reports, tmp_path / "webserver.log") as base:
        logs = run_chromium(
            chromium, f"{base}/assets/{ASSET}?view=overview", tmp_path / "p",
            f"--screenshot={shot}", "--window-size=1400,2000", "--virtual-time-budget=30000",
            dom=dom,
        )  # fmt: skip
    console = [line for line in logs.splitlines() if ":CONSOLE" in line]
    assert not [line for line in console if APOLLO_NOTICE not in line], logs
    assert matplotlib.image.imread(shot)[..., :3].std() > 0.05, "blank screenshot"
    page = dom.read_text()
    assert "Join the Dagster community" not in page  # the screenshot shows the page itself
    (columns,) = [
        t for t in html_tables(page) if t and t[0] == ["Column name", "Type", "Description"]
    ]
    shown = [(row[0], " ".join(row[2].split())) for row in columns[1:]]
    assert shown == expected
