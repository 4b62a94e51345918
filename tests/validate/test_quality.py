"""The quality rules against the demo generator's truth, and the contracts on their own."""

from pathlib import Path

import pandas as pd
import pytest
from conftest import CODEBOOK, DEMO_RAW

from pipeline.ingest.readers import read_wave
from pipeline.instrument.codebook import load_codebook
from pipeline.validate.quality import (
    REASONS,
    StructureError,
    check_structure,
    quality_reasons,
    quality_summary,
    read_register,
    rule_status,
    split_quarantine,
)

CB = load_codebook(CODEBOOK)
REGISTER = read_register(DEMO_RAW / "company_register.csv", "company_code")
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

    status = rule_status(CB, name)
    assert set(status.values()) == {"applied"}  # the demo codebook gives every rule its columns
    summary = quality_summary(name, len(frame), quarantine, status).set_index("reason")["rows"]
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
        read_register(tmp_path / "register.csv", "company_code")


def without_platform(tmp_path: Path) -> Path:
    """The demo codebook with no platform roles, register, windows or test codes: the platform
    columns stay declared (the exports hold them) but no rule reads them."""
    text = CODEBOOK.read_text(encoding="utf-8")
    start, end = text.index("\nplatform:\n"), text.index("\nwaves:")
    text = text[:start] + text[end:]
    start, end = text.index("\nregisters:\n"), text.index("\nquality:")
    text = text[:start] + text[end:]
    text = text.replace("  test_company_codes: [TEST]", "").replace(
        "  test_respondent_codes: [test]", "  skip: [straightliner]"
    )
    for label, window in (("T0", "2019-03-04, end: 2019-04-26"),):
        text = text.replace(f"{{label: {label}, start: {window}}}", label)
    path = tmp_path / "codebook.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_rule_without_its_columns_is_not_applicable_and_says_why(tmp_path):
    cb = load_codebook(without_platform(tmp_path))
    status = rule_status(cb, "2019-T0")
    assert status["speeder"] == "not applicable: needs platform.duration"
    assert status["preview"] == "not applicable: needs platform.preview"
    assert status["incomplete"] == "not applicable: needs platform.percent_complete or completed"
    assert status["unknown_company"] == "not applicable: needs registers.companies"
    assert status["outside_window"] == (
        "not applicable: needs waves.2019-T0.start and end and platform.started"
    )
    assert status["test"].startswith("not applicable: needs quality.test_company_codes")
    assert status["straightliner"].startswith("skipped: switched off in the codebook")
    assert rule_status(cb, "2021-T1")["outside_window"].endswith("needs platform.started")
    applied = {rule for rule, why in status.items() if why == "applied"}
    assert applied == {"unreadable_value", "out_of_range", "duplicate"}

    frame = read_wave(DEMO_RAW / "2019-T0", cb, DEMO_RAW)
    reasons = quality_reasons(frame, cb, set())
    found = set(reasons.str.split(";").explode()) - {""}
    assert {"out_of_range", "duplicate"} <= found <= applied
    _, quarantine = split_quarantine(frame, reasons)
    summary = quality_summary("2019-T0", len(frame), quarantine, status).set_index("reason")
    assert summary.loc["speeder", "rule_status"] == status["speeder"]
    assert summary.loc["speeder", "rows"] == 0
