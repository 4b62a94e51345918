"""The pipeline materialized through Dagster on the demo, read back, against the truth."""

import json
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from conftest import DEMO_RAW, WAVES

from assets.psychometrics import (
    alpha_at_least_060,
    group_invariance,
    longitudinal_invariance,
    measurement_invariance,
    measurement_model,
)
from assets.resources import ALL_WAVES, ScanConfig
from pipeline.instrument.codebook import load_codebook
from pipeline.lineage.fingerprint import sha256_file
from pipeline.psychometrics.estimation import SingularCovariance

TRUTH_NAMES = {"source_file": "_source_file", "source_row": "_source_row"}


def test_every_check_passes_on_the_demo(pipeline_run):
    results = pipeline_run.results
    for wave in WAVES:
        evaluations = {
            e.check_name: e.passed
            for stage in (f"validate/{wave}", wave)
            for e in results[stage].get_asset_check_evaluations()
        }
        assert evaluations == {
            "raw_structure": True,
            "rows_accounted_for": True,
            "contract": True,
            "expectations": True,
            "k_anonymity": True,
            "no_identifying_columns": True,
            "no_identifier_values": True,
            "public_k_anonymity": True,
            "public_no_identifying_columns": True,
            "public_no_identifier_values": True,
            "alpha_at_least_060": True,
            "models_converged": True,
        }, wave


def test_validated_and_quarantined_rows_are_the_truths(pipeline_run, truth_rows):
    settings, *_ = pipeline_run
    for wave in WAVES:
        staged = settings.staging_dir
        validated = pd.read_parquet(staged / "validated_responses" / f"{wave}.parquet")
        quarantine = pd.read_parquet(staged / "quarantine" / f"{wave}.parquet")
        truth = truth_rows[truth_rows["wave"] == wave]

        def rows(frame):
            return list(zip(frame["_source_file"], frame["_source_row"].astype(str), strict=True))

        clean = truth[truth["problems"] == ""]
        assert set(rows(validated)) == set(rows(clean.rename(columns=TRUTH_NAMES)))
        found = dict(zip(rows(quarantine), quarantine["_reasons"].str.split(";"), strict=True))
        bad = truth[truth["problems"] != ""]
        expected = dict(
            zip(rows(bad.rename(columns=TRUTH_NAMES)), bad["problems"].str.split(";"), strict=True)
        )
        assert {k: set(v) for k, v in found.items()} == {k: set(v) for k, v in expected.items()}
        # the quarantine keeps the whole row
        assert {"comments", "email", "LT1", "_parse_errors"} <= set(quarantine.columns)


def test_summary_and_validation_pages_are_shareable(pipeline_run, truth_rows):
    settings, *_ = pipeline_run
    identifying = {v for value in truth_rows["planted_identifiers"] for v in value.split(";")}
    raw = pd.concat(
        pd.read_parquet(settings.staging_dir / "raw_responses" / f"{w}.parquet") for w in WAVES
    )
    identifying.update(raw["resp_code"].dropna().str.strip())
    identifying.update(raw["response_id"].dropna())
    identifying -= {"", "test"}  # "test" is the codebook's test linkage code, not a person
    for wave in WAVES:
        folder = settings.processed_dir / wave
        summary = pd.read_csv(folder / "quality_summary.csv")
        assert list(summary.columns) == ["wave", "reason", "rows", "rule_status"]
        rules = summary.dropna(subset=["rule_status"])
        # the demo codebook gives every rule its columns
        assert set(rules["rule_status"]) == {"applied"}
        page = (folder / "validation" / "expectations.html").read_text(encoding="utf-8")
        result = json.loads((folder / "validation" / "expectations.json").read_text())
        assert result["success"] is True
        assert "http://" not in page and "https://" not in page and "<style" in page
        written = page + json.dumps(result) + summary.to_csv()
        leaked = sorted(v for v in identifying if v in written)
        assert not leaked, f"{wave}: identifying values in the shareable zone: {leaked[:5]}"


