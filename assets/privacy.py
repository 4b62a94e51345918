"""Stage 3: the privacy boundary. Pseudonyms, disclosure control, the shareable responses."""

import json

import dagster as dg
import pandas as pd

from assets.partitions import waves
from assets.resources import ALL_WAVES, ScanConfig, files_metadata
from assets.versions import shareable, source_version
from pipeline.instrument.codebook import Codebook, Release
from pipeline.lineage.files import keep_version, write_atomic
from pipeline.lineage.fingerprint import frame_digest
from pipeline.models.release_utility import release_utility
from pipeline.privacy.anonymise import (
    cell_texts,
    community_members,
    every_wave,
    pooled_long,
    pseudonymised,
    public_use,
    reported,
    scientific_use,
    shareable_columns,
    trajectory_exposure,
    write_sav,
)
from pipeline.privacy.disclosure import (
    SUPPRESSED,
    describe_disclosure,
    frequencies,
    linked_exposure,
)
from pipeline.privacy.linkage import link_panel
from pipeline.privacy.pseudonyms import load_key

ANONYMISE_CODE_VERSION = source_version(
    "pipeline.privacy.anonymise",
    "pipeline.privacy.disclosure",
    "pipeline.privacy.linkage",
    "pipeline.privacy.pseudonyms",
    "pipeline.models.release_utility",
    __name__,
)


def _restricted_out(description: str) -> dg.AssetOut:
    return dg.AssetOut(
        io_manager_key="restricted_io", kinds={"pandas", "parquet"}, description=description
    )


def _shareable_out(file: str, description: str) -> dg.AssetOut:
    return dg.AssetOut(
        io_manager_key="shareable_io",
        kinds={"pandas", "parquet"},
        metadata={"file": file},
        description=description,
    )


@dg.multi_asset(
    partitions_def=waves,
    group_name="privacy",
    code_version=shareable(ANONYMISE_CODE_VERSION),
    outs={
        "pseudonymised_responses": _restricted_out(
            "The responses under pseudonyms, background generalised, nothing suppressed "
            "(restricted zone): what the analyses use."
        ),
        "anonymised_responses": _shareable_out(
            "responses.parquet",
            "The scientific use file (researchers under a data-use agreement): pseudonyms, the "
            "panel linkable by person_id, generalised background with values withheld for "
            "privacy as [suppressed], item codes.",
        ),
        "public_responses": _shareable_out(
            "public_responses.parquet",
            "The public use file: the scientific one without person_id, at the codebook's "
            "coarser levels, protected on its own (stronger) scenario on top.",
        ),
        "reported_responses": _restricted_out(
            "What the reports aggregate (restricted zone): the pseudonymised responses without "
            "the background values a report minus a release file would give back."
        ),
    },
    ins={
        "validated": dg.AssetIn("validated_responses", partition_mapping=dg.AllPartitionMapping())
    },
)
def privacy_boundary(
    context: dg.AssetExecutionContext, scan: ScanConfig, validated: dict[str, pd.DataFrame]
):
    """The wave's pseudonymised responses, both release files, and disclosure.json beside them:
    per file its scenario (k, m), records at risk, suppressions, sdcMicro's risk after each step
    and the utility measures, and the pseudonym key's identifier (never the key).

    Reads every wave's validated rows: the panel linkage corrects a mistyped code against the
    other waves, and the scientific use file protects a panel member's records over all waves
    together, so a new or changed wave can suppress more in the other waves too."""
    settings, codebook = scan.settings, scan.codebook()
    wave, k = context.partition_key, codebook.anonymisation.k
    key = load_key(settings.data_dir)
    restricted = pseudonymised(validated, codebook, key)
    scientific, scientific_report, scientific_steps = scientific_use(restricted, wave, codebook)
    public, public_report, public_steps = public_use(scientific, codebook)
    disclosure = {"key_id": key.key_id, "key_source": key.source}
    for name, release, report, steps in (
        ("scientific_use", scientific, scientific_report, scientific_steps),
        ("public_use", public, public_report, public_steps),
    ):
        utility = release_utility(
            restricted[wave], release, codebook, k=k, public=name == "public_use"
        )
        disclosure[name] = {**report.as_dict(), "risk_steps": steps, "utility": utility}
    path = settings.processed_dir / wave / "disclosure.json"
    write_atomic(path, lambda tmp: tmp.write_text(json.dumps(disclosure, indent=1) + "\n"))
    keep_version(path, settings.processed_dir)
    context.log.info(f"{wave}: {describe_disclosure(disclosure)}")
    reports = reported(restricted[wave], scientific, public, codebook, k)
    # the content as data version: under another key the same inputs give other pseudonyms,
    # and everything made from the old ones must be redone
    for name, frame, metadata in (
        ("pseudonymised_responses", restricted[wave], {"key_id": key.key_id}),
        (
            "anonymised_responses",
            scientific,
            {
                "disclosure": dg.MetadataValue.json(
                    {"key_id": key.key_id, "key_source": key.source, **disclosure["scientific_use"]}
                ),
                **files_metadata(settings, [path]),
            },
        ),
        (
            "public_responses",
            public,
            {"disclosure_public": dg.MetadataValue.json(disclosure["public_use"])},
        ),
        ("reported_responses", reports, {}),
    ):
        yield dg.Output(
            frame,
            name,
            data_version=dg.DataVersion(frame_digest(frame)),
            metadata={"dagster/row_count": len(frame), **metadata},
        )


