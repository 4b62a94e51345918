"""The `scan` command line: drives Dagster on the instance in DAGSTER_HOME, so that every run
started here also shows in the UI (`dagster dev`) afterwards."""

from __future__ import annotations

import json
import os
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click
import dagster as dg
import pandas as pd
from tqdm import tqdm

from assets.catalog import CATALOG
from assets.definitions import (
    CATALOG_JOB,
    CROSS_WAVE_JOB,
    PROTECT_JOB,
    REPORT_JOB,
    REPORTS,
    VALIDATE_JOB,
    build_definitions,
)
from assets.lineage import UNRECORDED, TraceError
from assets.lineage import trace as trace_number
from assets.lineage import verify as verify_outputs
from assets.partitions import waves
from assets.reports import company_monitoring_numbers, company_report_numbers, company_reports
from assets.resources import ALL_WAVES
from assets.staleness import DATA_TAG, error_text, pipeline_status, short, stale_reasons
from pipeline.demo.write import DEFAULT_SEED, write_demo
from pipeline.ingest.codebook_draft import draft_codebook
from pipeline.ingest.readers import ExportError, export_files
from pipeline.instrument.codebook import Codebook, CodebookError, load_codebook
from pipeline.lineage.files import RUN_LOCK, Busy, exclusive, remove_partial_files, write_atomic
from pipeline.lineage.settings import Settings
from pipeline.privacy.disclosure import describe_disclosure
from pipeline.privacy.pseudonyms import PseudonymKeyError, load_key
from pipeline.reporting.delivery import (
    DISTRIBUTION,
    DeliveryError,
    delivery_folder,
    match,
    register_companies,
    undeclared,
)
from pipeline.reporting.delivery import deliver as deliver_reports
from pipeline.validate.quality import (
    REASON_TEXT,
    REASONS,
    ROW_NUMBERING_TEXT,
    describe_quality,
    quality_summary,
    quarantine_listing,
    stored_counts,
)

if TYPE_CHECKING:  # what define_asset_job returns; Dagster does not export its name
    from dagster._core.definitions.unresolved_asset_job_definition import (
        UnresolvedAssetJobDefinition as ScanJob,
    )

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
    runs: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()  # warning-level checks that failed in its runs

    @property
    def line(self) -> str:
        """The summary line: short, one run id per Dagster run, the why in brackets."""
        runs = ", ".join(self.runs)
        if self.status == "materialized":
            return f"{self.wave:<16} {self.status:<13} run {runs} ({self.detail})"
        if self.status == "failed":
            return f"{self.wave:<16} {self.status:<13} {self.detail} (run {runs})"
        return f"{self.wave:<16} {self.status:<13} {self.detail}".rstrip()


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
        codebook = load_codebook(settings.codebook_path)
    except CodebookError as exc:
        raise click.ClickException(str(exc)) from exc
    found = [w for w in settings.waves() if export_files(settings.wave_dir(w))]
    if refused := [why for w in found if (why := codebook.refused_wave(w))]:
        raise click.ClickException("nothing was run:\n" + "\n".join(refused))
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
    """The stages of `scan run` on the waves `found`, holding the data folder's lock."""
    instance = dagster_instance()
    recover(instance, settings)
    known = set(instance.get_dynamic_partitions(waves.name))
    instance.add_dynamic_partitions(waves.name, [w for w in found if w not in known])
    definitions = build_definitions(settings)
    status = pipeline_status(instance, definitions, settings)

    def stage(job: ScanJob, label: str, waves: list[str | None]) -> list[WaveRun]:
        """One stage: a run of its job per wave of `waves` (`[None]`: the unpartitioned one).
        A stage's runs read no result of the same stage in another wave (tests/test_definitions
        checks this), so the status is read before the first of them and, if any ran, after
        the last, not between them."""
        nonlocal status
        stale = {wave: stale_reasons(status, definitions, job.selection, wave) for wave in waves}
        shown = tqdm(waves, desc=label, unit="wave") if label else waves
        done = [run_stage(instance, settings, definitions, stale[w], job, w, force) for w in shown]
        if any(r.status != "up to date" for r in done):
            status = pipeline_status(instance, definitions, settings)
        return done

    results = stage(VALIDATE_JOB, "validate", found)
    if not any(r.status == "failed" for r in results):  # anonymisation reads every wave
        protected = stage(PROTECT_JOB, "protect", found)
        results = [merged(*pair) for pair in zip(results, protected, strict=True)]
    if any(r.status == "failed" for r in results):
        results.append(WaveRun(ALL_WAVES, "skipped", "a wave failed; the last results are kept"))
    else:
        results += stage(CROSS_WAVE_JOB, "", [None])
    if results[-1].status in ("skipped", "failed"):
        results.append(WaveRun(REPORTS, "skipped", "needs every wave and the cross-wave results"))
    else:
        results += stage(REPORT_JOB, "reports", found)
        if any(r.status == "failed" for r in results):
            results.append(WaveRun(CATALOG, "skipped", "a report failed; the last one is kept"))
        else:
            results += stage(CATALOG_JOB, "", [None])

    for r in results:
        click.echo(r.line)
        for warning in r.warnings:
            click.echo(f"{'':<16} warning: {warning}")
        folder = settings.processed_dir / r.wave
        if r.status != "failed" and (folder / "quality_summary.csv").exists():
            click.echo(f"{'':<16} {describe_quality(exact_quality(settings, r.wave))}")
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
    """Per asset and wave: up to date, or why not (failed in a run, changed code, an output
    missing or changed by hand, new or changed export, changed codebook or key, upstream
    changed), read from the Dagster instance and the files; changes nothing."""
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
        lines = trace_number(dagster_instance(), build_definitions(settings), settings, number_id)
    except TraceError as error:
        raise click.ClickException(str(error)) from error
    click.echo("\n".join(lines))


