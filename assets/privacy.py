"""Stage 3: the privacy boundary. Pseudonyms, disclosure control, the shareable responses."""

import json
import sys

import dagster as dg
import pandas as pd

import pipeline.privacy.anonymise
import pipeline.privacy.disclosure
import pipeline.privacy.linkage
import pipeline.privacy.pseudonyms
from assets.partitions import waves
from assets.resources import ALL_WAVES, ScanConfig, files_metadata
from assets.versions import source_version
from pipeline.lineage.files import keep_version, write_atomic
from pipeline.lineage.fingerprint import frame_digest
from pipeline.privacy.anonymise import (
    anonymise,
    cell_texts,
    community_members,
    every_wave,
    shareable_columns,
    trajectory_exposure,
    write_sav,
)
from pipeline.privacy.disclosure import frequencies, linked_exposure
from pipeline.privacy.linkage import link_panel
from pipeline.privacy.pseudonyms import load_key

ANONYMISE_CODE_VERSION = source_version(
    pipeline.privacy.anonymise,
    pipeline.privacy.disclosure,
    pipeline.privacy.linkage,
    pipeline.privacy.pseudonyms,
    sys.modules[__name__],
)


@dg.asset(
    partitions_def=waves,
    io_manager_key="shareable_io",
    group_name="privacy",
    code_version=ANONYMISE_CODE_VERSION,
    kinds={"pandas", "parquet"},
    metadata={"file": "responses.parquet"},
    ins={
        "validated": dg.AssetIn("validated_responses", partition_mapping=dg.AllPartitionMapping())
    },
)
def anonymised_responses(
    context: dg.AssetExecutionContext, scan: ScanConfig, validated: dict[str, pd.DataFrame]
) -> dg.Output[pd.DataFrame]:
    """The shareable responses: pseudonyms, generalised and suppressed background, item codes.

    Reads every wave's validated rows: a panel member's background is protected over all waves
    together, so a new or changed wave can suppress more in the other waves too. Also writes
    disclosure.json beside it: k, records at risk, suppressions, risk measures and the pseudonym
    key's identifier (never the key).
    """
    settings, codebook = scan.settings, scan.codebook()
    key = load_key(settings.data_dir)
    responses, report = anonymise(validated, context.partition_key, codebook, key)
    disclosure = {**report.as_dict(), "key_id": key.key_id, "key_source": key.source}
    path = settings.processed_dir / context.partition_key / "disclosure.json"
    write_atomic(path, lambda tmp: tmp.write_text(json.dumps(disclosure, indent=1) + "\n"))
    keep_version(path, settings.processed_dir)
    context.log.info(f"{context.partition_key}: {json.dumps(disclosure)}")
    # the content as data version: under another key the same inputs give other pseudonyms,
    # and everything made from the old ones must be redone
    return dg.Output(
        responses,
        data_version=dg.DataVersion(frame_digest(responses)),
        metadata={
            "dagster/row_count": len(responses),
            "disclosure": dg.MetadataValue.json(disclosure),
            **files_metadata(settings, [path]),
        },
    )


@dg.asset(
    partitions_def=waves,
    group_name="privacy",
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
        metadata={
            "path": dg.MetadataValue.path(str(folder / "responses.sav")),
            **files_metadata(scan.settings, [folder / "responses.sav"]),
        }
    )


@dg.multi_asset(
    group_name=ALL_WAVES,
    code_version=ANONYMISE_CODE_VERSION,
    outs={
        "trajectory_companies": dg.AssetOut(
            io_manager_key="restricted_io",
            kinds={"pandas", "parquet"},
            description="The trajectory register under the shareable company pseudonyms "
            "(restricted zone: a company's trajectories can tell which company it is).",
        ),
        "trajectory_persons": dg.AssetOut(
            io_manager_key="restricted_io",
            kinds={"pandas", "parquet"},
            description="The person_id of every person who takes part in a trajectory, by the "
            "survey's participation variable or the participants list (restricted zone).",
        ),
    },
    ins={
        "validated": dg.AssetIn("validated_responses", partition_mapping=dg.AllPartitionMapping())
    },
    # the pseudonyms must be those of the shareable responses: a new key redoes both
    deps=[dg.AssetDep(anonymised_responses, partition_mapping=dg.AllPartitionMapping())],
)
def trajectory_exposure_assets(
    scan: ScanConfig,
    validated: dict[str, pd.DataFrame],
    trajectory_register: pd.DataFrame,
    trajectory_participants: pd.DataFrame,
):
    """Which companies run a trajectory and who takes part, under the pseudonyms of the
    shareable files, so that the models and reports can join them to the scores."""
    codebook = scan.codebook()
    companies, persons = pd.DataFrame(columns=["company_id"]), pd.DataFrame(columns=["person_id"])
    if codebook.trajectories is not None:
        key = load_key(scan.settings.data_dir)
        companies, persons = trajectory_exposure(
            validated, trajectory_register, trajectory_participants, codebook, key
        )
    yield dg.Output(companies, "trajectory_companies", metadata={"trajectories": len(companies)})
    yield dg.Output(persons, "trajectory_persons", metadata={"participants": len(persons)})


