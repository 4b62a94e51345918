"""Which assets need recomputing, and why, read from the Dagster instance.

An asset (partition) is up to date when its last materialization was made by the current code
(`dagster/code_version`) from the data versions its inputs have now
(`dagster/input_data_version/<input>`); `raw_responses` is up to date when its data version
equals the fingerprint of the wave's files, the codebook and the code. Per-wave assets are
judged per wave partition; the cross-wave assets (no partition) against all waves.
"""

import functools
import hashlib

import dagster as dg

from assets.anonymise import anonymised_responses
from assets.ingest import raw_responses, wave_fingerprint, wave_inputs
from assets.partitions import waves
from pipeline.pseudonyms import PseudonymKeyError, load_key
from pipeline.settings import Settings

DATA_VERSION = "dagster/data_version"
CODE_VERSION = "dagster/code_version"
INPUT_VERSION = "dagster/input_data_version/"


def latest_record(instance: dg.DagsterInstance, key: dg.AssetKey, partition: str | None):
    """The event record (run id, time, materialization) of the asset partition's last
    materialization; `partition=None` for an unpartitioned asset."""
    partitions = [partition] if partition is not None else None
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=partitions), limit=1
    ).records
    return records[0] if records else None


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
    used = latest_materialization(instance, anonymised_responses.key, wave).metadata
    try:
        current = load_key(settings.data_dir).key_id
    except PseudonymKeyError:
        return "no pseudonymisation key configured"  # the run stops at anonymisation, saying why
    changed = used["disclosure"].value["key_id"] != current
    return "pseudonymisation key changed" if changed else ""


def partitions_input_version(data_versions: list[str]) -> str:
    """How Dagster records the version of a partitioned input: the sha256 of the data versions
    of its partitions, in partition-key order, joined
    (dagster/_core/execution/context/data_version_cache.py)."""
    return hashlib.sha256("".join(data_versions).encode("utf8")).hexdigest()


def _read_partitions(graph, key: dg.AssetKey, parent: dg.AssetKey, wave: str | None, known):
    """The partitions of `parent` that `key`'s `wave` partition (None: unpartitioned) reads."""
    if graph.get(parent).partitions_def is None:
        return [None]
    if wave is None or isinstance(graph.get_partition_mapping(key, parent), dg.AllPartitionMapping):
        return known
    return [wave]


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
    its code changed, its inputs' data versions changed, or a partition it reads is stale
    itself (so the cross-wave assets and the reports are stale as soon as one wave is)."""
    graph = definitions.resolve_asset_graph()
    known = sorted(instance.get_dynamic_partitions(waves.name))
    # each asset partition's last materialization is read once per status, though several
    # children compare against it
    tags_of = functools.cache(functools.partial(latest_tags, instance))
    status: dict[tuple[str, str | None], str] = {}
    for key in graph.toposorted_asset_keys:
        node = graph.get(key)
        for wave in known if node.partitions_def else [None]:
            status[(key.to_user_string(), wave)] = _reason(
                instance, tags_of, graph, settings, key, wave, known, status
            )
    return status


def _reason(instance, tags_of, graph, settings, key, wave, known, status) -> str:
    node = graph.get(key)
    tags = tags_of(key, wave)
    if tags is None:
        return "never materialized"
    if tags.get(CODE_VERSION) != node.code_version:
        return "code changed"
    if key == raw_responses.key:
        if tags.get(DATA_VERSION) != wave_fingerprint(wave_inputs(settings, wave)):
            return _changed_inputs(instance, settings, wave)
        return ""
    if key == anonymised_responses.key and (change := _key_change(instance, settings, wave)):
        return change
    for parent in sorted(node.parent_keys):
        name = parent.to_user_string()
        partitions = _read_partitions(graph, key, parent, wave, known)
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