def test_scores_and_reliability_follow_the_contract_and_the_planted_structure(pipeline_run):
    settings, *_ = pipeline_run
    codebook = load_codebook(DEMO_RAW / "codebook.yaml")
    for wave in WAVES:
        folder = settings.processed_dir / wave
        scores = pd.read_parquet(folder / "scale_scores.parquet")
        responses = pd.read_parquet(folder / "responses.parquet")
        assert len(scores) == len(responses)
        assert list(scores.columns[:3]) == ["person_id", "company_id", "wave"]
        for scale in codebook.scales.values():
            low, high = scale.response_scale.min, scale.response_scale.max
            assert scores[scale.name].dropna().between(low, high).all()
            assert scores[f"{scale.name}_n_valid"].max() == len(scale.items)
        reliability = pd.read_csv(folder / "reliability.csv")
        assert list(reliability.columns) == [
            "scale", "n", "k", "alpha", "alpha_ci_low", "alpha_ci_high", "alpha_std",
            "omega_total", "mean_r", "bootstrap_seed", "note",
        ]  # fmt: skip
        assert reliability["note"].isna().all()  # every demo scale has 3 or more items
        # the generator simulates alpha between .70 and .85 (DOMAIN.md section 5)
        assert reliability["alpha"].between(0.70, 0.85).all(), reliability
        assert (reliability["alpha_ci_low"] < reliability["alpha"]).all()
        assert (reliability["alpha"] < reliability["alpha_ci_high"]).all()
        assert reliability["bootstrap_seed"].nunique() == len(codebook.scales)
        items = pd.read_csv(folder / "item_statistics.csv")
        assert len(items) == len(codebook.items)
        reversed_items = {i for s in codebook.scales.values() for i in s.reverse}
        assert set(items.loc[items["reversed"], "item"]) == reversed_items
        assert (items["r_drop"] > 0.3).all(), "reverse-keyed items were recoded before"


def test_alpha_check_warns_below_060():
    table = pd.DataFrame({"scale": ["LT", "RF"], "alpha": [0.81, 0.55]})
    result = alpha_at_least_060(reliability=table)
    assert not result.passed and result.severity == dg.AssetCheckSeverity.WARN
    assert result.metadata["below_060"].value == {"RF": 0.55}
    assert alpha_at_least_060(reliability=table.assign(alpha=0.7)).passed


def test_measurement_model_fits_the_planted_structure(pipeline_run):
    """The generator plants exactly this model (each item on its scale), so the CFA must fit; by
    the demo codebook's `cfa:` (FIML with MLR) every validated respondent counts, where complete
    rows are about a third of them."""
    settings, *_ = pipeline_run
    codebook = load_codebook(DEMO_RAW / "codebook.yaml")
    for wave in WAVES:
        folder = settings.processed_dir / wave
        fit = pd.read_csv(folder / "cfa_fit.csv").iloc[0]
        responses = pd.read_parquet(folder / "responses.parquet")
        assert (fit["estimator"], fit["missing"]) == ("MLR", "fiml")
        assert fit["n"] == len(responses) > 2 * responses[codebook.items].notna().all(axis=1).sum()
        # 741 covariances + 38 means - (112 free parameters + 38 intercepts), 38 items, 9 factors
        assert fit["df"] == 629
        assert fit["cfi_robust"] > 0.95 and fit["rmsea_robust"] < 0.05, fit
        assert fit["chisq_scaled"] == pytest.approx(fit["chisq"] / fit["scaling_factor"])
        loadings = pd.read_csv(folder / "cfa_loadings.csv")
        assert len(loadings) == len(codebook.items)
        assert loadings["std_loading"].between(0.4, 0.95).all()


def test_validity_evidence_rests_on_the_fit_and_the_scores(pipeline_run):
    """CR and AVE from the published loadings; the culture-outcome correlations equal a direct
    computation on the published scale scores and find the planted effect."""
    settings, *_ = pipeline_run
    codebook = load_codebook(DEMO_RAW / "codebook.yaml")
    folder = settings.processed_dir / WAVES[0]
    scales = pd.read_csv(folder / "validity_scales.csv").set_index("scale")
    loadings = pd.read_csv(folder / "cfa_loadings.csv")
    assert list(scales.index) == list(codebook.scales)
    for scale, group in loadings.groupby("factor"):
        squares = group["std_loading"] ** 2
        assert scales.loc[scale, "ave"] == pytest.approx(squares.mean())
        total = group["std_loading"].sum() ** 2
        assert scales.loc[scale, "cr"] == pytest.approx(total / (total + (1 - squares).sum()))
    pairs = pd.read_csv(folder / "validity_pairs.csv")
    assert len(pairs) == 9 * 8 // 2 and pairs["htmt"].between(0, 1).all()
    scores = pd.read_parquet(folder / "scale_scores.parquet")
    between = pairs[pairs["kind"] == "culture-outcome"]
    assert len(between) == 6 * 2
    for row in between.itertuples():
        both = scores[[row.scale_a, row.scale_b]].dropna()
        assert row.n == len(both)
        assert row.r == pytest.approx(both[row.scale_a].corr(both[row.scale_b]), abs=1e-12)
    assert (between["r"] > 0).all() and (between["r_lo"] > 0).mean() > 0.5


