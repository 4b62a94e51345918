"""Stage 8: the provenance manifest of a wave, an RO-Crate beside its reports, from what the
Dagster instance recorded: which raw files, code, runs, asset versions and check results made
the wave's outputs. Run ids and times live here (and in Dagster), never in the reports."""

import importlib.metadata
import json
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pandas as pd

import pipeline.provenance
from assets.ingest import wave_inputs
from assets.partitions import waves
from assets.reports import REPORTS, company_reports, wave_report
from assets.resources import ALL_WAVES, ScanConfig
from assets.staleness import CODE_VERSION, DATA_VERSION, latest_record
from assets.versions import source_version
from pipeline.fingerprint import sha256_file
from pipeline.provenance import Provenance, write_crate
from pipeline.render import engine_description

PROJECT_ROOT = Path(__file__).resolve().parent.parent
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
    instance, graph = context.instance, context.job_def.asset_layer.asset_graph
    runs, assets, disclosure = [], [], {}
    for key in graph.toposorted_asset_keys:
        partition = wave if graph.get(key).partitions_def is not None else None
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
        files = []
        if "path" in metadata and "sha256" in metadata:
            files.append({"path": metadata["path"].value, "sha256": metadata["sha256"].value})
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
    code_version=source_version(pipeline.provenance, sys.modules[__name__]),
    kinds={"json"},
    deps=[wave_report, company_reports],
    automation_condition=dg.AutomationCondition.eager(),
)
def provenance_manifest(
    context: dg.AssetExecutionContext, scan: ScanConfig
) -> dg.MaterializeResult:
    """`<reports>/<wave>/ro-crate-metadata.json`: the Workflow Run Crate of the wave."""
    wave = context.partition_key
    path = write_crate(scan.settings.reports_dir / wave, _facts(context, scan, wave))
    crate = json.loads(path.read_text())
    return dg.MaterializeResult(
        metadata={"path": dg.MetadataValue.path(str(path)), "entities": len(crate["@graph"])}
    )


NUMBER_ID = re.compile(r"^(?P<asset>\w+)\[(?P<partition>[^\]]+)\]\((?P<row>.*)\)\.(?P<column>\w+)$")


class TraceError(ValueError):
    """A number id that does not parse, or names no stored number."""


def trace(instance: dg.DagsterInstance, definitions: dg.Definitions, number: str) -> list[str]:
    """The lines `scan trace` prints for a number id (`asset[partition](row key).column`, as
    the reports give them): the number as stored, then every asset it was computed from, with
    its run, code and data version and file, down to the raw exports' sha256."""
    match = NUMBER_ID.match(number.strip())
    if match is None:
        raise TraceError(f"{number!r}: expected an id like reliability[2021-T1](LT).alpha")
    graph = definitions.resolve_asset_graph()
    key = dg.AssetKey(match["asset"])
    if not graph.has(key):
        raise TraceError(f"{number!r}: no asset {match['asset']!r}")
    partition = None if match["partition"] == ALL_WAVES else match["partition"]
    lines = [f"{number} = {_stored_value(instance, key, partition, match)}"]
    queue, seen = [(key, partition)], set()
    while queue:
        key, partition = queue.pop(0)
        if (key, partition) in seen:
            continue
        seen.add((key, partition))
        lines.append(_describe(instance, key, partition))
        for parent in sorted(graph.get(key).parent_keys):
            if graph.get(parent).partitions_def is None:
                queue.append((parent, None))
            elif partition is None:
                queue += [(parent, w) for w in sorted(instance.get_dynamic_partitions(waves.name))]
            else:
                queue.append((parent, partition))
    return lines


def _stored_value(instance, key: dg.AssetKey, partition: str | None, match) -> str:
    record = latest_record(instance, key, partition)
    if record is None or "path" not in record.asset_materialization.metadata:
        raise TraceError(f"{key.to_user_string()}[{match['partition']}]: no stored table")
    table = pd.read_csv(record.asset_materialization.metadata["path"].value, dtype=str)
    parts = match["row"].split(",")
    rows = table[(table.iloc[:, : len(parts)] == parts).all(axis=1)]
    if len(rows) != 1 or match["column"] not in table.columns:
        raise TraceError(f"{match.string}: no single row {parts} with a column {match['column']}")
    return rows.iloc[0][match["column"]]


def _describe(instance, key: dg.AssetKey, partition: str | None) -> str:
    name = f"{key.to_user_string()}[{partition or ALL_WAVES}]"
    record = latest_record(instance, key, partition)
    if record is None:
        return f"  {name}: never materialized"
    materialization = record.asset_materialization
    tags, metadata = materialization.tags or {}, materialization.metadata
    line = (
        f"  {name}: run {record.run_id}, code {tags.get(CODE_VERSION, '?')}, "
        f"data {tags.get(DATA_VERSION, '?')[:16]}"
    )
    if "sha256" in metadata:
        line += f", file {metadata['path'].value} sha256 {metadata['sha256'].value}"
    if "source_files" in metadata:
        sources = metadata["source_files"].value
        line += "".join(f"\n    raw {n} sha256 {f['sha256']}" for n, f in sorted(sources.items()))
        line += f"\n    raw codebook.yaml sha256 {metadata['codebook_sha256'].value}"
    return line
