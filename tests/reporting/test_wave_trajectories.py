"""The wave report's section on development trajectories (issue #19.4): per scale the
difference-in-differences and the participants-vs-colleagues effect from trajectory_effects and
trajectory_fit, a model that shows none says why, the notes and the design in words, and one
sentence without a register; the numbers are traceable to the cross-wave tables."""

import dataclasses
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from test_wave_report import crafted_inputs

from pipeline.instrument.codebook import load_codebook
from pipeline.models.multilevel import COEFFICIENT_COLUMNS, FIT_COLUMNS
from pipeline.reporting.render import REPORTS_DIR, fill_template, render_report
from pipeline.reporting.wave_report import trajectory_section, wave_context

CODEBOOK_PATH = Path(__file__).resolve().parents[2] / "data" / "raw" / "codebook.yaml"
CODEBOOK = load_codebook(CODEBOOK_PATH)
K = CODEBOOK.anonymisation.k
TEMPLATE = REPORTS_DIR / "wave.qmd"

BLOCKED_ESTIMATE = 0.777  # participant_after_start of the blocked SL/participants
NOTES_TRAJECTORY = "12 companies with a trajectory, 28 without"
NOTES_PARTICIPANTS = "40 participants and 210 colleagues after a start, in 12 companies"


def fit_row(model, n_obs, blocking=False, problems="", notes="") -> dict:
    return {
        "model": model,
        "outcome": model.split("/")[0] if model else "",
        "n_obs": n_obs,
        "n_groups": 40,
        "blocking": blocking,
        "problems": problems,
        "notes": notes,
    }


def term(model, name, estimate, se=0.05, df=38, p=0.01) -> dict:
    return {
        "model": model,
        "term": name,
        "estimate": estimate,
        "std_error": se,
        "df": df,
        "df_method": "between-within",
        "ci_low": estimate - 2 * se,
        "ci_high": estimate + 2 * se,
        "p_value": p,
    }


