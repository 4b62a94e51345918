"""The data dictionary of the shareable zone (issue #22.1-2): `data/processed/README.md` and
`datapackage.json` describe every column of every shareable table and nothing that is absent,
the package validates with the `frictionless` library against the files themselves, and the
parquet files and Dagster's UI carry the same descriptions."""

from pathlib import Path

import dagster as dg
import pytest
from conftest import check_dictionary

from pipeline.instrument.codebook import SUPPRESSED, load_codebook
from pipeline.instrument.dictionary import PER_WAVE, fields, table_of, tables
from pipeline.lineage.settings import ALL_WAVES

CB = load_codebook(Path(__file__).resolve().parents[2] / "data" / "raw" / "codebook.yaml")


def test_the_demo_runs_dictionary_describes_exactly_its_files(scan_run):
    processed = scan_run.data / "processed"
    package = check_dictionary(processed)
    paths = {r["path"] for r in package["resources"]}
    assert {"2019-T0/responses.parquet", "all_waves/responses_long.parquet"} <= paths
    assert len(paths) == 3 * 21 + 11  # every table of the contract, in every wave
    fields_of = {
        f["name"]: f
        for r in package["resources"]
        if r["path"] == "2021-T1/responses.parquet"
        for f in r["schema"]["fields"]
    }
    item = fields_of["LT4"]["description"]
    # the wording in the instrument's language and in English, the key, the scale, the codes
    assert CB.item_text["LT4"] in item and CB.item_text_en["LT4"] in item
    assert "reverse-keyed item of scale LT" in item and "5 = helemaal eens" in item
    assert "9 = weet niet / n.v.t." in item and "-99 = gezien, niet beantwoord" in item
    education = fields_of["education"]
    assert education["constraints"]["enum"] == [*CB.background["education"].levels, SUPPRESSED]
    assert SUPPRESSED in education["description"] and "Empty: not given" in education["description"]


def test_the_ui_shows_the_column_descriptions(scan_run):
    """The materialization of anonymised_responses carries the dictionary's descriptions as its
    column schema (what the asset page's columns show)."""
    with dg.DagsterInstance.from_config(str(scan_run.home)) as instance:
        records = instance.fetch_materializations(dg.AssetKey("anonymised_responses"), limit=1)
    metadata = records.records[0].asset_materialization.metadata
    columns = metadata["dagster/column_schema"].value.columns
    assert [c.name for c in columns][:3] == ["person_id", "company_id", "wave"]
    assert all(c.description for c in columns)
    assert columns[0].description.startswith("the respondent's pseudonym")


def test_a_column_the_dictionary_does_not_know_names_the_table_and_column():
    table = table_of(PER_WAVE, "reliability.csv")
    with pytest.raises(ValueError, match=r"reliability.csv \(per_wave\).*'alpha_new'"):
        fields(table, ["scale", "alpha_new"], CB)


def test_every_table_of_the_contract_is_written_by_an_asset():
    """The contract's files are those the shareable IO manager writes (by the assets' `file`
    metadata), plus nothing: a stale entry would describe a file nobody writes."""
    from assets.catalog import SHAREABLE_TABLES
    from assets.definitions import ALL_ASSETS

    written = {}
    for asset in ALL_ASSETS:
        for key in asset.keys:
            if asset.get_io_manager_key_for_asset_key(key) == "shareable_io":
                kind = PER_WAVE if asset.partitions_def is not None else ALL_WAVES
                written[(kind, asset.metadata_by_key[key]["file"])] = key.to_user_string()
    assert set(written) == {(t.folder, t.file) for t in tables()}
    assert set(written.values()) | {"responses_sav"} == set(SHAREABLE_TABLES)
