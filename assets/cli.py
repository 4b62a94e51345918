"""The `scan` command line: drives Dagster on the instance in DAGSTER_HOME, so that every run
started here also shows in the UI (`dagster dev`) afterwards."""

from __future__ import annotations

import json
import os
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import click
import dagster as dg
import pandas as pd
from tqdm import tqdm

from assets.definitions import (
    ALL_ASSETS,
    ALL_CHECKS,
    CROSS_WAVE_SELECTION,
    REPORT_SELECTION,
    REPORTS,
    WAVE_SELECTION,
    build_definitions,
)
from assets.lineage import TraceError
from assets.lineage import trace as trace_number
from assets.partitions import waves
from assets.resources import ALL_WAVES, resources_for
from assets.staleness import pipeline_status, stale_reasons
from pipeline.codebook import CodebookError, load_codebook
from pipeline.codebook_draft import draft_codebook
from pipeline.demo import DEFAULT_SEED, write_demo
from pipeline.files import RUN_LOCK, Busy, exclusive, remove_partial_files, write_atomic
from pipeline.quality import describe_quality
from pipeline.readers import ExportError, export_files
from pipeline.settings import Settings

DATA_TAG = "scan/data_dir"  # on every run `scan run` starts: the data folder it works on
QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
INSTANCE_CONFIG = "telemetry:\n  enabled: false\n"


@click.group()
@click.option(
    "--data-dir",
    help="Data folder: raw/ (codebook and exports, restricted) and processed/ (shareable). "
    "Default: $SCAN_DATA_DIR, else ./data.",
)
@click.option(
    "--reports-dir",
    help="Where rendered reports go. Default: $SCAN_REPORTS_DIR, else ./reports/output.",
)
@click.pass_context
def main(ctx: click.Context, data_dir: str | None, reports_dir: str | None) -> None:
    """The learning-culture scan pipeline."""
    ctx.obj = Settings.from_env(data_dir, reports_dir)


@main.command()
@click.option("--seed", default=DEFAULT_SEED, show_default=True, help="Seed of the generator.")
@click.pass_obj
def demo(settings: Settings, seed: int) -> None:
    """Regenerate the demo exports and their ground truth under <data-dir>/raw/."""
    summary = write_demo(settings.data_dir, seed=seed)
    click.echo(f"demo scan written to {settings.raw_dir}")
    click.echo(str(summary))


@dataclass
class WaveRun:
    wave: str
    status: str
    detail: str = ""


@main.command()
@click.option("--force", is_flag=True, help="Recompute every wave, even when up to date.")
@click.option(
    "--wait", is_flag=True, help="Wait for another `scan run` on the same data instead of refusing."
)
@click.pass_obj
def run(settings: Settings, force: bool, wait: bool) -> None:
    """Materialize every stale asset for every wave found under <data-dir>/raw/.

    One `scan run` works on a data folder at a time: a second one refuses (or, with --wait,
    waits). A run that was killed leaves no partial output; the next one clears what it left
    and redoes the rest."""
    try:
        load_codebook(settings.codebook_path)
    except CodebookError as exc:
        raise click.ClickException(str(exc)) from exc
    found = [w for w in settings.waves() if export_files(settings.wave_dir(w))]
    if not found:
        raise click.ClickException(
            f"no wave folders with exports under {settings.raw_dir} (run `scan demo` for the demo)"
        )
    with ExitStack() as held:
        lock = settings.data_dir / RUN_LOCK
        try:
            held.enter_context(exclusive(lock))
        except Busy as busy:
            if not wait:
                raise click.ClickException(
                    f"another `scan run` is working on {settings.data_dir} ({busy}); it is left "
                    "alone: wait until it ends, or start this one with --wait"
                ) from None
            click.echo(f"waiting for the other `scan run` ({busy}) ...")
            held.enter_context(exclusive(lock, wait=True))
        run_all(settings, found, force)


