"""Stage 8: the provenance manifest of a wave, an RO-Crate beside its reports, from what the
Dagster instance recorded: which raw files, code, runs, asset versions and check results made
the wave's outputs. Run ids and times live here (and in Dagster), never in the reports."""

import importlib.metadata
import json
import re
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime

import dagster as dg
import pandas as pd

from assets.ingest import wave_inputs
from assets.partitions import waves
from assets.reports import REPORTS, company_reports, wave_report
from assets.resources import ALL_WAVES, ScanConfig, files_metadata
from assets.staleness import (
    CODE_VERSION,
    DATA_VERSION,
    claimed_files,
    latest_record,
    read_partitions,
    run_check_logs,
)
from assets.versions import source_version
from pipeline.lineage.fingerprint import sha256_file
from pipeline.lineage.outputs import CHANGED, FILES, MISSING, file_state, output_path
from pipeline.lineage.provenance import Provenance, write_crate
from pipeline.lineage.settings import PROJECT_ROOT, Settings
from pipeline.reporting.render import engine_description

MANIFEST = "ro-crate-metadata.json"
ANONYMISATION_FACTS = ("k", "k_reached", "key_id", "key_source", "small_companies")


def _code() -> dict[str, str]:
    commit = subprocess.run(
        ["git", "-C", str(PROJECT_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True
    )
    return {
        "git_commit": commit.stdout.strip() if commit.returncode == 0 else "",
        "requirements_lock_sha256": sha256_file(PROJECT_ROOT / "requirements.lock"),
        "pipeline_version": importlib.metadata.version("leercultuurscan"),
    }


def _facts(context: dg.AssetExecutionContext, scan: ScanConfig, wave: str) -> Provenance:
    """Every asset's latest materialization: of this wave for a per-wave asset, else the
    cross-wave one. Every asset of the pipeline, not of the run's job: a job knows the assets
    it does not run only as unpartitioned stubs, and would credit another wave's run."""
    from assets.definitions import ALL_ASSETS  # here: the definitions import this module

    instance = context.instance
    partitioned = {key: a.partitions_def is not None for a in ALL_ASSETS for key in a.keys}
    runs, assets, disclosure = [], [], {}
    for key in sorted(partitioned, key=lambda k: k.to_user_string()):
        partition = wave if partitioned[key] else None
        record = latest_record(instance, key, partition)
        if record is None or key == context.asset_key:
            continue
        materialization = record.asset_materialization
        run = instance.get_run_record_by_id(record.run_id)
        runs.append(
            {
                "run_id": record.run_id,
                "asset": key.to_user_string(),
                "partition": partition or "all waves",
                "start": _iso(run.start_time or record.timestamp),
                # this run, still going, ends after its last output
                "end": _iso(run.end_time or record.timestamp),
            }
        )
        metadata = materialization.metadata
        # as recorded (pipeline.lineage.outputs): relative to the data or reports folder, so that a
        # project moved with its instance names them right
        recorded = metadata[FILES].value if FILES in metadata else {}
        files = [{"path": path, "sha256": sha256} for path, sha256 in sorted(recorded.items())]
        assets.append(
            {
                "asset": key.to_user_string(),
                "partition": partition or "all waves",
                "code_version": (materialization.tags or {}).get(CODE_VERSION, ""),
                "data_version": (materialization.tags or {}).get(DATA_VERSION, ""),
                "files": files,
            }
        )
        if "disclosure" in metadata:
            disclosure = metadata["disclosure"].value
    folder = scan.settings.reports_dir / wave
    return Provenance(
        wave=wave,
        raw_files=wave_inputs(scan.settings, wave),
        code=_code(),
        runs=runs,
        assets=assets,
        checks=_checks(instance, runs),
        anonymisation={k: disclosure[k] for k in ANONYMISATION_FACTS if k in disclosure},
        models=_models(scan, wave),
        engine=engine_description(),
        reports={
            p.relative_to(folder).as_posix(): sha256_file(p)
            for p in sorted(folder.rglob("*"))
            if p.suffix in (".html", ".pdf")
        },
    )


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat()


def _checks(instance: dg.DagsterInstance, runs: list[dict]) -> list[dict]:
    """The check results recorded in the runs that made the current version of each asset."""
    made_by = {(r["asset"], r["partition"]): r["run_id"] for r in runs}
    checks = []
    for run_id in sorted(set(made_by.values())):
        for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
            evaluation = entry.dagster_event.event_specific_data
            where = (evaluation.asset_key.to_user_string(), evaluation.partition or "all waves")
            if made_by.get(where) != run_id:
                continue
            checks.append(
                {
                    "check": evaluation.check_name,
                    "asset": where[0],
                    "partition": where[1],
                    "passed": evaluation.passed,
                    "severity": evaluation.severity.value,
                }
            )
    return checks


def _models(scan: ScanConfig, wave: str) -> list[dict]:
    """The wave's model fits (engine and optimiser) and the bootstrap seeds of reliability."""
    folder = scan.settings.processed_dir / wave
    fits = pd.read_csv(folder / "multilevel_fit.csv")
    seeds = pd.read_csv(folder / "reliability.csv")
    return [
        {"model": f"multilevel/{r.model}", "engine": r.engine, "optimizer": r.optimizer}
        for r in fits.dropna(subset=["engine"]).itertuples()  # a fitted model
    ] + [
        {"model": f"reliability/{r.scale}", "bootstrap": "percentile", "seed": r.bootstrap_seed}
        for r in seeds.itertuples()
    ]


@dg.asset(
    partitions_def=waves,
    group_name=REPORTS,
    code_version=source_version("pipeline.lineage.provenance", __name__),
    kinds={"json"},
    deps=[wave_report, company_reports],
)
def provenance_manifest(
    context: dg.AssetExecutionContext, scan: ScanConfig
) -> dg.MaterializeResult:
    """`<reports>/<wave>/ro-crate-metadata.json`: the Workflow Run Crate of the wave."""
    wave = context.partition_key
    path = write_crate(scan.settings.reports_dir / wave, _facts(context, scan, wave))
    crate = json.loads(path.read_text())
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(path)),
            "entities": len(crate["@graph"]),
            **files_metadata(scan.settings, [path]),
        }
    )


