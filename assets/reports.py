"""Stage 7: the wave report and the company feedback reports, rendered from what the assets
computed (the templates in reports/ only lay it out)."""

import os
import tempfile
from pathlib import Path

import dagster as dg
import pandas as pd

import pipeline.reporting.wave_report
from assets.ingest import wave_inputs
from assets.partitions import waves
from assets.resources import ALL_WAVES, ScanConfig, files_metadata
from assets.staleness import CODE_VERSION, DATA_VERSION, latest_tags
from assets.versions import shareable, source_version
from pipeline.ingest.communities import ALL
from pipeline.lineage.files import keep_version
from pipeline.lineage.provenance import neutral_inputs
from pipeline.reporting.communities import community_numbers as numbers_of_communities
from pipeline.reporting.community_report import render_community_reports
from pipeline.reporting.company_report import (
    monitoring_numbers,
    participation_withheld,
    previous_wave,
    render_company_reports,
    report_numbers,
)
from pipeline.reporting.dossier import DossierInputs, dossier_context
from pipeline.reporting.render import REPORTS_DIR, Rendered, engine_description, render_report
from pipeline.reporting.wave_report import WaveInputs, wave_context

REPORTS = "reports"  # the asset group
REPORTS_CODE_VERSION = source_version(
    "pipeline.psychometrics.aggregation",
    "pipeline.reporting.communities",
    "pipeline.reporting.community_report",
    "pipeline.reporting.company_report",
    "pipeline.reporting.dossier",
    "pipeline.reporting.figures",
    "pipeline.reporting.render",
    "pipeline.privacy.suppression",
    "pipeline.reporting.wave_report",
    __name__,
)
# reports wait for the attack on the waves' shareable files linked together to find nothing
LINKED_CHECKED = "linked_disclosure"
ALL_WAVES_OF = dg.AllPartitionMapping()  # an input that reads every wave (for change over time)


def _input_version(key: dg.AssetKey, partition: str, tags: dict) -> dict:
    """One input of a report's provenance: the asset, its partition, code and data version."""
    return {
        "asset": key.to_user_string(),
        "partition": partition,
        "code_version": tags.get(CODE_VERSION, ""),
        "data_version": tags.get(DATA_VERSION, ""),
    }


def _provenance(context: dg.AssetExecutionContext, scan: ScanConfig, wave: str) -> dict:
    """What the report rests on, all of it content-derived so that re-rendering the same inputs
    gives the same bytes: the raw files (by neutral id) and codebook (sha256), and each input
    asset's code and data version. Run ids live in Dagster and in the run's records, not in the
    report."""
    inputs = []
    for key in sorted(context.assets_def.asset_deps[context.asset_key], key=str):
        tags = latest_tags(context.instance, key, wave)  # a per-wave input
        partition = wave if tags else "all waves"
        tags = tags or latest_tags(context.instance, key, None) or {}
        inputs.append(_input_version(key, partition, tags))
    return {
        "files": neutral_inputs(wave_inputs(scan.settings, wave)),  # no export file names
        "inputs": inputs,
        "report_code_version": REPORTS_CODE_VERSION,
        "engine": engine_description(),
    }


def _keep_versions(rendered: Rendered, scan: ScanConfig) -> None:
    for file in rendered.files:
        keep_version(file.path, scan.settings.reports_dir)


def _remove_other_reports(folder: Path, companies: set[str]) -> None:
    """A company that fell under the minimum in a rerun must not keep its earlier report."""
    for path in folder.glob("*"):
        if path.suffix in (".html", ".pdf") and path.stem not in companies:
            path.unlink()


def _listed(
    rendered: dict[str, Rendered], key: str, out_dir: Path, scan: ScanConfig
) -> dg.Output[pd.DataFrame]:
    """The reports of `out_dir` as a table (`key`, and the sha256 of each file), after keeping
    each file's version and removing the reports of a folder that are no longer made."""
    for report in rendered.values():
        _keep_versions(report, scan)
    _remove_other_reports(out_dir, set(rendered))
    rows = [
        {key: stem, **{f"{f.format}_sha256": f.sha256 for f in report.files}}
        for stem, report in rendered.items()
    ]
    table = pd.DataFrame(rows, columns=[key, "html_sha256", "pdf_sha256"])
    written = [f.path for report in rendered.values() for f in report.files]
    return dg.Output(
        table,
        metadata={
            "reports": len(table),
            "folder": dg.MetadataValue.path(str(out_dir)),
            **files_metadata(scan.settings, written),
        },
    )