def test_group_invariance_tests_the_codebook_groups(pipeline_run, tmp_path):
    """The demo leaves `cfa.groups` out (its table says so); a codebook naming age_band gets its
    generalised groups, each of at least k respondents, under the levels and rules of the
    waves' invariance."""
    settings, *_ = pipeline_run
    responses = pd.read_parquet(settings.staging_dir / "reported_responses" / f"{WAVES[0]}.parquet")
    table = pd.read_csv(settings.processed_dir / WAVES[0] / "group_invariance.csv")
    assert len(table) == 1 and table["note"][0].startswith("no background variables named")
    raw = tmp_path / "raw"
    raw.mkdir()
    text = (DEMO_RAW / "codebook.yaml").read_text(encoding="utf-8")
    (raw / "codebook.yaml").write_text(
        text.replace("  # groups: [age_band]", "  groups: [age_band]")
    )
    scan = ScanConfig(data_dir=str(tmp_path), reports_dir=str(tmp_path / "reports"))
    table = group_invariance(scan=scan, reported_responses=responses).value
    k = scan.codebook().anonymisation.k
    assert set(table["variable"]) == {"age_band"}
    # the levels in order, a partial model after a rejected one (its suppressions, and so this
    # decision, depend on the panel: the linkage corrects typos since issue #19)
    levels = [model for model in table["model"] if "partial" not in model]
    assert levels == ["configural", "metric", "scalar"]
    groups = table["groups"][0].split("; ")
    assert {g.rsplit(" (", 1)[0] for g in groups} <= {"<35", "35-44", "45+"} and len(groups) > 1
    assert all(int(g.rsplit("(", 1)[1].rstrip(")")) >= k for g in groups)
    assert (table["estimator"] == "MLR").all() and table["cfi_robust"].notna().all()


def test_company_aggregates_find_the_planted_icc_and_hide_small_companies(pipeline_run):
    settings, *_ = pipeline_run
    for wave in WAVES:
        folder = settings.processed_dir / wave
        summary = pd.read_csv(folder / "aggregation.csv")
        assert list(summary["scale"]) == ["LT", "RF", "CL", "LL", "LS", "EN"]
        # the generator plants a company-level ICC(1) around .10 on the culture scales
        assert summary["icc1"].between(0.03, 0.25).all(), summary
        companies = pd.read_csv(folder / "company_scores.csv")
        scores = pd.read_parquet(folder / "scale_scores.parquet")
        sizes = scores.groupby("company_id")["LT"].count()
        lt = companies[companies["scale"] == "LT"].set_index("company_id")
        assert (lt["suppressed"] == (sizes.reindex(lt.index) < 5)).all()
        hidden = companies[companies["suppressed"]]
        values = ["n", "mean", "sd", "ci_low", "ci_high", "rwg"]
        assert hidden[values].isna().all().all() and len(hidden) > 0
        shown = companies[~companies["suppressed"]]
        assert (shown["n"] >= 5).all()
        assert ((shown["ci_low"] <= shown["mean"]) & (shown["mean"] <= shown["ci_high"])).all()


