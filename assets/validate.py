"""Stage 2: quality rules split each wave into validated responses and a quarantine."""

import json

import dagster as dg
import pandas as pd

from assets.gx_resource import GreatExpectations
from assets.partitions import waves
from assets.resources import ScanConfig, files_metadata
from assets.versions import shareable, source_version
from pipeline.lineage.files import keep_version, write_atomic
from pipeline.privacy.suppression import SUPPRESSED, suppress_counts
from pipeline.validate.expectations import deidentified, expectation_suite, stable_result
from pipeline.validate.quality import (
    REASONS,
    StructureError,
    check_structure,
    median_duration,
    nothing_validated,
    published_quality_summary,
    quality_reasons,
    quality_summary,
    read_register,
    rule_status,
    split_quarantine,
)
from pipeline.validate.validation_page import render_validation_page

VALIDATE_CODE_VERSION = source_version(
    "pipeline.validate.quality",
    "pipeline.instrument.scoring",
    "pipeline.privacy.suppression",
    __name__,
)


def register_of(scan: ScanConfig) -> set[str]:
    """The registered companies; none when the codebook declares no register (the rule
    unknown_company is then not applicable)."""
    codebook = scan.codebook()
    if codebook.company_register is None:
        return set()
    return read_register(scan.settings.raw_dir / codebook.company_register, codebook.company_id)


@dg.multi_asset(
    partitions_def=waves,
    group_name="validate",
    code_version=shareable(VALIDATE_CODE_VERSION),
    ins={"raw_responses": dg.AssetIn()},
    outs={
        "validated_responses": dg.AssetOut(
            io_manager_key="restricted_io",
            kinds={"pandas", "parquet"},
            description="The rows that pass every quality rule (identified; restricted zone).",
        ),
        "quarantine": dg.AssetOut(
            io_manager_key="restricted_io",
            kinds={"pandas", "parquet"},
            description="Rows failing a rule: the full row, its source file and row, and "
            "`_reasons` (restricted zone).",
        ),
        "quality_summary": dg.AssetOut(
            io_manager_key="shareable_io",
            kinds={"csv"},
            metadata={"file": "quality_summary.csv"},
            description="Counts of quarantined rows per reason, no row data, and whether each "
            "rule applied (shareable zone): small cells read `suppressed` (the exact counts "
            "are the quarantine's).",
        ),
    },
)
def validation(context: dg.AssetExecutionContext, scan: ScanConfig, raw_responses: pd.DataFrame):
    """The quarantine and its counts are stored first: when no row passes, the wave stops here
    with the counts by reason, not with the errors of later steps that lack data.

    The quarantine's metadata has the exact counts by reason (restricted, for the steward); the
    shareable quality_summary.csv follows the small-cell rule (`published_quality_summary`)."""
    wave = context.partition_key
    codebook = scan.codebook()
    reasons = quality_reasons(raw_responses, codebook, register_of(scan))
    validated, quarantine = split_quarantine(raw_responses, reasons)
    status = rule_status(codebook, wave)
    summary = quality_summary(wave, len(raw_responses), quarantine, status)
    counts = dict(zip(summary["reason"], summary["rows"].astype(int), strict=True))
    k = codebook.anonymisation.k
    published = published_quality_summary(summary, k, suppress_counts, SUPPRESSED)
    shown = dict(zip(published["reason"], published["rows"], strict=True))
    context.log.info(
        f"{wave}: {len(validated)} validated, {len(quarantine)} quarantined of {len(raw_responses)}"
    )
    yield dg.Output(
        quarantine,
        "quarantine",
        metadata={
            "dagster/row_count": len(quarantine),
            **{f"reason/{r}": counts[r] for r in REASONS},
        },
    )
    yield dg.Output(
        published,
        "quality_summary",
        metadata={
            "counts": dg.MetadataValue.json(shown),
            "not_applied": dg.MetadataValue.json(
                {rule: why for rule, why in status.items() if why != "applied"}
            ),
        },
    )
    if validated.empty:
        raise nothing_validated(wave, summary)
    median = median_duration(raw_responses, codebook)
    yield dg.Output(
        validated,
        "validated_responses",
        metadata={
            "dagster/row_count": len(validated),
            **({} if median is None else {"median_duration_s": median}),
        },
    )


