"""The per-wave provenance crate: loadable by rocrate, valid for the RO-Crate validator (the
Process Run Crate profile), deterministic, with relative ids and a licence, crediting its own
wave's runs, and free of key material, restricted content and export file names."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import pytest
import requests
from conftest import WAVES
from requests_cache import CachedSession
from rocrate.rocrate import ROCrate
from rocrate_validator import services
from rocrate_validator.models import ValidationSettings
from urllib3 import HTTPResponse

from assets.lineage import MANIFEST
from assets.resources import ALL_WAVES
from pipeline.lineage.provenance import LICENSE, PROFILE, Provenance, neutral_inputs, write_crate

# the JSON-LD contexts the crate names, as published (tests/data/jsonld/README.md)
CONTEXTS = {
    "https://w3id.org/ro/crate/1.1/context": "ro-crate-1.1-context.jsonld",
    "https://w3id.org/ro/terms/workflow-run/context": "workflow-run-context.json",
}
JSONLD = Path(__file__).parents[1] / "data" / "jsonld"

RAW_SHA = "a" * 64
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def facts() -> Provenance:
    return Provenance(
        wave="2021-T1",
        raw_files={
            "2021-T1/Bakkerij Verhoeven - p.verhoeven@voorbeeld.nl.csv": RAW_SHA,
            "2021-T1/export.xlsx": "9" * 64,
            "codebook.yaml": "b" * 64,
        },
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
                "files": [{"path": "processed/2021-T1/scores.parquet", "sha256": "d" * 64}],
            },
            {
                "asset": "wave_report",
                "partition": "2021-T1",
                "code_version": "v1",
                "data_version": "d2",
                "files": ["reports/2021-T1/wave_report.html"],
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


def validate(folder: Path, cache: Path):
    """roc-validator on the crate in `folder`, offline: the contexts are put into its HTTP cache
    (in `cache`) as an online run would have fetched them."""
    session = CachedSession(str(cache / "http"), backend="sqlite")
    for url, name in CONTEXTS.items():
        raw = HTTPResponse(
            body=io.BytesIO((JSONLD / name).read_bytes()),
            headers={"Content-Type": "application/ld+json"},
            status=200,
            preload_content=False,
            request_url=url,
        )
        request = requests.Request("GET", url).prepare()
        response = requests.adapters.HTTPAdapter().build_response(request, raw)
        assert response.content  # read now, so that the cache stores the body
        session.cache.save_response(response)
    settings = ValidationSettings(
        rocrate_uri=str(folder),
        profile_identifier="process-run-crate-0.5",
        requirement_severity="REQUIRED",
        offline=True,
        cache_path=cache / "http",
    )
    return services.validate(settings)


def issues(result) -> list[str]:
    return [f"{i.check.identifier}: {i.message}" for i in result.get_issues()]


def test_crate_loads_with_runs_files_and_application(folder):
    path = write_crate(folder, facts())
    assert path == folder / "ro-crate-metadata.json"
    crate = ROCrate(folder)

    runs = {a["identifier"]: a for a in crate.get_by_type("CreateAction")}
    assert set(runs) == {"run-1", "run-2"}
    assert runs["run-1"]["startTime"] == "2026-11-27T10:00:00+00:00"
    assert runs["run-1"]["instrument"].id == "#pipeline"
    assert crate.root_dataset["license"].id == LICENSE["@id"]
    assert {f["name"] for f in runs["run-1"]["object"]} == {
        "2021-T1/export-1",
        "2021-T1/export-2",
        "codebook.yaml",
    }
    assert [f["sha256"] for f in runs["run-1"]["result"]] == ["d" * 64]
    properties = {(p["propertyID"], p["value"]) for p in runs["run-1"]["additionalProperty"]}
    assert {("code_version", "v3"), ("data_version", "d1"), ("asset_check", True)} <= properties

    reports = {e.id: e for e in crate.data_entities}
    assert reports["wave_report.html"]["sha256"] == "e" * 64
    assert reports["companies/c01.pdf"]["encodingFormat"] == "application/pdf"

    application = runs["run-1"]["instrument"]
    assert "SoftwareApplication" in application.type
    assert application["version"] == "0.1.0"
    code = {p["propertyID"]: p["value"] for p in application["additionalProperty"]}
    assert code["git_commit"] == COMMIT
    assert code["seed"] == 123
    assert crate.root_dataset["datePublished"] == "2026-11-27T10:06:00+00:00"


def test_context_and_profile(folder):
    document = json.loads(write_crate(folder, facts()).read_text())
    assert document["@context"] == list(CONTEXTS)
    root = next(e for e in document["@graph"] if e["@id"] == "./")
    assert root["conformsTo"] == {"@id": PROFILE[0]}


def test_the_crate_passes_the_ro_crate_validator(folder, tmp_path):
    write_crate(folder, facts())
    result = validate(folder, tmp_path)
    assert result.passed(), issues(result)


def test_the_validator_finds_what_the_profile_requires(folder, tmp_path):
    """The validation can fail: a crate without its licence, or whose run names no
    application, does not pass."""
    path = write_crate(folder, facts())
    document = json.loads(path.read_text())
    for entity in document["@graph"]:
        entity.pop("license", None)
        entity.pop("instrument", None)
    path.write_text(json.dumps(document))
    found = "\n".join(issues(validate(folder, tmp_path)))
    assert "license" in found and "instrument" in found


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


def test_raw_files_only_by_neutral_id_and_sha256(folder):
    text = write_crate(folder, facts()).read_text()
    for token in ("Bakkerij", "Verhoeven", "verhoeven", "voorbeeld", "export.xlsx"):
        assert token not in text
    document = json.loads(text)
    raw = [e for e in document["@graph"] if e["@id"].startswith("#raw/")]
    assert {e["name"]: e["sha256"] for e in raw} == {
        "2021-T1/export-1": RAW_SHA,  # the names in order: "Bakkerij ..." before "export.xlsx"
        "2021-T1/export-2": "9" * 64,
        "codebook.yaml": "b" * 64,
    }
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


def test_neutral_ids_number_each_wave_folder_in_name_order():
    files = {"w2/b.csv": "2", "w1/z.sav": "3", "w1/a.csv": "1", "codebook.yaml": "c"}
    assert neutral_inputs(files) == {
        "codebook.yaml": "c",
        "w1/export-1": "1",
        "w1/export-2": "3",
        "w2/export-1": "2",
    }


def test_an_absolute_output_path_is_refused(folder):
    scores = {**facts().assets[0], "files": [{"path": "/home/steward/data/processed/x.csv"}]}
    with pytest.raises(ValueError, match="expected a path relative to the data or reports"):
        write_crate(folder, dataclasses.replace(facts(), assets=[scores, facts().assets[1]]))


# --- the crates of the demo's waves -------------------------------------------------------------


def test_each_waves_crate_credits_its_own_waves_runs_only(pipeline_run):
    """Before, every crate credited the latest wave's raw_responses run: a run's job knows the
    assets it does not run as unpartitioned stubs."""
    results = pipeline_run.results
    stages = ("validate/{}", "{}", "reports/{}")
    for wave in WAVES:
        crate = ROCrate(pipeline_run.settings.reports_dir / wave)
        runs = {e["identifier"]: e for e in crate.get_by_type("CreateAction")}
        own = {results[stage.format(wave)].run_id for stage in stages}
        others = {results[stage.format(w)].run_id for stage in stages for w in WAVES if w != wave}
        assert own | {results[ALL_WAVES].run_id} == set(runs)
        assert not others & set(runs)
        ingest = runs[results[f"validate/{wave}"].run_id]
        assert f"raw_responses[{wave}]" in ingest["name"]


def test_the_demo_crates_pass_the_validator_with_relative_ids(pipeline_run, tmp_path):
    settings = pipeline_run.settings
    for wave in WAVES:
        folder = settings.reports_dir / wave
        text = (folder / MANIFEST).read_text()
        assert str(settings.data_dir.parent) not in text and "file:" not in text
        ids = [e["@id"] for e in json.loads(text)["@graph"]]
        outside = [i for i in ids if not i.startswith(("#", "./", "https://"))]
        assert outside and all((folder / i).is_file() for i in outside)  # files of the crate
    result = validate(settings.reports_dir / WAVES[1], tmp_path)  # alike for each wave: one
    assert result.passed(), issues(result)
