"""Honest small-sample reporting: a company of exactly k = 5 respondents.

Its 95% intervals stay inside the answer scale (in the stored numbers and in the report, which
says so), a strength or point for improvement is named only where the difference is larger than
its uncertainty (and the report states that rule), the figures write numbers with the report's
decimal comma, and long ids and hashes can wrap in the PDF and HTML.
"""

import hashlib
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties, findfont, get_font

from pipeline.instrument.codebook import load_codebook
from pipeline.psychometrics.aggregation import company_aggregates
from pipeline.reporting import figures
from pipeline.reporting.company_report import (
    DECIMAL,
    STRENGTHS_RULE,
    company_contexts,
    render_company_reports,
    report_numbers,
    scale_bounds,
)
from pipeline.reporting.render import REPORTS_DIR, fill_template

CODEBOOK_PATH = Path(__file__).resolve().parents[2] / "data" / "raw" / "codebook.yaml"
CODEBOOK = load_codebook(CODEBOOK_PATH)
K = CODEBOOK.anonymisation.k
CULTURE = [n for n, s in CODEBOOK.scales.items() if s.level == "culture"]
OUTCOMES = [n for n, s in CODEBOOK.scales.items() if s.level == "outcome"]
TEMPLATE = REPORTS_DIR / "company.qmd"
WAVE = "2019-T0"
FIVE = "c_five"
# The company of five, per culture scale in turn: a clear strength (4.8, interval clipped at the
# top), a gap of 0.8 inside its wide interval, a clear point for improvement (1.4, clipped at
# the bottom), a gap of 0.2 inside its interval; then again. Outcome scales: the first pattern.
PATTERNS = [
    [5, 5, 5, 5, 4],
    [3, 4, 5, 4, 3],
    [1, 2, 1, 2, 1],
    [3, 3, 4, 3, 3],
]
OTHERS = [2, 3, 4, 3, 3, 3]  # each of the other companies: mean 3.0 on every scale
INTERVAL = re.compile(r"(\d+,\d\d) tot (\d+,\d\d)")


def pattern(scale: str) -> list[float]:
    order = [*CULTURE, *OUTCOMES]
    return PATTERNS[order.index(scale) % len(PATTERNS)] if scale in order else [3] * K


def frames(five: str = FIVE) -> tuple[pd.DataFrame, pd.DataFrame]:
    """scale_scores and responses of one wave: the company of five (`five`) and five other
    companies of six respondents, each scoring OTHERS on every scale."""
    companies = [(five, K)] + [(f"c_other{i}", len(OTHERS)) for i in range(5)]
    rows = [(company, i) for company, n in companies for i in range(n)]
    base = {
        "person_id": [f"p_{j}" for j in range(len(rows))],
        "company_id": [company for company, _ in rows],
        "wave": WAVE,
    }
    scores = pd.DataFrame(base)
    for name, scale in CODEBOOK.scales.items():
        own = pattern(name)
        scores[name] = [float(own[i] if c == five else OTHERS[i]) for c, i in rows]
        scores[f"{name}_n_valid"] = len(scale.items)
    leader = pd.array(["nee"] * len(rows), dtype="string")
    return scores, pd.DataFrame({**base, "leader": leader})


def stored_company_scores(scores: pd.DataFrame) -> pd.DataFrame:
    """company_scores as the scores asset stores it: every culture scale with its items (here
    each item answered as the scale score), intervals clipped to the response scale's range."""
    items = {i: scores[s] for s in CULTURE for i in CODEBOOK.scales[s].items}
    frame = pd.concat([scores[["company_id", *CULTURE]], pd.DataFrame(items)], axis=1)
    response = {s: CODEBOOK.scales[s].response_scale for s in CULTURE}
    companies, _ = company_aggregates(
        frame,
        {s: list(CODEBOOK.scales[s].items) for s in CULTURE},
        "company_id",
        K,
        {s: r.max - r.min + 1 for s, r in response.items()},
        {s: (r.min, r.max) for s, r in response.items()},
    )
    return companies


@pytest.fixture(scope="module")
def numbers() -> pd.DataFrame:
    assert K == 5, "the demo codebook's k; the company of five is a company of exactly k"
    scores, responses = frames()
    return report_numbers(WAVE, scores, responses, {WAVE: stored_company_scores(scores)}, CODEBOOK)


@pytest.fixture(scope="module")
def context(numbers, tmp_path_factory) -> dict:
    figures_dir = tmp_path_factory.mktemp("figures")
    return company_contexts(numbers, WAVE, CODEBOOK, figures_dir)[FIVE]


def value(text: str) -> float:
    return float(text.replace(",", "."))


def test_a_company_of_five_gets_a_report_with_a_benchmark(numbers):
    five = numbers[numbers["company_id"] == FIVE]
    assert (five["n_respondents"] == K).all()
    assert five["benchmark"].notna().all()
    assert five["benchmark"].to_numpy() == pytest.approx(3.0)


