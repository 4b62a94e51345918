"""The privacy invariant, end to end: after the whole pipeline runs on the demo, no file in the
shareable zone holds a name, e-mail address, linkage code (as typed or as the linkage compares
it), company code or IP address of the demo exports, and pseudonyms link each panel member
across waves, a mistyped code included where the background confirms it.

The scan covers every file under data/processed/ and reports/output/, whatever later stages add.
"""

import hashlib
import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pyreadstat
from conftest import DEMO_RAW, linked_attack, typo_links, whole_tokens

from pipeline.ingest.readers import read_wave
from pipeline.instrument.codebook import SUPPRESSED, load_codebook

WAVES = ["2019-T0", "2021-T1", "2022-T2"]
CB = load_codebook(DEMO_RAW / "codebook.yaml")


def identifying_values() -> set[str]:
    """Every identifying value in the demo exports, as typed and trimmed."""
    values: set[str] = set()
    for wave in WAVES:
        raw = read_wave(DEMO_RAW / wave, CB, DEMO_RAW)
        for column in [CB.respondent_id, CB.company_id, *CB.direct_identifiers]:
            for value in raw[column].dropna().astype(str):
                values.update({value, value.strip()})
        # the panel linkage compares codes trimmed and case-folded (pipeline/privacy/linkage.py)
        values.update(raw[CB.respondent_id].dropna().astype(str).str.strip().str.casefold())
    truth = pd.read_csv(DEMO_RAW / "_demo_truth" / "rows.csv", dtype=str, keep_default_na=False)
    values.update(v for ids in truth["planted_identifiers"] for v in ids.split(";"))
    # the codebook's test codes are not persons; drop empties and lone digits
    values -= {*CB.quality.test_company_codes, *CB.quality.test_respondent_codes}
    return {v for v in values if len(v) >= 3}


def text_of(path: Path) -> str:
    """Everything a file holds, as text, read with the format's own library."""
    if path.suffix == ".parquet":
        return pd.read_parquet(path).astype("string").to_csv()
    if path.suffix == ".sav":
        frame, meta = pyreadstat.read_sav(path)
        return frame.astype("string").to_csv() + json.dumps(meta.column_names_to_labels)
    if path.suffix == ".pdf":  # poppler-utils (README, Install)
        return subprocess.run(
            ["pdftotext", "-enc", "UTF-8", str(path), "-"],
            capture_output=True,
            check=True,
            text=True,
        ).stdout
    text = path.read_bytes().decode("utf-8", errors="replace")
    # embedded figures are base64 PNG: pixels, not text (their alt text stays in the scan)
    return re.sub(r"data:image/[a-z]+;base64,[A-Za-z0-9+/=]+", "", text)


def test_nothing_identifying_in_the_shareable_zone(scan_run):
    data, reports, *_ = scan_run
    files = [p for zone in (data / "processed", reports) for p in zone.rglob("*") if p.is_file()]
    suffixes = {p.suffix for p in files}
    assert {".parquet", ".sav", ".csv", ".json", ".html", ".pdf"} <= suffixes
    assert data / "processed" / "all_waves" / "linkage.csv" in files, "the linkage report too"
    secrets = identifying_values()
    # whole tokens only: a longitude such as 4.7085 must not match inside 14.708512 (a time)
    pattern = whole_tokens(secrets)
    assert all(pattern.search(f"leaked: {value}, oops") for value in secrets), "the scan can fail"
    scanned = set()  # _versions/ holds copies: each content is read once
    for path in files:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest in scanned:
            continue
        scanned.add(digest)
        hits = sorted(set(pattern.findall(text_of(path))))
        assert not hits, f"{path.relative_to(data.parent)}: {hits[:5]}"


