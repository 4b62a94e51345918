"""Rendering reports: deterministic HTML and PDF, long tables, figures with alt text, Chromium."""

import hashlib
import io
import re
from pathlib import Path

import matplotlib
import matplotlib.image
import numpy as np
import pandas as pd
import PIL.Image
import pypdf
import pytest
import typst
from browser import run_chromium

from pipeline.reporting import figures
from pipeline.reporting.render import REPORTS_DIR, render_report, render_reports

N_ROWS = 120
TEMPLATE = """\
---
title: "Render test"
lang: en
---

## Numbers

There were {{ n_respondents }} respondents.

{{ long_table }}

: A long table {#tbl-long}

## Figures

{{ figure(coef, "Fixed effects") }}

{{ figure(dist, "Company means", width="80%") }}
"""


def row_value(i: int) -> str:
    return f"{i * 1.25 + 0.003:.3f}"


def long_table() -> str:
    rows = [f"| item {i} | {row_value(i)} |" for i in range(1, N_ROWS + 1)]
    return "\n".join(["| Item | Value |", "|:--|--:|", *rows])


def make_figures(folder: Path) -> dict:
    coefs = pd.DataFrame(
        {
            "term": ["Intercept", "Leadership", "Company size"],
            "estimate": [3.12, 0.31, -0.08],
            "ci_low": [2.95, 0.12, -0.21],
            "ci_high": [3.29, 0.50, 0.05],
        }
    )
    means = [3.1, 3.4, 2.9, 3.8, 3.3, 3.0, 3.5, 3.6, 3.2, 2.7]
    return {
        "coef": figures.coefficient_plot(coefs, folder / "coef.png"),
        "dist": figures.distribution_plot(means, "Mean learning climate", folder / "dist.png"),
    }


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """The test document rendered twice, into two folders, from the same inputs."""
    root = tmp_path_factory.mktemp("render")
    template = root / "test.qmd"
    template.write_text(TEMPLATE, encoding="utf-8")
    context = {"n_respondents": 4321, "long_table": long_table(), **make_figures(root)}
    runs = [
        render_report(template, context, root / name, "report", engine="pandoc")
        for name in ("first", "second")
    ]
    return context, runs


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_rendering_twice_gives_identical_files(rendered):
    _, (first, second) = rendered
    assert [f.format for f in first.files] == ["html", "pdf"]
    for a, b in zip(first.files, second.files, strict=True):
        assert a.path != b.path
        assert sha256(a.path) == sha256(b.path) == a.sha256 == b.sha256
    assert first.source_sha256 == second.source_sha256
    assert re.fullmatch(
        r"pandoc 3\.\S+ \(pypandoc-binary \S+\) \+ typst \S+ \(typst-py \S+\)", first.engine
    )


def pdf_pages(rendered) -> list[str]:
    _, (first, _) = rendered
    pdf = next(f.path for f in first.files if f.format == "pdf")
    return [page.extract_text() for page in pypdf.PdfReader(pdf).pages]


def test_pdf_long_table_breaks_across_pages(rendered):
    pages = pdf_pages(rendered)
    assert len(pages) > 1
    assert "4321" in pages[0]
    assert row_value(1) in pages[0]
    last_row_page = next(i for i, text in enumerate(pages) if row_value(N_ROWS) in text)
    assert last_row_page > 0
    assert "Company means" in pages[-1]


def test_pdf_uses_only_project_fonts(rendered):
    _, (first, _) = rendered
    pdf = pypdf.PdfReader(next(f.path for f in first.files if f.format == "pdf"))
    fonts = {
        str(font.get_object()["/BaseFont"]).split("+")[-1]
        for page in pdf.pages
        for font in page["/Resources"].get("/Font", {}).values()
    }
    assert fonts and all(name.startswith("DejaVu") for name in fonts), fonts


def alt_texts(pdf: Path) -> list[str]:
    """The alt texts of the PDF's tags (its structure tree), in document order."""
    found = []

    def walk(node):
        node = node.get_object()
        if isinstance(node, pypdf.generic.ArrayObject):
            for kid in node:
                walk(kid)
        elif isinstance(node, pypdf.generic.DictionaryObject):
            if "/Alt" in node:
                found.append(str(node["/Alt"]))
            if "/K" in node:
                walk(node["/K"])

    walk(pypdf.PdfReader(pdf).trailer["/Root"]["/StructTreeRoot"])
    return found