def test_invariance_across_waves_is_requested_once_all_waves_are_in_and_holds(pipeline_run):
    """The generator uses the same loadings and thresholds in every wave (only the latent means
    shift), so configural, metric and scalar invariance must all hold on the demo."""
    settings, results, automation = pipeline_run
    before, after = automation
    assert before.get_requested_partitions(measurement_invariance.key) == set()
    assert after.get_requested_partitions(measurement_invariance.key) == {None}
    assert results[ALL_WAVES].success
    table = pd.read_csv(settings.processed_dir / "all_waves" / "invariance.csv")
    assert list(table["model"]) == ["configural", "metric", "scalar"]
    assert list(table["decision"]) == ["baseline", "holds", "holds"]
    assert list(table["df"]) == [1887, 1945, 2003]  # 3 x 629 + 3 x (38 - 9) + 2 x 29 intercepts
    sizes = {w: pd.read_csv(settings.processed_dir / w / "cfa_fit.csv")["n"][0] for w in WAVES}
    assert table["groups"][0] == "; ".join(f"{w} ({n})" for w, n in sizes.items())
    assert table["n"][0] == sum(sizes.values())
    assert (table["cfi"] > 0.95).all() and (table["rmsea"] < 0.05).all()


def test_invariance_needs_two_waves(pipeline_run):
    settings, *_ = pipeline_run
    one = {WAVES[0]: pd.read_parquet(settings.processed_dir / WAVES[0] / "responses.parquet")}
    scan = ScanConfig(data_dir=str(settings.data_dir), reports_dir=str(settings.reports_dir))
    table = measurement_invariance(scan=scan, pseudonymised_responses=one).value
    assert list(table["model"]) == ["configural", "metric", "scalar"]
    assert (table["decision"] == "not estimable: needs 2 waves (1 in the data)").all()
    assert table["cfi"].isna().all() and table["groups"][0].startswith(f"{WAVES[0]} (")


def test_panel_invariance_fits_each_scale_over_the_linked_persons(pipeline_run):
    """Per scale one wide model over the waves: a person counts once, with every wave answered
    (FIML keeps those absent in a wave); the generator's loadings and intercepts are the same in
    every wave, so the configural model fits and scalar invariance holds for most scales (Chen's
    rule rejects a level now and then on a three-item scale's few df)."""
    settings, *_ = pipeline_run
    codebook = load_codebook(DEMO_RAW / "codebook.yaml")
    table = pd.read_csv(settings.processed_dir / ALL_WAVES / "longitudinal_invariance.csv")
    responses = pd.concat(
        (pd.read_parquet(settings.processed_dir / w / "responses.parquet") for w in WAVES),
        ignore_index=True,
    )
    assert list(table["scale"].unique()) == list(codebook.scales)
    assert (table[["estimator", "missing"]] == ["MLR", "fiml"]).all().all()
    for scale, rows in table.groupby("scale", sort=False):
        assert [m for m in rows["model"] if "partial" not in m] == [
            "configural",
            "metric",
            "scalar",
        ]
        items = responses[list(codebook.scales[scale].items)].notna().any(axis=1)
        persons = responses.loc[items, "person_id"].nunique()
        assert (rows["n"] == persons).all() and persons > items.groupby(
            responses["wave"]
        ).sum().max()
        per_wave = items.groupby(responses["wave"]).sum()
        assert rows["groups"].iloc[0] == "; ".join(f"{w} ({per_wave[w]})" for w in WAVES)
        configural = rows.iloc[0]
        assert configural["cfi_robust"] > 0.95 and configural["rmsea_robust"] < 0.06
    final = table.groupby("scale", sort=False)["decision"].last()
    assert (final.isin(["holds", "holds partially"])).mean() >= 2 / 3, final


def test_panel_invariance_needs_two_waves(pipeline_run):
    settings, *_ = pipeline_run
    one = {WAVES[0]: pd.read_parquet(settings.processed_dir / WAVES[0] / "responses.parquet")}
    scan = ScanConfig(data_dir=str(settings.data_dir), reports_dir=str(settings.reports_dir))
    table = longitudinal_invariance(scan=scan, pseudonymised_responses=one).value
    assert len(table) == 3 * len(scan.codebook().scales) and table["cfi"].isna().all()
    assert (table["decision"] == "not estimable: needs 2 waves (1 in the data)").all()


def test_measurement_model_fails_the_wave_naming_an_item_without_variance(pipeline_run):
    settings, *_ = pipeline_run
    responses = pd.read_parquet(settings.processed_dir / WAVES[0] / "responses.parquet")
    scan = ScanConfig(data_dir=str(settings.data_dir), reports_dir=str(settings.reports_dir))
    with pytest.raises(SingularCovariance, match=r"no variance in item\(s\) LT2"):
        list(measurement_model(scan=scan, pseudonymised_responses=responses.assign(LT2=3.0)))


