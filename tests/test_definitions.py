"""The code location loads, and its asset graph matches the committed snapshot.

A change to the graph (an asset, a dependency, a partitioning, a check, a job or a sensor)
shows here as a failing diff. When the change is intended, refresh the snapshot with
`UPDATE_SNAPSHOTS=1 pytest tests/test_definitions.py` and commit it with the change.
"""

import json
import os
from pathlib import Path

import dagster as dg

from assets.definitions import defs

SNAPSHOT = Path(__file__).parent / "snapshots" / "asset_graph.json"


def graph_of(definitions: dg.Definitions) -> dict:
    dg.Definitions.validate_loadable(definitions)
    assets = {}
    for spec in sorted(definitions.resolve_all_asset_specs(), key=lambda s: s.key):
        partitions = spec.partitions_def
        assets[spec.key.to_user_string()] = {
            "group": spec.group_name,
            "deps": sorted(dep.asset_key.to_user_string() for dep in spec.deps),
            "partitions": getattr(partitions, "name", None) if partitions else None,
            "kinds": sorted(spec.kinds),
        }
    graph = definitions.resolve_asset_graph()
    checks = sorted(key.to_user_string() for key in graph.asset_check_keys)
    return {
        "assets": assets,
        "checks": checks,
        "jobs": sorted(
            j.name for j in definitions.resolve_all_job_defs() if not j.name.startswith("__")
        ),
        "sensors": sorted(s.name for s in definitions.sensors or []),
    }


def test_asset_graph_matches_snapshot():
    current = graph_of(defs)
    if os.environ.get("UPDATE_SNAPSHOTS"):
        SNAPSHOT.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
    assert current == json.loads(SNAPSHOT.read_text())
