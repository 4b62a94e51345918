"""Which assets need recomputing, and why, read from the Dagster instance and the disk.

An asset (partition) is up to date when its last run did not fail after its last
materialization, that materialization was made by the current code (`dagster/code_version`)
from the data versions its inputs have now (`dagster/input_data_version/<input>`), and the files
it recorded (`files`) are on disk as it wrote them; `raw_responses` is up to date when its data
version equals the fingerprint of the wave's files, the codebook and the code, and the
trajectory register's equals that of its files. Per-wave assets
are judged per wave partition; the cross-wave assets (no partition) against all waves.
"""

import functools
import hashlib
from pathlib import Path

import dagster as dg

from assets.ingest import (
    COMMUNITIES,
    TRAJECTORIES,
    community_register,
    raw_responses,
    register_fingerprint,
    trajectory_register,
    wave_fingerprint,
    wave_inputs,
)
from assets.partitions import waves
from assets.privacy import privacy_boundary
from pipeline.lineage.outputs import FILES, describe_problems, file_problems
from pipeline.lineage.settings import Settings
from pipeline.privacy.pseudonyms import PseudonymKeyError, load_key

REGISTERS = (
    (TRAJECTORIES, trajectory_register, "trajectory register"),
    (COMMUNITIES, community_register, "community register"),
)

DATA_VERSION = "dagster/data_version"
CODE_VERSION = "dagster/code_version"
INPUT_VERSION = "dagster/input_data_version/"
DATA_TAG = "scan/data_dir"  # on every run `scan run` starts: the data folder it works on
UNFINISHED = (
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
)
REASON_LENGTH = 200  # of a failure's message in a status line


def latest_record(instance: dg.DagsterInstance, key: dg.AssetKey, partition: str | None):
    """The event record (run id, time, materialization) of the asset partition's last
    materialization; `partition=None` for an unpartitioned asset."""
    partitions = [partition] if partition is not None else None
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=partitions), limit=1
    ).records
    return records[0] if records else None


def latest_records(instance: dg.DagsterInstance, key: dg.AssetKey, partitioned: bool) -> dict:
    """{partition (None: unpartitioned): the record of its last materialization} of an asset,
    in two queries however many partitions it has."""
    if not partitioned:
        record = latest_record(instance, key, None)
        return {None: record} if record else {}
    ids = instance.get_latest_storage_id_by_partition(
        key, dg.DagsterEventType.ASSET_MATERIALIZATION
    )
    if not ids:
        return {}
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, storage_ids=list(ids.values())), limit=len(ids)
    ).records
    return {r.asset_materialization.partition: r for r in records}


def latest_materialization(
    instance: dg.DagsterInstance, key: dg.AssetKey, partition: str | None
) -> dg.AssetMaterialization | None:
    record = latest_record(instance, key, partition)
    return record.asset_materialization if record else None


def latest_tags(
    instance: dg.DagsterInstance, key: dg.AssetKey, partition: str | None
) -> dict | None:
    materialization = latest_materialization(instance, key, partition)
    return dict(materialization.tags or {}) if materialization else None


def error_text(error) -> str:
    """The message of the error at the root of a Dagster error, without Dagster's wrapping nor
    the exception's class name (our errors name the file, row or column, never a cell value)."""
    while error.cause is not None:
        error = error.cause
    prefix, _, message = error.message.partition(": ")
    return message.strip() if prefix.endswith(str(error.cls_name)) else error.message.strip()


def run_failure(instance: dg.DagsterInstance, run_id: str, step: str | None = None) -> str:
    """Why a run failed: the error of `step` when that step failed, else the first failed step
    and its error, else the run's own failure (a killed `scan run`, say)."""
    failures = instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
    own = [e for e in failures if e.step_key == step]
    if own or failures:
        entry = (own or failures)[0]
        text = error_text(entry.dagster_event.step_failure_data.error)
        return text if own else f"{entry.step_key} failed: {text}"
    ended = instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
    return ended[-1].message if ended else "the run failed"


def unsuccessful_runs(instance: dg.DagsterInstance) -> bool:
    """Whether any run of the instance did not succeed (failed, or not finished)."""
    others = [s for s in dg.DagsterRunStatus if s != dg.DagsterRunStatus.SUCCESS]
    return bool(instance.get_run_ids(dg.RunsFilter(statuses=others), limit=1))


