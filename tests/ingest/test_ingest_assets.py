"""raw_responses materialized for real, on the committed demo exports, through Dagster."""

import csv
from pathlib import Path

import dagster as dg
import openpyxl
import pandas as pd
import pyreadstat

from assets.definitions import INGEST_ASSETS
from assets.partitions import waves
from assets.resources import resources_for
from pipeline.lineage.fingerprint import sha256_file
from pipeline.lineage.settings import Settings


def header_width(path: Path) -> int:
    """The number of columns of an export, read with the format's own library."""
    if path.suffix == ".sav":
        return len(pyreadstat.read_sav(path, metadataonly=True)[1].column_names)
    if path.suffix == ".csv":
        with path.open(encoding="utf-8-sig", newline="") as handle:
            return len(next(csv.reader(handle)))
    sheet = openpyxl.load_workbook(path, read_only=True).worksheets[0]
    return sum(cell is not None for cell in next(sheet.iter_rows(max_row=1, values_only=True)))


WAVES = ["2019-T0", "2021-T1", "2022-T2"]


def test_raw_responses_for_all_waves_match_the_generator_truth(demo_data, truth_rows, instance):
    settings = Settings(demo_data, demo_data.parent / "reports")
    instance.add_dynamic_partitions(waves.name, WAVES)
    for wave in WAVES:
        result = dg.materialize(
            INGEST_ASSETS, partition_key=wave, instance=instance, resources=resources_for(settings)
        )
        assert result.success
        stored = pd.read_parquet(settings.staging_dir / "raw_responses" / f"{wave}.parquet")
        truth = truth_rows[truth_rows["wave"] == wave]

        # every raw row arrives, each with its file and row number, and nothing else
        assert len(stored) == len(truth)
        got = set(
            zip(
                stored["_source_file"],
                stored["_source_row"].astype(str),
                stored["response_id"],
                strict=True,
            )
        )
        want = set(
            zip(truth["source_file"], truth["source_row"], truth["response_id"], strict=True)
        )
        assert got == want
        assert (stored["wave"] == wave).all()

        # the materialization tells the UI where the rows came from
        event = result.asset_materializations_for_node("raw_responses")[0]
        assert event.metadata["dagster/row_count"].value == len(truth)
        sources = event.metadata["source_files"].value
        for source, info in sources.items():
            assert info["sha256"] == sha256_file(settings.raw_dir / source)
            assert info["rows"] == int((truth["source_file"] == source).sum())
            assert info["columns"] == header_width(settings.raw_dir / source)
        assert event.tags["dagster/data_version"]


def test_a_broken_export_fails_the_wave_and_keeps_the_stored_output(demo_data, instance):
    settings = Settings(demo_data, demo_data.parent / "reports")
    wave = "2021-T1"
    instance.add_dynamic_partitions(waves.name, [wave])
    dg.materialize(
        INGEST_ASSETS, partition_key=wave, instance=instance, resources=resources_for(settings)
    )
    stored = settings.staging_dir / "raw_responses" / f"{wave}.parquet"
    before = stored.read_bytes()

    export = next((demo_data / "raw" / wave).glob("*.csv"))
    export.write_bytes(export.read_bytes()[: len(export.read_bytes()) // 2])
    result = dg.materialize(
        INGEST_ASSETS,
        partition_key=wave,
        instance=instance,
        resources=resources_for(settings),
        raise_on_error=False,
    )
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.error
    assert export.name in str(failure.cause or failure.message)
    assert stored.read_bytes() == before, "a failed run must not touch what was stored"
    assert [p.name for p in stored.parent.iterdir()] == [stored.name], "no temporary files left"
