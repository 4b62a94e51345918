"""Stage 1: the raw exports of a wave, read into one canonical frame (restricted zone)."""

import sys

import dagster as dg
import pandas as pd

import pipeline.ingest.readers
import pipeline.instrument.codebook
from assets.partitions import waves
from assets.resources import ScanConfig
from assets.versions import source_version
from pipeline.ingest.readers import export_files, read_wave
from pipeline.lineage.fingerprint import combine, file_hashes, sha256_file
from pipeline.lineage.settings import Settings

INGEST_CODE_VERSION = source_version(
    pipeline.instrument.codebook, pipeline.ingest.readers, sys.modules[__name__]
)


def wave_inputs(settings: Settings, wave: str) -> dict[str, str]:
    """sha256 of everything a wave's ingest reads: the codebook and the wave's exports."""
    files = export_files(settings.wave_dir(wave))
    hashes = file_hashes(files, settings.raw_dir)
    hashes["codebook.yaml"] = sha256_file(settings.codebook_path)
    return hashes


def wave_fingerprint(inputs: dict[str, str]) -> str:
    """The data version of a wave's raw_responses: changes exactly when its inputs or code do."""
    return combine({"inputs": inputs, "code": INGEST_CODE_VERSION})


@dg.asset(
    partitions_def=waves,
    io_manager_key="restricted_io",
    group_name="ingest",
    code_version=INGEST_CODE_VERSION,
    kinds={"pandas", "parquet"},
)
def raw_responses(context: dg.AssetExecutionContext, scan: ScanConfig) -> dg.Output[pd.DataFrame]:
    """Every row of every export of the wave, with its source file and row, in codebook columns.

    Identified data: stored only in the restricted zone (data/raw/_staging/).
    """
    settings, codebook = scan.settings, scan.codebook()
    wave = context.partition_key
    if refused := codebook.refused_wave(wave):
        raise ValueError(refused)
    inputs = wave_inputs(settings, wave)
    frame = read_wave(settings.wave_dir(wave), codebook, settings.raw_dir)
    per_file = frame.groupby("_source_file", sort=True).size()
    sources = {
        name: {
            "sha256": inputs[name],
            "rows": int(per_file[name]),
            "columns": len(frame.attrs["export_columns"][name]),
        }
        for name in per_file.index
    }
    context.log.info(f"{wave}: {len(frame)} rows from {len(sources)} export(s)")
    return dg.Output(
        frame,
        data_version=dg.DataVersion(wave_fingerprint(inputs)),
        metadata={
            "dagster/row_count": len(frame),
            "columns": len(frame.columns),
            "source_files": dg.MetadataValue.json(sources),
            "codebook_sha256": inputs["codebook.yaml"],
            "rows_with_parse_errors": int((frame["_parse_errors"] != "").sum()),
        },
    )
