"""The data-quality table under the small-cell rule (`published_quality_summary`): the shareable
quality_summary.csv and the wave report show no count of 1 to k-1 quarantined rows, none follows
from the published totals, a hidden count traces to "suppressed", and the steward's `scan run`
summary keeps the exact counts (from the restricted quarantine)."""

import csv
import dataclasses
import io
import shutil
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from conftest import CODEBOOK, DEMO_RAW
from hypothesis import given
from hypothesis import strategies as st

from assets.cli import exact_quality
from assets.definitions import build_definitions
from assets.ingest import raw_responses
from assets.lineage import trace
from assets.partitions import waves
from assets.resources import resources_for
from assets.validate import validation
from pipeline.ingest.readers import read_wave
from pipeline.instrument.codebook import load_codebook
from pipeline.lineage.settings import Settings
from pipeline.privacy.suppression import SUPPRESSED, suppress_counts
from pipeline.reporting.wave_report import (
    WaveInputs,
    number_id,
    number_ids_table,
    response_section,
)
from pipeline.validate.quality import (
    REASONS,
    TOTALS,
    describe_quality,
    published_quality_summary,
    quality_reasons,
    quality_summary,
    read_register,
    rule_status,
    split_quarantine,
    stored_counts,
)

CB = load_codebook(CODEBOOK)
K = CB.anonymisation.k  # 5
ALL_APPLIED = dict.fromkeys(REASONS, "applied")


def quarantine_of(reasons: list[str]) -> pd.DataFrame:
    """A quarantine with one row per entry, its reasons ';'-joined (as `quality_reasons`)."""
    return pd.DataFrame({"_reasons": pd.Series(reasons, dtype="string")})


def published(summary: pd.DataFrame, k: int = K) -> pd.DataFrame:
    return published_quality_summary(summary, k, suppress_counts, SUPPRESSED)


def cells(table: pd.DataFrame) -> dict:
    return dict(zip(table["reason"], stored_counts(table["rows"]), strict=True))


def feasible(table: pd.DataFrame, k: int, partition: bool) -> dict[str, set[int]]:
    """An intruder's answer: per hidden reason, every count consistent with the published
    table. A reason counts quarantined rows, so each cell is at most `quarantined`, and every
    quarantined row has a reason, so the cells add up to `quarantined` or more (exactly, when
    the intruder assumes `partition`: no row with two reasons). A hidden cell is not 0 (0 is
    shown); a hidden total is 1 to k-1 and raw_rows = validated + quarantined."""
    shown = cells(table)
    hidden = [r for r in REASONS if shown[r] == SUPPRESSED]
    rest = sum(n for r, n in shown.items() if r in REASONS and n != SUPPRESSED)
    if shown["quarantined"] == SUPPRESSED:
        assert shown["raw_rows"] == SUPPRESSED, "raw_rows - validated would give it back"
        totals = range(1, k)
    else:
        totals = [shown["quarantined"]]
    found: dict[str, set[int]] = {r: set() for r in hidden}
    for total in totals:
        if any(n != SUPPRESSED and n > total for r, n in shown.items() if r in REASONS):
            continue  # no quarantine of this size has these cells
        need = total - rest  # what the hidden cells must add up to (at least, with overlap)
        n = len(hidden)
        for r in hidden:
            others_most = (n - 1) * total
            low = max(1, need - others_most)
            high = min(total, need - (n - 1)) if partition else total
            found[r] |= set(range(low, high + 1))
    return found


def assert_protected(table: pd.DataFrame, k: int = K, partition: bool = True) -> None:
    """No shown count of 1 to k-1 quarantined rows, `validated` shown, and no hidden count an
    intruder can pin down (`feasible`)."""
    shown = cells(table)
    counts = {r: shown[r] for r in ("quarantined", *REASONS)}  # raw_rows and validated: the wave
    assert not [(r, n) for r, n in counts.items() if n != SUPPRESSED and 1 <= n < k]
    assert shown["validated"] != SUPPRESSED  # the number of published responses
    for reason, values in feasible(table, k, partition).items():
        assert len(values) >= 2, f"{reason} is recovered: {values}"


# --- the rule on counts of 1 to 4 per reason -----------------------------------------------------


