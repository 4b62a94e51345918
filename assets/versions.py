"""Code versions derived from source text, so a change to the code marks its assets stale."""

from __future__ import annotations

import hashlib
import inspect
from types import ModuleType

import dagster as dg


def source_version(*modules: ModuleType) -> str:
    """A short hash of the modules' source: changes exactly when their code changes."""
    digest = hashlib.sha256()
    for module in sorted(modules, key=lambda m: m.__name__):
        digest.update(module.__name__.encode())
        digest.update(inspect.getsource(module).encode())
    return digest.hexdigest()[:16]


def latest_data_version(instance: dg.DagsterInstance, key: dg.AssetKey, partition: str):
    """The data version of the asset partition's last materialization, or None."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), limit=1
    ).records
    if not records:
        return None
    return records[0].asset_materialization.tags.get("dagster/data_version")
