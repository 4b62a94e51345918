"""Reproducibility and lineage: the same inputs and code give the same files."""

import csv
import hashlib
import json
import re
import shutil
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
from conftest import DEMO_RAW, WAVES, scan, statuses
from rocrate.rocrate import ROCrate

from assets.definitions import ALL_ASSETS, ALL_CHECKS, build_definitions
from assets.lineage import MANIFEST, TraceError, trace
from assets.privacy import panel_linkage, privacy_boundary
from assets.resources import ALL_WAVES, resources_for
from assets.scores import scale_scores
from assets.staleness import pipeline_status
from pipeline.instrument.codebook import load_codebook
from pipeline.lineage.files import keep_version
from pipeline.lineage.fingerprint import sha256_file
from pipeline.lineage.settings import Settings
from pipeline.privacy.pseudonyms import DEMO_KEY

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


def scramble(export: Path, items: tuple[str, ...]) -> None:
    """Shuffle each item's answers over the respondents of a Qualtrics CSV export (three header
    rows): the same answers, but the scale's items no longer go together (alpha near 0)."""
    with export.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.reader(handle))
    header, answers = rows[:3], rows[3:]
    rng = np.random.default_rng(16)
    for item in items:
        column = header[0].index(item)
        for row, value in zip(answers, rng.permutation([r[column] for r in answers]), strict=True):
            row[column] = value
    with export.open("w", encoding="utf-8-sig", newline="") as handle:
        csv.writer(handle).writerows(header + answers)