def _failure(instance: dg.DagsterInstance, graph, key: dg.AssetKey, partition, record) -> str:
    """ "failed in run X: why" when the last run that was to materialize the asset partition
    did not, after its last materialization; "" when it did (or none tried)."""
    planned = instance.get_latest_planned_materialization_info(key, partition)
    if planned is None or (record is not None and record.storage_id > planned.storage_id):
        return ""
    run = instance.get_run_by_id(planned.run_id)
    if run is None or run.status == dg.DagsterRunStatus.SUCCESS:
        return ""
    if run.status in UNFINISHED:
        return f"in run {run.run_id}, not finished (still going, or killed: `scan run` clears it)"
    why = run_failure(instance, run.run_id, graph.get(key).assets_def.node_def.name)
    return f"failed in run {run.run_id}: {short(why, REASON_LENGTH)}"


def short(text: str, length: int) -> str:
    """The first line of `text`, cut at `length` characters."""
    line = text.splitlines()[0] if text else ""
    return line if len(line) <= length else line[: length - 3] + "..."


def claimed_files(record, check_logs) -> dict[str, str] | None:
    """{key: sha256} of the files a materialization recorded, with those its asset's checks
    recorded in the same run (the validation pages); None when it recorded none (made by an
    earlier version of the pipeline). `check_logs(run_id)`: the run's check evaluations."""
    materialization = record.asset_materialization
    if FILES not in materialization.metadata:
        return None
    files = dict(materialization.metadata[FILES].value)
    for entry in check_logs(record.run_id):
        evaluation = entry.dagster_event.event_specific_data
        same = (evaluation.asset_key, evaluation.partition) == (
            materialization.asset_key,
            materialization.partition,
        )
        if same and FILES in evaluation.metadata:
            files.update(evaluation.metadata[FILES].value)
    return files


def run_check_logs(instance: dg.DagsterInstance):
    """`check_logs` for `claimed_files`: each run's check evaluations, read once."""

    @functools.cache
    def check_logs(run_id: str) -> list:
        return instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)

    return check_logs


def _files_reason(instance: dg.DagsterInstance, settings: Settings, record, check_logs) -> str:
    """Why the files a materialization recorded are not what it wrote: missing or changed, and
    whether its run worked on another data folder; "" when they are all as recorded."""
    files = claimed_files(record, check_logs)
    if files is None:
        return "its files are not recorded (made by an earlier version of the pipeline)"
    problems = file_problems(files, settings)
    if not problems:
        return ""
    run = instance.get_run_by_id(record.run_id)
    folder = (run.tags if run else {}).get(DATA_TAG)
    elsewhere = folder and Path(folder) != settings.data_dir.resolve()
    note = f" (made for the data folder {folder})" if elsewhere else ""
    return describe_problems(problems) + note


def _changed_inputs(instance: dg.DagsterInstance, settings: Settings, wave: str) -> str:
    """Which of the wave's inputs differ from those its raw_responses was read from: new,
    changed or removed exports (by sha256), or the codebook."""
    metadata = latest_materialization(instance, raw_responses.key, wave).metadata
    read = {name: f["sha256"] for name, f in metadata["source_files"].value.items()}
    now = wave_inputs(settings, wave)
    codebook = now.pop("codebook.yaml")
    changes = [f"new file {name}" for name in sorted(set(now) - set(read))]
    changes += [f"changed file {n}" for n in sorted(set(now) & set(read)) if now[n] != read[n]]
    changes += [f"removed file {name}" for name in sorted(set(read) - set(now))]
    if metadata["codebook_sha256"].value != codebook:
        changes.append("changed codebook")
    return "; ".join(changes) or "code of the ingest changed"


def _key_change(instance: dg.DagsterInstance, settings: Settings, wave: str) -> str:
    """Why pseudonyms made before would no longer link to the other waves': another key, or
    none configured (the key is an input that is not a file); "" when the key is the same."""
    used = latest_materialization(instance, dg.AssetKey("pseudonymised_responses"), wave).metadata
    try:
        current = load_key(settings.data_dir).key_id
    except PseudonymKeyError:
        return "no pseudonymisation key configured"  # the run stops at anonymisation, saying why
    changed = used["key_id"].value != current
    return "pseudonymisation key changed" if changed else ""


def partitions_input_version(data_versions: list[str]) -> str:
    """How Dagster records the version of a partitioned input: the sha256 of the data versions
    of its partitions, in partition-key order, joined
    (dagster/_core/execution/context/data_version_cache.py)."""
    return hashlib.sha256("".join(data_versions).encode("utf8")).hexdigest()