def run_all(settings: Settings, found: list[str], force: bool) -> None:
    """The three stages of `scan run` on the waves `found`, holding the data folder's lock."""
    instance = dagster_instance()
    recover(instance, settings)
    known = set(instance.get_dynamic_partitions(waves.name))
    instance.add_dynamic_partitions(waves.name, [w for w in found if w not in known])
    definitions = build_definitions(settings)
    status = pipeline_status(instance, definitions, settings)

    def stage(selection: dg.AssetSelection, wave: str | None) -> WaveRun:
        """One stage; the status is read again only after a run changed the instance."""
        nonlocal status
        stale = stale_reasons(status, definitions, selection, wave)
        result = run_stage(instance, settings, stale, selection, wave, force)
        if result.status != "up to date":
            status = pipeline_status(instance, definitions, settings)
        return result

    results = []
    progress = tqdm(found, desc="waves", unit="wave")
    for wave in progress:
        progress.set_postfix_str(wave)
        results.append(stage(WAVE_SELECTION, wave))
    progress.close()
    if any(r.status == "failed" for r in results):
        results.append(WaveRun(ALL_WAVES, "skipped", "a wave failed; the last results are kept"))
    else:
        results.append(stage(CROSS_WAVE_SELECTION, None))
    if results[-1].status in ("skipped", "failed"):
        results.append(WaveRun(REPORTS, "skipped", "needs every wave and the cross-wave results"))
    else:
        for wave in tqdm(found, desc="reports", unit="wave"):
            results.append(stage(REPORT_SELECTION, wave))

    for r in results:
        click.echo(f"{r.wave:<16} {r.status:<13} {r.detail}")
        folder = settings.processed_dir / r.wave
        if r.status != "failed" and (folder / "quality_summary.csv").exists():
            click.echo(f"{'':<16} {describe_quality(pd.read_csv(folder / 'quality_summary.csv'))}")
        if r.status != "failed" and (folder / "disclosure.json").exists():
            disclosure = json.loads((folder / "disclosure.json").read_text())
            click.echo(f"{'':<16} {describe_disclosure(disclosure)}")
    click.echo(f"restricted outputs: {settings.staging_dir}")
    click.echo(f"shareable outputs:  {settings.processed_dir}")
    click.echo(f"Dagster instance:   {instance.root_directory} (see the runs with `dagster dev`)")
    if any(r.status == "failed" for r in results):
        raise SystemExit(1)


@main.command()
@click.pass_obj
def status(settings: Settings) -> None:
    """Per asset and wave: up to date, or why not (new or changed file, changed codebook,
    changed code, upstream changed), read from the Dagster instance; changes nothing."""
    instance = dagster_instance()
    statuses = pipeline_status(instance, build_definitions(settings), settings)
    for (asset, wave), reason in statuses.items():
        click.echo(f"{asset:<30} {wave or ALL_WAVES:<10} {reason or 'up to date'}")
    stale = sum(bool(reason) for reason in statuses.values())
    click.echo(
        f"{len(statuses) - stale} of {len(statuses)} up to date; `scan run` recomputes the "
        f"other {stale}"
    )


@main.command()
@click.argument("number_id")
@click.pass_obj
def trace(settings: Settings, number_id: str) -> None:
    """Follow a reported number (its id, e.g. reliability[2021-T1](LT).alpha, from a report's
    appendix) back through the assets, runs and files that made it to the raw exports."""
    try:
        lines = trace_number(dagster_instance(), build_definitions(settings), number_id)
    except TraceError as error:
        raise click.ClickException(str(error)) from error
    click.echo("\n".join(lines))


@main.group()
def codebook() -> None:
    """The codebook: draft a first one from a scan's exports."""


@codebook.command()
@click.argument(
    "exports", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the draft to this file instead of stdout.",
)
@click.option("--force", is_flag=True, help="Overwrite the --output file when it exists.")
def draft(exports: tuple[Path, ...], output: Path | None, force: bool) -> None:
    """Draft a first codebook from a scan's exports.

    EXPORTS: .sav, Qualtrics or plain .csv, .xlsx files, one or more per wave; the wave is the
    export's folder name, as in raw/<wave>/. The draft is YAML in which every guess is marked
    GUESS: confirm each, then check the codebook with `scan run`."""
    if output is not None and output.exists() and not force:
        raise click.ClickException(f"{output} exists: give --force to overwrite it")
    try:
        text = draft_codebook(exports)
    except ExportError as error:
        raise click.ClickException(str(error)) from error
    if output is None:
        click.echo(text, nl=False)
    else:
        write_atomic(output, lambda tmp: tmp.write_text(text, encoding="utf-8"))
        click.echo(f"codebook draft written to {output}: confirm every GUESS in it", err=True)


