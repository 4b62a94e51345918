"""Which per-wave assets need recomputing, and why, read from the Dagster instance.

An asset partition is up to date when its last materialization was made by the current code
(`dagster/code_version`) from the data versions its inputs have now
(`dagster/input_data_version/<input>`); `raw_responses` is up to date when its data version
equals the fingerprint of the wave's files, the codebook and the code.
"""

import hashlib

import dagster as dg

from assets.ingest import raw_responses, wave_fingerprint, wave_inputs
from pipeline.settings import Settings

DATA_VERSION = "dagster/data_version"
CODE_VERSION = "dagster/code_version"
INPUT_VERSION = "dagster/input_data_version/"


def latest_tags(instance: dg.DagsterInstance, key: dg.AssetKey, partition: str) -> dict | None:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), limit=1
    ).records
    return dict(records[0].asset_materialization.tags or {}) if records else None


def partition_input_version(data_version: str) -> str:
    """How Dagster records the version of a one-partition input: the sha256 of the partition's
    data version (dagster/_core/execution/context/data_version_cache.py)."""
    return hashlib.sha256(data_version.encode("utf8")).hexdigest()


def stale_reasons(
    instance: dg.DagsterInstance, definitions: dg.Definitions, settings: Settings, wave: str
) -> dict[str, str]:
    """{asset: why it is stale} for the wave's partitioned assets; empty when all are current."""
    graph = definitions.resolve_asset_graph()
    reasons: dict[str, str] = {}
    for key in graph.toposorted_asset_keys:
        node = graph.get(key)
        if node.partitions_def is None:
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
                parent_tags = latest_tags(instance, parent, wave) or {}
                recorded = tags.get(INPUT_VERSION + parent.to_user_string())
                current = partition_input_version(parent_tags.get(DATA_VERSION, ""))
                if recorded != current or parent.to_user_string() in reasons:
                    reasons[name] = f"upstream {parent.to_user_string()} changed"
                    break
    return reasons