def read_partitions(graph, key: dg.AssetKey, parent: dg.AssetKey, wave: str | None, known):
    """The partitions of `parent` that `key`'s `wave` partition (None: unpartitioned) reads."""
    if graph.get(parent).partitions_def is None:
        return [None]
    if wave is None or isinstance(graph.get_partition_mapping(key, parent), dg.AllPartitionMapping):
        return known
    return [wave]


def _tags(record_of, key: dg.AssetKey, partition: str | None) -> dict | None:
    record = record_of(key, partition)
    return dict(record.asset_materialization.tags or {}) if record else None


def _input_version(tags_of, parent: dg.AssetKey, partitions) -> str:
    """The input data version Dagster would record now for `parent` read at `partitions`: the
    parent's own data version when it has no partitions, else the hash over the partitions.
    `tags_of(key, partition)` gives the tags of the last materialization."""
    if partitions == [None]:
        return (tags_of(parent, None) or {}).get(DATA_VERSION, "")
    return partitions_input_version(
        [(tags_of(parent, w) or {}).get(DATA_VERSION, "") for w in partitions]
    )


def pipeline_status(
    instance: dg.DagsterInstance, definitions: dg.Definitions, settings: Settings
) -> dict[tuple[str, str | None], str]:
    """{(asset, wave or None): why it is stale, or "" when up to date} for every asset and
    wave partition, in dependency order. A partition is stale when it was never materialized,
    its last run failed, its code changed, a file it wrote is missing or changed, its inputs'
    data versions changed, or a partition it reads is stale itself (so the cross-wave assets
    and the reports are stale as soon as one wave is)."""
    graph = definitions.resolve_asset_graph()
    known = sorted(instance.get_dynamic_partitions(waves.name))
    # each asset's last materializations are read once per status, though several children
    # compare against them; runs that failed are looked for only when there are any
    records = {
        key: latest_records(instance, key, graph.get(key).partitions_def is not None)
        for key in graph.toposorted_asset_keys
    }

    def record_of(key: dg.AssetKey, partition: str | None):
        return records[key].get(partition)

    failures = unsuccessful_runs(instance)
    check_logs = run_check_logs(instance)
    status: dict[tuple[str, str | None], str] = {}
    for key in graph.toposorted_asset_keys:
        node = graph.get(key)
        for wave in known if node.partitions_def else [None]:
            failed = failures and _failure(instance, graph, key, wave, record_of(key, wave))
            status[(key.to_user_string(), wave)] = failed or _reason(
                instance, record_of, check_logs, graph, settings, key, wave, known, status
            )
    return status


def _reason(instance, record_of, check_logs, graph, settings, key, wave, known, status) -> str:
    node = graph.get(key)
    record = record_of(key, wave)
    if record is None:
        return "never materialized"
    tags = record.asset_materialization.tags or {}
    if tags.get(CODE_VERSION) != node.code_version:
        return "code changed"
    if files := _files_reason(instance, settings, record, check_logs):
        return files
    if key == raw_responses.key:
        if tags.get(DATA_VERSION) != wave_fingerprint(wave_inputs(settings, wave)):
            return _changed_inputs(instance, settings, wave)
        return ""
    for register, asset, name in REGISTERS:
        if key in asset.keys:
            if tags.get(DATA_VERSION) != register_fingerprint(settings, register):
                return f"{name} or its inputs changed"
            return ""
    if key in privacy_boundary.keys and (change := _key_change(instance, settings, wave)):
        return change
    tags_of = functools.partial(_tags, record_of)
    for parent in sorted(node.parent_keys):
        name = parent.to_user_string()
        partitions = read_partitions(graph, key, parent, wave, known)
        if any(status.get((name, w)) for w in partitions):
            return f"upstream {name} changed"
        if tags.get(INPUT_VERSION + name) != _input_version(tags_of, parent, partitions):
            return f"upstream {name} changed"
    return ""


def stale_reasons(
    status: dict[tuple[str, str | None], str],
    definitions: dg.Definitions,
    selection: dg.AssetSelection,
    wave: str | None,
) -> dict[str, str]:
    """{asset: why it is stale} of a `pipeline_status` for the selected assets at `wave` (None:
    the unpartitioned ones); empty when all are current."""
    selected = {k.to_user_string() for k in selection.resolve(definitions.resolve_asset_graph())}
    return {
        asset: reason
        for (asset, partition), reason in status.items()
        if reason and partition == wave and asset in selected
    }