def data_tag(settings: Settings) -> dict[str, str]:
    """The tag that marks a run as working on this data folder."""
    return {DATA_TAG: str(settings.data_dir.resolve())}


def recover(instance: dg.DagsterInstance, settings: Settings) -> None:
    """Clear what a killed `scan run` on this data folder left: its runs still marked as going
    are marked failed, and the temporary files of its unfinished writes are removed. Safe
    because the caller holds the folder's lock, so no `scan run` is writing."""
    orphans = instance.get_runs(
        dg.RunsFilter(
            statuses=[dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED],
            tags=data_tag(settings),
        )
    )
    for orphan in orphans:
        instance.report_run_failed(orphan, "its `scan run` ended before the run did (killed?)")
    roots = (settings.staging_dir, settings.processed_dir, settings.reports_dir)
    partial = [path for root in roots for path in remove_partial_files(root)]
    if orphans or partial:
        click.echo(
            f"after an interrupted run: {len(orphans)} run(s) marked failed, {len(partial)} "
            "partial file(s) removed; what it did not finish is redone"
        )


def run_stage(
    instance: dg.DagsterInstance,
    settings: Settings,
    stale: dict[str, str],
    selection: dg.AssetSelection,
    wave: str | None,
    force: bool,
) -> WaveRun:
    """Materialize the selected assets (and their checks) for one wave, or the cross-wave ones
    with `wave=None`, unless all are up to date (`stale`: why each stale one is)."""
    label = ALL_WAVES if wave is None else wave
    if selection is REPORT_SELECTION:
        label = f"{REPORTS}/{wave}"
    if not force and not stale:
        return WaveRun(label, "up to date")
    result = dg.materialize(
        [*ALL_ASSETS, *ALL_CHECKS],
        selection=selection,
        partition_key=wave,
        instance=instance,
        resources=resources_for(settings),
        run_config=QUIET_LOGS,
        tags={"scan/command": "scan run", **data_tag(settings)},
        raise_on_error=False,
    )
    if not result.success:
        return WaveRun(label, "failed", f"{failure_reason(result)} (run {result.run_id})")
    return WaveRun(label, "materialized", f"run {result.run_id} ({describe_stale(stale, force)})")


def describe_stale(stale: dict[str, str], force: bool) -> str:
    """Why a run was needed: 'first run', 'forced', or each stale asset with its reason."""
    if not stale:
        return "forced" if force else "up to date"
    if set(stale.values()) == {"never materialized"}:
        return "first run"
    return "; ".join(f"{asset}: {reason}" for asset, reason in stale.items())


def describe_disclosure(d: dict) -> str:
    """'k=5 reached; at risk 212 -> 0; suppressed gender 30, ...; max risk 0.20; key 3f2a...'."""
    suppressed = ", ".join(f"{v} {n}" for v, n in d["suppressed"].items() if n) or "nothing"
    return (
        f"k={d['k']} {'reached' if d['k_reached'] else 'NOT reached'}; records at risk "
        f"{d['at_risk_before']} -> {d['at_risk_after']}; suppressed {suppressed}; "
        f"companies under k {d['small_companies']}; max individual risk "
        f"{d['max_individual_risk']:.2f}; key {d['key_id']} ({d['key_source']})"
    )


def failure_reason(result: dg.ExecuteInProcessResult) -> str:
    """The message of the error that failed the run, without Dagster's wrapping."""
    error = result.get_step_failure_events()[0].step_failure_data.error
    while error.cause is not None:
        error = error.cause
    prefix, _, message = error.message.partition(": ")
    return message.strip() if prefix.endswith(str(error.cls_name)) else error.message.strip()


def dagster_instance() -> dg.DagsterInstance:
    """The instance in DAGSTER_HOME, by default `.dagster/` in the working directory."""
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(Path(".dagster").resolve())))
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(INSTANCE_CONFIG)
    return dg.DagsterInstance.get()