def test_pdf_figures_carry_their_alt_text(rendered):
    context, (first, _) = rendered
    pdf = next(f.path for f in first.files if f.format == "pdf")
    assert alt_texts(pdf) == [context["coef"].alt, context["dist"].alt]


def test_alt_text_with_quotes_and_backslashes_reaches_the_pdf(tmp_path):
    template = tmp_path / "alt.qmd"
    template.write_text('{{ figure(chart, "A chart") }}\n', encoding="utf-8")
    chart = make_figures(tmp_path)["dist"]._replace(alt='Means "3,1" to 3\\8 (a \\"test")')
    (rendered,) = render_report(template, {"chart": chart}, tmp_path, "alt", ["pdf"]).files
    assert alt_texts(rendered.path) == [chart.alt]


def html_of(rendered) -> str:
    _, (first, _) = rendered
    return next(f.path for f in first.files if f.format == "html").read_text(encoding="utf-8")


def test_html_is_self_contained_with_alt_text(rendered):
    context, _ = rendered
    html = html_of(rendered)
    assert re.search(r'<html[^>]* lang="en"', html)
    assert not re.search(r'(src|href)="(?!data:|#)', html), "external or local reference"
    assert "url(http" not in html and "@import" not in html
    images = re.findall(r"<img [^>]*>", html)
    assert len(images) == 2
    assert all('src="data:image/png;base64,' in img for img in images)
    for key in ("coef", "dist"):
        assert f'alt="{context[key].alt}"' in html
    assert "4321" in html and row_value(N_ROWS) in html


def test_html_in_headless_chromium(rendered, chromium, tmp_path):
    _, (first, _) = rendered
    html = next(f.path for f in first.files if f.format == "html")
    screenshot, printed = tmp_path / "shot.png", tmp_path / "printed.pdf"
    logs = run_chromium(
        chromium,
        html,
        tmp_path / "profile",
        f"--screenshot={screenshot}",
        "--window-size=1000,1400",
        "--hide-scrollbars",
    )
    logs += run_chromium(
        chromium,
        html,
        tmp_path / "profile",
        f"--print-to-pdf={printed}",
        "--no-pdf-header-footer",
    )
    # The report has no scripts, so any console message at all is a problem.
    assert not [line for line in logs.splitlines() if ":CONSOLE" in line]

    pixels = matplotlib.image.imread(screenshot)
    assert pixels.shape[:2] == (1400, 1000)
    assert pixels[..., :3].std() > 0.05, "screenshot looks blank"

    text = "".join(page.extract_text() for page in pypdf.PdfReader(printed).pages)
    assert "4321" in text and row_value(1) in text and row_value(N_ROWS) in text


DIMENSIONS = ["A", "B", "C"]
NAMES = ("Company", "Benchmark", "Mean score")


@pytest.mark.parametrize(
    ("draw", "suffix"),
    [
        (
            lambda path: figures.coefficient_plot(
                pd.DataFrame(
                    {
                        "term": ["a", "b"],
                        "estimate": [0.2, -0.1],
                        "ci_low": [0.0, -0.3],
                        "ci_high": [0.4, 0.1],
                    }
                ),
                path,
            ),
            ".png",
        ),
        (
            lambda path: figures.radar_chart(DIMENSIONS, [3.5, 4, 2.5], [3.2, 3.6, 3.1], path),
            ".svg",
        ),
        (
            lambda path: figures.bar_chart_alternative(
                DIMENSIONS, [3.5, 4.0, 2.5], [3.2, 3.6, 3.1], path
            ),
            ".svg",
        ),
        (lambda path: figures.distribution_plot([3.1, 3.4, 2.9, 3.8], "Mean", path, 3.4), ".svg"),
    ],
    ids=["coefficient", "radar", "bars", "distribution"],
)
def test_figures_are_deterministic_with_alt_text(draw, suffix, tmp_path):
    first, second = draw(tmp_path / f"a{suffix}"), draw(tmp_path / f"b{suffix}")
    assert first.path.read_bytes() == second.path.read_bytes()
    assert first.path.read_bytes().startswith(b"\x89PNG" if suffix == ".png" else b"<?xml")
    assert first.alt == second.alt and len(first.alt) > 40


