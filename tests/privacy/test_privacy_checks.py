"""The privacy checks can fail: run on real anonymised demo rows, then on corrupted copies."""

import numpy as np
import pandas as pd
import pytest
from conftest import DEMO_RAW

from assets.privacy import (
    k_anonymity,
    no_identifier_values,
    no_identifying_columns,
    public_k_anonymity,
    public_no_identifying_columns,
)
from assets.resources import ScanConfig
from pipeline.ingest.readers import read_wave
from pipeline.instrument.codebook import load_codebook
from pipeline.privacy.anonymise import cell_texts, pseudonymised, public_use, scientific_use
from pipeline.privacy.disclosure import background_labels
from pipeline.privacy.pseudonyms import DEMO_KEY, PseudonymKey
from pipeline.validate.quality import quality_reasons, read_register, split_quarantine

CB = load_codebook(DEMO_RAW / "codebook.yaml")
SCAN = ScanConfig(data_dir=str(DEMO_RAW.parent), reports_dir="unused")


@pytest.fixture(scope="module")
def wave():
    raw = read_wave(DEMO_RAW / "2021-T1", CB, DEMO_RAW)
    reasons = quality_reasons(
        raw, CB, read_register(DEMO_RAW / "company_register.csv", "company_code")
    )
    validated, _ = split_quarantine(raw, reasons)
    restricted = pseudonymised({"2021-T1": validated}, CB, PseudonymKey(DEMO_KEY, "demo key"))
    shared, _, _ = scientific_use(restricted, "2021-T1", CB)
    return validated, shared


def test_k_anonymity_fails_when_the_suppression_is_undone(wave):
    validated, shared = wave
    assert k_anonymity(scan=SCAN, anonymised_responses=shared).passed
    generalised_only = background_labels(validated, CB).reset_index(drop=True)
    exposed = shared.assign(**{name: generalised_only[name] for name in CB.background})
    result = k_anonymity(scan=SCAN, anonymised_responses=exposed)
    assert not result.passed
    assert result.metadata["records_under_k"].value > 0
    public, _, _ = public_use(shared, CB)
    assert public_k_anonymity(scan=SCAN, public_responses=public).passed
    coarse = exposed.drop(columns="person_id").assign(
        **{n: exposed[n].replace(b.coarser) for n, b in CB.background.items()}
    )
    result = public_k_anonymity(scan=SCAN, public_responses=coarse)
    assert not result.passed and result.metadata["records_under_k"].value > 0


def test_identifying_columns_and_values_are_caught(wave):
    validated, shared = wave
    assert no_identifying_columns(scan=SCAN, anonymised_responses=shared).passed
    with_email = shared.assign(email=validated["email"].to_numpy())
    assert not no_identifying_columns(scan=SCAN, anonymised_responses=with_email).passed
    public, _, _ = public_use(shared, CB)
    assert public_no_identifying_columns(scan=SCAN, public_responses=public).passed
    assert not public_no_identifying_columns(scan=SCAN, public_responses=shared).passed

    check = {"scan": SCAN, "validated_responses": validated}
    assert no_identifier_values(anonymised_responses=shared, **check).passed
    leaked = shared.copy()
    leaked["department"] = leaked["department"].astype("string")
    leaked.loc[3, "department"] = validated.loc[3, CB.respondent_id]
    assert not no_identifier_values(anonymised_responses=leaked, **check).passed
    renamed = shared.assign(company_id=validated[CB.company_id].to_numpy())
    assert not no_identifier_values(anonymised_responses=renamed, **check).passed


def stacked_texts(frame: pd.DataFrame) -> set[str]:
    """The check's first definition: every cell stacked into one column of text."""
    return {str(v) for v in np.unique(frame.astype("string").stack().dropna())}


def test_cell_texts_are_every_cell_as_text(wave):
    _, shared = wave
    assert cell_texts(shared) == stacked_texts(shared)
    odd = pd.DataFrame(
        {
            "zeros": [0.0, -0.0, np.nan, 2.5, 0.0],
            "text": pd.array(["a", None, "b", "a", "-0.0"], dtype="string"),
            "counts": pd.array([1, None, 3, 3, 1], dtype="Int64"),
        }
    )
    assert cell_texts(odd) == stacked_texts(odd) == {"0.0", "-0.0", "2.5", "a", "b", "1", "3"}


def test_an_identifier_number_in_an_item_column_is_caught(wave):
    validated, shared = wave
    latitudes = validated["location_latitude"].dropna()
    # a float column writes 53.1070 as 53.107: the check must still know it
    for latitude in (latitudes.iloc[0], latitudes[latitudes.str.endswith("0")].iloc[0]):
        leaked = shared.copy()
        leaked.loc[0, CB.items[0]] = float(latitude)
        result = no_identifier_values(
            scan=SCAN, anonymised_responses=leaked, validated_responses=validated
        )
        assert not result.passed and result.metadata["identifier_values_found"].value == 1
    clean = no_identifier_values(
        scan=SCAN, anonymised_responses=shared, validated_responses=validated
    )
    assert clean.passed, "whole numbers in a comment are not taken for coordinates"
