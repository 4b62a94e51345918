"""The wave report's context: suppression rules, nothing under k printed, the first-wave path,
blocked models, figures with alt text, and one HTML rendering of the real template."""

import dataclasses
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from pipeline.instrument.codebook import Codebook, load_codebook
from pipeline.privacy.suppression import SUPPRESSED, format_stat, shown, suppress_counts
from pipeline.psychometrics.invariance import TABLE_COLUMNS
from pipeline.reporting.render import REPORTS_DIR, fill_template, render_report
from pipeline.reporting.wave_report import (
    WaveInputs,
    escape,
    pipe_table,
    report_numbers,
    scalar_verdict,
    term_words,
    wave_context,
    welch_difference,
)

CODEBOOK_PATH = Path(__file__).resolve().parents[2] / "data" / "raw" / "codebook.yaml"
CODEBOOK = load_codebook(CODEBOOK_PATH)
K = CODEBOOK.anonymisation.k
TEMPLATE = REPORTS_DIR / "wave.qmd"

# Values that belong to groups under k; none of them may reach the report.
TINY_COMPANY_MEAN = 1.37  # company c_small, 3 respondents
TINY_SCALE_MEAN = "4.83"  # PL, scored for 3 respondents only
TINY_ALPHA = "0.917"  # PL's alpha, n = 3
BLOCKED_ESTIMATE = "9.876"  # a term of the blocked SL/full model
PUBLISHED_ESTIMATE = "0.432"  # a term of the published EM/full model


def published(counts: list[int]) -> list:
    return suppress_counts(pd.Series(counts), K).tolist()


# --- suppression --------------------------------------------------------------------------------


def test_cells_at_or_above_k_and_zeros_are_shown():
    assert published([10, 0, 20, 5]) == [10, 0, 20, 5]
    assert published([0, 0, 0]) == [0, 0, 0]


def test_two_small_cells_summing_to_k_protect_each_other():
    assert published([3, 4, 50]) == [SUPPRESSED, SUPPRESSED, 50]


def test_a_single_small_cell_takes_the_next_smallest_with_it():
    assert published([2, 20, 30, 0]) == [SUPPRESSED, SUPPRESSED, 30, 0]


def test_small_cells_summing_below_k_take_another_cell():
    assert published([1, 2, 60, 50]) == [SUPPRESSED, SUPPRESSED, 60, SUPPRESSED]


def test_zero_cells_are_never_used_as_complement():
    assert published([0, 3, 40, 8]) == [0, SUPPRESSED, 40, SUPPRESSED]


def test_ties_are_broken_in_table_order_and_labels_kept():
    counts = pd.Series([7, 3, 7], index=["a", "b", "c"], name="x")
    out = suppress_counts(counts, K, marker="<5")
    assert out.dtype == object and out.name == "x"
    assert out.to_dict() == {"a": "<5", "b": "<5", "c": 7}


@pytest.mark.parametrize("bad", [[1.0, np.nan], [-1, 10], [2.5, 10]])
def test_suppress_counts_refuses_what_is_not_a_count(bad):
    with pytest.raises(ValueError, match="suppress_counts"):
        suppress_counts(pd.Series(bad, name="v"), K)


@given(st.lists(st.integers(0, 40), min_size=1, max_size=8))
def test_no_small_cell_shown_and_hidden_cells_cannot_be_recovered(counts):
    out = suppress_counts(pd.Series(counts), K)
    hidden = [c for c, o in zip(counts, out, strict=True) if o == SUPPRESSED]
    assert not any(1 <= o < K for o in out if o != SUPPRESSED)
    if hidden and sum(counts) >= K:
        assert len(hidden) >= 2 and sum(hidden) >= K


def test_statistics_need_k_respondents():
    assert shown(K, K) and not shown(K - 1, K) and not shown(np.nan, K) and not shown(None, K)
    assert format_stat(3.14159, K, K) == "3.14"
    assert format_stat(0.91234, K, K, digits=3) == "0.912"
    assert format_stat(3.14159, K - 1, K) == f"n < {K}"
    assert format_stat(np.nan, 100, K) == "–"
    assert format_stat(-0.0001, 100, K) == "0.00"


# --- markdown -----------------------------------------------------------------------------------