def test_panel_members_keep_their_person_id_across_waves(scan_run, truth_rows):
    data, *_ = scan_run
    linked = []
    truth = truth_rows.set_index(["source_file", "source_row"])
    for wave in WAVES:
        shared = pd.read_parquet(data / "processed" / wave / "responses.parquet")
        staged = pd.read_parquet(
            data / "raw" / "_staging" / "validated_responses" / f"{wave}.parquet"
        )
        assert len(shared) == len(staged)
        keys = list(zip(staged["_source_file"], staged["_source_row"].astype(str), strict=True))
        linked.append(
            staged[list(CB.linkage.consistent)].assign(
                wave=wave,
                person_id=shared["person_id"].to_numpy(),
                person=truth.loc[keys, "person_uid"].to_numpy(),
                typo=truth.loc[keys, "code_typo"].to_numpy() == "1",
                code_variant=truth.loc[keys, "code_variant"].to_numpy(),
            )
        )
    people = pd.concat(linked, ignore_index=True)
    typed_right = people[~people["typo"]]
    ids_per_person = typed_right.groupby("person")["person_id"].nunique()
    assert (ids_per_person == 1).all()
    panel = typed_right.groupby("person")["wave"].nunique()
    assert (panel >= 2).sum() > 100, "the demo has a real panel"
    assert (typed_right["code_variant"] == "1").sum() > 20, "case and space variants still link"
    # a real typo: the panel linkage gives the row its person's pseudonym where the background
    # confirms it; a break-off before the background questions has nothing to confirm it with
    typos = typo_links(people, people["person_id"], list(CB.linkage.consistent))
    assert typos["evidence"].sum() >= 10 and typos[typos["evidence"]]["recovered"].all()
    assert 0 < (~typos["recovered"]).sum() <= (~typos["evidence"]).sum(), "the demo has both"
    persons_per_id = people.groupby("person_id")["person"].nunique()
    assert (persons_per_id == 1).all(), "no two persons share a pseudonym"


def test_linking_the_waves_scientific_use_files_finds_no_one_under_k(scan_run):
    """The intruder of issue 16 with the scenario of issue 21: reads every wave's
    responses.parquet, fills each person's withheld background from their other waves (same
    person_id), and counts matches within wave and company on every combination of m
    quasi-identifiers. Nobody falls under k; the pipeline's own cross-wave check says the same."""
    data, *_ = scan_run
    quasi = list(CB.anonymisation.suppression_order)
    release = CB.anonymisation.scientific_use
    shared = pd.concat(
        [pd.read_parquet(data / "processed" / w / "responses.parquet") for w in WAVES],
        ignore_index=True,
    )
    panel = shared.groupby("person_id")["wave"].nunique()
    assert (panel > 1).sum() > 100, "the attack links a real panel"
    fk = np.array(linked_attack(shared, quasi, release.m))
    size = shared.groupby(["wave", "company_id"])["wave"].transform("size").to_numpy()
    assert ((fk < release.k) & (size >= release.k)).sum() == 0
    small = shared.loc[size < release.k, quasi]
    assert len(small) and (small.isna() | small.eq(SUPPRESSED)).all().all()
    checked = pd.read_csv(data / "processed" / "all_waves" / "disclosure_linked.csv")
    assert list(checked["wave"]) == WAVES
    assert (checked["under_k"] == 0).all() and (checked["linked_records"] > 100).all()


def test_the_public_use_file_holds_no_key_and_reaches_its_k_record_by_record(scan_run):
    """The public use file: no person_id, the coarser levels, k on every combination of its m
    within each wave and company, each record on its own."""
    data, *_ = scan_run
    quasi = list(CB.anonymisation.suppression_order)
    release = CB.anonymisation.public_use
    for wave in WAVES:
        public = pd.read_parquet(data / "processed" / wave / "public_responses.parquet")
        assert "person_id" not in public.columns
        for name, variable in CB.background.items():
            shown = set(public[name].dropna()) - {SUPPRESSED}
            assert shown <= set(variable.public_levels), name
        fk = np.array(linked_attack(public, quasi, release.m))
        size = public.groupby("company_id")["wave"].transform("size").to_numpy()
        assert ((fk < release.k) & (size >= release.k)).sum() == 0


def test_scan_run_prints_the_disclosure_summary(scan_run):
    stdout = scan_run.stdout
    suf, puf = CB.anonymisation.scientific_use, CB.anonymisation.public_use
    assert stdout.count(f"scientific use file: k={suf.k}, m={suf.m} reached") == 3
    assert stdout.count(f"public use file: k={puf.k}, m={puf.m} reached") == 3
    disclosure = json.loads(
        (scan_run.data / "processed" / "2021-T1" / "disclosure.json").read_text()
    )
    assert disclosure["key_source"] == "demo key" and "key" not in disclosure


