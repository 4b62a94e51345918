"""Issue 21, as an intruder: the two release files of the demo against each other and against the
reports, after one whole `scan run`.

- Holding both files (a researcher has the scientific one, anyone the public one), rows match by
  their answers: the public file must never show a value the scientific one withholds.
- A report's figure over a background group, minus the same figure over the group's members a
  release file shows, gives the members it withholds: per published group, they number 0 or at
  least k. The reports aggregate the restricted data (`reported_responses`), so the
  management-staff gap appears where both groups reach k.
"""

import numpy as np
import pandas as pd
from conftest import DEMO_RAW

from pipeline.instrument.codebook import SUPPRESSED, load_codebook

WAVES = ["2019-T0", "2021-T1", "2022-T2"]
CB = load_codebook(DEMO_RAW / "codebook.yaml")
K = CB.anonymisation.k


def files(data, wave: str) -> dict[str, pd.DataFrame]:
    staging, processed = data / "raw" / "_staging", data / "processed" / wave
    return {
        "restricted": pd.read_parquet(staging / "pseudonymised_responses" / f"{wave}.parquet"),
        "reported": pd.read_parquet(staging / "reported_responses" / f"{wave}.parquet"),
        "scientific": pd.read_parquet(processed / "responses.parquet"),
        "public": pd.read_parquet(processed / "public_responses.parquet"),
        "scores": pd.read_parquet(processed / "scale_scores.parquet"),
        "numbers": pd.read_csv(processed / "company_report_numbers.csv"),
    }


def test_the_public_file_tells_nothing_the_scientific_one_withholds(scan_run):
    for wave in WAVES:
        f = files(scan_run.data, wave)
        scientific, public = f["scientific"], f["public"]
        # the intruder's join: the same company and the same answers to every item
        items = list(CB.items)
        assert scientific[["company_id", *items]].equals(public[["company_id", *items]])
        for name, variable in CB.background.items():
            withheld = scientific[name].eq(SUPPRESSED).fillna(False)
            assert public.loc[withheld, name].eq(SUPPRESSED).all(), (wave, name)
            shown = public[name].notna() & public[name].ne(SUPPRESSED)
            coarse = scientific.loc[shown, name].replace(variable.coarser)
            assert (coarse == public.loc[shown, name]).all(), (wave, name)


def withheld_counts(members: pd.Series, release: pd.Series, keys: list[pd.Series]) -> pd.Series:
    """Per group: how many of its members (in the reports' data) the release withholds."""
    withheld = members & release.eq(SUPPRESSED).fillna(False)
    return withheld.groupby(keys).sum()


def test_a_report_minus_a_release_gives_back_no_group_under_k(scan_run):
    management = CB.management
    for wave in WAVES:
        f = files(scan_run.data, wave)
        reported = f["reported"]
        role = (
            reported[management.variable]
            .eq(management.value)
            .map({True: "management", False: "staff"})
        )
        for release in ("scientific", "public"):
            for name, variable in CB.background.items():
                levels = reported[name]
                if release == "public":
                    levels = levels.replace(variable.coarser)
                counts = withheld_counts(reported[name].notna(), f[release][name], [levels])
                assert ((counts == 0) | (counts >= K)).all(), (wave, release, name)
            # the management-staff gap of every company that publishes one
            published = f["numbers"].loc[f["numbers"]["management_staff_gap"].notna(), "company_id"]
            mine = reported["company_id"].isin(set(published))
            counts = withheld_counts(
                mine & role.notna(),
                f[release][management.variable],
                [reported["company_id"], role],
            )
            assert ((counts == 0) | (counts >= K)).all(), (wave, release)


def test_the_management_staff_gap_appears_where_both_groups_reach_k(scan_run):
    management, culture = CB.management, list(CB.models.culture)
    for wave in WAVES:
        f = files(scan_run.data, wave)
        reported, scores = f["reported"], f["scores"]
        assert reported["person_id"].equals(scores["person_id"])
        role = reported[management.variable].eq(management.value)
        role = role.where(reported[management.variable].notna())
        gaps = f["numbers"].dropna(subset=["management_staff_gap"])
        assert gaps["company_id"].nunique() >= 3, wave
        for (company, scale), gap in gaps.set_index(["company_id", "scale"])[
            "management_staff_gap"
        ].items():
            mine = (reported["company_id"] == company).to_numpy()
            values = scores.loc[mine, scale]
            boss, staff = values[role[mine].eq(True)], values[role[mine].eq(False)]
            assert boss.notna().sum() >= K and staff.notna().sum() >= K
            assert np.isclose(gap, boss.mean() - staff.mean())
        # and every company where both groups reach k on a scale publishes its gap there
        frame = scores.assign(role=role.map({True: "management", False: "staff"}))
        n = frame.groupby(["company_id", "role"])[culture].count().unstack("role")
        for scale in culture:
            both = n[scale].ge(K).all(axis=1) if n[scale].shape[1] == 2 else n[scale].iloc[:, 0] < 0
            expected = set(both[both].index)
            assert set(gaps.loc[gaps["scale"] == scale, "company_id"]) == expected, (wave, scale)