@main.command()
@click.pass_obj
def verify(settings: Settings) -> None:
    """Check every output file against the catalog: the sha256 each asset's last
    materialization recorded against the file on disk now. Lists each file that is missing or
    changed and exits 1 if any is; changes nothing."""
    checked = verify_outputs(dagster_instance(), build_definitions(settings), settings)
    labels = {"missing": "MISSING", "changed": "CHANGED", UNRECORDED: "NOT RECORDED"}
    for c in checked:
        if c.state:
            click.echo(f"{labels[c.state]:<12} {c.file or '-'}  ({c.output}, run {c.run_id})")
    count = {state: sum(c.state == state for c in checked) for state in labels}
    outputs = len({c.output for c in checked})
    click.echo(
        f"{len(checked)} files of {outputs} asset partitions: "
        f"{sum(not c.state for c in checked)} as recorded, {count['missing']} missing, "
        f"{count['changed']} changed since their run, {count[UNRECORDED]} without a record"
    )
    if any(c.state for c in checked):
        click.echo("`scan run` writes them again (README, What status checks on disk)")
        raise SystemExit(1)


@main.command(name="quarantine")
@click.argument("wave")
@click.pass_obj
def quarantine_command(settings: Settings, wave: str) -> None:
    """List the wave's quarantined rows by export file and row, with their reasons and the
    columns at fault, but none of their values: to fix them at the source."""
    codebook = checked_codebook(settings, wave)
    path = settings.staging_dir / "quarantine" / f"{wave}.parquet"  # as restricted_io stores it
    if not path.is_file():
        raise click.ClickException(f"{path}: no quarantine of {wave} yet: run `scan run` first")
    listing = quarantine_listing(pd.read_parquet(path), codebook)
    stale = not_up_to_date(settings, dg.AssetSelection.assets("quarantine"), wave)
    if stale:
        click.echo(
            f"note: this is the quarantine of the last run, which is not up to date ({stale}): "
            "`scan run` brings it up to date",
            err=True,
        )
    click.echo(f"{wave}: {len(listing)} quarantined row(s)")
    if listing.empty:
        return
    shown = listing.assign(row=listing["counted"] + " " + listing["row"].astype(str))
    for line in aligned(shown[["file", "row", "reasons", "columns"]]):
        click.echo(line)
    click.echo(f"\nrows: {ROW_NUMBERING_TEXT}")
    found = set(listing["reasons"].str.split(", ").explode())
    click.echo("reasons:")
    for reason in (r for r in REASON_TEXT if r in found):
        click.echo(f"  {reason}: {REASON_TEXT[reason]}")


