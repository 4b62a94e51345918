"""A real public instrument through `scan run`: psych's bfi agrees with R's psych and lavaan.

tests/data/bfi/raw/ is a scan of another instrument than the demo: psych's `bfi` (25 items in
five scales, answers 1..6, 2,800 respondents, one wave `2016-T0`), with a linkage code and 100
synthetic companies of 28 added, and a minimal codebook (no platform metadata, no register, no
models, no management). `tests/reference/bfi_instrument.R` writes the export and what psych 2.2.9
and lavaan 0.6-14 compute on the rows the pipeline keeps (4 straight-liners are quarantined, see
the script's header); no R is needed here.

One `scan run` (module fixture) on a copy of the folder; its shareable outputs are compared
with R. Tolerance: absolute 1e-4 for every number (chi-square included), exact for counts and
degrees of freedom. Observed differences (end to end, as from the pure functions on the same
rows): about 1e-15 for alpha, standardised alpha, mean r and the item statistics; 4e-8 for
omega total (psych's minres stops at L-BFGS-B's default tolerance); 2e-7 for the chi-square (of
4,043.5), 3e-8 for the fit indices and 4e-6 for the standardised loadings (lavaan's nlminb stops
earlier than ours).
"""

import json
import re
import shutil
from html import unescape
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import ScanRun, scan, statuses

from pipeline.validate.quality import stored_counts

TOLERANCE = 1e-4
ROOT = Path(__file__).parent
BFI_RAW = ROOT / "data" / "bfi" / "raw"
REFERENCE = ROOT / "reference"
WAVE = "2016-T0"
KEY = "bfi-public-instrument-test-key-0123456789"  # any key: bfi is not the demo
SCALES = ["A", "C", "E", "N", "O"]
# One worker runs this module, so its `scan run` happens once.
pytestmark = pytest.mark.xdist_group("bfi_run")
# Quality rules without what they need in a codebook without platform metadata, register, test
# codes or fieldwork window; the others apply to every scan.
NOT_APPLICABLE = ["preview", "test", "unknown_company", "outside_window", "incomplete", "speeder"]
APPLIED = ["unreadable_value", "out_of_range", "straightliner", "duplicate"]


def reference(name: str) -> pd.DataFrame:
    return pd.read_csv(REFERENCE / f"bfi_instrument_{name}.csv")