def test_data_text_is_escaped_for_markdown():
    assert escape("a|b *c* <35 [x](y)\nz") == r"a\|b \*c\* \<35 \[x\]\(y\) z"
    assert pipe_table([("A", "l")], []) == ""
    assert pipe_table([("A", "l"), ("n", "r")], [["x", "1"]]).splitlines()[1] == "|:---|---:|"


# --- the crafted wave ---------------------------------------------------------------------------


def crafted_tables() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Scale scores, responses and company scores of 24 respondents in three companies (12, 9
    and a tiny one of 3); PL scored for 3 only."""
    companies = ["c_big"] * 12 + ["c_mid"] * 9 + ["c_small"] * 3
    n = len(companies)
    rng = np.random.default_rng(7)
    lt = np.concatenate([rng.uniform(3, 5, 21), [1.2, 1.4, 1.51]])
    pl = [np.nan] * 21 + [5.0, 5.0, 4.5]
    scores = pd.DataFrame(
        {
            "person_id": [f"p_{i:02d}" for i in range(n)],
            "company_id": companies,
            "wave": "2021-T1",
            "LT": lt,
            "PL": pl,
        }
    )
    responses = scores[["person_id", "company_id", "wave"]].assign(
        gender=["man"] * 17 + ["vrouw"] * 4 + [pd.NA] * 3,
        leader=["nee"] * 14 + ["ja"] * 10,
    )
    company_scores = pd.DataFrame(
        {
            "company_id": ["c_big", "c_mid", "c_small", "c_gone"],
            "scale": "LT",
            "n": [12, 9, 3, np.nan],
            "mean": [4.01, 3.89, TINY_COMPANY_MEAN, np.nan],  # c_small unflagged: n decides too
            "sd": [0.5, 0.6, 0.2, np.nan],
            "ci_low": [3.7, 3.4, 0.9, np.nan],
            "ci_high": [4.3, 4.3, 1.8, np.nan],
            "rwg": [0.8, 0.7, 0.9, np.nan],
            "suppressed": [False, False, False, True],
        }
    )
    return scores, responses, company_scores


def crafted_inputs(previous_scores: pd.DataFrame | None = None, **changes) -> WaveInputs:
    """The inputs of a wave report of `crafted_tables`, its numbers computed as the
    wave_report_numbers asset does (with the change since `previous_scores`, when given)."""
    scores, responses, company_scores = crafted_tables()
    n = len(scores)
    numbers = report_numbers(responses, scores, previous_scores, company_scores, CODEBOOK)
    fit_columns = {
        "outcome": ["SL", "SL", "EM", "EM"],
        "n_obs": n,
        "loglik": [-30.1, -28.2, -25.0, -20.3],
        "n_groups": 3,
        "icc": [0.02, 0.01, 0.03, 0.02],
        "r2_marginal": [0.0, np.nan, 0.0, 0.15],
        "r2_conditional": [0.02, np.nan, 0.03, 0.16],
        "lr_chisq": [np.nan, np.nan, np.nan, 12.5],
        "lr_df": [np.nan, np.nan, np.nan, 2],
        "lr_p": [np.nan, np.nan, np.nan, 0.0019],
        "problems": [np.nan, "not_converged: gradient too large", np.nan, np.nan],
        "blocking": [False, True, False, False],
    }
    multilevel_fit = pd.DataFrame({"model": ["SL/empty", "SL/full", "EM/empty", "EM/full"]})
    multilevel_fit = multilevel_fit.assign(**fit_columns)
    multilevel = pd.DataFrame(
        {
            "model": ["SL/full"] * 2 + ["EM/full"] * 3,
            "term": ["Intercept", "LT_within", "Intercept", "LT_within", "LT_between"],
            "estimate": [1.0, float(BLOCKED_ESTIMATE), 1.1, float(PUBLISHED_ESTIMATE), 0.2],
            "std_error": [0.1, 0.2, 0.1, 0.05, 0.1],
            "df": [1, 20, 1, 20, 1],
            "ci_low": [0.8, 9.5, 0.9, 0.33, -1.07],
            "ci_high": [1.2, 10.2, 1.3, 0.53, 1.47],
            "p_value": [0.01, 0.001, 0.01, 0.0004, 0.5],
        }
    )
    inputs = WaveInputs(
        wave="2021-T1",
        quality_summary=pd.DataFrame(
            {
                "wave": "2021-T1",
                "reason": ["raw_rows", "validated", "quarantined", "preview", "speeder"],
                # as quality_summary.csv reads back: 3 rows quarantined, all speeders, hidden
                "rows": [SUPPRESSED, "24", SUPPRESSED, "0", SUPPRESSED],
                "rule_status": ["", "", "", "not applicable: needs platform.preview", "applied"],
            }
        ),
        numbers=numbers,
        reliability=pd.DataFrame(
            {
                "scale": ["LT", "PL"],
                "n": [24, 3],
                "k": [4, 5],
                "alpha": [0.8123, float(TINY_ALPHA)],
                "alpha_ci_low": [0.7, 0.6],
                "alpha_ci_high": [0.9, 0.99],
                "alpha_std": [0.81, 0.91],
                "omega_total": [0.82, 0.92],
                "mean_r": [0.5, 0.7],
                "note": ["", ""],
            }
        ),
        item_statistics=pd.DataFrame(
            {
                "scale": ["LT", "PL"],
                "item": ["LT1", "PL1"],
                "reversed": [False, True],
                "n": [24, 3],
                "mean": [3.9, float(TINY_SCALE_MEAN)],
                "sd": [0.8, 0.3],
                "r_drop": [0.6, 0.7],
                "alpha_if_dropped": [0.75, 0.8],
            }
        ),
        cfa_fit=pd.DataFrame(
            [["scales", "ML", "fiml", 24, 30.2, 20, 0.95, 0.94, 0.05, 0.06]],
            columns=["model", "estimator", "missing", "n", "chisq", "df", "cfi", "tli", "rmsea"]
            + ["srmr"],
        ),
        cfa_loadings=pd.DataFrame(
            {"factor": ["LT", "LT"], "item": ["LT1", "LT2"], "std_loading": [0.61, 0.72]}
        ),
        aggregation=pd.DataFrame(
            [["LT", 0.1234, 0.5678, 8.0, 0.81]],
            columns=["scale", "icc1", "icc2", "mean_group_size", "rwg_mean"],
        ),
        company_scores=company_scores,
        multilevel=multilevel,
        multilevel_fit=multilevel_fit,
        previous_wave=None,
        invariance=pd.DataFrame(
            {
                "model": ["configural", "metric", "scalar"],
                "estimator": "ML",
                "missing": "fiml",
                "groups": "2021-T1 (24)",
                "n": 24,
                "decision": "not estimable: needs 2 waves (1 in the data)",
            }
        ).reindex(columns=list(TABLE_COLUMNS)),
        companies_reported=2,
        companies_without_report=1,
        provenance={
            "inputs": [{"path": "scale_scores.parquet", "sha256": "ab" * 32}],
            "code_version": "v1",
            "run_id": "run-42",
        },
        waves=("2019-T0", "2021-T1"),
    )
    return dataclasses.replace(inputs, **changes)


@pytest.fixture
def filled(tmp_path) -> tuple[dict, str]:
    context = wave_context(crafted_inputs(), CODEBOOK, tmp_path / "figures")
    return context, fill_template(TEMPLATE, context)


def test_nothing_from_a_group_under_k_is_printed(filled):
    context, markdown = filled
    for tiny in [f"{TINY_COMPANY_MEAN:.2f}", TINY_SCALE_MEAN, TINY_ALPHA]:
        assert tiny not in markdown
    assert "| LT | LT1 | no | 24 | 3.90 | 0.80 | 0.600 | 0.750 |" in markdown
    assert f"| PL | PL1 | yes | n < {K} | n < {K} |" in markdown


def test_group_counts_are_suppressed_with_their_complement(filled):
    _, markdown = filled
    assert f"|  | vrouw | {SUPPRESSED} | {SUPPRESSED} |" in markdown
    assert f"|  | not reported | {SUPPRESSED} | {SUPPRESSED} |" in markdown
    assert "| Gender (gender) | man | 17 | 70.8 |" in markdown
    assert "|  | anders/zeg ik liever niet | 0 | 0.0 |" in markdown  # a zero may be shown
    assert "|  | ja | 10 | 41.7 |" in markdown


def test_quarantine_counts_follow_the_small_cell_rule(filled, tmp_path):
    """3 rows quarantined, all speeders: the cell and the total that would give it away read
    "suppressed", and raw_rows with them (raw_rows - validated is the total). The section
    applies the rule itself to exact counts too."""
    context, markdown = filled
    exact = crafted_inputs().quality_summary.assign(rows=[27, 24, 3, 0, 3])
    again = wave_context(crafted_inputs(quality_summary=exact), CODEBOOK, tmp_path / "exact")
    section = ["n_raw", "n_validated", "n_quarantined", "quarantine_table"]
    assert [again[key] for key in section] == [context[key] for key in section]
    assert (context["n_raw"], context["n_validated"], context["n_quarantined"]) == (
        SUPPRESSED,
        "24",
        SUPPRESSED,
    )
    assert f"| speeder | answered too fast | {SUPPRESSED} |" in markdown
    assert "24 responses of this wave passed validation; fewer than" in markdown
    assert "| 3 |" not in context["quarantine_table"]
    assert "`quality_summary[2021-T1](<wave>,<reason>).<column>`" in markdown
    assert "`quality_summary[2021-T1](2021-T1,validated).rows`" in markdown  # a shown number

    quality = pd.DataFrame(
        {
            "wave": "2021-T1",
            "reason": ["raw_rows", "validated", "quarantined", "preview", "test", "speeder"],
            "rows": [60, 40, 20, 2, 0, 18],
            "rule_status": ["", "", "", "applied", "applied", "applied"],
        }
    )
    context = wave_context(crafted_inputs(quality_summary=quality), CODEBOOK, tmp_path / "f")
    totals = (context["n_raw"], context["n_validated"], context["n_quarantined"])
    assert totals == ("60", "40", "20")
    table = context["quarantine_table"]
    assert f"| preview | survey preview | {SUPPRESSED} |" in table
    assert f"| speeder | answered too fast | {SUPPRESSED} |" in table  # its complement
    assert "| test |" not in table  # 0 rows: not listed


def test_company_distribution_leaves_out_small_companies(filled):
    context, markdown = filled
    assert "| LT (Work rich in learning) | 2 | 2 | 3.89 | 3.95 | 4.01 |" in markdown
    (item,) = context["company_figures"]
    path, alt = item["figure"]
    assert path.is_file() and "over 2 companies" in alt and "1.37" not in alt
    assert "c_big" not in markdown and "c_small" not in markdown


def test_blocked_models_are_not_published(filled):
    context, markdown = filled
    assert BLOCKED_ESTIMATE not in markdown
    assert "| SL/full | – | – |" in markdown
    assert r"not published: not\_converged: gradient too large" in markdown
    term = r"Work rich in learning \(LT\), within company (LT\_within)"
    assert f"| EM/full | {term} | {PUBLISHED_ESTIMATE} |" in markdown
    (item,) = context["coefficient_figures"]
    alt = item["figure"].alt
    assert item["figure"].path.is_file() and "learning (LT), within company: 0.43" in alt


def test_the_english_report_uses_the_english_labels_of_the_codebook(filled):
    _, markdown = filled
    for scale in CODEBOOK.scales.values():
        if scale.name in ("LT", "PL"):  # the crafted wave's scales
            assert scale.label_en and scale.label_en in markdown
            assert f"({scale.label})" not in markdown
    assert term_words("trajectory[ja]", CODEBOOK) == "Takes part in a development trajectory: ja"
    assert term_words("age_band[unknown]", CODEBOOK) == "Age: not reported"
    assert term_words("EN_between", CODEBOOK) == "External learning network (EN), between companies"
    assert term_words("wave", CODEBOOK) == "Wave (change per wave)"
    assert term_words("Intercept", CODEBOOK) == "Intercept"
    # without an English label, the instrument's own
    plain = dataclasses.replace(
        CODEBOOK, scales={"LT": dataclasses.replace(CODEBOOK.scales["LT"], label_en=None)}
    )
    assert term_words("LT_within", plain) == "Leerrijk werk (LT), within company"


LONGITUDINAL_FIT = pd.DataFrame(
    {
        "model": ["SL/longitudinal", "EM/longitudinal", "XX/longitudinal"],
        "outcome": ["SL", "EM", "XX"],
        "n_obs": [60, 60, np.nan],
        "n_groups": [3, 3, np.nan],
        "n_persons": [30, 30, np.nan],
        "converged": [True, True, np.nan],
        "icc": [0.04, 0.05, np.nan],
        "r2_marginal": [0.2, 0.3, np.nan],
        "r2_conditional": [0.5, 0.6, np.nan],
        "problems": ["", "not_converged: gradient too large", np.nan],
        "blocking": [False, True, False],
        "notes": ["wave slope dropped", "", "not estimable: needs 2 waves (1 in the data)"],
    }
)
LONGITUDINAL = pd.DataFrame(
    {
        "model": ["SL/longitudinal"] * 2 + ["EM/longitudinal"],
        "term": ["wave", "trajectory[ja]", "wave"],
        "estimate": [0.0741, 0.1879, 9.8765],
        "std_error": [0.0184, 0.0619, 0.1],
        "df": [1719.0, 1719.0, 50.0],
        "ci_low": [0.0384, 0.0664, 9.7],
        "ci_high": [0.1105, 0.3093, 10.0],
        "p_value": [0.0001, 0.0024, 0.0001],
    }
)


def test_the_longitudinal_models_are_in_the_report(tmp_path):
    inputs = crafted_inputs(longitudinal=LONGITUDINAL, longitudinal_fit=LONGITUDINAL_FIT)
    markdown = fill_template(TEMPLATE, wave_context(inputs, CODEBOOK, tmp_path / "figures"))
    assert "### Over all waves" in markdown
    assert "| SL/longitudinal | 60 | 30 | 3 | 0.040 | 0.200 | 0.500 | wave slope dropped |" in (
        markdown
    )
    assert "| SL/longitudinal | Wave \\(change per wave\\) (wave) | 0.074 |" in markdown
    assert "Takes part in a development trajectory: ja (trajectory\\[ja\\]) | 0.188" in markdown
    assert "`longitudinal_multilevel[all_waves](SL/longitudinal,wave).estimate`" in markdown
    assert "9.877" not in markdown  # the blocked model's estimate
    assert r"not published: not\_converged: gradient too large" in markdown
    assert "not estimable: needs 2 waves \\(1 in the data\\)" in markdown


def test_the_report_states_its_data_version_and_waves(tmp_path):
    """The same tables give the same version; a changed row, or another list of waves, another."""
    context = wave_context(crafted_inputs(), CODEBOOK, tmp_path / "a")
    again = wave_context(crafted_inputs(), CODEBOOK, tmp_path / "b")
    assert re.fullmatch("[0-9a-f]{12}", context["data_version"])
    assert again["data_version"] == context["data_version"]
    assert context["data_waves"] == "2019\\-T0 and 2021\\-T1"
    markdown = fill_template(TEMPLATE, context)
    assert f"Data version `{context['data_version']}`, made from the data of waves 2019" in markdown
    changed = crafted_inputs(longitudinal=LONGITUDINAL)
    more = crafted_inputs(waves=("2019-T0", "2021-T1", "2022-T2"))
    versions = {wave_context(i, CODEBOOK, tmp_path / "c")["data_version"] for i in (changed, more)}
    assert context["data_version"] not in versions and len(versions) == 2


def test_first_wave_has_no_change_and_untested_invariance(filled):
    context, markdown = filled
    assert context["change_table"] == ""
    assert "This is the first wave" in markdown
    assert (
        "Measurement invariance across the waves needs at least two waves; this study has one "
        "so far, so it is not tested yet." in markdown
    )
    assert context["invariance_table"] == "" and "Waves compared" not in markdown
    assert "measurement_invariance[" not in markdown  # a table without numbers has no ids


def individual_codebook(tmp_path) -> Codebook:
    """The demo codebook with every scale `level: individual` (so its models have no outcome
    and no culture scales)."""
    raw = yaml.safe_load(CODEBOOK_PATH.read_text(encoding="utf-8"))
    for scale in raw["scales"].values():
        scale["level"] = "individual"
    raw["models"] = {"controls": raw["models"]["controls"]}
    path = tmp_path / "codebook.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return load_codebook(path)


def test_without_culture_and_outcome_scales_the_sections_say_why(tmp_path):
    """The tables of such a codebook: no companies, one aggregation row and one model row
    that say why (as the assets write them)."""
    aggregation = pd.DataFrame(
        [{"note": "not estimable: the codebook has no culture scales"}],
        columns=["scale", "icc1", "icc2", "mean_group_size", "rwg_mean", "note"],
    )
    inputs = crafted_inputs(
        aggregation=aggregation,
        company_scores=crafted_tables()[2].iloc[0:0],
        multilevel=crafted_inputs().multilevel.iloc[0:0],
        multilevel_fit=pd.DataFrame(
            [{"blocking": False, "notes": "not estimable: the codebook's models have ..."}],
            columns=["model", "outcome", "n_obs", "loglik", "blocking", "notes"],
        ),
        companies_reported=0,
        companies_without_report=3,
    )
    context = wave_context(inputs, individual_codebook(tmp_path), tmp_path / "figures")
    markdown = fill_template(TEMPLATE, context)
    assert (
        "come from 3 companies;\nnone of them receives a company report, because the codebook "
        "has no culture or outcome scales to report on." in markdown
    )
    assert "The codebook has no culture scales, so nothing is aggregated to companies" in markdown
    assert (
        "There are no multilevel models: they explain an outcome scale by the culture scales, "
        "and the codebook's models have no outcome and no culture scale." in markdown
    )
    for left_out in ("ICC(1)", "tbl-companies", "tbl-multilevel", "No full model"):
        assert left_out not in markdown
    assert not re.search(r"\bnan\b", markdown)
    ids = context["number_ids_table"]
    assert "aggregation[" not in ids and "multilevel_fit[" not in ids and "reliability[" in ids


def test_change_since_the_previous_wave_needs_k_in_both_waves(tmp_path):
    previous = crafted_tables()[0].assign(LT=lambda d: d["LT"] - 0.5)
    inputs = crafted_inputs(previous, previous_wave="2019-T0")
    markdown = fill_template(TEMPLATE, wave_context(inputs, CODEBOOK, tmp_path))
    assert "This is the first wave" not in markdown
    change = markdown[markdown.index("| Scale | n before") :]
    lt_row = next(line for line in change.splitlines() if line.startswith("| LT (Work rich"))
    cells = [c.strip() for c in lt_row.strip("|").split("|")]
    assert cells[1] == "24" and cells[3] == "24" and cells[5] == "0.50"
    low, high = (float(x) for x in cells[6].strip("[]").split(","))
    assert low < 0.5 < high
    assert f"| PL (Proactive learning) | n < {K} |" in markdown
    assert "Change since wave 2019\\-T0" in markdown


def test_welch_interval_agrees_with_scipy():
    rng = np.random.default_rng(1)
    now, before = pd.Series(rng.normal(3.6, 0.7, 40)), pd.Series(rng.normal(3.4, 0.9, 25))
    diff, low, high = welch_difference(now, before)
    expected = stats.ttest_ind(now, before, equal_var=False).confidence_interval(0.95)
    assert diff == pytest.approx(now.mean() - before.mean())
    assert (low, high) == pytest.approx((expected.low, expected.high), rel=1e-12)
    assert welch_difference(pd.Series([4.0] * 6), pd.Series([3.0] * 6)) == (1.0, 1.0, 1.0)


def test_provenance_is_laid_out(filled):
    _, markdown = filled
    assert "| inputs / 1 / sha256 | " + "ab" * 32 + " |" in markdown
    assert r"| run\_id | run\-42 |" in markdown


def test_computed_numbers_are_stored_as_shown_and_blank_where_hidden(filled):
    context, markdown = filled
    numbers = crafted_inputs().numbers.set_index(["table", "row", "statistic"])["value"]
    numbers = numbers.sort_index()
    assert numbers[("totals", "companies", "n")] == 3
    assert f"{numbers[('descriptives', 'LT', 'mean')]:.2f}" in context["descriptives_table"]
    assert numbers.loc[("descriptives", "PL")].isna().all()  # 3 scores: blank, as in the report
    assert f"| PL (Proactive learning) | individual | n < {K} |" in context["descriptives_table"]
    assert numbers.loc[("sample", "gender/vrouw")].isna().all()  # suppressed with its complement
    assert numbers[("companies", "LT", "lowest")] == 3.89  # c_small's mean is in no number
    assert TINY_COMPANY_MEAN not in numbers.to_numpy()
    assert "`wave_report_numbers[2021-T1](totals,respondents,n).value`" in markdown


def test_renders_to_html(tmp_path):
    context = wave_context(crafted_inputs(), CODEBOOK, tmp_path / "figures")
    rendered = render_report(
        TEMPLATE, context, tmp_path / "out", "wave-2021-T1", formats=("html",), engine="pandoc"
    )
    html = rendered.files[0].path.read_text(encoding="utf-8")
    assert "wave report 2021-T1" in html
    assert "0.123" in html and "0.568" in html  # ICC(1) and ICC(2)
    assert "<img" in html and 'alt="Histogram of company mean of LT over 2 companies' in html
    assert TINY_ALPHA not in html


def test_the_cfa_table_says_how_it_was_estimated_and_shows_the_robust_fit(tmp_path):
    """Under MLR the table shows the scaled chi-square and the robust indices, not the naive
    ones, and its caption names the estimator and the missing-data treatment."""
    robust = pd.DataFrame(
        [["scales", "MLR", "fiml", 24, 30.2, 20, 0.95, 0.94, 0.05, 0.06, 27.4, 1.1, 0.97, 0.96]],
        columns=["model", "estimator", "missing", "n", "chisq", "df", "cfi", "tli", "rmsea"]
        + ["srmr", "chisq_scaled", "scaling_factor", "cfi_robust", "tli_robust"],
    ).assign(rmsea_robust=0.04)
    context = wave_context(crafted_inputs(cfa_fit=robust), CODEBOOK, tmp_path / "figures")
    table = context["cfa_table"]
    assert "χ² scaled" in table and "27.40" in table and "0.970" in table and "0.040" in table
    assert "30.20" not in table and "0.950" not in table
    assert context["cfa_method"].replace("\\", "").startswith("MLR, full-information ML")
    listwise = robust.assign(estimator="ML", missing="listwise")
    context = wave_context(crafted_inputs(cfa_fit=listwise), CODEBOOK, tmp_path / "figures")
    assert "30.20" in context["cfa_table"] and "χ² scaled" not in context["cfa_table"]
    assert context["cfa_method"].replace("\\", "") == "ML, complete rows only"


def test_a_partial_invariance_names_the_freed_parameters(tmp_path):
    rows = [
        ("configural", 100.0, 50, 0.96, 0.04, "", "baseline"),
        ("metric", 110.0, 56, 0.958, 0.039, "", "holds"),
        ("scalar", 160.0, 62, 0.93, 0.05, "", "rejected"),
        ("scalar (partial)", 120.0, 61, 0.952, 0.041, "LT3~1", "holds partially"),
    ]
    invariance = pd.DataFrame(
        [
            {"model": m, "chisq": c, "df": d, "cfi": f, "rmsea": r, "free": free, "decision": dec}
            | {"estimator": "ML", "missing": "fiml", "groups": "2019-T0 (50); 2021-T1 (50)"}
            | {"n": 100, "delta_cfi": 0.0, "delta_rmsea": 0.0}
            for m, c, d, f, r, free, dec in rows
        ]
    ).reindex(columns=list(TABLE_COLUMNS))
    context = wave_context(crafted_inputs(invariance=invariance), CODEBOOK, tmp_path / "figures")
    assert "holds partially (free: LT3~1)" in context["invariance_table"].replace("\\", "")
    assert context["invariance_status"].startswith("Scalar invariance holds partially")


def levels(*rows: tuple[str, str, str]) -> pd.DataFrame:
    """An invariance table's (model, decision, free) rows, fitted."""
    frame = pd.DataFrame(rows, columns=["model", "decision", "free"])
    return frame.assign(chisq=1.0).replace({"free": {"": None}})


def test_scalar_holds_only_with_every_parameter_equal():
    """A scalar level that holds on top of a metric level with a freed loading is partial, as
    is a partial scalar row that holds; without a fit it is untested."""
    base = [("configural", "baseline", ""), ("metric", "holds", "")]
    assert scalar_verdict(levels(*base, ("scalar", "holds", ""))) == "holds"
    freed_metric = [
        ("configural", "baseline", ""),
        ("metric", "rejected", ""),
        ("metric (partial)", "holds partially", "F=~x2"),
        ("scalar", "holds", "F=~x2"),
    ]
    assert scalar_verdict(levels(*freed_metric)) == "partial"
    partial = [*base, ("scalar", "rejected", ""), ("scalar (partial)", "holds partially", "x3~1")]
    assert scalar_verdict(levels(*partial)) == "partial"
    rejected = [*base, ("scalar", "rejected", ""), ("scalar (partial)", "rejected", "x3~1")]
    assert scalar_verdict(levels(*rejected)) == "rejected"
    assert scalar_verdict(levels(*base).assign(chisq=float("nan"))) == "untested"
