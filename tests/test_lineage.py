"""Reproducibility and lineage: the same inputs and code give the same files."""

import hashlib
import json
import re
import shutil
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from conftest import DEMO_RAW, WAVES, scan, statuses
from rocrate.rocrate import ROCrate

from assets.definitions import ALL_ASSETS, ALL_CHECKS
from assets.lineage import MANIFEST
from assets.resources import ALL_WAVES, resources_for
from assets.scores import scale_scores
from assets.staleness import pipeline_status
from pipeline.files import keep_version
from pipeline.fingerprint import sha256_file
from pipeline.pseudonyms import DEMO_KEY
from pipeline.settings import Settings

REPORT_ASSETS = {
    "company_report_numbers",
    "company_reports",
    "wave_report_numbers",
    "wave_report",
    "provenance_manifest",
}


def digests(root) -> dict[str, str]:
    """sha256 of every file under `root`, but the provenance manifests: they hold run ids."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != MANIFEST
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


def test_an_overwritten_output_stays_as_a_version(tmp_path):
    zone, path = tmp_path / "processed", tmp_path / "processed" / "2021-T1" / "reliability.csv"
    path.parent.mkdir(parents=True)
    path.write_text("scale,alpha\nLT,0.79\n")
    first = keep_version(path, zone)
    path.write_text("scale,alpha\nLT,0.81\n")
    second = keep_version(path, zone)
    assert first != second and first.parent == second.parent == zone / "_versions"
    assert first.read_text() == "scale,alpha\nLT,0.79\n"
    assert second.read_text() == path.read_text()
    assert keep_version(path, zone) == second and len(list(second.parent.iterdir())) == 2


def test_changed_code_of_one_stage_marks_exactly_its_downstream_stale(copied_run, monkeypatch):
    """As if `pipeline/scoring.py` had changed: scale_scores gets a new code version."""
    data, reports, home = copied_run
    changed = [
        a.map_asset_specs(lambda spec: spec.replace_attributes(code_version="edited"))
        if a is scale_scores
        else a
        for a in ALL_ASSETS
    ]
    definitions = dg.Definitions(
        assets=changed, asset_checks=ALL_CHECKS, resources=resources_for(Settings(data, reports))
    )
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get() as instance:
        found = pipeline_status(instance, definitions, Settings(data, reports))
        downstream = {
            k.to_user_string()
            for k in dg.AssetSelection.assets(scale_scores)
            .downstream()
            .resolve(definitions.resolve_asset_graph())
        }
    stale = {(asset, wave): reason for (asset, wave), reason in found.items() if reason}
    assert {asset for asset, _ in stale} == downstream
    assert {stale[("scale_scores", w)] for w in WAVES} == {"code changed"}
    assert stale[("company_scores", WAVES[0])] == "upstream scale_scores changed"


def test_each_wave_has_a_run_crate_tracing_its_reports_to_the_raw_files(pipeline_run):
    settings, results, _ = pipeline_run
    truth = json.loads((DEMO_RAW / "_demo_truth" / "truth.json").read_text())["waves"]
    for wave in WAVES:
        folder = settings.reports_dir / wave
        crate = ROCrate(folder)
        entities = {e.id: e for e in crate.get_entities()}
        raw = entities[f"#raw/{truth[wave]['source_file']}"]
        assert raw["sha256"] == truth[wave]["source_sha256"]
        runs = {e["identifier"] for e in entities.values() if e.type == "CreateAction"}
        assert {results[wave].run_id, results[ALL_WAVES].run_id} <= runs
        report = entities["wave_report.html"]
        assert report["sha256"] == sha256_file(folder / "wave_report.html")
        text = (folder / MANIFEST).read_text()
        assert "key_id" in text and DEMO_KEY.decode() not in text
        context = json.loads(text)["@context"]
        assert context[0] == "https://w3id.org/ro/crate/1.1/context"


def test_scan_trace_follows_a_number_of_the_report_to_the_raw_file(scan_run):
    data, reports, home, _ = scan_run
    wave = WAVES[1]
    html = (reports / wave / "wave_report.html").read_text()
    number = re.search(r"<code>(reliability\[[^<&]+)</code>", html).group(1)  # the example
    assert number == f"reliability[{wave}](LT).alpha"  # the appendix's example id
    done = scan("--data-dir", str(data), "trace", number, home=home, cwd=data.parent)
    assert done.returncode == 0, done.stderr
    stored = pd.read_csv(data / "processed" / wave / "reliability.csv", dtype=str)
    alpha = stored.set_index("scale").loc["LT", "alpha"]
    assert done.stdout.splitlines()[0] == f"{number} = {alpha}"
    assert f"{float(alpha):.3f}" in html  # the number the report shows
    truth = json.loads((DEMO_RAW / "_demo_truth" / "truth.json").read_text())["waves"][wave]
    assert f"raw {truth['source_file']} sha256 {truth['source_sha256']}" in done.stdout
    for asset in ("reliability", "anonymised_responses", "validated_responses", "raw_responses"):
        assert f"  {asset}[{wave}]: run " in done.stdout

    number = f"wave_report_numbers[{wave}](descriptives,LT,mean).value"  # computed for the report
    done = scan("--data-dir", str(data), "trace", number, home=home, cwd=data.parent)
    assert done.returncode == 0, done.stderr
    mean = float(done.stdout.splitlines()[0].split(" = ")[1])
    assert f"{mean:.2f}" in html
    assert f"  scale_scores[{wave}]: run " in done.stdout
    number = "measurement_invariance[all_waves](metric).cfi"  # a cross-wave number of the report
    done = scan("--data-dir", str(data), "trace", number, home=home, cwd=data.parent)
    assert done.returncode == 0, done.stderr
    assert f"  raw_responses[{WAVES[0]}]: run " in done.stdout  # every wave's exports

    wrong = scan("--data-dir", str(data), "trace", "reliability[2021-T1](XX).alpha", home=home,
                 cwd=data.parent)  # fmt: skip
    assert wrong.returncode != 0 and "no single row ['XX']" in wrong.stderr


def test_scan_trace_follows_a_number_of_a_company_report_to_the_raw_file(scan_run):
    data, reports, home, _ = scan_run
    wave = WAVES[2]
    numbers = pd.read_csv(data / "processed" / wave / "company_report_numbers.csv", dtype=str)
    row = numbers[(numbers["scale"] == "LT") & numbers["change"].notna()].iloc[0]
    html = (reports / wave / "companies" / f"{row['company_id']}.html").read_text()
    ids = re.findall(r"<code>(company_report_numbers\[[^<]+?)\.&lt;kolom&gt;</code>", html)
    assert f"company_report_numbers[{wave}]({row['company_id']},LT)" in ids
    for column in ("mean", "change"):
        number = f"company_report_numbers[{wave}]({row['company_id']},LT).{column}"
        done = scan("--data-dir", str(data), "trace", number, home=home, cwd=data.parent)
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines()[0] == f"{number} = {row[column]}"
        shown = f"{abs(float(row[column])):.2f}".replace(".", ",")
        assert shown in html  # as the report shows it, with a decimal comma
    truth = json.loads((DEMO_RAW / "_demo_truth" / "truth.json").read_text())["waves"][wave]
    assert f"raw {truth['source_file']} sha256 {truth['source_sha256']}" in done.stdout
    for asset in ("company_report_numbers", "scale_scores", "company_scores", "raw_responses"):
        assert f"  {asset}[{wave}]: run " in done.stdout