@dg.asset(
    partitions_def=waves,
    io_manager_key="shareable_io",
    group_name=REPORTS,
    code_version=shareable(REPORTS_CODE_VERSION),
    kinds={"csv"},
    metadata={"file": "company_report_numbers.csv"},
    ins={"company_scores_by_wave": dg.AssetIn("company_scores", partition_mapping=ALL_WAVES_OF)},
    deps=[LINKED_CHECKED],
)
def company_report_numbers(
    context: dg.AssetExecutionContext,
    scan: ScanConfig,
    scale_scores: pd.DataFrame,
    reported_responses: pd.DataFrame,
    company_scores_by_wave: dict[str, pd.DataFrame],
) -> dg.Output[pd.DataFrame]:
    """Every number of the wave's company reports, per company with at least k respondents and
    scale, blank where the disclosure rules hide it: the reports lay these rows out, and each
    number's id, `company_report_numbers[wave](company,scale).column`, is traceable."""
    wave = context.partition_key
    numbers = report_numbers(
        wave, scale_scores, reported_responses, company_scores_by_wave, scan.codebook()
    )
    companies = scale_scores["company_id"].nunique()
    return dg.Output(
        numbers,
        metadata={
            "companies": numbers["company_id"].nunique(),
            "companies_without_report": companies - numbers["company_id"].nunique(),
        },
    )


@dg.asset(
    partitions_def=waves,
    io_manager_key="shareable_io",
    group_name=REPORTS,
    code_version=shareable(REPORTS_CODE_VERSION),
    kinds={"csv"},
    metadata={"file": "company_monitoring_numbers.csv"},
    ins={
        "scores_by_wave": dg.AssetIn("scale_scores", partition_mapping=ALL_WAVES_OF),
        "scientific": dg.AssetIn("anonymised_responses", partition_mapping=ALL_WAVES_OF),
        "public": dg.AssetIn("public_responses", partition_mapping=ALL_WAVES_OF),
    },
    deps=[LINKED_CHECKED],
)
def company_monitoring_numbers(
    context: dg.AssetExecutionContext,
    scan: ScanConfig,
    scores_by_wave: dict[str, pd.DataFrame],
    trajectory_companies: pd.DataFrame,
    trajectory_persons: pd.DataFrame,
    scientific: dict[str, pd.DataFrame],
    public: dict[str, pd.DataFrame],
) -> dg.Output[pd.DataFrame]:
    """The numbers of the company reports' section on monitoring learning outcomes, for the
    companies with a report this wave that run a development trajectory: rows with a blank
    `scale` give a trajectory's `trajectory_type` and the first `wave` it counts in; the others
    the `mean` of a `group` (participants or colleagues) per outcome `scale` and `wave` up to
    this one, only where both groups have at least k scores and the release files leave
    the taking part of 0 or at least k of them unknown (hidden waves have no rows).
    `company_monitoring_numbers[wave](company,scale,wave shown,group).mean` identifies each."""
    wave, codebook = context.partition_key, scan.codebook()
    withheld = participation_withheld(scientific, public, codebook)
    numbers = monitoring_numbers(
        wave, scores_by_wave, trajectory_companies, trajectory_persons, codebook, withheld
    )
    means = numbers[numbers["mean"].notna()]
    return dg.Output(
        numbers,
        metadata={
            "companies": numbers["company_id"].nunique(),
            "companies_with_means": means["company_id"].nunique(),
            "means": len(means),
        },
    )


@dg.asset(
    partitions_def=waves,
    io_manager_key="shareable_io",
    group_name=REPORTS,
    code_version=shareable(REPORTS_CODE_VERSION),
    kinds={"html", "pdf"},
    metadata={"file": "company_reports.csv"},
)
def company_reports(
    context: dg.AssetExecutionContext,
    scan: ScanConfig,
    company_report_numbers: pd.DataFrame,
    company_monitoring_numbers: pd.DataFrame,
) -> dg.Output[pd.DataFrame]:
    """One feedback report per company of `company_report_numbers` (with its section on
    monitoring learning outcomes from `company_monitoring_numbers`), named by its pseudonym, in
    `<reports>/<wave>/companies/`; the table lists them with the sha256 of each file."""
    wave = context.partition_key
    out_dir = scan.settings.reports_dir / wave / "companies"
    rendered = render_company_reports(
        company_report_numbers,
        wave,
        scan.codebook(),
        out_dir,
        workers=len(os.sched_getaffinity(0)),
        monitoring=company_monitoring_numbers,
    )
    return _listed(rendered, "company_id", out_dir, scan)


