"""Per-wave provenance manifest: an RO-Crate following the Process Run Crate profile (0.5).

The crate describes, next to the wave's rendered reports, which restricted raw files (by a
neutral id and sha256 only: an export's file name may name a company or a person), which code
version and which Dagster runs produced them. Run ids and times are recorded here and nowhere
else. Every id is relative: reports by their path in the crate, other outputs by their path under
the data or reports folder, never the machine's. The output is a pure function of the facts
passed in, so the same facts give byte-identical JSON.

Each Dagster run is a CreateAction of one application, the pipeline at its commit: a Process Run
Crate. (A Workflow Run Crate would also need the workflow's definition as a file in the crate.)
"""

from __future__ import annotations

import json
import mimetypes
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import quote

from rocrate.model.contextentity import ContextEntity
from rocrate.model.entity import Entity
from rocrate.rocrate import ROCrate

from pipeline.lineage.files import write_atomic

RO_CRATE_VERSION = "1.1"
WORKFLOW_RUN_CONTEXT = "https://w3id.org/ro/terms/workflow-run/context"
PROFILE = ("https://w3id.org/ro/wfrun/process/0.5", "Process Run Crate")
# The licence of the crate (the wave's reports and this metadata) where the study declares none.
LICENSE = {"@id": "https://creativecommons.org/licenses/by/4.0/", "name": "CC BY 4.0"}
APPLICATION_ID = "#pipeline"
ALLOWED_KEY_FIELDS = frozenset({"key_id", "key_source"})
SECRET_WORDS = ("key", "secret", "pepper")


@dataclass(frozen=True)
class Provenance:
    """What the caller knows about one wave; see the module docstring."""

    wave: str
    raw_files: dict[str, str]  # sha256 by path under raw/: the wave's exports and codebook.yaml
    code: dict[str, str]
    runs: list[dict]
    assets: list[dict]
    checks: list[dict]
    anonymisation: dict
    models: list[dict]
    engine: str
    reports: dict[str, str]


