"""Stage 1: the raw exports of a wave, read into one canonical frame, and the trajectory and
community registers (restricted zone)."""

from pathlib import Path

import dagster as dg
import pandas as pd

from assets.partitions import waves
from assets.resources import ALL_WAVES, ScanConfig
from assets.versions import source_version
from pipeline.ingest.communities import read_communities, read_partners
from pipeline.ingest.readers import export_files, read_wave
from pipeline.ingest.trajectories import read_participants, read_trajectories
from pipeline.instrument.codebook import load_codebook
from pipeline.lineage.fingerprint import combine, file_hashes, sha256_file
from pipeline.lineage.settings import Settings
from pipeline.validate.quality import read_register

INGEST_CODE_VERSION = source_version(
    "pipeline.instrument.codebook", "pipeline.ingest.readers", __name__
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


REGISTER_CODE_VERSION = source_version(
    "pipeline.instrument.codebook",
    "pipeline.ingest.register_files",
    "pipeline.ingest.trajectories",
    "pipeline.ingest.communities",
    "pipeline.validate.quality",
    __name__,
)
TRAJECTORIES, COMMUNITIES = "trajectories", "communities"  # the registers


def register_files(settings: Settings, register: str) -> list[Path]:
    """The files a register (TRAJECTORIES or COMMUNITIES) is read from: the codebook, the
    company register and the register's own files, where the codebook declares them."""
    codebook = load_codebook(settings.codebook_path)
    declared = [codebook.company_register] if codebook.company_register else []
    spec = codebook.trajectories if register == TRAJECTORIES else codebook.communities
    if spec is not None:
        extra = spec.participants if register == TRAJECTORIES else spec.partners
        declared += [spec.file, *([extra] if extra else [])]
    return [settings.codebook_path, *(settings.raw_dir / name for name in declared)]


def register_fingerprint(settings: Settings, register: str) -> str:
    """The data version of a register: changes exactly when a file it is read from (an absent
    one counts as absent) or its code does."""
    files = register_files(settings, register)
    hashes = {
        p.relative_to(settings.raw_dir).as_posix(): p.is_file() and sha256_file(p) for p in files
    }
    return combine({"inputs": hashes, "code": REGISTER_CODE_VERSION})


def _companies(settings: Settings, codebook) -> set[str] | None:
    """The company register's codes, when the codebook declares one."""
    if not codebook.company_register:
        return None
    return read_register(settings.raw_dir / codebook.company_register, codebook.company_id)


@dg.multi_asset(
    group_name=ALL_WAVES,
    code_version=REGISTER_CODE_VERSION,
    outs={
        "trajectory_register": dg.AssetOut(
            io_manager_key="restricted_io",
            kinds={"pandas", "parquet"},
            description="The development trajectories per company (codebook "
            "registers.trajectories), validated (restricted zone).",
        ),
        "trajectory_participants": dg.AssetOut(
            io_manager_key="restricted_io",
            kinds={"pandas", "parquet"},
            description="Who takes part in which trajectory, by linkage code, from the "
            "participants list (restricted zone).",
        ),
    },
)
def trajectory_register(scan: ScanConfig):
    """The register and its participants list, read and validated like an export; empty, with
    the reason in `note`, when the codebook declares none."""
    settings, codebook = scan.settings, scan.codebook()
    version = dg.DataVersion(register_fingerprint(settings, TRAJECTORIES))
    spec = codebook.trajectories
    register = pd.DataFrame()
    participants = pd.DataFrame()
    note = "no trajectory register declared (the codebook's registers.trajectories)"
    if spec is not None:
        register = read_trajectories(
            settings.raw_dir / spec.file, codebook, _companies(settings, codebook)
        )
        note = f"{len(register)} trajectories in {register['company'].nunique()} companies"
        if spec.participants:
            path = settings.raw_dir / spec.participants
            participants = read_participants(path, codebook, register)
            note += f"; {len(participants)} participants listed"
    for name, frame in (
        ("trajectory_register", register),
        ("trajectory_participants", participants),
    ):
        yield dg.Output(
            frame,
            name,
            data_version=version,
            metadata={"dagster/row_count": len(frame), "note": note},
        )


@dg.multi_asset(
    group_name=ALL_WAVES,
    code_version=REGISTER_CODE_VERSION,
    outs={
        "community_register": dg.AssetOut(
            io_manager_key="restricted_io",
            kinds={"pandas", "parquet"},
            description="The learning communities' member companies, with the wave each joined "
            "and left (codebook registers.communities), validated (restricted zone).",
        ),
        "community_partners": dg.AssetOut(
            io_manager_key="restricted_io",
            kinds={"pandas", "parquet"},
            description="The partner institutions of each learning community, by kind "
            "(restricted zone).",
        ),
    },
)
def community_register(scan: ScanConfig):
    """The community register and its partners list, read and validated like an export;
    empty, with the reason in `note`, when the codebook declares none."""
    settings, codebook = scan.settings, scan.codebook()
    version = dg.DataVersion(register_fingerprint(settings, COMMUNITIES))
    spec = codebook.communities
    columns = ["community_id", "community", "company", "joined", "left"]
    register = pd.DataFrame(columns=columns, dtype=object)
    partners = pd.DataFrame(columns=["community_id", "kind", "partner"], dtype=object)
    note = "no community register declared (the codebook's registers.communities)"
    if spec is not None:
        register = read_communities(
            settings.raw_dir / spec.file, codebook, _companies(settings, codebook)
        )
        note = (
            f"{register['community_id'].nunique()} communities, "
            f"{register['company'].nunique()} companies"
        )
        if spec.partners:
            partners = read_partners(settings.raw_dir / spec.partners, codebook, register)
            note += f"; {len(partners)} partners"
    for name, frame in (("community_register", register), ("community_partners", partners)):
        yield dg.Output(
            frame,
            name,
            data_version=version,
            metadata={"dagster/row_count": len(frame), "note": note},
        )
