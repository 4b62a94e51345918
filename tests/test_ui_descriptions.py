"""The Dagster UI tells the same story as the code: every asset, asset check, sensor and job of
the code location has a description, none loses text to the UI's Markdown (where `<wave>` is an
HTML tag), and `scan run`'s stages are named jobs that together make every asset once.

That `scan run` launches its runs through these jobs is checked on its runs' records, in
`tests/test_cli.py` (test_scan_run_materializes_each_wave_once_and_runs_show_in_the_instance).
"""

import re

import dagster as dg

from assets.cli import QUIET_LOGS
from assets.definitions import (
    CATALOG_JOB,
    CATALOG_SELECTION,
    CROSS_WAVE_JOB,
    CROSS_WAVE_SELECTION,
    INGEST_SELECTION,
    PROTECT_JOB,
    REPORT_JOB,
    REPORT_SELECTION,
    SCAN_RUN_JOBS,
    VALIDATE_JOB,
    WAVE_SELECTION,
    defs,
)
from assets.partitions import waves

CODE_SPAN = re.compile(r"`[^`]*`")
# what an HTML renderer takes for a tag (and drops): <wave>, </b>, <a href="...">
TAG = re.compile(r"</?[A-Za-z][\w.:-]*(?:\s[^<>]*)?/?>")


def raw_tags(text: str) -> list[str]:
    """The tags of a description outside its code spans, which the UI would swallow."""
    return TAG.findall(CODE_SPAN.sub("", text))


def descriptions() -> dict[str, str | None]:
    """What the UI describes, by kind and name: every asset, asset check, sensor and job (not
    Dagster's own, `__ASSET_JOB`)."""
    graph = defs.resolve_asset_graph()
    found: dict[str, str | None] = {}
    for spec in defs.resolve_all_asset_specs():
        found[f"asset {spec.key.to_user_string()}"] = spec.description
    for key in graph.asset_check_keys:
        found[f"check {key.to_user_string()}"] = graph.get_check_spec(key).description
    for sensor in defs.sensors or []:
        found[f"sensor {sensor.name}"] = sensor.description
    for job in defs.resolve_all_job_defs():
        if not job.name.startswith("__"):
            found[f"job {job.name}"] = job.description
    return found


def test_the_tag_finder_finds_what_the_ui_would_swallow():
    assert raw_tags("exports under data/raw/<wave>/ and <b>bold</b>") == ["<wave>", "<b>", "</b>"]
    assert raw_tags("exports under `data/raw/<wave>/`, `<reports>/<wave>/\ncompanies/`") == []
    assert raw_tags("alpha < .60, n >= k, a -> b, <= 5") == []


def test_every_asset_check_sensor_and_job_has_a_description():
    found = descriptions()
    kinds = {name.split()[0] for name in found}
    assert kinds == {"asset", "check", "sensor", "job"}
    assert sum(name.startswith("check ") for name in found) == len(
        defs.resolve_asset_graph().asset_check_keys
    )
    assert {"sensor wave_files_sensor", "sensor cross_wave_sensor"} <= set(found)
    missing = sorted(name for name, text in found.items() if not (text or "").strip())
    assert not missing, f"without a description: {missing}"


def test_no_description_holds_a_tag_outside_backticks():
    swallowed = {
        name: raw_tags(text) for name, text in descriptions().items() if raw_tags(text or "")
    }
    assert not swallowed, f"put these in backticks: {swallowed}"


def test_scan_run_has_a_named_job_per_stage_and_they_make_every_asset_once():
    jobs = {job.name: job for job in defs.resolve_all_job_defs()}
    graph = defs.resolve_asset_graph()
    stages = [
        (VALIDATE_JOB, "validate_wave", INGEST_SELECTION),
        (PROTECT_JOB, "protect_wave", WAVE_SELECTION),
        (CROSS_WAVE_JOB, "cross_wave", CROSS_WAVE_SELECTION),
        (REPORT_JOB, "wave_reports", REPORT_SELECTION),
        (CATALOG_JOB, "catalog", CATALOG_SELECTION),
    ]
    for job, name, selection in stages:
        assert job in SCAN_RUN_JOBS and job.name == name and job.selection == selection
    assert len({job.name for job in SCAN_RUN_JOBS}) == len(SCAN_RUN_JOBS)
    for job in SCAN_RUN_JOBS:
        resolved = jobs[job.name]  # in the code location, so the UI lists it with its runs
        assert not job.name.startswith("__") and resolved.description == job.description
        # a run per wave where its assets have one partition per wave, else one run
        partitioned = {graph.get(key).partitions_def for key in job.selection.resolve(graph)}
        assert partitioned == {resolved.partitions_def}
        assert resolved.partitions_def in (None, waves)
        dg.validate_run_config(resolved, QUIET_LOGS)  # the run config `scan run` gives it
    assert jobs[VALIDATE_JOB.name].partitions_def == waves
    assert jobs[CROSS_WAVE_JOB.name].partitions_def is None
    assets = [job.selection.resolve(graph) for job in SCAN_RUN_JOBS]
    checks = [job.selection.resolve_checks(graph) for job in SCAN_RUN_JOBS]
    every_asset = {spec.key for spec in defs.resolve_all_asset_specs()}
    assert sum(map(len, assets)) == len(every_asset) and set().union(*assets) == every_asset
    assert sum(map(len, checks)) == len(graph.asset_check_keys)
    assert set().union(*checks) == graph.asset_check_keys