@dg.asset(
    partitions_def=waves,
    group_name="privacy",
    code_version=ANONYMISE_CODE_VERSION,
    kinds={"spss"},
    deps=["anonymised_responses", "public_responses", "scale_scores"],
)
def responses_sav(
    context: dg.AssetExecutionContext, scan: ScanConfig, validated_responses: pd.DataFrame
) -> dg.MaterializeResult:
    """responses.sav, public_responses.sav and scale_scores.sav beside their parquet files
    (`write_sav`: labels, measurement levels, a file label, a withheld value and the items'
    missing codes as labelled user-missing values; the codes from the validated rows, which the
    release files follow row for row)."""
    wave, codebook = context.partition_key, scan.codebook()
    folder = scan.settings.processed_dir / wave
    titles = {
        "responses": "scientific use file",
        "public_responses": "public use file",
        "scale_scores": "scale scores",
    }
    paths = []
    for name, title in titles.items():
        frame = pd.read_parquet(folder / f"{name}.parquet")
        path = folder / f"{name}.sav"
        label = f"{codebook.instrument} {codebook.version}, {wave}: {title}"
        write_atomic(
            path,
            lambda tmp, frame=frame, label=label: write_sav(
                frame, codebook, tmp, label, validated_responses
            ),
        )
        keep_version(path, scan.settings.processed_dir)
        paths.append(path)
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(paths[0])),
            **files_metadata(scan.settings, paths),
        }
    )


@dg.asset(
    group_name=ALL_WAVES,
    io_manager_key="shareable_io",
    code_version=shareable(ANONYMISE_CODE_VERSION),
    kinds={"pandas", "parquet", "csv", "spss"},
    metadata={"file": "responses_long.parquet"},
    ins={
        "releases": dg.AssetIn("anonymised_responses", partition_mapping=dg.AllPartitionMapping()),
        "scores": dg.AssetIn("scale_scores", partition_mapping=dg.AllPartitionMapping()),
        "validated": dg.AssetIn("validated_responses", partition_mapping=dg.AllPartitionMapping()),
    },
)
def responses_long(
    scan: ScanConfig,
    releases: dict[str, pd.DataFrame],
    scores: dict[str, pd.DataFrame],
    validated: dict[str, pd.DataFrame],
) -> dg.Output[pd.DataFrame]:
    """The pooled long file: every wave's scientific use file with its scale scores, one row
    per person and wave, in codebook wave order; also as responses_long.csv and .sav."""
    codebook = scan.codebook()
    table = pooled_long(releases, scores, codebook)
    folder = scan.settings.processed_dir / ALL_WAVES
    csv, sav = folder / "responses_long.csv", folder / "responses_long.sav"
    write_atomic(csv, lambda tmp: table.to_csv(tmp, index=False))
    codes = pd.concat([validated[w] for w in codebook.waves if w in validated], ignore_index=True)
    label = f"{codebook.instrument} {codebook.version}, all waves: pooled long file"
    write_atomic(sav, lambda tmp: write_sav(table, codebook, tmp, label, codes))
    for path in (csv, sav):
        keep_version(path, scan.settings.processed_dir)
    return dg.Output(
        table,
        metadata={"waves": sorted(set(table["wave"])), **files_metadata(scan.settings, [csv, sav])},
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
    # the pseudonyms must be those of the responses: a new key redoes both
    deps=[dg.AssetDep("pseudonymised_responses", partition_mapping=dg.AllPartitionMapping())],
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
    # the pseudonyms must be those of the responses: a new key redoes it
    deps=[dg.AssetDep("pseudonymised_responses", partition_mapping=dg.AllPartitionMapping())],
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
    code_version=shareable(ANONYMISE_CODE_VERSION),
    kinds={"csv"},
    metadata={"file": "disclosure_linked.csv"},
)
def linked_disclosure(
    scan: ScanConfig, anonymised_responses: dict[str, pd.DataFrame]
) -> dg.Output[pd.DataFrame]:
    """The attack on the scientific use files of all waves together: per wave, records whose
    person is in another wave too, and records an intruder who links them by person_id finds
    under k on some combination of m quasi-identifiers."""
    anonymisation = scan.codebook().anonymisation
    release = anonymisation.scientific_use
    responses = pd.concat([anonymised_responses[w] for w in sorted(anonymised_responses)])
    quasi = list(anonymisation.suppression_order)
    table = linked_exposure(responses, quasi, release.k, release.m)
    return dg.Output(table, metadata={"records_under_k": int(table["under_k"].sum())})