@main.command()
@click.argument("wave")
@click.pass_obj
def deliver(settings: Settings, wave: str) -> None:
    """Copies of the wave's company reports titled with each company's name, and a
    distribution list (company, contact, file, sha256), in the restricted zone
    (<data-dir>/raw/_delivery/<wave>/): to send each company its own report. The shareable
    reports stay pseudonymous."""
    codebook = checked_codebook(settings, wave)
    reports = (company_report_numbers, company_monitoring_numbers, company_reports)
    try:
        with exclusive(settings.data_dir / RUN_LOCK):
            stale = not_up_to_date(settings, dg.AssetSelection.assets(*reports), wave)
            if stale:
                raise click.ClickException(
                    f"the company reports of {wave} are not up to date ({stale}): run `scan run` "
                    "first"
                )
            file = company_report_numbers.metadata_by_key[company_report_numbers.key]["file"]
            numbers = pd.read_csv(settings.processed_dir / wave / file)
            monitoring = company_monitoring_numbers.metadata_by_key[company_monitoring_numbers.key][
                "file"
            ]
            monitoring = pd.read_csv(settings.processed_dir / wave / monitoring)
            folder = delivery_folder(settings, wave)
            companies = match(
                register_companies(settings, codebook),
                list(numbers["company_id"].unique()),
                load_key(settings.data_dir),
            )
            distribution = deliver_reports(
                numbers,
                monitoring,
                companies,
                wave,
                codebook,
                folder,
                len(os.sched_getaffinity(0)),
            )
    except Busy as busy:
        raise click.ClickException(
            f"a `scan run` is working on {settings.data_dir} ({busy}): deliver when it ends"
        ) from None
    except (DeliveryError, PseudonymKeyError) as error:
        raise click.ClickException(str(error)) from error
    delivered = distribution[distribution["file"] != ""]
    click.echo(
        f"{wave}: {delivered['code'].nunique()} companies' reports, titled with their "
        f"names, in {folder} (restricted: send each company its own files)"
    )
    click.echo(f"distribution list: {folder / DISTRIBUTION}")
    without = distribution["code"].nunique() - delivered["code"].nunique()
    if without:
        click.echo(
            f"{without} companies of the register have no report this wave (fewer than "
            f"k={codebook.anonymisation.k} respondents, or none)"
        )
    for note in undeclared(codebook):
        click.echo(note)


def exact_quality(settings: Settings, wave: str) -> pd.DataFrame:
    """The wave's quality summary with exact counts, for the steward's terminal: the shareable
    quality_summary.csv hides small cells, the restricted quarantine has every row's reasons.
    The stored summary as it is when the quarantine is missing or not of the same run (a count
    the summary shows differs)."""
    published = pd.read_csv(settings.processed_dir / wave / "quality_summary.csv")
    path = settings.staging_dir / "quarantine" / f"{wave}.parquet"  # as restricted_io stores it
    if not path.is_file():
        return published
    shown = dict(zip(published["reason"], stored_counts(published["rows"]), strict=True))
    status = dict(zip(published["reason"], published["rule_status"].fillna(""), strict=True))
    if not isinstance(shown.get("validated"), int) or not set(REASONS) <= set(status):
        return published
    quarantine = pd.read_parquet(path, columns=["_reasons"])
    exact = quality_summary(wave, shown["validated"] + len(quarantine), quarantine, status)
    same = all(
        not isinstance(shown.get(reason), int) or shown[reason] == n
        for reason, n in zip(exact["reason"], exact["rows"], strict=True)
    )
    return exact if same else published


def not_up_to_date(settings: Settings, selection: dg.AssetSelection, wave: str) -> str:
    """Why the selected assets of `wave` are not up to date, as `scan status` says; "" when
    they are."""
    instance, definitions = dagster_instance(), build_definitions(settings)
    if wave not in instance.get_dynamic_partitions(waves.name):
        return "never materialized"
    status = pipeline_status(instance, definitions, settings)
    stale = stale_reasons(status, definitions, selection, wave)
    return "; ".join(f"{asset}: {reason}" for asset, reason in stale.items())


