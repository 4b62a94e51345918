"""The per-wave provenance crate: loadable by rocrate, profile-conformant, deterministic, and
free of key material and restricted content."""

from __future__ import annotations

import dataclasses
import json

import pytest
from rocrate.rocrate import ROCrate

from pipeline.provenance import Provenance, write_crate

RAW_SHA = "a" * 64
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def facts() -> Provenance:
    return Provenance(
        wave="2021-T1",
        raw_files={"2021-T1/leercultuurscan_2021-T1.csv": RAW_SHA, "codebook.yaml": "b" * 64},
        code={
            "git_commit": COMMIT,
            "requirements_lock_sha256": "c" * 64,
            "pipeline_version": "0.1.0",
        },
        runs=[
            {
                "run_id": "run-2",
                "asset": "wave_report",
                "partition": "2021-T1",
                "start": "2026-11-27T10:05:00+00:00",
                "end": "2026-11-27T10:06:00+00:00",
            },
            {
                "run_id": "run-1",
                "asset": "scores",
                "partition": "2021-T1",
                "start": "2026-11-27T10:00:00+00:00",
                "end": "2026-11-27T10:01:00+00:00",
            },
        ],
        assets=[
            {
                "asset": "scores",
                "partition": "2021-T1",
                "code_version": "v3",
                "data_version": "d1",
                "files": [{"path": "data/processed/2021-T1/scores.parquet", "sha256": "d" * 64}],
            },
            {
                "asset": "wave_report",
                "partition": "2021-T1",
                "code_version": "v1",
                "data_version": "d2",
                "files": ["reports/output/2021-T1/wave_report.html"],
            },
        ],
        checks=[
            {
                "check": "k_anonymity",
                "asset": "scores",
                "partition": "2021-T1",
                "passed": True,
                "severity": "ERROR",
            }
        ],
        anonymisation={"k": 5, "key_id": "d6796c90a9dfafd6", "key_source": "demo key"},
        models=[{"model": "SL/full", "engine": "statsmodels", "formula": "y ~ x", "seed": 123}],
        engine="typst",
        reports={"wave_report.html": "e" * 64, "companies/c01.pdf": "f" * 64},
    )


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "companies").mkdir()
    (tmp_path / "wave_report.html").write_text("<html></html>")
    (tmp_path / "companies" / "c01.pdf").write_bytes(b"%PDF-1.7")
    return tmp_path


def test_crate_loads_with_runs_files_and_workflow(folder):
    path = write_crate(folder, facts())
    assert path == folder / "ro-crate-metadata.json"
    crate = ROCrate(folder)

    runs = {a["identifier"]: a for a in crate.get_by_type("CreateAction")}
    assert set(runs) == {"run-1", "run-2"}
    assert runs["run-1"]["startTime"] == "2026-11-27T10:00:00+00:00"
    assert runs["run-1"]["instrument"].id == "#pipeline"
    assert {f["name"] for f in runs["run-1"]["object"]} == set(facts().raw_files)
    assert [f["sha256"] for f in runs["run-1"]["result"]] == ["d" * 64]
    properties = {(p["propertyID"], p["value"]) for p in runs["run-1"]["additionalProperty"]}
    assert {("code_version", "v3"), ("data_version", "d1"), ("asset_check", True)} <= properties

    reports = {e.id: e for e in crate.data_entities}
    assert reports["wave_report.html"]["sha256"] == "e" * 64
    assert reports["companies/c01.pdf"]["encodingFormat"] == "application/pdf"

    workflow = crate.mainEntity
    assert "ComputationalWorkflow" in workflow.type
    assert workflow["version"] == "0.1.0"
    code = {p["propertyID"]: p["value"] for p in workflow["additionalProperty"]}
    assert code["git_commit"] == COMMIT
    assert code["seed"] == 123
    assert crate.root_dataset["datePublished"] == "2026-11-27T10:06:00+00:00"


def test_context_and_profiles(folder):
    document = json.loads(write_crate(folder, facts()).read_text())
    assert document["@context"][0] == "https://w3id.org/ro/crate/1.1/context"
    root = next(e for e in document["@graph"] if e["@id"] == "./")
    profiles = {p["@id"] for p in root["conformsTo"]}
    assert {
        "https://w3id.org/ro/wfrun/process/0.5",
        "https://w3id.org/ro/wfrun/workflow/0.5",
    } <= profiles


def test_same_facts_give_identical_bytes_and_only_the_manifest(folder):
    before = sorted(p.relative_to(folder) for p in folder.rglob("*"))
    first = write_crate(folder, facts()).read_bytes()
    second = write_crate(folder, facts()).read_bytes()
    assert first == second
    after = sorted(p.relative_to(folder) for p in folder.rglob("*"))
    assert set(after) - set(before) == {
        folder.joinpath("ro-crate-metadata.json").relative_to(folder)
    }


@pytest.mark.parametrize("anonymisation", [{"key": "secret"}, {"salting": {"hmac_key": "x"}}])
def test_key_material_is_refused(folder, anonymisation):
    with pytest.raises(ValueError, match="key material"):
        write_crate(folder, dataclasses.replace(facts(), anonymisation=anonymisation))
    assert not (folder / "ro-crate-metadata.json").exists()


def test_raw_files_only_by_name_and_sha256(folder):
    document = json.loads(write_crate(folder, facts()).read_text())
    raw = [e for e in document["@graph"] if e["@id"].startswith("#raw/")]
    assert {e["name"]: e["sha256"] for e in raw} == facts().raw_files
    assert all(set(e) == {"@id", "@type", "name", "sha256", "description"} for e in raw)
    root = next(e for e in document["@graph"] if e["@id"] == "./")
    assert not {p["@id"] for p in root["hasPart"]} & {e["@id"] for e in raw}


def test_check_for_an_unproduced_asset_is_refused(folder):
    check = {
        "check": "c",
        "asset": "other",
        "partition": "2021-T1",
        "passed": False,
        "severity": "WARN",
    }
    with pytest.raises(ValueError, match="no run produced"):
        write_crate(folder, dataclasses.replace(facts(), checks=[check]))