NUMBER_ID = re.compile(r"^(?P<asset>\w+)\[(?P<partition>[^\]]+)\]\((?P<row>.*)\)\.(?P<column>\w+)$")
TABLES = (".csv", ".parquet")


class TraceError(ValueError):
    """A number id that does not parse, or names no stored number."""


def trace(
    instance: dg.DagsterInstance, definitions: dg.Definitions, settings: Settings, number: str
) -> list[str]:
    """The lines `scan trace` prints for a number id (`asset[partition](row key).column`, as
    the reports give them): the number as stored, then every asset it was computed from, with
    its run, code and data version and files, down to the raw exports; each file's sha256 now
    against the one its materialization recorded ("verified", or changed or missing since)."""
    match = NUMBER_ID.match(number.strip())
    if match is None:
        raise TraceError(f"{number!r}: expected an id like reliability[2021-T1](LT).alpha")
    graph = definitions.resolve_asset_graph()
    key = dg.AssetKey(match["asset"])
    if not graph.has(key):
        raise TraceError(f"{number!r}: no asset {match['asset']!r}")
    partition = None if match["partition"] == ALL_WAVES else match["partition"]
    check_logs = run_check_logs(instance)
    known = sorted(instance.get_dynamic_partitions(waves.name))
    lines = [f"{number} = {_stored_value(instance, settings, key, partition, match)}"]
    queue, seen = [(key, partition)], set()
    while queue:
        key, partition = queue.pop(0)
        if (key, partition) in seen:
            continue
        seen.add((key, partition))
        lines += _describe(instance, settings, check_logs, key, partition)
        for parent in sorted(graph.get(key).parent_keys):
            queue += [(parent, w) for w in read_partitions(graph, key, parent, partition, known)]
    return lines


