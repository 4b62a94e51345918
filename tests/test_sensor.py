"""The wave sensor: a new wave folder adds a partition; a changed file (sha256) requests a run;
a touched file (mtime only) does not."""

import os
import shutil

import dagster as dg
import pytest

from assets.definitions import (
    ALL_ASSETS,
    ALL_CHECKS,
    INGEST_ASSETS,
    INGEST_SELECTION,
    build_definitions,
)
from assets.ingest import raw_responses
from assets.partitions import waves
from assets.resources import resources_for
from assets.sensors import wave_files_sensor
from pipeline.lineage.settings import Settings

WAVES = ["2019-T0", "2021-T1", "2022-T2"]


def tick(instance, settings, cursor):
    with dg.build_sensor_context(
        instance=instance, cursor=cursor, resources=resources_for(settings)
    ) as context:
        result = wave_files_sensor(context)
    for request in result.dynamic_partitions_requests:
        instance.add_dynamic_partitions(request.partitions_def_name, request.partition_keys)
    return result


def added(result):
    return [key for r in result.dynamic_partitions_requests for key in r.partition_keys]


def requested(result):
    return sorted(r.partition_key for r in result.run_requests)


def test_sensor_adds_waves_and_reacts_to_content_not_mtime(demo_data, instance, tmp_path):
    hold = tmp_path / "later"
    shutil.move(demo_data / "raw" / "2022-T2", hold)
    settings = Settings(demo_data, tmp_path / "reports")

    first = tick(instance, settings, None)
    assert added(first) == ["2019-T0", "2021-T1"]
    assert requested(first) == ["2019-T0", "2021-T1"]
    assert instance.get_dynamic_partitions(waves.name) == ["2019-T0", "2021-T1"]

    quiet = tick(instance, settings, first.cursor)
    assert added(quiet) == [] and requested(quiet) == []

    # a data steward drops a new wave; an empty folder is not a wave yet
    (demo_data / "raw" / "2023-T3").mkdir()
    shutil.move(hold, demo_data / "raw" / "2022-T2")
    new = tick(instance, settings, quiet.cursor)
    assert added(new) == ["2022-T2"]
    assert requested(new) == ["2022-T2"]

    # touching a file changes its mtime, not its content: no run
    export = next((demo_data / "raw" / "2021-T1").glob("*.csv"))
    stat = export.stat()
    os.utime(export, (stat.st_atime + 3600, stat.st_mtime + 3600))
    touched = tick(instance, settings, new.cursor)
    assert requested(touched) == []

    # a corrected export (same name, other content) requests a run for its wave only
    export.write_bytes(export.read_bytes().replace(b"True", b"False", 1))
    changed = tick(instance, settings, touched.cursor)
    assert requested(changed) == ["2021-T1"]
    assert changed.run_requests[0].run_key != first.run_requests[1].run_key


def test_sensor_skips_a_wave_already_materialized_from_the_same_inputs(
    demo_data, instance, tmp_path
):
    settings = Settings(demo_data, tmp_path / "reports")
    instance.add_dynamic_partitions(waves.name, ["2019-T0"])
    # the wave read and validated, as `scan run`'s first stage leaves it: the sensor compares
    # the inputs' fingerprint that raw_responses recorded (what comes later adds nothing to it)
    dg.materialize(
        INGEST_ASSETS, partition_key="2019-T0", instance=instance, resources=resources_for(settings)
    )
    first = tick(instance, settings, None)
    assert requested(first) == ["2021-T1", "2022-T2"]


def test_undeclared_or_reserved_wave_folders_are_refused_by_name(demo_data, instance, tmp_path):
    """A folder the codebook does not declare would go without its fieldwork-window rule; one
    called all_waves would overwrite the cross-wave results. The sensor leaves both out, and a
    run started on such a partition from the UI fails up front, naming the folder."""
    settings = Settings(demo_data, tmp_path / "reports")
    export = next((demo_data / "raw" / "2021-T1").glob("*.csv"))
    for stray in ("2024-T4", "all_waves"):
        (demo_data / "raw" / stray).mkdir()
        shutil.copy(export, demo_data / "raw" / stray / export.name)
    first = tick(instance, settings, None)
    assert added(first) == requested(first) == WAVES

    instance.add_dynamic_partitions(waves.name, ["2024-T4", "all_waves"])
    for stray, message in (("2024-T4", "not declared under the codebook's waves"),
                           ("all_waves", "reserved for the cross-wave results")):  # fmt: skip
        result = dg.materialize(
            [raw_responses], partition_key=stray, instance=instance,
            resources=resources_for(settings), raise_on_error=False,
        )  # fmt: skip
        assert not result.success
        error = result.get_step_failure_events()[0].step_failure_data.error.cause
        assert f"wave folder {stray!r}" in error.message and message in error.message
    assert not (settings.processed_dir / "all_waves").exists()


@pytest.fixture
def memory_instance():
    """An in-memory instance, as Dagster's own examples of evaluate_automation_conditions use:
    an evaluation looks the wave partitions up thousands of times while it writes its cursor,
    which takes about 30 s per evaluation on the sqlite files of `instance` and about 7 s in
    memory; the conditions read the same runs and events either way."""
    with dg.DagsterInstance.ephemeral() as instance:
        yield instance


def test_the_automation_never_runs_on_past_a_wave_whose_last_run_failed(
    demo_data, memory_instance, tmp_path
):
    """The UI path (`dagster dev`'s automation sensor) as `scan run` does it: once every wave is
    validated, each wave's protected data is requested; after a wave's new export failed,
    nothing from the privacy boundary on is, so no report is rendered over the failed wave."""
    for other in ("2019-T0", "2022-T2"):  # one wave is a study too, and costs a third
        shutil.rmtree(demo_data / "raw" / other)
    instance = memory_instance
    settings = Settings(demo_data, tmp_path / "reports")
    definitions = build_definitions(settings)
    instance.add_dynamic_partitions(waves.name, ["2021-T1"])
    before = dg.evaluate_automation_conditions(defs=definitions, instance=instance)
    assert before.get_requested_partitions(dg.AssetKey("anonymised_responses")) == set()
    assert dg.materialize(
        [*ALL_ASSETS, *ALL_CHECKS], selection=INGEST_SELECTION, partition_key="2021-T1",
        instance=instance, resources=resources_for(settings),
    ).success  # fmt: skip
    ready = dg.evaluate_automation_conditions(
        defs=definitions, instance=instance, cursor=before.cursor
    )
    assert ready.get_requested_partitions(dg.AssetKey("anonymised_responses")) == {"2021-T1"}

    export = next((demo_data / "raw" / "2021-T1").glob("*.csv"))
    export.write_bytes(export.read_bytes()[:200])  # a cut-off export
    failed = dg.materialize(
        [*ALL_ASSETS, *ALL_CHECKS], selection=INGEST_SELECTION, partition_key="2021-T1",
        instance=instance, resources=resources_for(settings), raise_on_error=False,
    )  # fmt: skip
    assert not failed.success
    after = dg.evaluate_automation_conditions(
        defs=definitions, instance=instance, cursor=before.cursor
    )
    assert after.total_requested == 0
