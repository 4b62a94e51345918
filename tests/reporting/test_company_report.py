"""Company feedback reports: who gets one, and that no hidden number reaches the document."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from pipeline.instrument.codebook import Codebook, load_codebook
from pipeline.psychometrics.aggregation import COMPANY_COLUMNS, company_table
from pipeline.reporting.company_report import (
    BENCHMARK_MIN_COMPANIES,
    CHANGE_MIN_N,
    NO_CULTURE,
    NO_OUTCOMES,
    NUMBER_COLUMNS,
    ScaleResult,
    company_contexts,
    previous_wave,
    render_company_reports,
    report_numbers,
    scale_bounds,
    scale_table,
)
from pipeline.reporting.render import REPORTS_DIR, fill_template, render_report

CODEBOOK_PATH = Path(__file__).resolve().parents[2] / "data" / "raw" / "codebook.yaml"
CODEBOOK = load_codebook(CODEBOOK_PATH)
K = CODEBOOK.anonymisation.k
CULTURE = [n for n, s in CODEBOOK.scales.items() if s.level == "culture"]
TEMPLATE = REPORTS_DIR / "company.qmd"
T0, T1 = "2019-T0", "2021-T1"


def frames(wave: str, groups: list[tuple[str, int, str | None, float]]):
    """scale_scores and responses: per group (company, n, leader, score) n respondents whose
    scores on every scale average `score` (pairs at score -/+ 0.5, an odd one at score)."""
    people = []
    for company, n, leader, score in groups:
        deltas = [(-0.5 if i % 2 == 0 else 0.5) for i in range(n - n % 2)] + [0.0] * (n % 2)
        people += [(company, leader, score + d) for d in deltas]
    ids = [f"p_{wave}_{i}" for i in range(len(people))]
    base = {
        "person_id": ids,
        "company_id": [p[0] for p in people],
        "wave": wave,
    }
    scores = pd.DataFrame(base)
    for name, scale in CODEBOOK.scales.items():
        scores[name] = [p[2] for p in people]
        scores[f"{name}_n_valid"] = len(scale.items)
    responses = pd.DataFrame({**base, "leader": pd.array([p[1] for p in people], dtype="string")})
    return scores, responses


def company_scores(scores: pd.DataFrame) -> pd.DataFrame:
    """As the scores asset writes company_scores.csv (intervals clipped to the scale)."""
    return pd.concat(
        [
            company_table(scores, s, "company_id", K, bounds=scale_bounds(CODEBOOK, s))
            for s in CULTURE
        ]
    )


def contexts(wave, groups, figures_dir, earlier=None):
    """The report contexts per company, from the numbers the asset would store, and the
    number of companies without a report."""
    scores, responses = frames(wave, groups)
    tables = {**(earlier or {}), wave: company_scores(scores)}
    numbers = report_numbers(wave, scores, responses, tables, CODEBOOK)
    without = scores["company_id"].nunique() - numbers["company_id"].nunique()
    return company_contexts(numbers, wave, CODEBOOK, figures_dir), without


def text(context: dict) -> str:
    return fill_template(TEMPLATE, context)


def absent(document: str, *values: float) -> bool:
    """None of `values` appears with two decimals, with a decimal comma or point."""
    return not any(f"{v:.2f}".replace(".", sep) in document for v in values for sep in ",.")


SIX = [
    (f"c_{c}", 6, None, s) for c, s in zip("abcdef", [2.0, 3.2, 3.4, 3.6, 3.8, 4.0], strict=True)
]


def test_only_companies_with_k_respondents_get_a_report(tmp_path):
    groups = [*SIX, ("c_small", K - 1, None, 3.0), ("c_one", 1, None, 3.0)]
    result, without = contexts(T0, groups, tmp_path)
    assert sorted(result) == [f"c_{c}" for c in "abcdef"]
    assert without == 2
    assert result["c_a"]["n_respondents"] == 6
    # the small companies enter no benchmark: c_a's is the mean of the other five
    assert "3,60" in text(result["c_a"])


def test_benchmark_hidden_with_fewer_than_five_other_companies(tmp_path):
    result, _ = contexts(T0, SIX[:5], tmp_path)
    document = text(result["c_a"])
    assert absent(document, 3.5)  # the mean of the other four
    assert "minstens 5 andere bedrijven" in document
    assert result["c_a"]["radar"] is None and result["c_a"]["bars"] is None
    assert "2,00" in document  # the company's own mean is still shown


def test_change_hidden_when_either_wave_has_fewer_than_ten(tmp_path):
    before, _ = frames(
        T0, [("c_a", 12, None, 3.1), ("c_b", 8, None, 2.17), ("c_c", 12, None, 2.29)]
    )
    now = [("c_a", 12, None, 3.4), ("c_b", 12, None, 3.0), ("c_c", 8, None, 3.0)]
    result, _ = contexts(T1, now, tmp_path, {T0: company_scores(before)})
    assert "+0,30" in result["c_a"]["change_table"]
    for company, hidden in [("c_b", 2.17), ("c_c", 2.29)]:
        assert result[company]["change_table"] == ""
        assert "minstens 10 antwoorden" in result[company]["change_note"]
        assert absent(text(result[company]), hidden, 3.0 - hidden)


def test_the_stored_numbers_are_the_reported_ones_and_blank_where_hidden(tmp_path):
    before, _ = frames(T0, [("c_a", 12, None, 3.1), ("c_b", 8, None, 2.17)])
    # the two small companies hide 6 scores together: none of the others needs hiding too
    now = [
        ("c_a", 12, "ja", 3.4),
        ("c_b", 12, None, 3.0),
        ("c_small", K - 1, None, 3.0),
        ("c_tiny", 2, None, 3.0),
    ]
    scores, responses = frames(T1, now)
    tables = {T0: company_scores(before), T1: company_scores(scores)}
    numbers = report_numbers(T1, scores, responses, tables, CODEBOOK).set_index(
        ["company_id", "scale"]
    )
    assert set(numbers.index.get_level_values(0)) == {"c_a", "c_b"}  # none for the small ones
    reported = [n for n, s in CODEBOOK.scales.items() if s.level in ("culture", "outcome")]
    assert len(numbers) == 2 * len(reported)
    lt = numbers.loc[("c_a", "LT")]
    assert (lt["previous_wave"], lt["previous_mean"]) == (T0, 3.1)
    assert lt["change"] == pytest.approx(0.3)
    assert numbers.loc[("c_b", "LT"), ["previous_mean", "change"]].isna().all()  # 8 before
    assert numbers["benchmark"].isna().all()  # one other company, not five
    assert numbers["management_staff_gap"].isna().all()  # c_a has no staff group
    document = text(company_contexts(numbers.reset_index(), T1, CODEBOOK, tmp_path)["c_a"])
    assert f"`company_report_numbers[{T1}](c_a,LT).<kolom>`" in document
    assert "+0,30" in document and "3,10" in document


def test_first_wave_and_previous_wave_skipping_a_missing_one(tmp_path):
    result, _ = contexts(T0, [("c_a", 12, None, 3.1)], tmp_path)
    assert "eerste meting" in result["c_a"]["change_note"]
    tables = {T0: pd.DataFrame(), "2022-T2": pd.DataFrame()}
    assert previous_wave("2022-T2", tables, CODEBOOK) == T0
    assert previous_wave(T0, tables, CODEBOOK) is None


def test_each_report_states_the_data_version_of_its_numbers_and_waves(tmp_path):
    """A hash over the company's numbers and the waves they hold: the same numbers give the
    same version; a wave compared with, or another number, another."""
    first, _ = contexts(T0, SIX, tmp_path / "a")
    again, _ = contexts(T0, SIX, tmp_path / "b")
    moved, _ = contexts(T0, [*SIX[:-1], ("c_f", 6, None, 4.1)], tmp_path / "c")
    earlier = {T0: company_scores(frames(T0, SIX)[0])}
    later, _ = contexts(T1, SIX, tmp_path / "d", earlier)
    version = first["c_b"]["data_version"]
    assert len(version) == 12 and int(version, 16) >= 0
    assert again["c_b"]["data_version"] == version
    assert len({c["data_version"] for c in first.values()}) == len(first)
    assert moved["c_f"]["data_version"] != first["c_f"]["data_version"]
    assert moved["c_b"]["data_version"] != version  # its benchmark moved with c_f
    assert first["c_b"]["data_waves"] == "2019-T0"
    assert later["c_b"]["data_waves"] == "2019-T0 en 2021-T1"
    assert later["c_b"]["data_version"] != version
    assert f"Gegevensversie `{version}`, gemaakt uit de gegevens van meting 2019" in text(
        first["c_b"]
    )


def test_management_staff_gap_hidden_below_k_and_no_group_mean_shown(tmp_path):
    groups = [
        *SIX[1:],
        ("c_few", K - 1, "ja", 1.63),
        ("c_few", 10, "nee", 4.11),
        ("c_both", K, "ja", 2.37),
        ("c_both", K + 1, "nee", 3.59),
        ("c_both", 2, None, 3.0),
    ]
    result, _ = contexts(T0, groups, tmp_path)
    few = text(result["c_few"])
    assert result["c_few"]["management_staff_table"] == ""
    assert absent(few, 1.63, 4.11, 4.11 - 1.63)
    both = text(result["c_both"])
    assert "-1,22" in result["c_both"]["management_staff_table"]
    assert absent(both, 2.37, 3.59)


def test_figures_have_alt_text_and_rendered_html_shows_the_mean(tmp_path):
    result, _ = contexts(T0, SIX, tmp_path / "figures")
    context = result["c_b"]
    for kind in ("radar", "bars"):
        path, alt = context[kind]
        assert path.is_file() and path.parent == tmp_path / "figures" and path.suffix == ".svg"
        assert "c_b" in path.name and "uw bedrijf 3,20" in alt
    assert context["radar"].path != result["c_a"]["radar"].path
    rendered = render_report(
        TEMPLATE, context, tmp_path / "out", "c_b", formats=("html",), engine="pandoc"
    )
    html = rendered.files[0].path.read_text(encoding="utf-8")
    assert "3,20" in html
    assert 'lang="nl"' in html
    assert "uw bedrijf 3,20" in html  # the alt text


def test_labels_are_escaped_in_tables():
    table = scale_table([ScaleResult("a|b*", 3.0, (2.5, 3.5), None)], "Dimensie")
    assert table.splitlines()[2].startswith("| a\\|b\\* | 3,00 | 2,50 tot 3,50 | – | – |")


def test_reports_are_the_same_however_the_companies_are_shared_out(tmp_path):
    scores, responses = frames(T0, SIX)
    numbers = report_numbers(T0, scores, responses, {T0: company_scores(scores)}, CODEBOOK)
    one = render_company_reports(numbers, T0, CODEBOOK, tmp_path / "one", workers=1)
    two = render_company_reports(numbers, T0, CODEBOOK, tmp_path / "two", workers=2)
    assert sorted(one) == sorted(two) == [f"c_{c}" for c in "abcdef"]
    for company, report in one.items():
        assert [f.format for f in report.files] == ["html", "pdf"]
        for a, b in zip(report.files, two[company].files, strict=True):
            assert a.path.read_bytes() == b.path.read_bytes()
            assert a.sha256 == b.sha256
    html = (tmp_path / "one" / "c_b.html").read_text(encoding="utf-8")
    assert html.count('src="data:image/svg+xml;base64,') == 2
    assert html.count('alt="Webdiagram. ') == 1 and html.count('alt="Staafdiagram. ') == 1
    assert len({r.files[0].sha256 for r in one.values()}) == len(one)


def test_numbers_match_their_definition_company_by_company():
    """The table is computed for all companies at once; per company it is the rule: the
    benchmark averages the other companies' shown means, the change needs CHANGE_MIN_N in both
    waves, the gap k managers and k staff."""
    rng = np.random.default_rng(3)
    sizes = rng.integers(1, 25, 40)
    before_groups = [
        (f"c_{i:02d}", int(n), None, 3.0 + rng.normal(0, 0.4)) for i, n in enumerate(sizes)
    ]
    groups = [
        (f"c_{i:02d}", int(n), leader, 3.0 + rng.normal(0, 0.4))
        for i, size in enumerate(rng.integers(1, 25, 40))
        for leader, n in [("ja", size // 3), ("nee", size - size // 3)]
        if n
    ]
    before = company_scores(frames(T0, before_groups)[0])
    scores, responses = frames(T1, groups)
    now = company_scores(scores)
    numbers = report_numbers(T1, scores, responses, {T0: before, T1: now}, CODEBOOK)
    scale = CULTURE[0]
    table = now[now["scale"] == scale].set_index("company_id")
    earlier = before[before["scale"] == scale].set_index("company_id")
    rows = numbers[numbers["scale"] == scale].set_index("company_id")
    for company, row in rows.iterrows():
        others = table["mean"].drop(company).dropna()
        expected = others.mean() if len(others) >= BENCHMARK_MIN_COMPANIES else np.nan
        assert row["benchmark"] == pytest.approx(expected, rel=1e-12, nan_ok=True)
        assert row["benchmark_companies"] == len(others)
        n_now = 0 if table.loc[company, "suppressed"] else table.loc[company, "n"]
        shown_before = company in earlier.index and not earlier.loc[company, "suppressed"]
        n_before = earlier.loc[company, "n"] if shown_before else 0
        if min(n_now, n_before) >= CHANGE_MIN_N:
            expected = table.loc[company, "mean"] - earlier.loc[company, "mean"]
            assert row["change"] == pytest.approx(expected, rel=1e-12)
        else:
            assert np.isnan(row["change"])
        own = scores[scores["company_id"] == company].assign(leader=responses["leader"])
        groups_n = own["leader"].value_counts()
        if min(groups_n.get("ja", 0), groups_n.get("nee", 0)) >= K:
            by = own.groupby("leader")[scale].mean()
            assert row["management_staff_gap"] == pytest.approx(by["ja"] - by["nee"], rel=1e-12)
        else:
            assert np.isnan(row["management_staff_gap"])
    assert rows["benchmark"].notna().any() and rows["change"].notna().any()
    assert rows["management_staff_gap"].notna().any() and rows["change"].isna().any()


def without_levels(tmp_path, levels: list[str]) -> Codebook:
    """The demo codebook with its scales of `levels` made `level: individual`; its models are
    the defaults, which follow the levels."""
    raw = yaml.safe_load(CODEBOOK_PATH.read_text(encoding="utf-8"))
    for scale in raw["scales"].values():
        if scale["level"] in levels:
            scale["level"] = "individual"
    raw["models"] = {"controls": raw["models"]["controls"]}
    path = tmp_path / "codebook.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return load_codebook(path)


@pytest.mark.parametrize("levels", [["culture"], ["outcome"], ["culture", "outcome"]])
def test_without_culture_or_outcome_scales_the_report_says_why(tmp_path, levels):
    codebook = without_levels(tmp_path, levels)
    culture = [n for n, s in codebook.scales.items() if s.level == "culture"]
    before, now = frames(T0, SIX)[0], frames(T1, SIX)
    tables = {  # as the scores asset writes company_scores.csv, empty without culture scales
        w: pd.concat([company_table(t, c, "company_id", K) for c in culture])
        if culture
        else pd.DataFrame(columns=COMPANY_COLUMNS)
        for w, t in [(T0, before), (T1, now[0])]
    }
    numbers = report_numbers(T1, *now, tables, codebook)
    if len(levels) == 2:  # nothing to report to a company: no reports
        assert numbers.empty and list(numbers.columns) == list(NUMBER_COLUMNS)
        assert render_company_reports(numbers, T1, codebook, tmp_path / "out", 1) == {}
        return
    document = text(company_contexts(numbers, T1, codebook, tmp_path / "figures")["c_b"])
    left_out = ["## Leercultuur vergeleken", "## Sterke punten", "## Verandering", "Dimensie"]
    left_out += ["## Leidinggevenden"]
    if levels == ["outcome"]:
        left_out, kept = ["| Opbrengst |"], left_out[:-1]
    else:
        kept = ["| Opbrengst |"]
    assert (NO_CULTURE if levels == ["culture"] else NO_OUTCOMES) in document
    assert all(heading not in document for heading in left_out)
    assert all(heading in document for heading in kept)
    assert "3,20" in document  # c_b's own mean, on the scales there are
    assert ("**Verandering.**" in document) == (levels == ["outcome"])  # rules of absent parts


def test_without_a_management_role_the_section_and_its_rule_are_left_out(tmp_path):
    raw = yaml.safe_load(CODEBOOK_PATH.read_text(encoding="utf-8"))
    del raw["management"]
    path = tmp_path / "codebook.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), encoding="utf-8")
    codebook = load_codebook(path)
    groups = [*SIX[1:], ("c_both", K, "ja", 2.37), ("c_both", K + 1, "nee", 3.59)]
    scores, responses = frames(T0, groups)
    numbers = report_numbers(T0, scores, responses, {T0: company_scores(scores)}, codebook)
    assert numbers["management_staff_gap"].isna().all()
    document = text(company_contexts(numbers, T0, codebook, tmp_path)["c_both"])
    assert "Leidinggevenden" not in document and "leidinggevenden" not in document
    with_role, _ = contexts(T0, groups, tmp_path)
    assert "## Leidinggevenden en medewerkers" in text(with_role["c_both"])