def _stored_value(instance, settings: Settings, key: dg.AssetKey, partition, match) -> str:
    """The number in the table the asset stored, read from its file (CSV or parquet); only
    from a shareable table: the restricted zone's cells are identified data."""
    name = f"{key.to_user_string()}[{match['partition']}]"
    record = latest_record(instance, key, partition)
    metadata = record.asset_materialization.metadata if record else {}
    tables = [k for k in (metadata[FILES].value if FILES in metadata else {}) if k.endswith(TABLES)]
    if not tables:
        raise TraceError(f"{name}: no stored table")
    table_key, path = tables[0], output_path(tables[0], settings)
    if not path.is_relative_to(settings.processed_dir):
        raise TraceError(
            f"{name}: {table_key} is in the restricted zone; `scan trace` reads shareable tables"
        )
    state, _ = file_state(table_key, metadata[FILES].value[table_key], settings)
    if state == MISSING:
        raise TraceError(f"{name}: its table {table_key} is missing; `scan run` writes it again")
    if path.suffix == ".csv":
        table = pd.read_csv(path, dtype=str)
    else:
        table = pd.read_parquet(path).astype(str)
    parts = match["row"].split(",")
    rows = table[(table.iloc[:, : len(parts)] == parts).all(axis=1)]
    if len(rows) != 1 or match["column"] not in table.columns:
        raise TraceError(f"{match.string}: no single row {parts} with a column {match['column']}")
    value = rows.iloc[0][match["column"]]
    if state == CHANGED:
        return f"{value} (from {table_key}, changed since run {record.run_id}: not what it stored)"
    return value


def _describe(instance, settings: Settings, check_logs, key: dg.AssetKey, partition) -> list[str]:
    name = f"{key.to_user_string()}[{partition or ALL_WAVES}]"
    record = latest_record(instance, key, partition)
    if record is None:
        return [f"  {name}: never materialized"]
    materialization = record.asset_materialization
    tags, metadata = materialization.tags or {}, materialization.metadata
    lines = [
        f"  {name}: run {record.run_id}, code {tags.get(CODE_VERSION, '?')}, "
        f"data {tags.get(DATA_VERSION, '?')[:16]}"
    ]
    files = claimed_files(record, check_logs)
    if files is None:
        lines.append("    files not recorded (made by an earlier version of the pipeline)")
    for file, sha256 in sorted((files or {}).items()):
        lines.append(_verified(f"file {file}", file, sha256, settings, record.run_id))
    if "source_files" in metadata:
        sources = {n: f["sha256"] for n, f in metadata["source_files"].value.items()}
        sources["codebook.yaml"] = metadata["codebook_sha256"].value
        raw = settings.raw_dir.relative_to(settings.data_dir).as_posix()
        for n, sha256 in sorted(sources.items()):
            lines.append(_verified(f"raw {n}", f"{raw}/{n}", sha256, settings, record.run_id))
    return lines


def _verified(label: str, key: str, sha256: str, settings: Settings, run_id: str) -> str:
    """'    <label> sha256 <recorded> verified', or CHANGED (with the sha256 now) or MISSING."""
    state, now = file_state(key, sha256, settings)
    verdict = {
        "": "verified",
        MISSING: f"MISSING since run {run_id}",
        CHANGED: f"CHANGED since run {run_id}: now sha256 {now}",
    }[state]
    return f"    {label} sha256 {sha256} {verdict}"


@dataclass(frozen=True)
class Checked:
    """One recorded file of an asset partition's last materialization, against disk."""

    output: str  # asset[partition]
    run_id: str
    file: str  # its key, or "" when the materialization recorded no files
    state: str  # "" (as recorded), MISSING, CHANGED, or UNRECORDED


UNRECORDED = "not recorded"


def verify(
    instance: dg.DagsterInstance, definitions: dg.Definitions, settings: Settings
) -> list[Checked]:
    """Every file the catalog says the current outputs are, checked against disk (`scan
    verify`): each asset partition's last materialization, with its checks' files."""
    graph = definitions.resolve_asset_graph()
    known = sorted(instance.get_dynamic_partitions(waves.name))
    check_logs = run_check_logs(instance)
    checked = []
    for key in graph.toposorted_asset_keys:
        for partition in known if graph.get(key).partitions_def else [None]:
            record = latest_record(instance, key, partition)
            if record is None:
                continue
            output = f"{key.to_user_string()}[{partition or ALL_WAVES}]"
            files = claimed_files(record, check_logs)
            if files is None:
                checked.append(Checked(output, record.run_id, "", UNRECORDED))
            for file, sha256 in sorted((files or {}).items()):
                state, _ = file_state(file, sha256, settings)
                checked.append(Checked(output, record.run_id, file, state))
    return checked
