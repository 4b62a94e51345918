"""The one Definitions object of the code location (`dagster dev -w workspace.yaml`)."""

import dagster as dg

from assets.catalog import CATALOG, data_dictionary
from assets.ingest import community_register, raw_responses, trajectory_register
from assets.lineage import provenance_manifest
from assets.models import (
    community_effects,
    community_models_converged,
    longitudinal_models_converged,
    longitudinal_multilevel_models,
    models_converged,
    multilevel_models,
    trajectory_effects,
    trajectory_models_converged,
)
from assets.privacy import (
    community_members_asset,
    k_anonymity,
    k_anonymity_across_waves,
    linked_disclosure,
    no_identifier_values,
    no_identifying_columns,
    panel_linkage,
    privacy_boundary,
    public_k_anonymity,
    public_no_identifier_values,
    public_no_identifying_columns,
    responses_long,
    responses_sav,
    trajectory_exposure_assets,
)
from assets.psychometrics import (
    alpha_at_least_060,
    group_invariance,
    longitudinal_invariance,
    measurement_invariance,
    measurement_model,
    reliability_stats,
)
from assets.reports import (
    REPORTS,
    community_numbers,
    community_reports,
    company_monitoring_numbers,
    company_report_numbers,
    company_reports,
    validation_dossier,
    wave_report,
    wave_report_numbers,
)
from assets.resources import ALL_WAVES, resources_for
from assets.scores import company_aggregates, scale_scores
from assets.sensors import cross_wave_sensor, wave_files_sensor, wave_job
from assets.validate import contract, expectations, raw_structure, rows_accounted_for, validation
from pipeline.lineage.settings import Settings

INGEST_ASSETS = [raw_responses, validation]  # per wave, up to the privacy boundary
# per wave, from the privacy boundary on; anonymisation reads every wave's validated rows
PROTECTED_ASSETS = [
    privacy_boundary,
    responses_sav,
    scale_scores,
    reliability_stats,
    measurement_model,
    group_invariance,
    company_aggregates,
    multilevel_models,
]
WAVE_ASSETS = [*INGEST_ASSETS, *PROTECTED_ASSETS]
WAVE_CHECKS = [
    raw_structure,
    rows_accounted_for,
    contract,
    expectations,
    k_anonymity,
    no_identifying_columns,
    no_identifier_values,
    public_k_anonymity,
    public_no_identifying_columns,
    public_no_identifier_values,
    alpha_at_least_060,
    models_converged,
]
CROSS_WAVE_ASSETS = [
    trajectory_register,
    community_register,
    linked_disclosure,
    panel_linkage,
    responses_long,
    trajectory_exposure_assets,
    community_members_asset,
    measurement_invariance,
    longitudinal_invariance,
    longitudinal_multilevel_models,
    trajectory_effects,
    community_effects,
    validation_dossier,
]  # read every wave
CROSS_WAVE_CHECKS = [
    k_anonymity_across_waves,
    longitudinal_models_converged,
    trajectory_models_converged,
    community_models_converged,
]
# per wave, after the cross-wave assets
REPORT_ASSETS = [
    company_report_numbers,
    company_monitoring_numbers,
    company_reports,
    community_numbers,
    community_reports,
    wave_report_numbers,
    wave_report,
    provenance_manifest,
]
CATALOG_ASSETS = [data_dictionary]  # after everything it describes
# From the privacy boundary on, the automation sensor of `dagster dev` runs the assets: as soon as
# an input is new, but never over a wave whose last run failed (the failed asset's children, and
# theirs, wait), nor past a failed blocking check. `scan run` drives the same order itself.
AUTOMATIC = (
    dg.AutomationCondition.eager()
    & ~dg.AutomationCondition.any_deps_match(
        dg.AutomationCondition.execution_failed()
        | dg.AutomationCondition.any_deps_match(dg.AutomationCondition.execution_failed())
    )
    & dg.AutomationCondition.all_deps_blocking_checks_passed()
)
ALL_ASSETS = [
    *INGEST_ASSETS,
    *dg.map_asset_specs(
        lambda spec: spec.replace_attributes(automation_condition=AUTOMATIC),
        [*PROTECTED_ASSETS, *CROSS_WAVE_ASSETS, *REPORT_ASSETS, *CATALOG_ASSETS],
    ),
]
ALL_CHECKS = [*WAVE_CHECKS, *CROSS_WAVE_CHECKS]
# What `scan run` materializes in turn: each wave up to the privacy boundary, then each wave from
# it on, then across the waves, then each wave's reports.
INGEST_SELECTION = dg.AssetSelection.assets(*INGEST_ASSETS)
WAVE_SELECTION = dg.AssetSelection.assets(*PROTECTED_ASSETS)
CROSS_WAVE_SELECTION = dg.AssetSelection.groups(ALL_WAVES)
REPORT_SELECTION = dg.AssetSelection.groups(REPORTS)
CATALOG_SELECTION = dg.AssetSelection.groups(CATALOG)
# The job of each stage: `scan run` launches its runs through these, so that a run shows in the
# UI under its stage's name (not as an anonymous asset job). The selected assets' checks run with
# them. Descriptions are Markdown in the UI: paths and names go in backticks.
VALIDATE_JOB = dg.define_asset_job(
    "validate_wave",
    selection=INGEST_SELECTION,
    description="Stage 1 of `scan run` (`validate`), one run per wave: the wave's exports under "
    "`data/raw/<wave>/` read into `raw_responses` and split by the quality rules into "
    "`validated_responses` and the `quarantine`, with its counts (`quality_summary`) and their "
    "checks.",
)
PROTECT_JOB = dg.define_asset_job(
    "protect_wave",
    selection=WAVE_SELECTION,
    description="Stage 2 of `scan run` (`protect`), one run per wave once every wave is "
    "validated: from the privacy boundary on, the wave's pseudonymised data and release files "
    "(anonymisation reads every wave's validated rows), its scale scores, psychometrics, company "
    "aggregates and multilevel models, with their checks.",
)
CROSS_WAVE_JOB = dg.define_asset_job(
    "cross_wave",
    selection=CROSS_WAVE_SELECTION,
    description="Stage 3 of `scan run` (`all_waves`), one run, not partitioned: what reads every "
    "wave (the registers, the panel linkage, the attack on the linked waves, invariance, the "
    "longitudinal, trajectory and community models, the validation dossier), with their checks.",
)
REPORT_JOB = dg.define_asset_job(
    "wave_reports",
    selection=REPORT_SELECTION,
    description="Stage 4 of `scan run` (`reports/<wave>`), one run per wave after the cross-wave "
    "run: the wave report, the company and community reports, their numbers and the provenance "
    "manifest.",
)
CATALOG_JOB = dg.define_asset_job(
    "catalog",
    selection=CATALOG_SELECTION,
    description="Stage 5 of `scan run` (`catalog`), one run after the reports: the data "
    "dictionary of the shareable zone, `data/processed/README.md` and `datapackage.json`.",
)
SCAN_RUN_JOBS = [VALIDATE_JOB, PROTECT_JOB, CROSS_WAVE_JOB, REPORT_JOB, CATALOG_JOB]


def build_definitions(settings: Settings) -> dg.Definitions:
    return dg.Definitions(
        assets=ALL_ASSETS,
        asset_checks=ALL_CHECKS,
        jobs=[wave_job, *SCAN_RUN_JOBS],
        sensors=[wave_files_sensor, cross_wave_sensor],
        resources=resources_for(settings),
    )


defs = build_definitions(Settings.from_env())