@pytest.mark.parametrize("chart", [figures.radar_chart, figures.bar_chart_alternative])
def test_reused_profile_chart_writes_what_a_fresh_one_writes(chart, tmp_path):
    figures._radar_figure.cache_clear()
    figures._bar_figure.cache_clear()
    first = chart(DIMENSIONS, [3.5, 4.0, 2.5], [3.2, 3.6, 3.1], tmp_path / "first.svg")
    reused = chart(DIMENSIONS, [2.0, 4.5, 3.0], [3.0, 3.5, 4.0], tmp_path / "reused.svg")
    figures._radar_figure.cache_clear()
    figures._bar_figure.cache_clear()
    fresh = chart(DIMENSIONS, [2.0, 4.5, 3.0], [3.0, 3.5, 4.0], tmp_path / "fresh.svg")
    assert reused.path.read_bytes() == fresh.path.read_bytes()
    assert reused.path.read_bytes() != first.path.read_bytes()
    svg = fresh.path.read_text(encoding="utf-8")
    ids = re.findall(r' id="([^"]+)"', svg)
    assert len(ids) == len(set(ids)), "an id repeats"
    with pytest.raises(ValueError, match="SVG only"):
        chart(DIMENSIONS, [2.0, 4.5, 3.0], [3.0, 3.5, 4.0], tmp_path / "chart.png")


def raster(svg: Path) -> np.ndarray:
    """The SVG as gray pixels, drawn by typst."""
    page = f'#set page(width: auto, height: auto, margin: 0pt)\n#image("{svg}")'
    png = typst.compile(page.encode(), root="/", format="png", ppi=100)
    return np.asarray(PIL.Image.open(io.BytesIO(png)).convert("L"), dtype=int)


@pytest.mark.parametrize(
    ("chart", "figure"),
    [
        (
            figures.radar_chart,
            lambda: figures._radar_figure(("A", "B", "C"), (1, 5), NAMES[:2], "."),
        ),
        (
            figures.bar_chart_alternative,
            lambda: figures._bar_figure(("A", "B", "C"), (1, 5), NAMES, "."),
        ),
    ],
    ids=["radar", "bars"],
)
def test_layered_chart_looks_like_the_whole_figure(chart, figure, tmp_path):
    """The fixed layers drawn once with the data between them = the figure drawn in one go,
    pixel for pixel."""
    layered = chart(DIMENSIONS, [3.5, 5.0, 2.5], [3.2, 3.6, 1.0], tmp_path / "layered.svg", (1, 5))
    cached = figure()[0]
    for artist in cached.fixed:
        artist.set_visible(True)
    with matplotlib.rc_context(figures.STYLE):
        cached.fig.savefig(tmp_path / "whole.svg", format="svg")
    figures._radar_figure.cache_clear()
    figures._bar_figure.cache_clear()
    whole, drawn = raster(tmp_path / "whole.svg"), raster(layered.path)
    assert whole.shape == drawn.shape and whole.std() > 10
    assert np.abs(whole - drawn).max() <= 8


def test_missing_placeholder_names_the_template(tmp_path):
    with pytest.raises(ValueError, match=r"wave\.qmd: '\w+' is undefined"):
        render_report(REPORTS_DIR / "wave.qmd", {"wave": "2026"}, tmp_path, "x", engine="pandoc")
    assert not list(tmp_path.iterdir())


def test_batch_gives_the_files_of_single_rendering(rendered, tmp_path):
    context, (single, _) = rendered
    template = single.files[0].path.parent.parent / "test.qmd"
    other = {**context, "n_respondents": 1234}
    batch = render_reports(template, {"report": context, "other": other}, tmp_path, engine="pandoc")
    alone = render_report(template, other, tmp_path / "alone", "other", engine="pandoc")
    assert [f.sha256 for f in batch["report"].files] == [f.sha256 for f in single.files]
    assert [f.sha256 for f in batch["other"].files] == [f.sha256 for f in alone.files]
    assert batch["other"].files[0].sha256 != batch["report"].files[0].sha256
    assert "1234" in (tmp_path / "other.html").read_text(encoding="utf-8")
    assert {f.path for r in batch.values() for f in r.files} == set(tmp_path.glob("*.*"))


def test_layers_refuse_values_drawn_over_the_legend():
    fig, ax = figures._new_figure(4.0, 3.0)
    (line,) = ax.plot([1, 2], [1, 2], zorder=10, label="over")
    ax.legend()
    with pytest.raises(ValueError, match="below its spines, legend and titles"):
        figures._layered(fig, [line])