@dg.asset(
    name="community_members",
    io_manager_key="restricted_io",
    group_name=ALL_WAVES,
    code_version=ANONYMISE_CODE_VERSION,
    kinds={"pandas", "parquet"},
    # the pseudonyms must be those of the shareable responses: a new key redoes it
    deps=[dg.AssetDep(anonymised_responses, partition_mapping=dg.AllPartitionMapping())],
)
def community_members_asset(
    scan: ScanConfig, community_register: pd.DataFrame
) -> dg.Output[pd.DataFrame]:
    """The learning communities' member companies under the shareable company pseudonyms, with
    the wave each joined and left (restricted zone: membership can tell which company it is)."""
    members = community_members(community_register, load_key(scan.settings.data_dir))
    communities = members["community_id"].nunique()
    return dg.Output(members, metadata={"communities": communities, "memberships": len(members)})


@dg.asset(
    io_manager_key="shareable_io",
    group_name=ALL_WAVES,
    code_version=ANONYMISE_CODE_VERSION,
    kinds={"csv"},
    metadata={"file": "disclosure_linked.csv"},
)
def linked_disclosure(
    scan: ScanConfig, anonymised_responses: dict[str, pd.DataFrame]
) -> dg.Output[pd.DataFrame]:
    """The attack on the shareable data of all waves together: per wave, records whose person is
    in another wave too, and records an intruder who links them by person_id finds under k."""
    anonymisation = scan.codebook().anonymisation
    responses = pd.concat([anonymised_responses[w] for w in sorted(anonymised_responses)])
    table = linked_exposure(responses, list(anonymisation.suppression_order), anonymisation.k)
    return dg.Output(table, metadata={"records_under_k": int(table["under_k"].sum())})


@dg.asset(
    io_manager_key="shareable_io",
    group_name=ALL_WAVES,
    code_version=ANONYMISE_CODE_VERSION,
    kinds={"csv"},
    metadata={"file": "linkage.csv"},
)
def panel_linkage(
    scan: ScanConfig, validated_responses: dict[str, pd.DataFrame]
) -> dg.Output[pd.DataFrame]:
    """How the waves' linkage codes link within company (pipeline/privacy/linkage.py), per pair
    of waves: the rows of `wave` linked to `other_wave` by the same code or by a corrected one,
    ambiguous, unmatched, or unlinkable (no code, a test code). Counts only, no code."""
    table = link_panel(every_wave(validated_responses), scan.codebook()).pairs
    counts = ["linked_exact", "linked_corrected", "ambiguous", "unmatched", "unlinkable"]
    return dg.Output(table, metadata={name: int(table[name].sum()) for name in counts})


@dg.asset_check(asset=linked_disclosure, blocking=True)
def k_anonymity_across_waves(linked_disclosure: pd.DataFrame) -> dg.AssetCheckResult:
    """No record falls under k, nor a small company's record shows a quasi-identifier, when the
    waves' shareable files are linked by person_id."""
    under = int(linked_disclosure["under_k"].sum())
    exposed = int(linked_disclosure["small_company_exposed"].sum())
    return dg.AssetCheckResult(
        passed=under == 0 and exposed == 0,
        metadata={
            "records_under_k": under,
            "small_company_records_exposed": exposed,
            "linked_records": int(linked_disclosure["linked_records"].sum()),
        },
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
    """No value of an identifier or free-text column of the wave appears in any shareable cell,
    a decimal number (a coordinate) also as a float column writes it ("53.1070" as "53.107")."""
    codebook = scan.codebook()
    secrets = {
        value.strip()
        for column in codebook.identifying
        for value in validated_responses[column].dropna().astype(str)
        if value.strip()
    }
    numbers = pd.to_numeric(pd.Series(sorted(secrets), dtype=object), errors="coerce").dropna()
    secrets |= set(numbers[numbers != numbers.round()].astype("string"))
    cells = cell_texts(anonymised_responses)
    found = sorted(cells & secrets)
    return dg.AssetCheckResult(
        passed=not found,
        metadata={"identifier_values_found": len(found), "cells_checked": len(cells)},
    )