def test_counts_of_1_to_4_per_reason_are_hidden_and_not_recoverable_from_the_total():
    # a partition: every quarantined row has one reason, 1 to 4 rows each
    rows = ["preview"] + ["test"] * 2 + ["outside_window"] * 3 + ["speeder"] * 4
    summary = quality_summary("w", 100, quarantine_of(rows), ALL_APPLIED)
    table = published(summary)
    shown = cells(table)
    assert shown["raw_rows"] == 100 and shown["validated"] == 90 and shown["quarantined"] == 10
    assert [shown[r] for r in ("preview", "test", "outside_window", "speeder")] == [SUPPRESSED] * 4
    assert shown["duplicate"] == 0 and shown["incomplete"] == 0  # a zero tells nothing
    assert_protected(table)
    # the total minus the shown cells is 10, shared by four hidden cells: none follows
    assert feasible(table, K, partition=True)["preview"] == set(range(1, 8))


def test_a_single_small_cell_takes_the_smallest_other_with_it():
    rows = ["preview"] * 2 + ["speeder"] * 7 + ["straightliner"] * 30
    table = published(quality_summary("w", 200, quarantine_of(rows), ALL_APPLIED))
    shown = cells(table)
    assert (shown["preview"], shown["speeder"], shown["straightliner"]) == (
        SUPPRESSED,
        SUPPRESSED,
        30,
    )
    assert shown["quarantined"] == 39
    assert_protected(table)


def test_overlapping_reasons_still_do_not_give_a_cell_away():
    """Three rows carry two reasons each: the cells add up to 10, the total is 7. The intruder
    who takes the reasons for a partition is wrong, and can still pin nothing down."""
    rows = ["test;unknown_company"] * 3 + ["speeder"] * 4
    summary = quality_summary("w", 50, quarantine_of(rows), ALL_APPLIED)
    assert cells(summary)["test"] + cells(summary)["unknown_company"] + 4 > 7  # overlap
    table = published(summary)
    shown = cells(table)
    assert shown["quarantined"] == 7
    assert {shown[r] for r in ("test", "unknown_company", "speeder")} == {SUPPRESSED}
    assert_protected(table, partition=False)
    assert_protected(table, partition=True)


def test_a_total_under_k_is_hidden_with_raw_rows_and_validated_stays():
    """One quarantined row for one reason (the small wave's "1 row quarantined for reason X"):
    every reason cell is at most the total, so no complement can protect it; the total goes,
    and raw_rows with it, since raw_rows - validated would give it back."""
    for rows in (["speeder"], ["speeder"] * 4, ["test", "speeder;straightliner"]):
        table = published(quality_summary("w", 30, quarantine_of(rows), ALL_APPLIED))
        shown = cells(table)
        assert shown["raw_rows"] == shown["quarantined"] == SUPPRESSED
        assert shown["validated"] == 30 - len(rows)
        assert shown["speeder"] == SUPPRESSED
        assert_protected(table, partition=False)
        assert_protected(table, partition=True)


def test_nothing_quarantined_and_large_cells_are_shown_as_they_are():
    table = published(quality_summary("w", 40, quarantine_of([]), ALL_APPLIED))
    assert set(cells(table).values()) == {40, 0}
    rows = ["speeder"] * 5 + ["duplicate"] * 12
    table = published(quality_summary("w", 40, quarantine_of(rows), ALL_APPLIED))
    assert cells(table)["speeder"] == 5 and cells(table)["duplicate"] == 12


def test_a_rule_not_applied_keeps_0_and_its_status_a_hidden_cell_reads_suppressed():
    status = ALL_APPLIED | {"speeder": "not applicable: needs platform.duration"}
    rows = ["preview"] * 2 + ["test"] * 3 + ["duplicate"] * 20
    table = published(quality_summary("w", 100, quarantine_of(rows), status)).set_index("reason")
    assert table.loc["speeder", "rows"] == 0
    assert table.loc["speeder", "rule_status"] == status["speeder"]
    assert table.loc["preview", "rows"] == SUPPRESSED and table.loc["preview", "rule_status"] == (
        "applied"
    )
    # in the CSV: a hidden cell is the word, distinct from 0 and from a rule not applied
    stored = pd.read_csv(io.StringIO(table.reset_index().to_csv(index=False)), dtype=str)
    stored = stored.set_index("reason")
    assert stored.loc["preview", "rows"] == "suppressed" and stored.loc["speeder", "rows"] == "0"
    assert stored.loc["duplicate", "rows"] == "20"


def test_the_rule_is_idempotent_and_reads_the_csv_back():
    rows = ["preview"] * 2 + ["test"] * 3 + ["duplicate"] * 20
    table = published(quality_summary("w", 100, quarantine_of(rows), ALL_APPLIED))
    again = published(pd.read_csv(io.StringIO(table.to_csv(index=False))))
    assert cells(again) == cells(table)
    assert describe_quality(again).startswith(
        "100 raw rows: 75 validated, 25 quarantined (preview suppressed, test suppressed, "
        "duplicate 20)"
    )