def test_responses_sav_opens_with_the_codebooks_labels(scan_run):
    """Both release files as .sav: the codebook's labels, and a withheld value as a labelled
    user-missing code, apart from a value not given (system-missing)."""
    data, *_ = scan_run
    folder = data / "processed" / "2021-T1"
    for name, levels in (("responses", "levels"), ("public_responses", "public_levels")):
        frame, meta = pyreadstat.read_sav(folder / f"{name}.sav", user_missing=True)
        shared = pd.read_parquet(folder / f"{name}.parquet")
        assert list(frame.columns) == list(shared.columns)
        assert len(frame) == len(shared)
        labels = meta.column_names_to_labels
        assert labels["LT1"] == CB.item_text["LT1"]
        assert labels["education"] == CB.background["education"].label
        education = meta.variable_value_labels["education"]
        assert set(education.values()) == {
            *getattr(CB.background["education"], levels),
            "withheld for privacy",
        }
        assert meta.missing_ranges["education"] == [{"lo": -8.0, "hi": -8.0}]
        decoded = frame["education"].map(education).replace("withheld for privacy", SUPPRESSED)
        assert decoded.fillna("").tolist() == shared["education"].fillna("").tolist()
        assert shared["education"].eq(SUPPRESSED).sum() > 0 and shared["education"].isna().any()
        assert meta.variable_value_labels["LT1"][5.0] == "helemaal eens"
        assert meta.file_label.startswith(f"{CB.instrument} {CB.version}, 2021-T1: ")
        measure = meta.variable_measure
        assert measure["education"] == "nominal" and measure["LT1"] == "ordinal"
        assert measure["company_id"] == "nominal"
        for name, variable in CB.background.items():  # a banded number is ordinal
            assert measure[name] == ("ordinal" if variable.is_number else "nominal")
        # the items' missing codes stay, user-missing and labelled, apart from no answer
        codes = [float(c) for c in CB.missing_codes]
        assert meta.missing_ranges["LT1"] == [{"lo": c, "hi": c} for c in codes]
        assert meta.variable_value_labels["LT1"][9.0] == CB.missing_codes[9]
        items = frame[CB.items]
        assert items.isin(codes).to_numpy().sum() > 0 and items.isna().to_numpy().sum() > 0
        assert items.notna().to_numpy().sum() - items.isin(codes).to_numpy().sum() == (
            shared[CB.items].notna().to_numpy().sum()
        )
    assert frame["LT1"].isin([1, 2, 3, 4, 5]).sum() == shared["LT1"].notna().sum()


def test_the_scale_scores_and_the_pooled_long_file_open_in_spss(scan_run):
    """scale_scores.sav per wave, and the pooled long file of all waves in parquet, CSV and
    .sav: the same rows and values, the scores at scale level."""
    processed = scan_run.data / "processed"
    scores, meta = pyreadstat.read_sav(processed / "2021-T1" / "scale_scores.sav")
    shared = pd.read_parquet(processed / "2021-T1" / "scale_scores.parquet")
    # LT is an SPSS reserved word: the .sav calls the scale LT_, labelled as the scale
    reserved = {"LT": "LT_"}
    assert list(scores.columns) == [reserved.get(c, c) for c in shared.columns]
    assert np.allclose(scores["LT_"], shared["LT"], equal_nan=True)
    assert meta.column_names_to_labels["LT_"].startswith(CB.scales["LT"].label)
    assert meta.variable_measure["LT_"] == "scale" and meta.variable_measure["EM"] == "scale"
    long = pd.read_parquet(processed / "all_waves" / "responses_long.parquet")
    waves = {w: pd.read_parquet(processed / w / "responses.parquet") for w in WAVES}
    assert len(long) == sum(len(f) for f in waves.values())
    assert list(long["wave"].unique()) == WAVES
    t1 = long[long["wave"] == "2021-T1"].reset_index(drop=True)
    assert t1[list(waves["2021-T1"].columns)].equals(waves["2021-T1"])
    assert np.allclose(t1["LT"], shared["LT"], equal_nan=True)
    assert long.groupby("person_id")["wave"].nunique().max() == 3  # the panel links
    csv = pd.read_csv(processed / "all_waves" / "responses_long.csv")
    sav, sav_meta = pyreadstat.read_sav(processed / "all_waves" / "responses_long.sav")
    assert list(csv.columns) == list(long.columns)
    assert list(sav.columns) == [reserved.get(c, c) for c in long.columns]
    assert len(csv) == len(sav) == len(long)
    assert np.allclose(sav["EM"], long["EM"], equal_nan=True)
    assert sav_meta.file_label.endswith("all waves: pooled long file")