def aligned(table: pd.DataFrame) -> list[str]:
    """The table as text: a header line, then a line per row, in columns two spaces apart."""
    cells = [list(table.columns), *table.astype(str).itertuples(index=False)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(table.columns))]
    return [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]


def checked_codebook(settings: Settings, wave: str) -> Codebook:
    """The codebook, which must declare `wave`."""
    try:
        codebook = load_codebook(settings.codebook_path)
    except CodebookError as exc:
        raise click.ClickException(str(exc)) from exc
    if wave not in codebook.waves:
        raise click.ClickException(
            f"{wave}: not a wave of {settings.codebook_path} ({', '.join(codebook.waves)})"
        )
    return codebook


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
    definitions: dg.Definitions,
    stale: dict[str, str],
    job: ScanJob,
    wave: str | None,
    force: bool,
) -> WaveRun:
    """Run the stage's job (its assets and their checks) for one wave, or the cross-wave one
    with `wave=None`, unless all are up to date (`stale`: why each stale one is). The run
    carries the job's name, which the UI shows."""
    label = ALL_WAVES if wave is None else wave
    if job is REPORT_JOB:
        label = f"{REPORTS}/{wave}"
    if job is CATALOG_JOB:
        label = CATALOG
    if not force and not stale:
        return WaveRun(label, "up to date")
    result = definitions.resolve_job_def(job.name).execute_in_process(
        run_config=QUIET_LOGS,
        instance=instance,
        partition_key=wave,
        tags={"scan/command": "scan run", **data_tag(settings)},
        raise_on_error=False,
    )
    runs, warnings = (result.run_id,), check_warnings(result)
    if not result.success:
        return WaveRun(label, "failed", failure_reason(result), runs, warnings)
    return WaveRun(label, "materialized", describe_stale(stale, force), runs, warnings)


def check_warnings(result: dg.ExecuteInProcessResult) -> tuple[str, ...]:
    """The warning-level checks that failed in a run, briefly: the check, its asset and what
    its metadata lists (scales under .60, failed expectations); never row data."""
    found = []
    for e in result.get_asset_check_evaluations():
        if e.passed or e.severity != dg.AssetCheckSeverity.WARN:
            continue
        listed = [
            f": {name} {json.dumps(value.value)}"
            for name, value in e.metadata.items()
            if isinstance(value, dg.JsonMetadataValue) and value.value
        ]
        text = "".join([f"{e.check_name} on {e.asset_key.to_user_string()}", *listed])
        found.append(short(text, 160))
    return tuple(found)


def merged(first: WaveRun, then: WaveRun) -> WaveRun:
    """One summary line for a wave's two stages (up to and from the privacy boundary): its
    runs, and why the first of them ran (the second mostly because the first did)."""
    for status in ("failed", "materialized"):
        parts = [r for r in (first, then) if r.status == status]
        if parts:
            runs, warnings = tuple(run for r in parts for run in r.runs), first.warnings
            return WaveRun(first.wave, status, parts[0].detail, runs, warnings + then.warnings)
    return first


def describe_stale(stale: dict[str, str], force: bool) -> str:
    """Why a run was needed, in a few words: 'first run', 'forced', or the first stale asset
    with a cause of its own (not an upstream change) and how many more were stale."""
    if not stale:
        return "forced" if force else "up to date"
    if set(stale.values()) == {"never materialized"}:
        return "first run"
    causes = {a: r for a, r in stale.items() if not r.startswith("upstream ")} or stale
    asset, reason = next(iter(causes.items()))
    more = f"; {len(stale) - 1} more" if len(stale) > 1 else ""
    return short(f"{asset}: {reason}", 100) + more


def failure_reason(result: dg.ExecuteInProcessResult) -> str:
    """The message of the error that failed the run, without Dagster's wrapping."""
    return error_text(result.get_step_failure_events()[0].step_failure_data.error)


def dagster_instance() -> dg.DagsterInstance:
    """The instance in DAGSTER_HOME, by default `.dagster/` in the working directory."""
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(Path(".dagster").resolve())))
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(INSTANCE_CONFIG)
    return dg.DagsterInstance.get()