def tables(rows_fit: list[dict], rows_terms: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(trajectory_effects, trajectory_fit) as the asset stores them, read back from CSV."""
    effects = pd.DataFrame(rows_terms, columns=list(COEFFICIENT_COLUMNS))
    fit = pd.DataFrame(rows_fit, columns=list(FIT_COLUMNS))
    return (
        pd.read_csv(io.StringIO(effects.to_csv(index=False))),
        pd.read_csv(io.StringIO(fit.to_csv(index=False))),
    )


def crafted() -> tuple[pd.DataFrame, pd.DataFrame]:
    """EM (an outcome) before LT (culture) in the tables, to check the report's order; SL's
    participants model blocked (its estimate withheld as NaN, as the models write it, but a
    planted number here to prove it is not printed), LT's difference-in-differences not
    estimable, RF's under k rows."""
    fit = [
        fit_row("EM/trajectory", 900, notes=NOTES_TRAJECTORY),
        fit_row("EM/participants", 310, notes=NOTES_PARTICIPANTS),
        fit_row("SL/trajectory", 905, notes=NOTES_TRAJECTORY),
        fit_row("SL/participants", 312, True, "not_converged: gradient 0.3", NOTES_PARTICIPANTS),
        fit_row("LT/trajectory", np.nan, notes="not estimable: needs 2 waves (1)"),
        fit_row("LT/participants", 300, notes=NOTES_PARTICIPANTS),
        fit_row("RF/trajectory", K - 1, notes="1 companies with a trajectory, 1 without"),
    ]
    terms = [
        term("EM/trajectory", "Intercept", 3.4),
        term("EM/trajectory", "wave[2021-T1]", 0.1),
        term("EM/trajectory", "has_trajectory", 0.05),
        term("EM/trajectory", "after_start", 0.213, 0.061, 38, 0.0004),
        term("EM/participants", "after_start", 0.02),
        term("EM/participants", "participant", 0.04),
        term("EM/participants", "participant_after_start", 0.154, 0.07, 11, 0.049),
        term("SL/trajectory", "after_start", 0.301, 0.08, 38, 0.0311),
        term("SL/participants", "participant_after_start", BLOCKED_ESTIMATE),
        term("LT/participants", "participant_after_start", -0.123, 0.05, 11, 0.02),
        term("RF/trajectory", "after_start", 0.888),
    ]
    return tables(fit, terms)


def section(markdown: str) -> str:
    start = markdown.index("## Development trajectories")
    return markdown[start : markdown.index("\n## ", start + 1)]


def row(table: str, start: str) -> list[str]:
    line = next(line for line in table.splitlines() if line.startswith(start))
    return [c.strip() for c in line.strip("|").split("|")]


def test_each_scale_shows_both_effects_in_codebook_order():
    effects, fit = crafted()
    table = trajectory_section(effects, fit, CODEBOOK)["trajectory_table"]
    lines = table.splitlines()
    assert lines[0].split("|")[1:-1] == [
        f" {h} " for h in ("Scale", "Effect", "Estimate", "SE", "df", "95% CI", "p", "n", "Status")
    ]
    scales = [line.split("|")[1].strip() for line in lines[2:] if line.split("|")[1].strip()]
    assert [s.split(" ")[0] for s in scales] == ["LT", "RF", "SL", "EM"]  # culture, outcome
    assert scales[0] == "LT (Work rich in learning)"
    em = lines.index(next(line for line in lines if line.startswith("| EM ")))
    assert row(lines[em], "|") == [
        "EM (Employability)",
        "after start",
        "0.213",
        "0.061",
        "38",
        "[0.091, 0.335]",
        "< .001",
        "900",
        "",
    ]
    assert row(lines[em + 1], "|") == [
        "",
        "participant after start",
        "0.154",
        "0.070",
        "11",
        "[0.014, 0.294]",
        "0.049",
        "310",
        "",
    ]
    assert "0.040" not in table and "3.400" not in table  # other terms are not shown


def test_a_blocked_a_not_estimable_and_a_small_model_say_why():
    effects, fit = crafted()
    table = trajectory_section(effects, fit, CODEBOOK)["trajectory_table"]
    lines = table.splitlines()
    lt = row(table, "| LT ")
    assert lt[2:8] == ["–"] * 6 and lt[8] == r"not estimable: needs 2 waves \(1\)"
    assert row(table, "| RF ")[8] == f"not published: n < {K}"
    sl = lines.index(next(line for line in lines if line.startswith("| SL ")))
    blocked = row(lines[sl + 1], "|")
    assert blocked[1] == "participant after start" and blocked[2] == "–"
    assert blocked[8] == r"not published: not\_converged: gradient 0\.3"
    assert f"{BLOCKED_ESTIMATE:.3f}" not in table and "0.888" not in table
    assert row(lines[sl], "|")[2] == "0.301"  # the scale's other model is published
    # LT's participant model is published although its difference-in-differences is not
    assert row(lines[lines.index(next(x for x in lines if x.startswith("| LT "))) + 1], "|")[2] == (
        "-0.123"
    )


def test_the_status_column_is_left_out_when_every_model_is_published():
    effects, fit = crafted()
    fine = fit[fit["model"].isin(["EM/trajectory", "EM/participants"])]
    table = trajectory_section(effects, fine, CODEBOOK)["trajectory_table"]
    assert "Status" not in table and table.splitlines()[0].endswith("| n |")
    assert len(table.splitlines()) == 4


def test_notes_and_design_are_said_in_words():
    effects, fit = crafted()
    context = trajectory_section(effects, fit, CODEBOOK)
    notes = context["trajectory_notes"]
    assert notes.startswith("Difference-in-differences models (`after_start`): ")
    # RF's note differs from the others: each note is said with its scales, in codebook order
    assert "1 companies with a trajectory, 1 without (RF); " in notes
    assert f"; {NOTES_TRAJECTORY} (SL, EM)." in notes
    assert f"Participant models (`participant_after_start`): {NOTES_PARTICIPANTS}." in notes
    assert "not estimable" not in notes  # a reason is in the table, not the notes
    design = context["trajectory_design"]
    for words in (
        "over all waves",
        "companies without a trajectory",
        "than those of their colleagues",
        "every type are pooled into one effect",
        "two-way fixed-effects",
        "Goodman-Bacon, 2021",
    ):
        assert words in design, words
    assert context["trajectory_note"] == ""


def test_without_a_register_one_sentence_says_how_to_declare_it(tmp_path):
    raw = yaml.safe_load(CODEBOOK_PATH.read_text(encoding="utf-8"))
    del raw["registers"]["trajectories"]
    path = tmp_path / "codebook.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), encoding="utf-8")
    codebook = load_codebook(path)
    reason = (
        "not estimable: no trajectory register declared (the codebook's registers.trajectories)"
    )
    effects, fit = tables([fit_row("", np.nan, notes=reason)], [])
    assert fit["model"].isna().all()  # as read back from the CSV
    inputs = crafted_inputs(trajectory_effects=effects, trajectory_fit=fit)
    context = wave_context(inputs, codebook, tmp_path / "figures")
    assert context["trajectory_table"] == "" and context["trajectory_design"] == ""
    text = section(fill_template(TEMPLATE, context))
    assert "No trajectory register is declared" in text
    assert "registers.trajectories" in text
    assert "tbl-trajectories" not in text
    assert "trajectory_effects[" not in context["number_ids_table"]


def test_a_fit_without_models_gives_its_reason():
    reason = "not estimable: the codebook gives wave 2022-T2 no start date"
    effects, fit = tables([fit_row("", np.nan, notes=reason)], [])
    context = trajectory_section(effects, fit, CODEBOOK)
    assert context["trajectory_note"] == (
        r"There are no trajectory models: not estimable: the codebook gives wave 2022\-T2 no "
        "start date."
    )
    assert context["trajectory_table"] == ""
    empty = trajectory_section(effects.iloc[0:0], fit.iloc[0:0], CODEBOOK)
    assert empty["trajectory_note"].startswith("There are no trajectory models")


def test_without_known_participants_the_report_says_so(tmp_path):
    raw = yaml.safe_load(CODEBOOK_PATH.read_text(encoding="utf-8"))
    for key in ("participation", "participants"):
        del raw["registers"]["trajectories"][key]
    path = tmp_path / "codebook.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), encoding="utf-8")
    effects, fit = crafted()
    only = fit[fit["model"].str.endswith("/trajectory")]
    context = trajectory_section(effects, only, load_codebook(path))
    assert "Who takes part in a trajectory is not known" in context["trajectory_notes"]
    assert "participant after start" not in context["trajectory_table"]
    assert "Who takes part" not in trajectory_section(effects, only, CODEBOOK)["trajectory_notes"]


def test_the_section_follows_the_models_and_its_numbers_are_traceable(tmp_path):
    effects, fit = crafted()
    inputs = crafted_inputs(trajectory_effects=effects, trajectory_fit=fit)
    context = wave_context(inputs, CODEBOOK, tmp_path / "figures")
    markdown = fill_template(TEMPLATE, context)
    headings = [line for line in markdown.splitlines() if line.startswith("## ")]
    at = headings.index("## Development trajectories")
    assert headings[at - 1] == "## Multilevel results"
    assert headings[at + 1] == "## Change since the previous wave"
    text = section(markdown)
    assert "0.213" in text and NOTES_PARTICIPANTS in text and "two-way fixed-effects" in text
    ids = context["number_ids_table"]
    assert (
        "`trajectory_effects[all_waves](<model>,<term>).<column>` | "
        "`trajectory_effects[all_waves](EM/trajectory,after_start).estimate`" in ids
    )
    assert "`trajectory_fit[all_waves](<model>).<column>`" in ids
    assert "`trajectory_fit[all_waves](EM/trajectory).n_obs`" in ids


def test_the_report_without_trajectory_tables_still_renders(tmp_path):
    """Inputs made before the trajectory models (no such tables) give a section without
    models; the report renders to HTML with the section."""
    inputs = crafted_inputs()
    assert inputs.trajectory_fit.empty
    effects, fit = crafted()
    context = wave_context(
        dataclasses.replace(inputs, trajectory_effects=effects, trajectory_fit=fit),
        CODEBOOK,
        tmp_path / "figures",
    )
    rendered = render_report(
        TEMPLATE, context, tmp_path / "out", "wave", formats=("html",), engine="pandoc"
    )
    html = rendered.files[0].path.read_text(encoding="utf-8")
    assert "Development trajectories" in html and "0.213" in html
    assert f"{BLOCKED_ESTIMATE:.3f}" not in html
    assert "<code>participant_after_start</code>" in html


@pytest.mark.parametrize("blocking", [True, "True", 1.0])
def test_blocking_is_read_however_the_csv_stores_it(blocking):
    effects, fit = crafted()
    fit = fit.assign(blocking=[False, False, False, True, False, False, blocking])
    fit.loc[6, "n_obs"] = 500  # RF, otherwise fine
    table = trajectory_section(effects, fit, CODEBOOK)["trajectory_table"]
    assert "0.888" not in table and "not published: blocked" in table
