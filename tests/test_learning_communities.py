"""Learning communities on the demo, end to end: a report per community big enough and none for
the small one, the planted difference recovered by the numbers and the model, and each number of
a community report traced to the raw files."""

import json
import re

import numpy as np
import pandas as pd
from conftest import DEMO_RAW, WAVES, scan

from pipeline.ingest.communities import members_in
from pipeline.instrument.codebook import load_codebook
from pipeline.reporting.communities import shown_companies

SCALES = {s for s, scale in load_codebook(DEMO_RAW / "codebook.yaml").scales.items()
          if scale.level in ("culture", "outcome")}  # fmt: skip
TRUTH = json.loads((DEMO_RAW / "_demo_truth" / "truth.json").read_text())["communities"]


def expected(wave: str) -> set[str]:
    return {c for c, t in TRUTH["communities"].items() if wave in t["reportable_waves"]}


def test_a_report_per_community_big_enough_and_none_for_the_small_one(pipeline_run):
    settings = pipeline_run.settings
    small = [c for c, t in TRUTH["communities"].items() if not t["reportable_by_design"]]
    assert len(small) == 1 and TRUTH["communities"][small[0]]["size"] < 5
    for wave in WAVES:
        folder = settings.reports_dir / wave / "communities"
        assert {p.stem for p in folder.glob("*.html")} == expected(wave)
        assert {p.stem for p in folder.glob("*.pdf")} == expected(wave)
        listed = pd.read_csv(settings.processed_dir / wave / "community_reports.csv")
        assert set(listed["community_id"]) == expected(wave)
        numbers = pd.read_csv(settings.processed_dir / wave / "community_numbers.csv")
        # all communities together minus the others would be the small one: not published
        assert set(numbers["community_id"]) == expected(wave)
        # every culture and outcome scale has its figures: members have k scores on each
        means = numbers[(numbers["table"] == "scales") & (numbers["statistic"] == "mean")]
        assert means["value"].notna().all() and set(means["row"]) == set(SCALES)
    name = TRUTH["communities"][small[0]]["name"]
    shareable = [*settings.processed_dir.rglob("*.csv"), *settings.reports_dir.rglob("*.html")]
    assert not [p for p in shareable if name in p.read_text(encoding="utf-8", errors="ignore")]


def test_the_numbers_recover_the_planted_difference(pipeline_run):
    """Each community against the companies outside it, per culture scale and wave: the truth's
    member-minus-other difference, diluted by the members of the other communities among the
    companies outside (by companies: close enough at an SE near 0.08, from company intercepts
    of about 0.25 over some 20 companies each side), and growing over the waves."""
    settings = pipeline_run.settings
    codebook = load_codebook(settings.codebook_path)
    culture = [s for s, scale in codebook.scales.items() if scale.level == "culture"]
    members = pd.read_parquet(settings.staging_dir / "community_members" / "all.parquet")
    gaps = {}
    for wave in WAVES:
        numbers = pd.read_csv(settings.processed_dir / wave / "community_numbers.csv")
        scores = pd.read_parquet(settings.processed_dir / wave / "scale_scores.parquet")
        current = members_in(members, wave, list(codebook.waves))
        found, planted = [], []
        for (community, scale), part in numbers[numbers["row"].isin(culture)].groupby(
            ["community_id", "row"]
        ):
            value = part.set_index("statistic")["value"]
            shown = set(shown_companies(scores, scale, codebook.anonymisation.k)["company_id"])
            own = set(current.loc[current["community_id"] == community, "company_id"])
            others = len((set(current["company_id"]) - own) & shown)
            diluted = 1 - others / value["outside_companies"]
            found.append(value["mean"] - value["outside_mean"])
            planted.append(TRUTH["expected_observed_difference"][wave][scale] * diluted)
        gaps[wave] = np.mean(found)
        assert abs(gaps[wave] - np.mean(planted)) < 0.15, (wave, gaps[wave], np.mean(planted))
    assert gaps[WAVES[-1]] > gaps[WAVES[0]] > 0


def test_the_model_recovers_the_planted_growth(pipeline_run):
    folder = pipeline_run.settings.processed_dir / "all_waves"
    effects = pd.read_csv(folder / "community_effects.csv")
    growth = effects[effects["term"] == "community_growth"].set_index("model")
    truth = {f"{s}/community": v for s, v in TRUTH["expected_observed_growth"].items()}
    assert set(growth.index) == set(truth)
    covered = [growth.loc[m, "ci_low"] <= v <= growth.loc[m, "ci_high"] for m, v in truth.items()]
    assert np.mean(covered) >= 0.75, growth[["estimate", "ci_low", "ci_high"]]
    culture = [f"{s}/community" for s in TRUTH["expected_observed_level"]]
    assert (growth.loc[culture, "estimate"] > 0).all(), growth["estimate"]  # planted 0.15 SD
    fit = pd.read_csv(folder / "community_fit.csv")
    assert fit["notes"].str.contains("fixed effect").all() and not fit["blocking"].any()


def test_scan_trace_follows_a_number_of_a_community_report_to_the_raw_file(scan_run):
    data, reports, home, _ = scan_run
    wave = WAVES[-1]
    community = sorted(expected(wave))[0]
    html = (reports / wave / "communities" / f"{community}.html").read_text()
    number = re.search(r"<code>(community_numbers\[[^<&]+\.value)</code>", html).group(1)
    assert number == f"community_numbers[{wave}]({community},scales,LT,mean).value"
    done = scan("--data-dir", str(data), "trace", number, home=home, cwd=data.parent)
    assert done.returncode == 0, done.stderr
    value = float(done.stdout.splitlines()[0].split(" = ")[1])
    assert f"{value:.2f}".replace(".", ",") in html
    for asset in ("community_members", "community_register", "scale_scores", "raw_responses"):
        assert f"  {asset}[" in done.stdout
