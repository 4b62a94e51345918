"""The one Definitions object of the code location (`dagster dev -w workspace.yaml`)."""

import dagster as dg

from assets.anonymise import (
    anonymised_responses,
    k_anonymity,
    no_identifier_values,
    no_identifying_columns,
    responses_sav,
)
from assets.ingest import raw_responses
from assets.lineage import provenance_manifest
from assets.models import (
    longitudinal_models_converged,
    longitudinal_multilevel_models,
    models_converged,
    multilevel_models,
)
from assets.psychometrics import (
    alpha_at_least_060,
    measurement_invariance,
    measurement_model,
    reliability_stats,
)
from assets.reports import (
    REPORTS,
    company_report_numbers,
    company_reports,
    wave_report,
    wave_report_numbers,
)
from assets.resources import ALL_WAVES, resources_for
from assets.scores import company_aggregates, scale_scores
from assets.sensors import cross_wave_sensor, wave_files_sensor, wave_job
from assets.validate import contract, expectations, raw_structure, rows_accounted_for, validation
from pipeline.settings import Settings

WAVE_ASSETS = [
    raw_responses,
    validation,
    anonymised_responses,
    responses_sav,
    scale_scores,
    reliability_stats,
    measurement_model,
    company_aggregates,
    multilevel_models,
]
WAVE_CHECKS = [
    raw_structure,
    rows_accounted_for,
    contract,
    expectations,
    k_anonymity,
    no_identifying_columns,
    no_identifier_values,
    alpha_at_least_060,
    models_converged,
]
CROSS_WAVE_ASSETS = [measurement_invariance, longitudinal_multilevel_models]  # read every wave
CROSS_WAVE_CHECKS = [longitudinal_models_converged]
# per wave, after the cross-wave assets
REPORT_ASSETS = [
    company_report_numbers,
    company_reports,
    wave_report_numbers,
    wave_report,
    provenance_manifest,
]
ALL_ASSETS = [*WAVE_ASSETS, *CROSS_WAVE_ASSETS, *REPORT_ASSETS]
ALL_CHECKS = [*WAVE_CHECKS, *CROSS_WAVE_CHECKS]
# What `scan run` materializes in turn: each wave, then across the waves, then each wave's reports.
WAVE_SELECTION = dg.AssetSelection.assets(*WAVE_ASSETS)
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