def test_a_changed_export_makes_its_wave_and_all_that_is_protected_with_it_stale(copied_run):
    """A changed export makes its wave stale, every wave from the privacy boundary on (the
    waves are anonymised together), the cross-wave assets and the reports; nothing else.
    Also issue #16.8: the export's answers of one scale are shuffled, so the rerun's summary
    lists the warning-level check that fails (alpha under .60) under the wave."""
    data, reports, home = copied_run
    export = next((data / "raw" / "2021-T1").glob("*.csv"))
    scale = load_codebook(data / "raw" / "codebook.yaml").scales["LT"]
    scramble(export, scale.items)
    key = DEMO_KEY.decode()  # the same key as before, now named explicitly (not the demo's data)
    found = status(data, reports, home, key=key)
    stale = {where for where, reason in found.items() if reason != "up to date"}
    assert found[("raw_responses", "2021-T1")] == f"changed file 2021-T1/{export.name}"
    assert found[("validated_responses", "2021-T1")] == "upstream raw_responses changed"
    graph = build_definitions(Settings(data, reports)).resolve_asset_graph()
    # from the privacy boundary on, and the panel linkage's report beside it (it reads the
    # validated rows of every wave, as the anonymisation does)
    protected = (
        dg.AssetSelection.assets(privacy_boundary, panel_linkage).downstream().resolve(graph)
    )
    expected = {(asset, wave) for asset, wave in found if wave == "2021-T1"}
    expected |= {(k.to_user_string(), w) for k in protected for _, w in found} & set(found)
    assert stale == expected

    rerun = scan(
        "--data-dir", str(data), "--reports-dir", str(reports), "run",
        home=home, cwd=data.parent, key=key,
    )  # fmt: skip
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert statuses(rerun.stdout) == {
        **dict.fromkeys(WAVES, "materialized"),
        "all_waves": "materialized",
        **{f"reports/{wave}": "materialized" for wave in WAVES},
        "catalog": "materialized",
    }
    wave_line = next(x for x in rerun.stdout.splitlines() if x.startswith("2021-T1 "))
    assert f"(raw_responses: changed file 2021-T1/{export.name}; " in wave_line
    assert len(wave_line) < 250, wave_line  # short: the runs and the first cause
    warnings = [x.strip() for x in rerun.stdout.splitlines() if "warning:" in x]
    assert len(warnings) == 1, rerun.stdout  # the other waves' checks passed
    assert warnings[0].startswith('warning: alpha_at_least_060 on reliability: below_060 {"LT": ')
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
    """As if `pipeline/instrument/scoring.py` had changed: scale_scores gets a new code version."""
    data, reports, home = copied_run
    changed = [
        a.map_asset_specs(lambda spec: spec.replace_attributes(code_version="edited"))
        if scale_scores.key in a.keys
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
        raw = entities[f"#raw/{wave}/export-1"]  # the wave's one export, by a neutral id
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
    for asset in ("reliability", "pseudonymised_responses", "validated_responses", "raw_responses"):
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


def in_process_status(data: Path, reports: Path, home: Path, monkeypatch) -> dict:
    """`scan status`'s reasons, read in this process (the CLI prints exactly these)."""
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    settings = Settings(data, reports)
    with dg.DagsterInstance.get() as instance:
        return pipeline_status(instance, build_definitions(settings), settings)


def test_a_deleted_output_is_named_by_status_and_written_again_by_scan_run(copied_run, monkeypatch):
    """Issue #16.5: deleting a wave's shareable responses left status at "up to date" and
    `scan run` did nothing; now status names the file and the run writes it again, the same."""
    data, reports, home = copied_run
    deleted = data / "processed" / WAVES[0] / "responses.parquet"
    before = sha256_file(deleted)
    deleted.unlink()
    found = in_process_status(data, reports, home, monkeypatch)
    assert found[("anonymised_responses", WAVES[0])].startswith(
        f"output missing: processed/{WAVES[0]}/responses.parquet"
    )
    assert found[("responses_sav", WAVES[0])] == "upstream anonymised_responses changed"

    rerun = scan(
        "--data-dir", str(data), "--reports-dir", str(reports), "run", home=home, cwd=data.parent
    )  # fmt: skip
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert statuses(rerun.stdout)[WAVES[0]] == "materialized"
    assert "anonymised_responses: output missing" in rerun.stdout
    assert sha256_file(deleted) == before  # the same content: nothing downstream is redone
    assert statuses(rerun.stdout)["all_waves"] == "up to date"
    assert set(in_process_status(data, reports, home, monkeypatch).values()) == {""}


def test_a_changed_output_is_named_by_status_verify_and_trace(copied_run, monkeypatch):
    """Issue #16.5 and 10: an output edited by hand, and a report deleted, are named by `scan
    status` and `scan verify` (exit 1), and `scan trace` says the number it reads changed."""
    data, reports, home = copied_run
    wave = WAVES[1]
    table = data / "processed" / wave / "reliability.csv"
    stored = pd.read_csv(table, dtype=str)
    edited = stored.assign(alpha=stored["alpha"].where(stored["scale"] != "LT", "0.99"))
    edited.to_csv(table, index=False)
    (reports / wave / "wave_report.html").unlink()
    found = in_process_status(data, reports, home, monkeypatch)
    assert found[("reliability", wave)].startswith(
        f"output changed by hand: processed/{wave}/reliability.csv"
    )
    assert found[("wave_report", wave)].startswith(
        f"output missing: reports/{wave}/wave_report.html"
    )

    done = scan("--data-dir", str(data), "--reports-dir", str(reports), "verify", home=home,
                cwd=data.parent)  # fmt: skip
    assert done.returncode == 1
    problems = [line.split()[:2] for line in done.stdout.splitlines()[:-2]]
    assert problems == [
        ["CHANGED", f"processed/{wave}/reliability.csv"],
        ["MISSING", f"reports/{wave}/wave_report.html"],
    ]
    assert ", 1 missing, 1 changed since their run" in done.stdout

    number = f"reliability[{wave}](LT).alpha"
    done = scan("--data-dir", str(data), "--reports-dir", str(reports), "trace", number,
                home=home, cwd=data.parent)  # fmt: skip
    assert done.returncode == 0, done.stderr
    first, *rest = done.stdout.splitlines()
    assert first.startswith(f"{number} = 0.99 (from processed/{wave}/reliability.csv, changed")
    line = next(x for x in rest if f"file processed/{wave}/reliability.csv" in x)
    assert "CHANGED since run " in line and f"now sha256 {sha256_file(table)}" in line
    assert f"file raw/_staging/pseudonymised_responses/{wave}.parquet sha256 " in done.stdout
    assert all(x.endswith(" verified") for x in rest if " sha256 " in x and x is not line)


def test_a_dagster_home_pointed_at_a_new_data_folder_finds_the_outputs_missing(
    scan_run, tmp_path, monkeypatch
):
    """Issue #16.5: the instance of a finished run, used for a new data folder with the same
    exports, said "up to date" and wrote nothing; now every output is missing there."""
    home, data = tmp_path / "home", tmp_path / "elsewhere" / "data"
    shutil.copytree(scan_run.home, home)
    shutil.copytree(scan_run.data / "raw", data / "raw", ignore=shutil.ignore_patterns("_staging"))
    found = in_process_status(data, tmp_path / "elsewhere" / "reports", home, monkeypatch)
    assert all(found.values()), [where for where, reason in found.items() if not reason]
    assert found[("raw_responses", WAVES[0])] == (
        f"output missing: raw/_staging/raw_responses/{WAVES[0]}.parquet "
        f"(made for the data folder {scan_run.data})"
    )


def test_a_key_change_stopped_partway_leaves_what_the_old_pseudonyms_made_stale(
    copied_run, monkeypatch
):
    """Issue #16.4: after a new key, a run that redid the shareable responses and stopped
    there left the scores and reports on the old pseudonyms while status said up to date."""
    data, reports, home = copied_run
    settings = Settings(data, reports)
    monkeypatch.setenv("SCAN_PSEUDONYM_KEY", "another-key-for-this-test-0123456789")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get() as instance:
        for wave in WAVES:  # the run that stopped after anonymisation
            done = dg.materialize(
                [*ALL_ASSETS, *ALL_CHECKS],
                selection=dg.AssetSelection.assets(privacy_boundary),
                partition_key=wave,
                instance=instance,
                resources=resources_for(settings),
            )
            assert done.success
        found = pipeline_status(instance, build_definitions(settings), settings)
    folder = data / "processed" / WAVES[0]
    shared = pd.read_parquet(folder / "responses.parquet")["person_id"]
    scored = pd.read_parquet(folder / "scale_scores.parquet")["person_id"]
    assert not set(shared.dropna()) & set(scored.dropna())  # half applied: other pseudonyms
    assert {found[("anonymised_responses", w)] for w in WAVES} == {""}
    assert found[("scale_scores", WAVES[0])] == "upstream pseudonymised_responses changed"
    downstream = {
        k.to_user_string()
        for k in dg.AssetSelection.assets(privacy_boundary)
        .downstream(include_self=False)
        .resolve(build_definitions(settings).resolve_asset_graph())
    }
    assert downstream >= REPORT_ASSETS
    not_redone = [(a, w) for (a, w), reason in found.items() if a in downstream and not reason]
    assert not not_redone


def test_scan_verify_finds_every_output_of_a_run_as_recorded(scan_run):
    """Issue #16.10: every file the run wrote (outside `_versions/`) is in the catalog, and
    on disk as recorded."""
    data, reports, home, _ = scan_run
    done = scan("--data-dir", str(data), "--reports-dir", str(reports), "verify", home=home,
                cwd=data.parent)  # fmt: skip
    assert done.returncode == 0, done.stdout
    written = [
        p
        for root in (data / "processed", data / "raw" / "_staging", reports)
        for p in root.rglob("*")
        if p.is_file() and "_versions" not in p.parts
    ]
    assert len(written) > 250
    counted = re.search(
        r"^(\d+) files of \d+ asset partitions: (\d+) as recorded", done.stdout, re.M
    )
    assert counted and counted.groups() == (str(len(written)), str(len(written)))


def test_scan_trace_reads_a_parquet_table(scan_run, monkeypatch):
    """Issue #16.10: a number of a parquet table (scale scores) traced, not a traceback."""
    data, reports, home, _ = scan_run
    wave = WAVES[1]
    scores = pd.read_parquet(data / "processed" / wave / "scale_scores.parquet")
    person, value = scores["person_id"].iloc[0], scores["LT"].iloc[0]
    number = f"scale_scores[{wave}]({person}).LT"
    done = scan("--data-dir", str(data), "trace", number, home=home, cwd=data.parent)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == f"{number} = {value}"
    assert f"file processed/{wave}/scale_scores.parquet sha256 " in done.stdout
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    settings = Settings(data, reports)
    with dg.DagsterInstance.get() as instance, pytest.raises(TraceError, match="restricted zone"):
        trace(
            instance, build_definitions(settings), settings, f"validated_responses[{wave}](x).LT1"
        )