@dg.asset(
    partitions_def=waves,
    io_manager_key="shareable_io",
    group_name=REPORTS,
    code_version=shareable(REPORTS_CODE_VERSION),
    kinds={"csv"},
    metadata={"file": "community_numbers.csv"},
    ins={"scores_by_wave": dg.AssetIn("scale_scores", partition_mapping=ALL_WAVES_OF)},
    deps=[LINKED_CHECKED],
)
def community_numbers(
    context: dg.AssetExecutionContext,
    scan: ScanConfig,
    scores_by_wave: dict[str, pd.DataFrame],
    community_members: pd.DataFrame,
    trajectory_companies: pd.DataFrame,
) -> dg.Output[pd.DataFrame]:
    """Every number of the wave's learning-community reports (pipeline/reporting/communities.py),
    only for the communities the disclosure rules allow, and for all communities together
    (`all`); `community_numbers[wave](community_id,table,row,statistic).value` identifies each."""
    wave = context.partition_key
    numbers = numbers_of_communities(
        wave,
        scores_by_wave,
        community_members,
        trajectory_companies,
        scan.codebook(),
    )
    reported = sorted(set(numbers["community_id"]) - {ALL})
    return dg.Output(
        numbers,
        metadata={
            "communities_reported": reported,
            "communities_not_reported": community_members["community_id"].nunique() - len(reported),
        },
    )


@dg.asset(
    partitions_def=waves,
    io_manager_key="shareable_io",
    group_name=REPORTS,
    code_version=shareable(REPORTS_CODE_VERSION),
    kinds={"html", "pdf"},
    metadata={"file": "community_reports.csv"},
)
def community_reports(
    context: dg.AssetExecutionContext,
    scan: ScanConfig,
    community_numbers: pd.DataFrame,
    community_members: pd.DataFrame,
    community_partners: pd.DataFrame,
) -> dg.Output[pd.DataFrame]:
    """One report per learning community of `community_numbers`, for its meeting, in
    `<reports>/<wave>/communities/<community_id>.{html,pdf}`; the table lists them with the
    sha256 of each file."""
    wave, codebook = context.partition_key, scan.codebook()
    known = context.instance.get_dynamic_partitions(waves.name)
    out_dir = scan.settings.reports_dir / wave / "communities"
    names = dict(
        zip(community_members["community_id"], community_members["community"], strict=True)
    )
    rendered = render_community_reports(
        community_numbers,
        wave,
        codebook,
        out_dir,
        names,
        community_partners,
        previous_wave(wave, known, codebook),
    )
    return _listed(rendered, "community_id", out_dir, scan)


@dg.asset(
    partitions_def=waves,
    io_manager_key="shareable_io",
    group_name=REPORTS,
    code_version=shareable(REPORTS_CODE_VERSION),
    kinds={"csv"},
    metadata={"file": "wave_report_numbers.csv"},
    ins={"scores_by_wave": dg.AssetIn("scale_scores", partition_mapping=ALL_WAVES_OF)},
    deps=[LINKED_CHECKED],
)
def wave_report_numbers(
    context: dg.AssetExecutionContext,
    scan: ScanConfig,
    reported_responses: pd.DataFrame,
    company_scores: pd.DataFrame,
    scores_by_wave: dict[str, pd.DataFrame],
) -> pd.DataFrame:
    """The wave report's numbers that no other asset stores (totals, sample, descriptives,
    company means, change since the previous wave), one per row, blank where hidden: the report
    lays them out, and `wave_report_numbers[wave](table,row,statistic).value` identifies each.
    `scores_by_wave` holds every wave's scale scores: this one's and the previous one's."""
    wave = context.partition_key
    codebook = scan.codebook()
    previous = previous_wave(wave, scores_by_wave, codebook)
    return pipeline.reporting.wave_report.report_numbers(
        reported_responses,
        scores_by_wave[wave],
        scores_by_wave[previous] if previous else None,
        company_scores,
        codebook,
    )