@dg.asset(
    io_manager_key="shareable_io",
    group_name=ALL_WAVES,
    code_version=shareable(ANONYMISE_CODE_VERSION),
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


def _k_anonymity(frame: pd.DataFrame, codebook: Codebook, release: Release):
    """Within every company of at least k rows, each combination of m quasi-identifiers occurs
    >= k times (missing and withheld match anything); companies under k show none."""
    quasi = list(codebook.anonymisation.suppression_order)
    fk = frequencies(frame[quasi], frame["company_id"], quasi, release.m)
    size = frame.groupby("company_id", dropna=False)["company_id"].transform("size")
    large = size >= release.k
    unsafe = int((large & (fk < release.k)).sum())
    shown = frame[quasi].notna() & frame[quasi].ne(SUPPRESSED).fillna(True)
    exposed = int((~large & shown.any(axis=1)).sum())
    return dg.AssetCheckResult(
        passed=unsafe == 0 and exposed == 0,
        metadata={
            "k": release.k,
            "m": "all" if release.m is None else release.m,
            "min_fk": int(fk[large].min()) if large.any() else 0,
            "records_under_k": unsafe,
            "small_company_records_with_quasi_identifiers": exposed,
        },
    )


@dg.asset_check(asset="anonymised_responses", blocking=True, partitions_def=waves)
def k_anonymity(scan: ScanConfig, anonymised_responses: pd.DataFrame) -> dg.AssetCheckResult:
    """The scientific use file: k-anonymity on its scenario within each company."""
    codebook = scan.codebook()
    return _k_anonymity(anonymised_responses, codebook, codebook.anonymisation.scientific_use)


@dg.asset_check(asset="public_responses", blocking=True, partitions_def=waves)
def public_k_anonymity(scan: ScanConfig, public_responses: pd.DataFrame) -> dg.AssetCheckResult:
    """The public use file: k-anonymity on its scenario within each company."""
    codebook = scan.codebook()
    return _k_anonymity(public_responses, codebook, codebook.anonymisation.public_use)


def _columns(frame: pd.DataFrame, codebook: Codebook, public: bool) -> dg.AssetCheckResult:
    """Exactly the output contract's columns: none declared identifying, no free text."""
    identifying = set(codebook.identifying)
    columns = list(frame.columns)
    return dg.AssetCheckResult(
        passed=columns == shareable_columns(codebook, public) and not identifying & set(columns),
        metadata={
            "identifying_columns": sorted(identifying & set(columns)),
            "columns": len(columns),
        },
    )


@dg.asset_check(asset="anonymised_responses", blocking=True, partitions_def=waves)
def no_identifying_columns(
    scan: ScanConfig, anonymised_responses: pd.DataFrame
) -> dg.AssetCheckResult:
    """The scientific use file holds exactly the output contract's columns."""
    return _columns(anonymised_responses, scan.codebook(), public=False)


@dg.asset_check(asset="public_responses", blocking=True, partitions_def=waves)
def public_no_identifying_columns(
    scan: ScanConfig, public_responses: pd.DataFrame
) -> dg.AssetCheckResult:
    """The public use file holds exactly the output contract's columns: no person_id."""
    return _columns(public_responses, scan.codebook(), public=True)


def _identifier_values(
    frame: pd.DataFrame, validated: pd.DataFrame, codebook: Codebook
) -> dg.AssetCheckResult:
    """No value of an identifier or free-text column of the wave appears in any shareable cell,
    a decimal number (a coordinate) also as a float column writes it ("53.1070" as "53.107")."""
    secrets = {
        value.strip()
        for column in codebook.identifying
        for value in validated[column].dropna().astype(str)
        if value.strip()
    }
    numbers = pd.to_numeric(pd.Series(sorted(secrets), dtype=object), errors="coerce").dropna()
    secrets |= set(numbers[numbers != numbers.round()].astype("string"))
    cells = cell_texts(frame)
    found = sorted(cells & secrets)
    return dg.AssetCheckResult(
        passed=not found,
        metadata={"identifier_values_found": len(found), "cells_checked": len(cells)},
    )


@dg.asset_check(
    asset="anonymised_responses",
    blocking=True,
    partitions_def=waves,
    additional_ins={"validated_responses": dg.AssetIn()},
)
def no_identifier_values(
    scan: ScanConfig, anonymised_responses: pd.DataFrame, validated_responses: pd.DataFrame
) -> dg.AssetCheckResult:
    """No identifier or free-text value of the wave in the scientific use file."""
    return _identifier_values(anonymised_responses, validated_responses, scan.codebook())


@dg.asset_check(
    asset="public_responses",
    blocking=True,
    partitions_def=waves,
    additional_ins={"validated_responses": dg.AssetIn()},
)
def public_no_identifier_values(
    scan: ScanConfig, public_responses: pd.DataFrame, validated_responses: pd.DataFrame
) -> dg.AssetCheckResult:
    """No identifier or free-text value of the wave in the public use file."""
    return _identifier_values(public_responses, validated_responses, scan.codebook())