@given(
    st.lists(
        st.lists(st.sampled_from(REASONS), min_size=1, max_size=3, unique=True),
        max_size=40,
    ),
    st.integers(0, 60),
    st.sampled_from([3, 5, 10]),  # with k = 2 a hidden count is 1 by definition
)
def test_no_quarantine_gives_a_small_cell_away(rows, validated, k):
    """Any quarantine (rows with one to three reasons) and any k: nothing of 1 to k-1 shown,
    no hidden cell pinned down, and with a published total the hidden cells hold at least k
    between them (two or more), as for every count `suppress_counts` protects."""
    quarantine = quarantine_of([";".join(r) for r in rows])
    summary = quality_summary("w", validated + len(rows), quarantine, ALL_APPLIED)
    table = published(summary, k)
    shown, exact = cells(table), cells(summary)
    assert shown["validated"] == validated
    assert all(shown[r] in (exact[r], SUPPRESSED) for r in (*TOTALS, *REASONS))
    assert_protected(table, k, partition=False)
    hidden = [exact[r] for r in REASONS if shown[r] == SUPPRESSED]
    if hidden and shown["quarantined"] != SUPPRESSED:
        assert len(hidden) >= 2 and sum(hidden) >= k
    if all(len(r) == 1 for r in rows) and set(hidden) != {1}:
        assert_protected(table, k, partition=True)  # disjoint reasons: the intruder's best case


def test_hidden_cells_of_one_row_each_are_pinned_only_if_the_reasons_were_disjoint():
    """The limit of the rule, shared by every count `suppress_counts` protects: hidden cells of
    exactly one row each, as many as the hidden rows. An intruder who knew that no row has two
    reasons would find each is 1; the reasons may overlap, so the table does not say so."""
    rows = ["preview", "test", "outside_window", "speeder", "duplicate"] + ["straightliner"] * 9
    table = published(quality_summary("w", 100, quarantine_of(rows), ALL_APPLIED))
    assert_protected(table, partition=False)
    assert set(feasible(table, K, partition=True)["preview"]) == {1}


# --- a small wave of the demo's real rows, through the pipeline ---------------------------------

SMALL = "2021-T1"
CLEAN_ROWS = 24
# quarantined rows of the demo's 2021-T1 export, by their planted problem: 1 preview, 1
# outside the fieldwork window, 1 speeder: 3 rows, fewer than k
PLANTED = {"preview": 1, "outside_window": 1, "speeder": 1}


def small_export(truth_rows: pd.DataFrame, target: Path) -> None:
    """The demo's Qualtrics export of 2021-T1 cut down to its three header rows, the first
    CLEAN_ROWS clean rows and the PLANTED problem rows, as the platform would write it."""
    truth = truth_rows[truth_rows["wave"] == SMALL]
    keep = set(truth.loc[truth["problems"] == "", "source_row"].astype(int).head(CLEAN_ROWS))
    for problem, n in PLANTED.items():
        keep |= set(truth.loc[truth["problems"] == problem, "source_row"].astype(int).head(n))
    source = DEMO_RAW / SMALL / f"leercultuurscan_{SMALL}.csv"
    reader = csv.reader(io.StringIO(source.read_text(encoding="utf-8-sig"), newline=""))
    out, start = io.StringIO(newline=""), 1
    writer = csv.writer(out, lineterminator="\r\n")
    for number, record in enumerate(reader):
        if number < 3 or start in keep:
            writer.writerow(record)
        start = reader.line_num + 1
    target.parent.mkdir(parents=True)
    target.write_text(out.getvalue(), encoding="utf-8-sig", newline="")


@pytest.fixture(scope="module")
def small_wave(tmp_path_factory):
    """The small wave validated by the pipeline's assets (raw_responses, validation) on a
    Dagster instance of its own: (settings, instance, definitions, result)."""
    truth = pd.read_csv(DEMO_RAW / "_demo_truth" / "rows.csv", dtype=str, keep_default_na=False)
    data = tmp_path_factory.mktemp("small") / "data"
    (data / "raw").mkdir(parents=True)
    for name in ("codebook.yaml", "company_register.csv"):
        shutil.copy(DEMO_RAW / name, data / "raw" / name)
    small_export(truth, data / "raw" / SMALL / "export.csv")
    settings = Settings(data, data.parent / "reports")
    definitions = build_definitions(settings)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(waves.name, [SMALL])
        result = dg.materialize(
            [raw_responses, validation],
            partition_key=SMALL,
            instance=instance,
            resources=resources_for(settings),
            raise_on_error=False,
        )
        yield settings, instance, definitions, result


