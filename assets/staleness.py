"""Which assets need recomputing, and why, read from the Dagster instance.

An asset (partition) is up to date when its last materialization was made by the current code
(`dagster/code_version`) from the data versions its inputs have now
(`dagster/input_data_version/<input>`); `raw_responses` is up to date when its data version
equals the fingerprint of the wave's files, the codebook and the code. Per-wave assets are
judged per wave partition; the cross-wave assets (no partition) against all waves.
"""

import hashlib

import dagster as dg

from assets.ingest import raw_responses, wave_fingerprint, wave_inputs
from assets.partitions import waves
from pipeline.settings import Settings

DATA_VERSION = "dagster/data_version"
CODE_VERSION = "dagster/code_version"
INPUT_VERSION = "dagster/input_data_version/"


def latest_tags(
    instance: dg.DagsterInstance, key: dg.AssetKey, partition: str | None
) -> dict | None:
    partitions = [partition] if partition is not None else None
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=partitions), limit=1
    ).records
    return dict(records[0].asset_materialization.tags or {}) if records else None


def partitions_input_version(data_versions: list[str]) -> str:
    """How Dagster records the version of a partitioned input: the sha256 of the data versions
    of its partitions, in partition-key order, joined
    (dagster/_core/execution/context/data_version_cache.py)."""
    return hashlib.sha256("".join(data_versions).encode("utf8")).hexdigest()


def _input_version(
    instance: dg.DagsterInstance, graph, key: dg.AssetKey, parent: dg.AssetKey, wave: str | None
) -> str:
    """The input data version Dagster would record now for `parent`: the parent itself when it
    has no partitions; else the hash over the parent's partitions the input reads (the wave's
    own, or every wave for a cross-wave asset or an input mapped to all waves)."""
    if graph.get(parent).partitions_def is None:
        return (latest_tags(instance, parent, None) or {}).get(DATA_VERSION, "")
    mapping = graph.get_partition_mapping(key, parent)
    if wave is not None and not isinstance(mapping, dg.AllPartitionMapping):
        partitions = [wave]
    else:
        partitions = sorted(instance.get_dynamic_partitions(waves.name))
    return partitions_input_version(
        [(latest_tags(instance, parent, w) or {}).get(DATA_VERSION, "") for w in partitions]
    )


def stale_reasons(
    instance: dg.DagsterInstance,
    definitions: dg.Definitions,
    settings: Settings,
    selection: dg.AssetSelection,
    wave: str | None,
) -> dict[str, str]:
    """{asset: why it is stale} for the selected assets: their `wave` partition, or with
    `wave=None` the unpartitioned ones; empty when all are current."""
    graph = definitions.resolve_asset_graph()
    selected = selection.resolve(graph)
    reasons: dict[str, str] = {}
    for key in graph.toposorted_asset_keys:
        node = graph.get(key)
        if key not in selected or (node.partitions_def is None) != (wave is None):
            continue
        tags = latest_tags(instance, key, wave)
        name = key.to_user_string()
        if tags is None:
            reasons[name] = "never materialized"
        elif tags.get(CODE_VERSION) != node.code_version:
            reasons[name] = "code changed"
        elif key == raw_responses.key:
            if tags.get(DATA_VERSION) != wave_fingerprint(wave_inputs(settings, wave)):
                reasons[name] = "exports or codebook changed"
        else:
            for parent in node.parent_keys:
                recorded = tags.get(INPUT_VERSION + parent.to_user_string())
                if recorded != _input_version(instance, graph, key, parent, wave) or (
                    parent.to_user_string() in reasons
                ):
                    reasons[name] = f"upstream {parent.to_user_string()} changed"
                    break
    return reasons
