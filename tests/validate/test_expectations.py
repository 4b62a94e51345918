"""The expectation suite run through real Great Expectations on the demo waves, and its page."""

import html
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import CODEBOOK, DEMO_RAW, ROOT

from assets.gx_resource import GreatExpectations
from pipeline.ingest.readers import read_wave
from pipeline.instrument.codebook import load_codebook
from pipeline.instrument.scoring import score_scales
from pipeline.validate.expectations import allowed_columns, deidentified, expectation_suite
from pipeline.validate.validation_page import render_validation_page

WAVES = ["2019-T0", "2021-T1", "2022-T2"]
CODE_TYPES = ("expect_column_values_to_be_in_set", "expect_column_values_to_be_between")


@pytest.fixture(scope="module")
def codebook():
    return load_codebook(CODEBOOK)


@pytest.fixture(scope="module")
def truth() -> pd.DataFrame:
    return pd.read_csv(DEMO_RAW / "_demo_truth" / "rows.csv", dtype=str, keep_default_na=False)


def clean_rows(frame: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """The rows the demo generator planted no problem in."""
    clean = truth[truth["problems"] == ""]
    keys = set(zip(clean["source_file"], clean["source_row"].astype(int), strict=True))
    rows = zip(frame["_source_file"], frame["_source_row"], strict=True)
    return frame[[key in keys for key in rows]]


@pytest.fixture(scope="module")
def waves(codebook, truth) -> dict[str, dict]:
    """Per wave: its raw frame, suite, the result of validating its clean rows, and the page."""
    runs = {}
    for wave in WAVES:
        frame = read_wave(DEMO_RAW / wave, codebook, DEMO_RAW)
        suite = expectation_suite(codebook, wave)
        result = GreatExpectations().validate(
            deidentified(clean_rows(frame, truth), codebook), suite
        )
        runs[wave] = {
            "frame": frame,
            "suite": suite,
            "result": result,
            "page": render_validation_page(result, f"Validation of wave {wave}"),
        }
    return runs


@pytest.fixture(scope="module")
def planted(codebook, truth, waves) -> dict:
    """2021-T1's clean rows with 40% of LT1 blank, one RF2 answer 7, and `email` kept."""
    frame = clean_rows(waves["2021-T1"]["frame"], truth)
    gx_frame = deidentified(frame, codebook)
    blank = np.random.default_rng(1).choice(len(gx_frame), int(0.4 * len(gx_frame)), False)
    gx_frame.loc[blank, "LT1"] = np.nan
    gx_frame.loc[gx_frame["RF2"].first_valid_index(), "RF2"] = 7
    gx_frame["email"] = frame["email"].to_numpy()
    return GreatExpectations().validate(gx_frame, waves["2021-T1"]["suite"])


def outcome(result: dict, kind: str, column: str | None = None) -> dict:
    (found,) = [
        r
        for r in result["results"]
        if r["expectation_config"]["type"] == kind
        and r["expectation_config"]["kwargs"].get("column") == column
    ]
    return found


def identifying_values(wave: str, frame: pd.DataFrame, truth: pd.DataFrame) -> set[str]:
    planted = truth.loc[truth["wave"] == wave, "planted_identifiers"].str.split(";").explode()
    codes = pd.concat([frame["resp_code"], frame["company_code"]]).dropna()
    return {value for value in [*planted, *codes] if value}


def test_importing_the_code_location_does_not_import_great_expectations():
    code = (
        "import sys, assets.definitions, assets.gx_resource; "
        "print('great_expectations' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


def test_deidentified_keeps_only_allowed_columns_and_blanks_missing_codes(codebook, truth, waves):
    frame = waves["2022-T2"]["frame"]
    gx_frame = deidentified(frame.set_index("resp_code", drop=False), codebook)
    assert list(gx_frame.columns) == allowed_columns(codebook)
    assert isinstance(gx_frame.index, pd.RangeIndex)  # an identifying index does not survive
    text = gx_frame.select_dtypes(exclude="number").astype(str)
    assert not text.isin(identifying_values("2022-T2", frame, truth)).any().any()

    coded = [*codebook.background, *codebook.items]
    missing = frame[coded].isin(list(codebook.missing_codes))
    assert missing.any().any()
    assert gx_frame[coded].isna().equals(frame[coded].isna().reset_index(drop=True) | missing)
    scores = score_scales(frame, codebook).reset_index(drop=True)
    pd.testing.assert_frame_equal(gx_frame[scores.columns], scores)


def test_suite_has_the_documented_expectations(codebook):
    suite = expectation_suite(codebook, "2021-T1")
    assert suite["name"] == "tyf-leercultuurscan-demo.2021-T1"
    kinds = pd.Series([e["type"] for e in suite["expectations"]]).value_counts().to_dict()
    assert kinds == {
        "expect_column_values_to_be_in_set": 38 + 9,  # items and background
        "expect_column_values_to_not_be_null": 38 + 9,  # items and scale scores
        "expect_column_values_to_be_between": 9,  # scale scores
        "expect_column_mean_to_be_between": 1,  # completion rate
        "expect_table_columns_to_match_set": 1,
    }
    assert all(e["meta"]["why"] for e in suite["expectations"])
    not_null = [e for e in suite["expectations"] if e["type"].endswith("not_be_null")]
    assert {e["kwargs"]["mostly"] for e in not_null} == {0.75}


@pytest.mark.parametrize("wave", WAVES)
def test_one_result_per_expectation_in_suite_order(waves, wave):
    run = waves[wave]
    configs = [r["expectation_config"] for r in run["result"]["results"]]
    assert [(c["type"], c["kwargs"].get("column")) for c in configs] == [
        (e["type"], e["kwargs"].get("column")) for e in run["suite"]["expectations"]
    ]
    assert run["result"]["statistics"]["evaluated_expectations"] == 105
    assert run["result"]["meta"]["wave"] == wave


@pytest.mark.parametrize("wave", WAVES)
def test_code_expectations_pass_on_the_clean_rows(waves, truth, wave):
    clean = ((truth["wave"] == wave) & (truth["problems"] == "")).sum()
    result = outcome(waves[wave]["result"], "expect_column_values_to_be_in_set", "LT1")
    assert result["result"]["element_count"] == clean
    results = waves[wave]["result"]["results"]
    failed = [
        (r["expectation_config"]["type"], r["expectation_config"]["kwargs"].get("column"))
        for r in results
        if r["expectation_config"]["type"] in CODE_TYPES and not r["success"]
    ]
    assert not failed
    assert waves[wave]["result"]["success"]  # and so does everything else on clean rows


def test_planted_missingness_fails_only_its_item(planted):
    assert not outcome(planted, "expect_column_values_to_not_be_null", "LT1")["success"]
    assert outcome(planted, "expect_column_values_to_not_be_null", "LT2")["success"]
    assert outcome(planted, "expect_column_values_to_not_be_null", "LT")["success"]  # 3 of 4 left


def test_planted_code_7_fails_the_in_set_expectation(planted):
    result = outcome(planted, "expect_column_values_to_be_in_set", "RF2")
    assert not result["success"]
    assert result["result"]["unexpected_count"] == 1
    assert result["result"]["partial_unexpected_list"] == [7]
    assert outcome(planted, "expect_column_values_to_be_between", "RF")["success"]  # 7 not scored


def test_a_frame_with_email_fails_the_identifier_check(planted):
    result = outcome(planted, "expect_table_columns_to_match_set")
    assert not result["success"]
    assert result["result"]["details"]["mismatched"] == {"unexpected": ["email"]}


@pytest.mark.parametrize("wave", WAVES)
def test_no_identifying_value_in_result_or_page(waves, truth, wave):
    run = waves[wave]
    values = identifying_values(wave, run["frame"], truth)
    assert len(values) > 600  # IP addresses, names, e-mails, linkage and company codes
    result_text = json.dumps(run["result"])
    page_text = html.unescape(run["page"])  # 'O&#39;Brien' must not hide O'Brien
    assert not [v for v in values if v in result_text]
    assert not [v for v in values if v in page_text]


@pytest.mark.parametrize("wave", WAVES)
def test_page_is_offline_and_complete(waves, wave):
    run = waves[wave]
    page = run["page"]
    assert "http:" not in page and "https:" not in page and "//" not in page
    assert "<script" not in page and "<link" not in page and "@import" not in page
    assert run["suite"]["name"] in page
    for kind in {e["type"] for e in run["suite"]["expectations"]}:
        assert kind in page
    assert f"{len(run['suite']['expectations'])} passed, 0 failed" in page
    assert page == render_validation_page(run["result"], f"Validation of wave {wave}")


def test_page_shows_failures_and_their_reasons(planted):
    page = render_validation_page(planted, "Planted problems")
    assert "3 failed" in page
    assert '<a href="#e1">#1</a> expect_table_columns_to_match_set' in page  # failures on top
    assert 'class="failed">failed</td>' in page
    assert "unexpected: email" in page
    assert "7 (1×)" in page
    assert "Answers to RF2" in page


def test_page_shows_errors_and_escapes_text():
    result = {
        "success": False,
        "suite_name": "s",
        "results": [
            {
                "success": False,
                "expectation_config": {
                    "type": "expect_column_values_to_be_in_set",
                    "kwargs": {"column": "X1", "value_set": [1, 2]},
                    "meta": {"why": "<b>codes</b>"},
                },
                "result": {"unexpected_count": 0, "unexpected_percent": None},
                "exception_info": {
                    "metric a": {"raised_exception": True, "exception_message": "no column X1"},
                    "metric b": {"raised_exception": True, "exception_message": "no column X1"},
                },
            }
        ],
    }
    page = render_validation_page(result, "T & <T>")
    assert "<td>error: no column X1</td><td>0</td>" in page
    assert "&lt;b&gt;codes&lt;/b&gt;" in page and "<b>" not in page
    assert "<title>T &amp; &lt;T&gt;</title>" in page
