"""Keyed pseudonyms: stable across waves and spellings, unrelated under another key, and a key
that never comes from the repository or the data."""

import shutil

import pandas as pd
import pytest
from conftest import DEMO_RAW

from pipeline.privacy.pseudonyms import (
    DEMO_KEY,
    PROJECT_ROOT,
    PseudonymKey,
    PseudonymKeyError,
    is_demo,
    load_key,
    pseudonymise,
)

KEY = PseudonymKey(b"k" * 40, "test")
OTHER = PseudonymKey(b"o" * 40, "test")


def test_same_code_same_pseudonym_whatever_the_spelling():
    codes = pd.Series(["MA14EN", " ma14en", "Ma14En ", "JO02UT", None, "  "])
    ids = pseudonymise(codes, KEY, "p")
    assert ids[0] == ids[1] == ids[2] != ids[3]
    assert ids[4] is pd.NA and ids[5] is pd.NA
    assert ids[0].startswith("p_") and len(ids[0]) == 18
    assert "MA14EN" not in ids[0] and "ma14en" not in ids[0]


def test_another_key_gives_unrelated_pseudonyms():
    codes = pd.Series([f"CODE{i:03d}" for i in range(200)])
    mine, theirs = pseudonymise(codes, KEY, "p"), pseudonymise(codes, OTHER, "p")
    assert mine.is_unique and theirs.is_unique
    assert not set(mine) & set(theirs)
    assert KEY.key_id != OTHER.key_id and "k" * 8 not in KEY.key_id


def demo_copy(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(DEMO_RAW, data / "raw", ignore=shutil.ignore_patterns("_staging"))
    return data


def test_key_sources(tmp_path):
    data = demo_copy(tmp_path)
    assert load_key(data, {"SCAN_PSEUDONYM_KEY": "s" * 40}).secret == b"s" * 40
    with pytest.raises(PseudonymKeyError, match="shorter than 32"):
        load_key(data, {"SCAN_PSEUDONYM_KEY": "short"})

    outside = tmp_path / "secrets" / "scan.key"
    outside.parent.mkdir()
    outside.write_text("f" * 48 + "\n")
    assert load_key(data, {"SCAN_PSEUDONYM_KEY_FILE": str(outside)}).secret == b"f" * 48
    inside_data = data / "scan.key"
    inside_data.write_text("f" * 48)
    with pytest.raises(PseudonymKeyError, match="must live outside"):
        load_key(data, {"SCAN_PSEUDONYM_KEY_FILE": str(inside_data)})
    with pytest.raises(PseudonymKeyError, match="must live outside"):
        load_key(data, {"SCAN_PSEUDONYM_KEY_FILE": str(PROJECT_ROOT / "scan.key")})


def test_demo_key_only_for_the_unchanged_demo(tmp_path):
    data = demo_copy(tmp_path)
    assert is_demo(data)
    assert load_key(data, {}).secret == DEMO_KEY
    export = next((data / "raw" / "2021-T1").glob("*.csv"))
    export.write_bytes(export.read_bytes().replace(b"True", b"False", 1))
    assert not is_demo(data)
    with pytest.raises(PseudonymKeyError, match="SCAN_PSEUDONYM_KEY"):
        load_key(data, {})