def test_stored_intervals_never_leave_the_scale(numbers):
    for row in numbers.itertuples():
        low, high = scale_bounds(CODEBOOK, row.scale)
        assert low <= row.ci_low <= row.mean <= row.ci_high <= high, row
    five = numbers[numbers["company_id"] == FIVE].set_index("scale")
    first, third = CULTURE[0], CULTURE[2]
    # 4.8 with sd 0.45: the t interval would reach 5.36; 1.4 with sd 0.55: down to 0.72
    assert five.loc[first, "ci_high"] == 5.0 and five.loc[first, "ci_low"] == pytest.approx(
        4.8 - 2.7764451 * np.std([5, 5, 5, 5, 4], ddof=1) / np.sqrt(5), abs=1e-6
    )
    assert five.loc[third, "ci_low"] == 1.0 and five.loc[third, "ci_high"] < 2.2


def test_company_scores_store_the_intervals_the_report_shows(numbers):
    scores, _ = frames()
    stored = stored_company_scores(scores).set_index(["company_id", "scale"])
    shown = numbers.set_index(["company_id", "scale"]).loc[stored.index]
    for column in ("mean", "ci_low", "ci_high"):
        np.testing.assert_allclose(stored[column].astype(float), shown[column], rtol=0, atol=1e-12)


def test_the_report_shows_only_intervals_inside_the_scale_and_says_so(context):
    document = fill_template(TEMPLATE, context)
    intervals = INTERVAL.findall(document)
    assert len(intervals) >= len(CULTURE) + len(OUTCOMES)
    low, high = scale_bounds(CODEBOOK, CULTURE[0])
    for a, b in intervals:
        assert low <= value(a) <= value(b) <= high, (a, b)
    assert ("4,24", "5,00") in intervals  # clipped at the top, as stored
    assert "Een interval loopt nooit buiten de schaal" in " ".join(document.split())


def section(document: str, title: str) -> str:
    return document.split(f"## {title}")[1].split("\n## ")[0]


def test_strengths_are_named_only_outside_their_uncertainty_and_the_rule_is_stated(
    context, numbers
):
    document = fill_template(TEMPLATE, context)
    text = section(document, "Sterke punten en verbeterpunten")
    assert STRENGTHS_RULE in text
    strengths, improvements = text.split("**Verbeterpunten**")
    five = numbers[numbers["company_id"] == FIVE].set_index("scale")
    named = {"strength": [], "improvement": []}
    for scale in CULTURE:
        row = five.loc[scale]
        label = CODEBOOK.scales[scale].label
        clear = row["benchmark"] < row["ci_low"] or row["benchmark"] > row["ci_high"]
        in_strengths, in_improvements = f"**{label}**" in strengths, f"**{label}**" in improvements
        if not clear:
            assert not in_strengths and not in_improvements, (scale, row)
        if in_strengths:
            assert row["ci_low"] > row["benchmark"], (scale, row)
            named["strength"].append(scale)
        if in_improvements:
            assert row["ci_high"] < row["benchmark"], (scale, row)
            named["improvement"].append(scale)
    # the clear gaps (patterns 0 and 2) are named; the gaps of 0.8 and 0.2 inside are not
    assert named == {"strength": CULTURE[0::4], "improvement": CULTURE[2::4]}
    gap_inside = CODEBOOK.scales[CULTURE[1]].label
    assert five.loc[CULTURE[1], "gap"] == pytest.approx(0.8) and gap_inside not in text
    assert "uw bedrijf scoort 4,80 (95%-interval 4,24 tot 5,00), dat is 1,80 hoger" in text


def test_without_a_clear_gap_no_dimension_is_named(tmp_path):
    """Every culture scale a gap of at most 0.8 inside the interval: none is named."""
    scores, responses = frames()
    five = scores["company_id"] == FIVE
    for scale in CULTURE:
        scores.loc[five, scale] = [3, 4, 5, 4, 3]
    tables = {WAVE: stored_company_scores(scores)}
    numbers = report_numbers(WAVE, scores, responses, tables, CODEBOOK)
    text = company_contexts(numbers, WAVE, CODEBOOK, tmp_path)[FIVE]["strengths_text"]
    assert STRENGTHS_RULE in text
    assert "geen enkele dimensie scoort uw bedrijf duidelijk hoger" in text
    assert "geen enkele dimensie scoort uw bedrijf duidelijk lager" in text
    assert not any(f"**{CODEBOOK.scales[s].label}**" in text for s in CULTURE)


def test_random_companies_of_five_never_name_a_gap_inside_its_interval(tmp_path):
    rng = np.random.default_rng(11)
    scores, responses = frames()
    five = scores["company_id"] == FIVE
    named = 0
    for _ in range(6):
        for scale in CULTURE:
            centre = rng.integers(1, 6)  # answers around a level anywhere on the scale
            scores.loc[five, scale] = np.clip(centre + rng.integers(-1, 2, K), 1, 5).astype(float)
        tables = {WAVE: stored_company_scores(scores)}
        numbers = report_numbers(WAVE, scores, responses, tables, CODEBOOK)
        rows = numbers[numbers["company_id"] == FIVE].set_index("scale")
        text = company_contexts(numbers, WAVE, CODEBOOK, tmp_path)[FIVE]["strengths_text"]
        for scale in CULTURE:
            if f"**{CODEBOOK.scales[scale].label}**" in text:
                named += 1
                row = rows.loc[scale]
                assert not row["ci_low"] <= row["benchmark"] <= row["ci_high"], row
    assert named >= 5  # some gaps were clear enough, others were not
    assert named < 6 * len(CULTURE)


