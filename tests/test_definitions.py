"""The code location loads, and its asset graph matches the committed snapshot and the diagram
in the developer guide.

A change to the graph (an asset, a dependency, a partitioning, a check, a job or a sensor)
shows here as a failing diff. When the change is intended, refresh the snapshot and the diagram
with `UPDATE_SNAPSHOTS=1 pytest tests/test_definitions.py` and commit them with the change.
"""

import importlib
import json
import os
import pkgutil
import re
import sys
from functools import cache
from pathlib import Path

import dagster as dg
import pytest

import assets
from assets.definitions import PROTECT_JOB, REPORT_JOB, VALIDATE_JOB, defs
from assets.versions import shareable, source_version

SNAPSHOT = Path(__file__).parent / "snapshots" / "asset_graph.json"
GUIDE = Path(__file__).parents[1] / "docs" / "developer.md"
DIAGRAM = re.compile(r"(## The asset graph\n.*?```mermaid\n)(.*?)(```)", re.DOTALL)


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


def mermaid_of(graph: dict) -> str:
    """The asset graph as a Mermaid flowchart: one box per asset in its group, the groups in the
    order the data flows through them (their assets' mean depth in the graph), a cross-wave
    asset (not partitioned) in a double box."""
    assets = graph["assets"]

    @cache
    def depth(name: str) -> int:
        return 1 + max((depth(dep) for dep in assets[name]["deps"]), default=-1)

    def mean_depth(group: str) -> float:
        depths = [depth(name) for name, a in assets.items() if a["group"] == group]
        return sum(depths) / len(depths)

    groups = sorted({a["group"] for a in assets.values()}, key=lambda g: (mean_depth(g), g))
    lines = ["graph LR"]
    for group in groups:
        lines.append(f"  subgraph {group}")
        for name, asset in sorted(assets.items()):
            if asset["group"] == group:
                lines.append(
                    f"    {name}[{name}]" if asset["partitions"] else f"    {name}[[{name}]]"
                )
        lines.append("  end")
    lines += [f"  {dep} --> {name}" for name, a in sorted(assets.items()) for dep in a["deps"]]
    return "\n".join(lines) + "\n"


def test_the_developer_guide_draws_the_asset_graph():
    diagram = mermaid_of(graph_of(defs))
    assert "raw_responses --> validated_responses" in diagram
    guide = GUIDE.read_text()
    if os.environ.get("UPDATE_SNAPSHOTS"):
        guide = DIAGRAM.sub(lambda m: m[1] + diagram + m[3], guide)
        GUIDE.write_text(guide)
    shown = DIAGRAM.search(guide)
    assert shown, f"{GUIDE.name} has no mermaid block under '## The asset graph'"
    assert shown[2] == diagram, "refresh it: UPDATE_SNAPSHOTS=1 pytest tests/test_definitions.py"


def test_a_table_stored_with_the_data_dictionary_is_stale_when_the_dictionary_changes():
    """Every asset that stores a shareable table (whose file carries the dictionary's
    descriptions) has a code version over the dictionary too: `shareable(<module's version>)`."""
    folder = [str(Path(assets.__file__).parent)]
    modules = [importlib.import_module(f"assets.{m.name}") for m in pkgutil.iter_modules(folder)]
    versions = {
        value
        for module in modules
        for name, value in vars(module).items()
        if name.endswith("CODE_VERSION") and isinstance(value, str)
    }
    with_dictionary = {shareable(v) for v in versions}
    checked = 0
    for asset in defs.assets or ():
        for key in asset.keys:
            if asset.get_io_manager_key_for_asset_key(key) == "shareable_io":
                assert asset.code_versions_by_key[key] in with_dictionary, key
                checked += 1
    assert checked > 20
    assert len({shareable("abc"), shareable("abd"), "abc", "abd"}) == 4


def test_a_stage_reads_no_result_of_its_own_stage_in_another_wave():
    """`scan run` reads the status once per stage (assets/cli.py, `run_all`): that holds only
    while no asset of a per-wave stage reads an asset of the same stage through a mapping
    other than wave to same wave."""
    graph = defs.resolve_asset_graph()
    checked = 0
    for job in (VALIDATE_JOB, PROTECT_JOB, REPORT_JOB):
        selected = job.selection.resolve(graph)
        for key in selected:
            for parent in graph.get(key).parent_keys & selected:
                mapping = graph.get_partition_mapping(key, parent)
                assert not isinstance(mapping, dg.AllPartitionMapping), (job.name, key, parent)
                assert graph.get(parent).partitions_def == graph.get(key).partitions_def
                checked += 1
    assert checked > 20


def test_a_code_version_follows_the_source_without_importing_it(tmp_path, monkeypatch):
    module = tmp_path / "versioned_probe.py"
    module.write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    first = source_version("versioned_probe")
    assert source_version("versioned_probe") == first
    module.write_text("X = 2\n")
    assert source_version("versioned_probe") != first
    assert "versioned_probe" not in sys.modules
    with pytest.raises(ValueError, match="no module 'pipeline.reporting.no_such_module'"):
        source_version("pipeline.reporting.no_such_module")