@dg.asset_check(asset="raw_responses", blocking=True, partitions_def=waves)
def raw_structure(scan: ScanConfig, raw_responses: pd.DataFrame) -> dg.AssetCheckResult:
    """The wave has exactly the codebook's columns, in order, with the codebook's types."""
    try:
        check_structure(raw_responses, scan.codebook())
    except StructureError as error:
        return dg.AssetCheckResult(passed=False, description=str(error))
    return dg.AssetCheckResult(passed=True, metadata={"columns": len(raw_responses.columns)})


def _row_refs(frame: pd.DataFrame) -> pd.Series:
    return frame["_source_file"] + ":" + frame["_source_row"].astype(str)


@dg.asset_check(
    asset="validated_responses",
    blocking=True,
    partitions_def=waves,
    additional_ins={"raw_responses": dg.AssetIn(), "quarantine": dg.AssetIn()},
)
def rows_accounted_for(
    raw_responses: pd.DataFrame, validated_responses: pd.DataFrame, quarantine: pd.DataFrame
) -> dg.AssetCheckResult:
    """Every raw row is either validated or quarantined, exactly once: raw = kept + quarantined."""
    raw, kept, out = (_row_refs(f) for f in (raw_responses, validated_responses, quarantine))
    lost = sorted(set(raw) - set(kept) - set(out))
    twice = sorted(set(kept) & set(out))
    invented = sorted((set(kept) | set(out)) - set(raw))
    return dg.AssetCheckResult(
        passed=len(raw) == len(kept) + len(out) and not (lost or twice or invented),
        metadata={
            "raw_rows": len(raw),
            "validated": len(kept),
            "quarantined": len(out),
            "lost": dg.MetadataValue.json(lost[:20]),
            "in_both": dg.MetadataValue.json(twice[:20]),
            "not_in_raw": dg.MetadataValue.json(invented[:20]),
        },
    )


@dg.asset_check(
    asset="validated_responses",
    blocking=True,
    partitions_def=waves,
    additional_ins={"raw_responses": dg.AssetIn()},
)
def contract(
    scan: ScanConfig, raw_responses: pd.DataFrame, validated_responses: pd.DataFrame
) -> dg.AssetCheckResult:
    """The validated rows pass every contract and quality rule (failure cases in metadata)."""
    codebook = scan.codebook()
    median = median_duration(raw_responses, codebook)
    reasons = quality_reasons(validated_responses, codebook, register_of(scan), median)
    failing = reasons != ""
    cases = dict(zip(_row_refs(validated_responses[failing]), reasons[failing], strict=True))
    return dg.AssetCheckResult(
        passed=not cases,
        metadata={
            "failing_rows": len(cases),
            "failure_cases": dg.MetadataValue.json(dict(list(cases.items())[:20])),
        },
    )


@dg.asset_check(asset="validated_responses", partitions_def=waves)
def expectations(
    context: dg.AssetCheckExecutionContext,
    scan: ScanConfig,
    gx: GreatExpectations,
    validated_responses: pd.DataFrame,
) -> dg.AssetCheckResult:
    """Distribution-level expectations (great-expectations) on the de-identified rows.

    The full result (JSON) and a self-contained page for auditors go to the shareable zone,
    `data/processed/<wave>/validation/`; GX never sees an identifier, so neither can contain one.
    """
    wave = context.partition_key
    codebook = scan.codebook()
    result = stable_result(
        gx.validate(deidentified(validated_responses, codebook), expectation_suite(codebook, wave))
    )
    folder = scan.settings.processed_dir / wave / "validation"
    page = render_validation_page(result, f"Data validation {wave}")
    write_atomic(
        folder / "expectations.json", lambda tmp: tmp.write_text(json.dumps(result, indent=1))
    )
    write_atomic(folder / "expectations.html", lambda tmp: tmp.write_text(page, encoding="utf-8"))
    for name in ("expectations.json", "expectations.html"):
        keep_version(folder / name, scan.settings.processed_dir)
    failed = [
        f"{r['expectation_config']['type']}({r['expectation_config']['kwargs'].get('column', '')})"
        for r in result["results"]
        if not r["success"]
    ]
    return dg.AssetCheckResult(
        passed=bool(result["success"]),
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "expectations": len(result["results"]),
            "failed": dg.MetadataValue.json(failed),
            "page": dg.MetadataValue.path(str(folder / "expectations.html")),
            **files_metadata(
                scan.settings, [folder / "expectations.json", folder / "expectations.html"]
            ),
        },
    )
