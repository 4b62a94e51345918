"""The wave sensor: a new wave folder adds a partition; a changed file (sha256) requests a run;
a touched file (mtime only) does not."""

import os
import shutil

import dagster as dg

from assets.definitions import WAVE_ASSETS
from assets.partitions import waves
from assets.resources import resources_for
from assets.sensors import wave_files_sensor
from pipeline.settings import Settings


def tick(instance, settings, cursor):
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources=resources_for(settings)
    )
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
    dg.materialize(
        WAVE_ASSETS, partition_key="2019-T0", instance=instance, resources=resources_for(settings)
    )
    first = tick(instance, settings, None)
    assert requested(first) == ["2021-T1", "2022-T2"]