def write_crate(folder: Path, facts: Provenance) -> Path:
    """Write `folder/ro-crate-metadata.json` (only that file) and return its path."""
    refuse_secrets(facts.anonymisation)
    metadata = build_crate(folder, facts).metadata
    text = json.dumps(metadata.generate(), indent=4, sort_keys=True, ensure_ascii=False)
    return write_atomic(folder / metadata.id, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def refuse_secrets(anonymisation: dict, where: str = "anonymisation") -> None:
    """Only a key's id and source may enter the manifest, never key material."""
    for name, value in anonymisation.items():
        lowered = str(name).lower()
        if any(word in lowered for word in SECRET_WORDS) and name not in ALLOWED_KEY_FIELDS:
            raise ValueError(
                f"{where}.{name}: only {sorted(ALLOWED_KEY_FIELDS)} may describe the key; "
                "refusing to write what may be key material into the provenance manifest"
            )
        if isinstance(value, dict):
            refuse_secrets(value, f"{where}.{name}")


def neutral_inputs(files: dict[str, str]) -> dict[str, str]:
    """The raw inputs as shareable outputs name them: each export (`<wave>/<file name>`) as
    `<wave>/export-<n>`, numbered in file-name order, with its sha256; the codebook, which the
    pipeline names itself, as it is. The restricted zone (raw_responses' metadata) keeps the
    names, so a steward finds the file by its sha256."""
    neutral, numbers = {}, defaultdict(int)
    for name, sha in sorted(files.items()):
        folder = name.rpartition("/")[0]
        if folder:
            numbers[folder] += 1
            name = f"{folder}/export-{numbers[folder]}"
        neutral[name] = sha
    return neutral


def build_crate(folder: Path, facts: Provenance) -> ROCrate:
    if not facts.runs:
        raise ValueError(f"wave {facts.wave}: no runs, so nothing to describe")
    crate = ROCrate(version=RO_CRATE_VERSION)
    crate.metadata.extra_contexts.append(WORKFLOW_RUN_CONTEXT)
    describe_root(crate, facts)
    add_reports(crate, folder, facts.reports)
    application = add_application(crate, facts)
    raw = [
        add_raw_file(crate, name, sha)
        for name, sha in sorted(neutral_inputs(facts.raw_files).items())
    ]
    add_runs(crate, facts, application, raw)
    return crate


def describe_root(crate: ROCrate, facts: Provenance) -> None:
    root = crate.root_dataset
    root["name"] = f"Leercultuurscan wave {facts.wave}: reports and provenance"
    root["description"] = (
        "Reports of one wave with the provenance of their production: restricted inputs "
        "(by a neutral id and sha256 only), code version, Dagster runs, asset versions and "
        "checks."
    )
    root["license"] = add_entity(crate, LICENSE["@id"], "CreativeWork", name=LICENSE["name"])
    # The library stamps "now"; the latest run end keeps the output reproducible.
    root["datePublished"] = max(run["end"] for run in facts.runs)
    root["conformsTo"] = add_profile(crate, *PROFILE)
    root["additionalProperty"] = property_values(
        crate, "#anonymisation", facts.anonymisation, "anonymisation"
    )


def add_profile(crate: ROCrate, uri: str, name: str) -> Entity:
    version = uri.rsplit("/", 1)[-1]
    return add_entity(crate, uri, "CreativeWork", name=name, version=version)


def add_reports(crate: ROCrate, folder: Path, reports: dict[str, str]) -> None:
    for rel, sha in sorted(reports.items()):
        if not (folder / rel).is_file():
            raise FileNotFoundError(f"report {rel} is not in {folder}")
        crate.add_file(
            dest_path=rel,
            properties={
                "name": rel,
                "sha256": sha,
                "encodingFormat": media_type(rel),
            },
        )


def add_application(crate: ROCrate, facts: Provenance) -> Entity:
    """The pipeline is identified by version and commit; its code is not shipped in the crate."""
    language = add_entity(
        crate, "#dagster", "ComputerLanguage", name="Dagster (Python)", url="https://dagster.io"
    )
    engine = add_entity(
        crate, ref("#engine", facts.engine), "SoftwareApplication", name=facts.engine
    )
    models = [
        pv
        for model in sorted(facts.models, key=lambda m: str(m["model"]))
        for pv in model_properties(crate, model)
    ]
    return add_entity(
        crate,
        APPLICATION_ID,
        ["SoftwareApplication", "SoftwareSourceCode"],
        name="leercultuurscan pipeline",
        version=facts.code.get("pipeline_version", ""),
        programmingLanguage=language,
        softwareRequirements=engine,
        additionalProperty=property_values(crate, "#code", facts.code, "code") + models,
    )


def model_properties(crate: ROCrate, model: dict) -> list[Entity]:
    name = str(model["model"])
    spec = {field: value for field, value in model.items() if field != "model"}
    return property_values(crate, ref("#model", name), spec, f"model {name}")


def add_raw_file(crate: ROCrate, name: str, sha: str) -> Entity:
    """A restricted input: a `#` identifier, so it is a contextual entity and never shipped."""
    return add_entity(
        crate,
        ref("#raw", name),
        "File",
        name=name,
        sha256=sha,
        description="Restricted raw input; described by a neutral id and sha256 only.",
    )


def add_runs(crate: ROCrate, facts: Provenance, application: Entity, raw: list[Entity]) -> None:
    """One CreateAction per Dagster run, carrying the versions and checks of its assets."""
    by_run: dict[str, list[dict]] = defaultdict(list)
    for run in facts.runs:
        by_run[run["run_id"]].append(run)
    produced = {(run["asset"], run.get("partition")) for run in facts.runs}
    assets = group(facts.assets, produced, "asset")
    checks = group(facts.checks, produced, "check")
    actions = []
    for run_id, entries in sorted(by_run.items()):
        keys = sorted({(e["asset"], e.get("partition")) for e in entries}, key=str)
        results = [
            add_output(crate, f) for k in keys for a in assets[k] for f in a.get("files", [])
        ]
        actions.append(
            add_entity(
                crate,
                ref("#run", run_id),
                "CreateAction",
                name=f"Dagster run {run_id}: " + ", ".join(label(*k) for k in keys),
                identifier=run_id,
                instrument=application,
                startTime=min(e["start"] for e in entries),
                endTime=max(e["end"] for e in entries),
                object=raw,
                result=sorted(set(results), key=lambda e: e.id),
                additionalProperty=[
                    pv for k in keys for pv in asset_properties(crate, run_id, k, assets, checks)
                ],
            )
        )
    crate.root_dataset["mentions"] = actions


def group(entries: list[dict], produced: set, kind: str) -> dict[tuple, list[dict]]:
    """Entries by (asset, partition); each must belong to an asset partition some run produced."""
    grouped: dict[tuple, list[dict]] = defaultdict(list)
    for entry in entries:
        key = (entry["asset"], entry.get("partition"))
        if key not in produced:
            raise ValueError(f"{kind} {entry} refers to {label(*key)}, which no run produced")
        grouped[key].append(entry)
    return grouped


def asset_properties(crate, run_id, key, assets, checks) -> list[Entity]:
    base = ref("#run", run_id, key[0], key[1] or "-")
    values = []
    for asset in assets[key]:
        versions = {name: asset[name] for name in ("code_version", "data_version")}
        values += property_values(crate, base, versions, label(*key))
    for check in sorted(checks[key], key=lambda c: c["check"]):
        values.append(
            add_entity(
                crate,
                ref(base, "check", check["check"]),
                "PropertyValue",
                name=f"{label(*key)} check {check['check']}",
                propertyID="asset_check",
                value=bool(check["passed"]),
                description=f"severity {check['severity']}",
            )
        )
    return values


def add_output(crate: ROCrate, file: str | dict) -> Entity:
    """An asset's output file, by its path under the data or reports folder; sha256 if known."""
    path, sha = (file, None) if isinstance(file, str) else (file["path"], file.get("sha256"))
    if PurePosixPath(path).is_absolute():
        raise ValueError(f"output {path}: expected a path relative to the data or reports folder")
    extra = {"sha256": sha} if sha else {}
    return add_entity(
        crate, ref("#output", path), "File", name=path, encodingFormat=media_type(path), **extra
    )


def media_type(path: str) -> str:
    return mimetypes.guess_type(path)[0] or "application/octet-stream"


def property_values(crate: ROCrate, base: str, values: dict, about: str) -> list[Entity]:
    return [
        add_entity(
            crate,
            ref(base, name),
            "PropertyValue",
            name=f"{about} {name}",
            propertyID=name,
            value=scalar(value),
        )
        for name, value in sorted(values.items())
    ]


def add_entity(crate: ROCrate, id_: str, type_: str | list[str], /, **props) -> Entity:
    return crate.add(ContextEntity(crate, id_, {"@type": type_, **props}))


def ref(base: str, *parts: str) -> str:
    """A fragment identifier; parts are percent-encoded so the @id stays a valid IRI."""
    return "/".join([base, *(quote(str(p), safe="/") for p in parts)])


def label(asset: str, partition: str | None) -> str:
    return f"{asset}[{partition}]" if partition else asset


def scalar(value: object) -> str | int | float | bool:
    """PropertyValue values stay literals; structured ones become canonical JSON text."""
    if isinstance(value, str | int | float | bool):
        return value
    return json.dumps(value, sort_keys=True, default=str)
