"""The quality rules against the demo generator's truth, and the contracts on their own."""

from pathlib import Path

import pandas as pd
import pytest
from conftest import CODEBOOK, DEMO_RAW

from pipeline.codebook import load_codebook
from pipeline.quality import (
    REASONS,
    StructureError,
    check_structure,
    quality_reasons,
    quality_summary,
    read_register,
    split_quarantine,
)
from pipeline.readers import read_wave

CB = load_codebook(CODEBOOK)
REGISTER = read_register(DEMO_RAW / "company_register.csv")
WAVES = ["2019-T0", "2021-T1", "2022-T2"]


@pytest.fixture(scope="module", params=WAVES)
def wave(request):
    frame = read_wave(DEMO_RAW / request.param, CB, DEMO_RAW)
    return request.param, frame, quality_reasons(frame, CB, REGISTER)


def test_every_planted_problem_and_only_those_are_found(wave, truth_rows):
    name, frame, reasons = wave
    truth = truth_rows[truth_rows["wave"] == name].set_index(["source_file", "source_row"])
    found = pd.Series(
        reasons.values, index=[frame["_source_file"], frame["_source_row"].astype(str)]
    )
    planted = truth["problems"].reindex(found.index)
    assert planted.notna().all(), "every raw row is in the truth"
    for reason in REASONS:
        flagged = found.str.split(";").apply(lambda r, reason=reason: reason in r)
        expected = planted.str.split(";").apply(lambda r, reason=reason: reason in r)
        missed = flagged.index[expected & ~flagged].tolist()
        extra = flagged.index[flagged & ~expected].tolist()
        assert not missed and not extra, f"{name} {reason}: missed {missed[:5]}, extra {extra[:5]}"


def test_quarantine_and_validated_partition_the_raw_rows(wave):
    name, frame, reasons = wave
    validated, quarantine = split_quarantine(frame, reasons)
    assert len(validated) + len(quarantine) == len(frame)
    keys = lambda f: set(zip(f["_source_file"], f["_source_row"], strict=True))  # noqa: E731
    assert keys(validated) | keys(quarantine) == keys(frame)
    assert not keys(validated) & keys(quarantine)
    assert (quarantine["_reasons"] != "").all()
    # the kept rows pass every rule again, with the wave's median duration
    again = quality_reasons(validated, CB, REGISTER, float(frame["duration_s"].median()))
    assert (again == "").all()

    summary = quality_summary(name, len(frame), quarantine).set_index("reason")["rows"]
    assert summary["raw_rows"] == len(frame)
    assert summary["validated"] + summary["quarantined"] == len(frame)
    assert set(summary.index) == {"raw_rows", "validated", "quarantined", *REASONS}


def test_a_structural_problem_names_the_file_and_column(wave):
    _, frame, _ = wave
    with pytest.raises(StructureError, match=r"leercultuurscan_.*column .LT3. is missing"):
        check_structure(frame.drop(columns=["LT3"]), CB)
    with pytest.raises(StructureError, match="column .SL1.: expected dtype"):
        check_structure(frame.assign(SL1=frame["SL1"].astype("string")), CB)
    check_structure(frame, CB)


def test_missing_register_is_named(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="register.csv"):
        read_register(tmp_path / "register.csv")