@dg.asset(
    partitions_def=waves,
    group_name=REPORTS,
    code_version=REPORTS_CODE_VERSION,
    kinds={"html", "pdf"},
)
def wave_report(
    context: dg.AssetExecutionContext,
    scan: ScanConfig,
    quality_summary: pd.DataFrame,
    wave_report_numbers: pd.DataFrame,
    reliability: pd.DataFrame,
    item_statistics: pd.DataFrame,
    cfa_fit: pd.DataFrame,
    cfa_loadings: pd.DataFrame,
    aggregation: pd.DataFrame,
    company_scores: pd.DataFrame,
    multilevel: pd.DataFrame,
    multilevel_fit: pd.DataFrame,
    measurement_invariance: pd.DataFrame,
    trajectory_effects: pd.DataFrame,
    trajectory_fit: pd.DataFrame,
    longitudinal_multilevel: pd.DataFrame,
    longitudinal_multilevel_fit: pd.DataFrame,
    company_reports: pd.DataFrame,
) -> dg.MaterializeResult:
    """The researchers' report of the wave, `<reports>/<wave>/wave_report.{html,pdf}`."""
    wave = context.partition_key
    codebook = scan.codebook()
    known = context.instance.get_dynamic_partitions(waves.name)
    totals = pipeline.reporting.wave_report.numbers_of(wave_report_numbers, "totals")["n"]
    reported = len(company_reports)
    inputs = WaveInputs(
        wave=wave,
        quality_summary=quality_summary,
        numbers=wave_report_numbers,
        reliability=reliability,
        item_statistics=item_statistics,
        cfa_fit=cfa_fit,
        cfa_loadings=cfa_loadings,
        aggregation=aggregation,
        company_scores=company_scores,
        multilevel=multilevel,
        multilevel_fit=multilevel_fit,
        previous_wave=previous_wave(wave, known, codebook),
        invariance=measurement_invariance,
        companies_reported=reported,
        companies_without_report=int(totals["companies"]) - reported,
        provenance=_provenance(context, scan, wave),
        waves=tuple(w for w in codebook.waves if w in known),
        trajectory_effects=trajectory_effects,
        trajectory_fit=trajectory_fit,
        longitudinal=longitudinal_multilevel,
        longitudinal_fit=longitudinal_multilevel_fit,
    )
    out_dir = scan.settings.reports_dir / wave
    with tempfile.TemporaryDirectory(prefix="figures-") as figures:
        report = wave_context(inputs, codebook, Path(figures))
        rendered = render_report(REPORTS_DIR / "wave.qmd", report, out_dir, "wave_report")
    _keep_versions(rendered, scan)
    return dg.MaterializeResult(
        metadata={
            "engine": rendered.engine,
            **{f.format: dg.MetadataValue.path(str(f.path)) for f in rendered.files},
            **{f"{f.format}_sha256": f.sha256 for f in rendered.files},
            **files_metadata(scan.settings, [f.path for f in rendered.files]),
        }
    )


def _dossier_provenance(context: dg.AssetExecutionContext, waves_in_order: list[str]) -> dict:
    """Each input asset's code and data version per wave (content-derived, as the wave report's
    provenance), the report's code version and the rendering engine."""
    inputs = []
    for key in sorted(context.assets_def.asset_deps[context.asset_key], key=str):
        for partition in (*waves_in_order, None):
            tags = latest_tags(context.instance, key, partition)
            if tags:
                inputs.append(_input_version(key, partition or "all waves", tags))
    return {
        "inputs": inputs,
        "report_code_version": REPORTS_CODE_VERSION,
        "engine": engine_description(),
    }


@dg.asset(
    group_name=ALL_WAVES,
    code_version=REPORTS_CODE_VERSION,
    kinds={"html", "pdf"},
)
def validation_dossier(
    context: dg.AssetExecutionContext,
    scan: ScanConfig,
    cfa_fit: dict[str, pd.DataFrame],
    cfa_loadings: dict[str, pd.DataFrame],
    reliability: dict[str, pd.DataFrame],
    item_statistics: dict[str, pd.DataFrame],
    validity_scales: dict[str, pd.DataFrame],
    validity_pairs: dict[str, pd.DataFrame],
    group_invariance: dict[str, pd.DataFrame],
    measurement_invariance: pd.DataFrame,
    longitudinal_invariance: pd.DataFrame,
) -> dg.MaterializeResult:
    """The instrument's validation dossier across all waves (English, for its authors),
    `<reports>/all_waves/validation_dossier.{html,pdf}`."""
    codebook = scan.codebook()
    in_order = [name for name in codebook.waves if name in cfa_fit]
    inputs = DossierInputs(
        waves=in_order,
        cfa_fit=cfa_fit,
        cfa_loadings=cfa_loadings,
        reliability=reliability,
        item_statistics=item_statistics,
        validity_scales=validity_scales,
        validity_pairs=validity_pairs,
        group_invariance=group_invariance,
        invariance=measurement_invariance,
        panel_invariance=longitudinal_invariance,
        provenance=_dossier_provenance(context, in_order),
    )
    out_dir = scan.settings.reports_dir / ALL_WAVES
    rendered = render_report(
        REPORTS_DIR / "dossier.qmd",
        dossier_context(inputs, codebook),
        out_dir,
        "validation_dossier",
    )
    _keep_versions(rendered, scan)
    return dg.MaterializeResult(
        metadata={
            "engine": rendered.engine,
            "waves": in_order,
            **{f.format: dg.MetadataValue.path(str(f.path)) for f in rendered.files},
            **{f"{f.format}_sha256": f.sha256 for f in rendered.files},
            **files_metadata(scan.settings, [f.path for f in rendered.files]),
        }
    )