def glyph_id(char: str) -> str:
    """The id matplotlib gives a character's glyph in an SVG: font name and glyph index."""
    font = get_font(findfont(FontProperties(family=figures.STYLE["font.family"])))
    return f"{font.postscript_name}-{font.get_char_index(ord(char)):x}"


def test_figures_write_the_reports_decimal_separator(context):
    assert DECIMAL == "," and "\nlang: nl\n" in TEMPLATE.read_text(encoding="utf-8")
    ax = Figure().add_subplot()
    ax.set_xlim(1, 5)
    ax.set_xticks([1.0, 1.5, 4.5])
    ax.xaxis.set_major_formatter(figures.DecimalFormatter(DECIMAL))
    ax.figure.draw_without_rendering()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1,0", "1,5", "4,5"]
    assert figures.format_number(3.456, DECIMAL) == "3,46"
    # SVG text is drawn as glyph paths, each used by reference to its id
    comma, point = f'href="#{glyph_id(",")}"', f'href="#{glyph_id(".")}"'
    for kind in ("radar", "bars"):
        svg = context[kind].path.read_text(encoding="utf-8")
        assert comma in svg and point not in svg, kind
    # the same chart for an English report writes points
    english = figures.bar_chart_alternative(
        ["A", "B", "C"], [3.5, 4.0, 2.5], [3.2, 3.6, 3.1], context["bars"].path.with_name("en.svg")
    )
    svg = english.path.read_text(encoding="utf-8")
    assert point in svg and comma not in svg


def test_the_radar_and_bar_ticks_are_numbered_with_a_decimal_comma():
    dims = tuple(CODEBOOK.scales[s].label for s in CULTURE)
    layered = figures._radar_figure(dims, (1, 5), ("Uw bedrijf", "Andere bedrijven"), DECIMAL)[0]
    bars = figures._bar_figure(dims, (1, 5), ("a", "b", "c"), DECIMAL)[0]
    radar_ticks = [t.get_text() for t in layered.fig.axes[0].yaxis.get_ticklabels()]
    bar_ticks = [t.get_text() for t in bars.fig.axes[0].xaxis.get_ticklabels()]
    for ticks in (radar_ticks, bar_ticks):
        assert any("," in t for t in ticks) and not any("." in t for t in ticks), ticks


def long_id() -> str:
    """A company pseudonym as long as a sha256."""
    return "c_" + hashlib.sha256(b"a long pseudonym").hexdigest()


def words(pdf: Path) -> list[tuple[float, float, str]]:
    """(xMax, page width, word) of every word of the PDF, by poppler's pdftotext."""
    html = subprocess.run(
        ["pdftotext", "-bbox", str(pdf), "-"], capture_output=True, text=True, check=True
    ).stdout
    pages = [float(w) for w in re.findall(r'<page width="([\d.]+)"', html)]
    found = re.findall(r'<word xMin="[\d.]+" yMin="[\d.]+" xMax="([\d.]+)"[^>]*>([^<]*)<', html)
    return [(float(x), max(pages), w) for x, w in found]


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="poppler's pdftotext is missing")
def test_long_ids_and_hashes_wrap_inside_the_page(tmp_path):
    company = long_id()
    scores, responses = frames(company)
    tables = {WAVE: stored_company_scores(scores)}
    numbers = report_numbers(WAVE, scores, responses, tables, CODEBOOK)
    numbers = numbers[numbers["company_id"] == company]
    first = render_company_reports(numbers, WAVE, CODEBOOK, tmp_path / "first", workers=1)
    again = render_company_reports(numbers, WAVE, CODEBOOK, tmp_path / "again", workers=1)
    for a, b in zip(first[company].files, again[company].files, strict=True):
        assert a.path.read_bytes() == b.path.read_bytes()  # byte-identical for the same inputs
    pdf = tmp_path / "first" / f"{company}.pdf"
    right_margin = 2.2 / 2.54 * 72  # TYPST_METADATA's margin, in points
    found = words(pdf)
    assert found
    for x_max, width, word in found:  # typst hangs a closing period or hyphen into the margin
        assert x_max <= width - right_margin + 4, f"{word!r} runs off the page ({x_max} pt)"
    text = subprocess.run(
        ["pdftotext", "-raw", str(pdf), "-"], capture_output=True, text=True, check=True
    ).stdout
    assert "\u200b" not in text and "ci_high" in text  # nothing added to the PDF's text
    flat = re.sub(r"\s+", "", text)  # the ids wrapped, and read back whole
    assert f"company_report_numbers[{WAVE}]({company},{CULTURE[0]}).<kolom>" in flat
    assert f"({company})" in flat  # the title's hash wrapped too
    html = (tmp_path / "first" / f"{company}.html").read_text(encoding="utf-8")
    assert "overflow-wrap: anywhere" in html and company in html