@pytest.fixture(scope="module")
def bfi_run(tmp_path_factory) -> ScanRun:
    """One `scan run` of bfi, as a data steward starts it, shared by the module's tests."""
    root = tmp_path_factory.mktemp("bfi_run")
    data, reports, home = root / "data", root / "reports", root / "home"
    shutil.copytree(BFI_RAW, data / "raw")
    run = scan(
        "--data-dir", str(data), "--reports-dir", str(reports), "run",
        home=home, cwd=root, key=KEY,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    return ScanRun(data, reports, home, run.stdout)


def processed(run: ScanRun, name: str) -> pd.DataFrame:
    return pd.read_csv(run.data / "processed" / WAVE / name)


def text_of(html: Path) -> str:
    """The visible text of an HTML report, whitespace collapsed."""
    body = re.sub(r"<(script|style)\b.*?</\1>", " ", html.read_text(encoding="utf-8"), flags=re.S)
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", body)).split())


def assert_close(ours: pd.Series, theirs: pd.Series, what: str) -> None:
    np.testing.assert_allclose(
        ours.to_numpy(dtype=float), theirs.to_numpy(dtype=float), rtol=0, atol=TOLERANCE,
        err_msg=what,
    )  # fmt: skip


def test_scan_run_computes_the_wave_the_cross_wave_stage_and_the_reports(bfi_run):
    assert statuses(bfi_run.stdout) == {
        WAVE: "materialized",
        "all_waves": "materialized",
        f"reports/{WAVE}": "materialized",
        "catalog": "materialized",
    }
    assert "2800 raw rows: 2796 validated, 4 quarantined (straightliner 4)" in bfi_run.stdout
    not_applied = bfi_run.stdout.split("rules not applied: ")[1].splitlines()[0]
    for rule in NOT_APPLICABLE:
        assert f"{rule} (not applicable: needs " in not_applied


def test_the_pipeline_keeps_the_rows_r_computed_on(bfi_run):
    versions = json.loads((REFERENCE / "bfi_instrument_versions.json").read_text())
    assert versions["psych"] == "2.2.9" and versions["lavaan"] == "0.6.14"
    rows = stored_counts(processed(bfi_run, "quality_summary.csv").set_index("reason")["rows"])
    assert versions["raw_rows"] == 2800 and versions["straightliner"] == 4
    assert rows["validated"] == versions["kept_rows"] == 2796
    # 4 quarantined rows are a small cell: hidden, with the total that would give them away
    assert rows[["raw_rows", "quarantined", "straightliner"]].eq("suppressed").all()
    assert rows.drop(["raw_rows", "validated", "quarantined", "straightliner"]).eq(0).all()
    status = processed(bfi_run, "quality_summary.csv").set_index("reason")["rule_status"]
    assert status[APPLIED].eq("applied").all()
    assert status[NOT_APPLICABLE].str.startswith("not applicable: needs ").all()
    responses = pd.read_parquet(bfi_run.data / "processed" / WAVE / "responses.parquet")
    assert len(responses) == 2796
    assert responses["company_id"].nunique() == 100


def test_reliability_agrees_with_psych(bfi_run):
    ours = processed(bfi_run, "reliability.csv").set_index("scale")
    theirs = reference("reliability").set_index("scale")
    assert list(ours.index) == list(theirs.index) == SCALES
    assert list(ours["n"]) == list(theirs["n_any"])
    assert list(ours["k"]) == list(theirs["k"])
    for column, r_name in [
        ("alpha", "raw_alpha"),
        ("alpha_std", "std_alpha"),
        ("mean_r", "average_r"),
        ("omega_total", "omega_tot"),
    ]:
        assert_close(ours[column], theirs[r_name], f"reliability.csv {column} vs psych {r_name}")
    # the bootstrap interval has no R counterpart; it must at least hold alpha
    assert (ours["alpha_ci_low"] < ours["alpha"]).all()
    assert (ours["alpha"] < ours["alpha_ci_high"]).all()


def test_item_statistics_agree_with_psych(bfi_run):
    ours = processed(bfi_run, "item_statistics.csv")
    theirs = reference("items")
    assert ours[["scale", "item"]].equals(theirs[["scale", "item"]])
    assert list(ours["reversed"]) == list(theirs["reversed"])
    assert sorted(ours.loc[ours["reversed"], "item"]) == ["A1", "C4", "C5", "E1", "E2", "O2", "O5"]
    assert list(ours["n"]) == list(theirs["n"])
    for column, r_name in [
        ("mean", "mean"),
        ("sd", "sd"),
        ("r_drop", "r_drop"),
        ("alpha_if_dropped", "raw_alpha_if_dropped"),
    ]:
        assert_close(ours[column], theirs[r_name], f"item_statistics.csv {column} vs psych")


def test_cfa_fit_agrees_with_lavaan(bfi_run):
    ours = processed(bfi_run, "cfa_fit.csv")
    theirs = reference("cfa_fit").set_index("measure")["value"]
    assert len(ours) == 1
    fit = ours.iloc[0]
    assert fit["n"] == theirs["nobs"] == 2432  # complete rows, listwise as lavaan
    assert (fit["estimator"], fit["missing"]) == ("ML", "listwise")  # as the codebook asks
    assert np.isnan(fit["chisq_scaled"]) and np.isnan(fit["cfi_robust"])  # no MLR: not robust
    assert fit["df"] == theirs["df"] == 265
    for measure in ["chisq", "cfi", "tli", "rmsea", "srmr"]:
        assert fit[measure] == pytest.approx(theirs[measure], rel=0, abs=TOLERANCE), measure


def test_cfa_loadings_agree_with_lavaan(bfi_run):
    ours = processed(bfi_run, "cfa_loadings.csv")
    theirs = reference("cfa_loadings")
    assert ours[["factor", "item"]].equals(theirs[["factor", "item"]])
    assert_close(ours["std_loading"], theirs["std_loading"], "cfa_loadings.csv vs lavaan")


def test_the_wave_report_says_what_does_not_apply(bfi_run):
    wave = bfi_run.reports / WAVE
    assert (wave / "wave_report.pdf").stat().st_size > 0
    text = text_of(wave / "wave_report.html")
    assert "2796 responses of this wave passed validation; fewer than" in " ".join(text.split())
    not_applied = text.split("Quality rules not applied")[1].split("Sample")[0]
    for rule in NOT_APPLICABLE:
        assert re.search(rf"\b{rule}\b .*? not applicable: needs", not_applied), rule
    # one wave: no invariance test and no change since an earlier wave
    assert "needs at least two waves; this study has one so far" in text
    assert "This is the first wave; there is no earlier wave to compare with." in text
    # personality scales are individual-level (the codebook gives no level): nothing is
    # aggregated to companies, so no company reports and no management comparison in them
    assert "none of them receives a company report" in text
    assert "The codebook has no culture scales, so nothing is aggregated" in text
    assert pd.read_csv(bfi_run.data / "processed" / WAVE / "company_reports.csv").empty
    assert not (wave / "companies").exists()
    # the numbers compared with R above are the ones the report shows
    reliability = processed(bfi_run, "reliability.csv").set_index("scale")
    assert f"O (Openness) 2796 5 {reliability.loc['O', 'alpha']:.3f}" in text
