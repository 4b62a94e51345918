"""Rendering reports: deterministic HTML and PDF, long tables, figures with alt text, Chromium."""

import hashlib
import re
from pathlib import Path

import matplotlib.image
import pandas as pd
import pypdf
import pytest
from browser import run_chromium

from pipeline import figures
from pipeline.render import REPORTS_DIR, render_report

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


@pytest.mark.parametrize(
    "draw",
    [
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
        lambda path: figures.radar_chart(["A", "B", "C"], [3.5, 4.0, 2.5], [3.2, 3.6, 3.1], path),
        lambda path: figures.bar_chart_alternative(
            ["A", "B", "C"], [3.5, 4.0, 2.5], [3.2, 3.6, 3.1], path
        ),
        lambda path: figures.distribution_plot([3.1, 3.4, 2.9, 3.8], "Mean", path, marker=3.4),
    ],
    ids=["coefficient", "radar", "bars", "distribution"],
)
def test_figures_are_deterministic_with_alt_text(draw, tmp_path):
    first, second = draw(tmp_path / "a.png"), draw(tmp_path / "b.png")
    assert first.path.read_bytes() == second.path.read_bytes()
    assert first.path.read_bytes().startswith(b"\x89PNG")
    assert first.alt == second.alt and len(first.alt) > 40


def test_missing_placeholder_names_the_template(tmp_path):
    with pytest.raises(ValueError, match=r"wave\.qmd: '\w+' is undefined"):
        render_report(REPORTS_DIR / "wave.qmd", {"wave": "2026"}, tmp_path, "x", engine="pandoc")
    assert not list(tmp_path.iterdir())
