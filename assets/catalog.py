"""Stage 5: the catalog of the shareable zone, after everything it describes."""

import json

import dagster as dg

from assets.resources import ScanConfig, files_metadata
from assets.versions import source_version
from pipeline.instrument.dictionary import CONTRACT, data_package, readme
from pipeline.lineage.files import keep_version, write_atomic

CATALOG = "catalog"
CATALOG_CODE_VERSION = source_version("pipeline.instrument.dictionary", __name__, data=[CONTRACT])
# every asset that writes a table of the output contract (pipeline/instrument/dictionary.yaml)
SHAREABLE_TABLES = [
    "quality_summary",
    "anonymised_responses",
    "public_responses",
    "responses_sav",
    "scale_scores",
    "item_statistics",
    "reliability",
    "validity_scales",
    "cfa_fit",
    "cfa_loadings",
    "validity_pairs",
    "group_invariance",
    "company_scores",
    "aggregation",
    "multilevel",
    "multilevel_fit",
    "responses_long",
    "linked_disclosure",
    "panel_linkage",
    "measurement_invariance",
    "longitudinal_invariance",
    "longitudinal_multilevel",
    "longitudinal_multilevel_fit",
    "trajectory_fit",
    "trajectory_effects",
    "community_effects",
    "community_fit",
    "company_report_numbers",
    "company_monitoring_numbers",
    "company_reports",
    "community_numbers",
    "community_reports",
    "wave_report_numbers",
]


@dg.asset(
    group_name=CATALOG,
    code_version=CATALOG_CODE_VERSION,
    kinds={"json", "markdown"},
    deps=SHAREABLE_TABLES,
)
def data_dictionary(scan: ScanConfig) -> dg.MaterializeResult:
    """`data/processed/README.md` and `datapackage.json`: every table of the shareable zone
    and every column, from the codebook and the output contract (a Frictionless data package).
    Reads the tables' columns from disk, so it describes exactly what is there."""
    settings = scan.settings
    package = data_package(settings.processed_dir, scan.codebook())
    paths = [settings.processed_dir / "datapackage.json", settings.processed_dir / "README.md"]
    text = json.dumps(package, indent=1, ensure_ascii=False) + "\n"
    write_atomic(paths[0], lambda tmp: tmp.write_text(text, encoding="utf-8"))
    write_atomic(paths[1], lambda tmp: tmp.write_text(readme(package), encoding="utf-8"))
    for path in paths:
        keep_version(path, settings.processed_dir)
    return dg.MaterializeResult(
        metadata={
            "resources": len(package["resources"]),
            "path": dg.MetadataValue.path(str(paths[1])),
            **files_metadata(settings, paths),
        }
    )