def test_wave_models_find_the_planted_culture_effect(pipeline_run):
    """The generator makes each outcome depend on the company's and the person's culture (.35 on
    the latent composite, equal within and between companies) and gives the outcomes a small
    company share (ICC about .02). On the observed, noisy 1-5 scale scores the effect is spread
    over six correlated culture scales, so the test asks for what survives: the culture block
    matters (likelihood-ratio test), the within effects add up positive, and the ICC is small."""
    settings, *_ = pipeline_run
    for wave in WAVES:
        folder = settings.processed_dir / wave
        fits = pd.read_csv(folder / "multilevel_fit.csv").set_index("model")
        coefficients = pd.read_csv(folder / "multilevel.csv")
        assert list(fits.index) == ["SL/empty", "SL/full", "EM/empty", "EM/full"]
        assert not fits["blocking"].any() and fits["converged"].all()
        assert (fits["engine"] == "nested_lmm").all()
        for outcome in ("SL", "EM"):
            assert 0 <= fits.loc[f"{outcome}/empty", "icc"] < 0.06
            assert fits.loc[f"{outcome}/full", "lr_p"] < 0.001
            full = coefficients[coefficients["model"] == f"{outcome}/full"].set_index("term")
            assert full.loc[full.index.str.endswith("_within"), "estimate"].sum() > 0.2
            between = full["df_method"].str.contains("company level")
            assert set(full.index[between]) == {"Intercept"} | {
                f"{c}_between" for c in ("LT", "RF", "CL", "LL", "LS", "EN")
            }
            groups = fits.loc[f"{outcome}/full", "n_groups"]
            assert (full.loc[between, "df"] == groups - 7).all()  # companies - 6 means - 1


def test_longitudinal_models_find_the_planted_growth_and_the_panel(pipeline_run):
    settings, results, *_ = pipeline_run
    checks = {e.check_name: e.passed for e in results[ALL_WAVES].get_asset_check_evaluations()}
    assert checks == {
        "longitudinal_models_converged": True,
        "k_anonymity_across_waves": True,
        "trajectory_models_converged": True,
        "community_models_converged": True,
    }
    folder = settings.processed_dir / "all_waves"
    fits = pd.read_csv(folder / "multilevel_fit.csv").set_index("model")
    coefficients = pd.read_csv(folder / "multilevel.csv").set_index(["model", "term"])
    assert list(fits.index) == ["SL/longitudinal", "EM/longitudinal"]
    for model, fit in fits.iterrows():
        # the generator raises culture and outcomes by .15 latent SD per wave step
        wave = coefficients.loc[(model, "wave")]
        assert wave["ci_low"] > 0, wave
        # panel members are linked across waves, so persons are fewer than observations
        assert fit["n_persons"] < fit["n_obs"] and fit["var_person"] > 0
        assert fit["n_groups"] == 40 and not fit["blocking"]


def test_the_catalog_carries_each_stored_tables_hash_rows_and_columns(pipeline_run):
    settings, results, _ = pipeline_run
    events = [
        event
        for stage in (f"validate/{WAVES[0]}", WAVES[0])
        for event in results[stage].get_asset_materialization_events()
    ]
    stored = {
        e.asset_key.to_user_string(): e.step_materialization_data.materialization.metadata
        for e in events
    }
    reliability = stored["reliability"]
    path = settings.processed_dir / WAVES[0] / "reliability.csv"
    assert reliability["sha256"].value == sha256_file(path)
    table = pd.read_csv(path)
    assert reliability["dagster/row_count"].value == len(table)
    schema = reliability["dagster/column_schema"].value
    assert [c.name for c in schema.columns] == list(table.columns)
    assert stored["raw_responses"]["sha256"].value == sha256_file(
        settings.staging_dir / "raw_responses" / f"{WAVES[0]}.parquet"
    )
    # every materialization's file stays, by content, when a later run overwrites it
    for metadata in stored.values():
        if "version" in metadata:
            kept = Path(metadata["version"].value)
            assert kept.name == metadata["sha256"].value + kept.suffix
            assert sha256_file(kept) == metadata["sha256"].value
