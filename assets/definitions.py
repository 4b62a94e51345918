"""The one Definitions object of the code location (`dagster dev -w workspace.yaml`)."""

import dagster as dg

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
        [*PROTECTED_ASSETS, *CROSS_WAVE_ASSETS, *REPORT_ASSETS],
    ),
]
ALL_CHECKS = [*WAVE_CHECKS, *CROSS_WAVE_CHECKS]
# What `scan run` materializes in turn: each wave up to the privacy boundary, then each wave from
# it on, then across the waves, then each wave's reports.
INGEST_SELECTION = dg.AssetSelection.assets(*INGEST_ASSETS)
WAVE_SELECTION = dg.AssetSelection.assets(*PROTECTED_ASSETS)
CROSS_WAVE_SELECTION = dg.AssetSelection.groups(ALL_WAVES)
REPORT_SELECTION = dg.AssetSelection.groups(REPORTS)


def build_definitions(settings: Settings) -> dg.Definitions:
    return dg.Definitions(
        assets=ALL_ASSETS,
        asset_checks=ALL_CHECKS,
        jobs=[wave_job],
        sensors=[wave_files_sensor, cross_wave_sensor],
        resources=resources_for(settings),
    )


defs = build_definitions(Settings.from_env())
