"""Stage 3: the privacy boundary. Pseudonyms, disclosure control, the shareable responses."""

import json
import sys

import dagster as dg
import pandas as pd

import pipeline.anonymise
import pipeline.disclosure
import pipeline.pseudonyms
from assets.partitions import waves
from assets.resources import ScanConfig
from assets.versions import source_version
from pipeline.anonymise import anonymise, cell_texts, shareable_columns, write_sav
from pipeline.disclosure import frequencies
from pipeline.files import keep_version, write_atomic
from pipeline.pseudonyms import load_key

ANONYMISE_CODE_VERSION = source_version(
    pipeline.anonymise, pipeline.disclosure, pipeline.pseudonyms, sys.modules[__name__]
)


@dg.asset(
    partitions_def=waves,
    io_manager_key="shareable_io",
    group_name="anonymise",
    code_version=ANONYMISE_CODE_VERSION,
    kinds={"pandas", "parquet"},
    metadata={"file": "responses.parquet"},
)
def anonymised_responses(
    context: dg.AssetExecutionContext, scan: ScanConfig, validated_responses: pd.DataFrame
) -> dg.Output[pd.DataFrame]:
    """The shareable responses: pseudonyms, generalised and suppressed background, item codes.

    Also writes disclosure.json beside it: k, records at risk, suppressions, risk measures and
    the pseudonym key's identifier (never the key).
    """
    settings, codebook = scan.settings, scan.codebook()
    key = load_key(settings.data_dir)
    responses, report = anonymise(validated_responses, codebook, key)
    disclosure = {**report.as_dict(), "key_id": key.key_id, "key_source": key.source}
    path = settings.processed_dir / context.partition_key / "disclosure.json"
    write_atomic(path, lambda tmp: tmp.write_text(json.dumps(disclosure, indent=1) + "\n"))
    keep_version(path, settings.processed_dir)
    context.log.info(f"{context.partition_key}: {json.dumps(disclosure)}")
    return dg.Output(
        responses,
        metadata={
            "dagster/row_count": len(responses),
            "disclosure": dg.MetadataValue.json(disclosure),
        },
    )


@dg.asset(
    partitions_def=waves,
    group_name="anonymise",
    code_version=ANONYMISE_CODE_VERSION,
    kinds={"spss"},
    deps=[anonymised_responses],
)
def responses_sav(context: dg.AssetExecutionContext, scan: ScanConfig) -> dg.MaterializeResult:
    """responses.sav beside responses.parquet, with the codebook's variable and value labels."""
    folder = scan.settings.processed_dir / context.partition_key
    responses = pd.read_parquet(folder / "responses.parquet")
    write_atomic(folder / "responses.sav", lambda tmp: write_sav(responses, scan.codebook(), tmp))
    keep_version(folder / "responses.sav", scan.settings.processed_dir)
    return dg.MaterializeResult(
        metadata={"path": dg.MetadataValue.path(str(folder / "responses.sav"))}
    )


@dg.asset_check(asset=anonymised_responses, blocking=True, partitions_def=waves)
def k_anonymity(scan: ScanConfig, anonymised_responses: pd.DataFrame) -> dg.AssetCheckResult:
    """Within every company of at least k rows, each quasi-identifier combination occurs >= k
    times (missing matches anything); companies under k have every quasi-identifier missing."""
    codebook = scan.codebook()
    k, quasi = codebook.anonymisation.k, list(codebook.anonymisation.suppression_order)
    frame = anonymised_responses
    fk = frequencies(frame[quasi], frame["company_id"], quasi)
    size = frame.groupby("company_id", dropna=False)["company_id"].transform("size")
    large = size >= k
    unsafe = int((large & (fk < k)).sum())
    exposed = int((~large & frame[quasi].notna().any(axis=1)).sum())
    return dg.AssetCheckResult(
        passed=unsafe == 0 and exposed == 0,
        metadata={
            "k": k,
            "min_fk": int(fk[large].min()) if large.any() else 0,
            "records_under_k": unsafe,
            "small_company_records_with_quasi_identifiers": exposed,
        },
    )


@dg.asset_check(asset=anonymised_responses, blocking=True, partitions_def=waves)
def no_identifying_columns(
    scan: ScanConfig, anonymised_responses: pd.DataFrame
) -> dg.AssetCheckResult:
    """Exactly the output contract's columns: none declared identifying, no free text."""
    codebook = scan.codebook()
    identifying = set(codebook.identifying)
    columns = list(anonymised_responses.columns)
    return dg.AssetCheckResult(
        passed=columns == shareable_columns(codebook) and not identifying & set(columns),
        metadata={
            "identifying_columns": sorted(identifying & set(columns)),
            "columns": len(columns),
        },
    )


@dg.asset_check(
    asset=anonymised_responses,
    blocking=True,
    partitions_def=waves,
    additional_ins={"validated_responses": dg.AssetIn()},
)
def no_identifier_values(
    scan: ScanConfig, anonymised_responses: pd.DataFrame, validated_responses: pd.DataFrame
) -> dg.AssetCheckResult:
    """No value of an identifier or free-text column of the wave appears in any shareable cell."""
    codebook = scan.codebook()
    secrets = {
        value.strip()
        for column in codebook.identifying
        for value in validated_responses[column].dropna().astype(str)
        if value.strip()
    }
    cells = cell_texts(anonymised_responses)
    found = sorted(cells & secrets)
    return dg.AssetCheckResult(
        passed=not found,
        metadata={"identifier_values_found": len(found), "cells_checked": len(cells)},
    )