def test_the_small_wave_publishes_no_small_cell(small_wave):
    settings, _, _, result = small_wave
    assert result.success
    stored = pd.read_csv(settings.processed_dir / SMALL / "quality_summary.csv")
    shown = cells(stored)
    assert shown["validated"] == CLEAN_ROWS
    assert shown["raw_rows"] == shown["quarantined"] == SUPPRESSED  # 3 quarantined rows
    assert {shown[r] for r in PLANTED} == {SUPPRESSED}
    assert_protected(stored, partition=False)
    assert_protected(stored, partition=True)
    # the same rows read and validated by the functions: the exact counts behind it
    frame = read_wave(settings.wave_dir(SMALL), CB, settings.raw_dir)
    register = read_register(settings.raw_dir / "company_register.csv", CB.company_id)
    _, quarantine = split_quarantine(frame, quality_reasons(frame, CB, register))
    exact = cells(quality_summary(SMALL, len(frame), quarantine, rule_status(CB, SMALL)))
    assert {r: exact[r] for r in PLANTED} == PLANTED
    assert exact["quarantined"] == sum(PLANTED.values())


NUMBERS = pd.DataFrame(
    {"table": ["totals"], "row": ["companies"], "statistic": ["n"], "value": [3.0]}
)


def small_inputs(quality: pd.DataFrame) -> WaveInputs:
    """What the wave report's response section reads: the stored quality summary and the number
    of companies; the other tables empty."""
    columns = ["scale", "alpha", "r_drop", "cfi", "std_loading", "icc1", "estimate", "loglik"]
    empty = pd.DataFrame(columns=columns)
    fields = ["reliability", "item_statistics", "cfa_fit", "cfa_loadings", "aggregation"]
    fields += ["company_scores", "multilevel", "multilevel_fit", "invariance"]
    return WaveInputs(
        wave=SMALL,
        quality_summary=quality,
        numbers=NUMBERS,
        previous_wave=None,
        companies_reported=2,
        companies_without_report=1,
        provenance={},
        waves=(SMALL,),
        **dict.fromkeys(fields, empty),
    )


def test_the_wave_report_of_the_small_wave_shows_suppressed(small_wave):
    settings, *_ = small_wave
    stored = pd.read_csv(settings.processed_dir / SMALL / "quality_summary.csv")
    section = response_section(small_inputs(stored), K)
    assert section["n_raw"] == section["n_quarantined"] == SUPPRESSED
    assert section["n_validated"] == str(CLEAN_ROWS)
    table = section["quarantine_table"]
    for reason in PLANTED:
        assert f"| {reason.replace('_', chr(92) + '_')} | " in table
    assert not any(f"| {n} |" in table for n in range(1, K))
    assert table.count(f"| {SUPPRESSED} |") == len(PLANTED)


def test_a_suppressed_cell_traces_to_suppressed(small_wave):
    """The report's ids of the section (`quality_summary[<wave>](<wave>,<reason>).rows`) read
    the shareable table: a hidden count as "suppressed", a shown one as its number."""
    settings, instance, definitions, _ = small_wave
    stored = pd.read_csv(settings.processed_dir / SMALL / "quality_summary.csv")
    ids = number_ids_table(dataclasses.replace(small_inputs(stored), numbers=NUMBERS.iloc[:0]))
    example = number_id("quality_summary", SMALL, [SMALL, "validated"], "rows")
    assert f"`{example}`" in ids  # the example is a number the report shows
    assert trace(instance, definitions, settings, example)[0] == f"{example} = {CLEAN_ROWS}"
    hidden = number_id("quality_summary", SMALL, [SMALL, "preview"], "rows")
    lines = trace(instance, definitions, settings, hidden)
    assert lines[0] == f"{hidden} = {SUPPRESSED}"
    assert any(line.startswith(f"  raw_responses[{SMALL}]: run ") for line in lines)


def test_the_steward_sees_the_exact_counts(small_wave):
    """`scan run`'s summary (the steward's terminal, restricted side) counts from the
    quarantine in the restricted zone, not from the shareable table."""
    settings, *_ = small_wave
    text = describe_quality(exact_quality(settings, SMALL))
    assert text.startswith(
        f"{CLEAN_ROWS + 3} raw rows: {CLEAN_ROWS} validated, 3 quarantined "
        "(preview 1, outside_window 1, speeder 1)"
    )
    shareable = pd.read_csv(settings.processed_dir / SMALL / "quality_summary.csv")
    assert "suppressed raw rows" in describe_quality(shareable)
