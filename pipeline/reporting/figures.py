"""Report figures in one style that reads in black and white, written byte-identically.

Every function writes one figure, PNG or SVG as the path's suffix says, and returns
`FigureFile(path, alt)`: the alt text describes the data so a reader without the image loses
nothing. Grays, hatches, line styles and markers carry the distinctions, never colour alone. The
font is the project's DejaVu Sans (reports/fonts); SVG draws text as paths, so it needs no font.
Files are written without the software/date metadata and SVG ids are salted hashes, so the same
data gives the same bytes (for a given matplotlib version).

Numbers follow the report's language: each function takes the `decimal` separator of the report
it goes into ("." by default, "," for the Dutch reports), and its axes (`DecimalFormatter`) and
alt text (`format_number`) write "3,5" where its report's tables do.

The company profile charts (radar and bars; SVG only) are built once per process for a set of
dimensions, laid out once, and what does not change with the company is drawn once, in two
layers: the background (axes, grid, tick labels) below the values, and the spines, legend and
titles above them; each company's chart then draws only its values between the two. Layout and
layers do not depend on the values (the axes limits are the fixed scale), so a reused figure
writes the same bytes as a fresh one.
"""

import functools
import io
import re
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import matplotlib
import numpy as np
import pandas as pd
from matplotlib import font_manager
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, ScalarFormatter

from pipeline.lineage.files import write_atomic
from pipeline.lineage.settings import REPORTS_DIR

FONTS_DIR = REPORTS_DIR / "fonts"
DPI = 150
INK = "#1a1a1a"
MID_GRAY = "#6e6e6e"
LIGHT_GRAY = "#d0d0d0"

STYLE = {
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.edgecolor": INK,
    "axes.labelcolor": INK,
    "axes.titlesize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "axes.axisbelow": True,
    "grid.color": LIGHT_GRAY,
    "grid.linewidth": 0.6,
    "xtick.color": INK,
    "ytick.color": INK,
    "text.color": INK,
    "legend.frameon": False,
    "savefig.dpi": DPI,
    "savefig.facecolor": "white",
    "figure.facecolor": "white",
    "svg.hashsalt": "leercultuurscan",
}


class FigureFile(NamedTuple):
    path: Path
    alt: str


def _register_fonts() -> None:
    for font in sorted(FONTS_DIR.glob("*.ttf")):
        font_manager.fontManager.addfont(str(font))


_register_fonts()


def _new_figure(width: float, height: float, **subplot) -> tuple[Figure, object]:
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(width, height), layout="constrained")
        return fig, fig.add_subplot(**subplot)


# Per format, the metadata that would vary with the time or the software.
METADATA = {"png": {"Software": None}, "svg": {"Date": None, "Creator": None}}


def _save(fig: Figure, path: Path) -> Path:
    fmt = path.suffix.lstrip(".")
    if fmt not in METADATA:
        raise ValueError(f"{path}: figures are written as {sorted(METADATA)}")
    with matplotlib.rc_context(STYLE):
        write_atomic(path, lambda tmp: fig.savefig(tmp, format=fmt, metadata=METADATA[fmt]))
    return path


class _Layered(NamedTuple):
    """A figure whose artists that stay the same are drawn once, as SVG, below and above the
    artists that change with each save (`_save_layered`)."""

    fig: Figure
    below: str  # the background (axes, grid, tick labels): an SVG document without its end tag
    above: str  # spines, legend and titles: SVG elements, drawn over the values
    fixed: tuple  # the artists in `below` and `above`, hidden once drawn


def _layered(fig: Figure, values: Sequence) -> _Layered:
    """Lay `fig` out once (constrained), draw what stays the same in two layers, then hide it.

    The background is what matplotlib draws first: the figure and axes patches and the axes
    (ticks, labels, grid; below the data as `axes.axisbelow` is set). The `values` artists
    (what each save changes) draw next, then everything else (spines, legend, titles), as
    their z-order says; so the three layers stacked draw what the whole figure draws.
    """
    fig.draw_without_rendering()
    fig.set_layout_engine(None)
    below = [fig.patch, *[a for ax in fig.axes for a in (ax.patch, ax.xaxis, ax.yaxis)]]
    children = [a for a in fig.get_children() if a not in fig.axes]
    children += [a for ax in fig.axes for a in ax.get_children()]
    above = [a for a in children if a.get_visible() and a not in below and a not in values]
    if max(a.get_zorder() for a in values) >= min(a.get_zorder() for a in above):
        raise ValueError("a figure's values must draw below its spines, legend and titles")

    def drawn(shown: list) -> str:
        for artist in [*below, *values, *above]:
            artist.set_visible(any(artist is a for a in shown))
        return _svg(fig)

    background, overlay = drawn(below), drawn(above)
    for artist in values:
        artist.set_visible(True)
    for artist in above:
        artist.set_visible(False)
    return _Layered(
        fig, background[: background.rindex("</svg>")], _body(overlay, "above-"), (*below, *above)
    )


def _svg(fig: Figure) -> str:
    with matplotlib.rc_context(STYLE):
        out = io.StringIO()
        fig.savefig(out, format="svg", metadata=METADATA["svg"])
        return out.getvalue()


def _body(svg: str, prefix: str) -> str:
    """The elements of an SVG document, with `prefix` before its ids (and the references to
    them), so that they can join another document's without an id repeating."""
    body = svg[svg.index("</metadata>") + len("</metadata>") : svg.rindex("</svg>")]
    return re.sub(r'( id="|href="#|url\(#)', rf"\1{prefix}", body)


def _save_layered(layered: _Layered, path: Path) -> Path:
    """The figure's values drawn between its two fixed layers, as one SVG."""
    if path.suffix != ".svg":
        raise ValueError(f"{path}: this figure is written as SVG only")
    svg = layered.below + _body(_svg(layered.fig), "top-") + layered.above + "</svg>\n"
    write_atomic(path, lambda tmp: tmp.write_text(svg, encoding="utf-8"))
    return path


def format_number(x: float, decimal: str = ".", digits: int = 2) -> str:
    """`x` with `digits` decimals and `decimal` as the decimal separator (alt texts)."""
    return f"{x:.{digits}f}".replace(".", decimal)


class DecimalFormatter(ScalarFormatter):
    """matplotlib's default tick labels, with `decimal` as the decimal separator (no offset:
    every label shows its own value)."""

    def __init__(self, decimal: str = "."):
        super().__init__(useOffset=False, useMathText=False, useLocale=False)
        self.decimal = decimal

    def __call__(self, x, pos=None) -> str:
        return super().__call__(x, pos).replace(".", self.decimal)

    def get_offset(self) -> str:
        return super().get_offset().replace(".", self.decimal)


def _decimal_ticks(axis, decimal: str) -> None:
    """Number the `axis` (an x or y axis, or a polar r axis) with `decimal` as separator."""
    axis.set_major_formatter(DecimalFormatter(decimal))


def _require_columns(table: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"{what}: table lacks column(s) {missing}; expected {list(columns)}")


def coefficient_plot(
    table: pd.DataFrame, path: Path, title: str = "", decimal: str = "."
) -> FigureFile:
    """Point estimates with confidence-interval bars, one row per term.

    `table` has columns term, estimate, ci_low, ci_high (in that order top to bottom).
    """
    _require_columns(table, ["term", "estimate", "ci_low", "ci_high"], "coefficient_plot")
    rows = table.reset_index(drop=True)
    y = np.arange(len(rows))[::-1]
    with matplotlib.rc_context(STYLE):
        fig, ax = _new_figure(6.0, 0.45 * len(rows) + 1.0)
        estimate = rows["estimate"].to_numpy(float)
        ax.errorbar(
            estimate,
            y,
            xerr=[
                estimate - rows["ci_low"].to_numpy(float),
                rows["ci_high"].to_numpy(float) - estimate,
            ],
            fmt="o",
            color=INK,
            ecolor=MID_GRAY,
            elinewidth=1.5,
            capsize=3,
        )
        ax.axvline(0, color=INK, linewidth=0.8, linestyle="--")
        _decimal_ticks(ax.xaxis, decimal)
        ax.set_yticks(y, rows["term"])
        ax.grid(axis="y", visible=False)
        ax.set_xlabel("Estimate with 95% confidence interval")
        if title:
            ax.set_title(title)
    num = functools.partial(format_number, decimal=decimal)
    terms = "; ".join(
        f"{r.term}: {num(r.estimate)} (95% CI {num(r.ci_low)} to {num(r.ci_high)})"
        for r in rows.itertuples()
    )
    alt = f"Coefficient plot of {len(rows)} terms with 95% confidence intervals. {terms}."
    return FigureFile(_save(fig, path), alt)


def _check_profile(dimensions: Sequence[str], company, benchmark) -> None:
    if not len(dimensions) == len(company) == len(benchmark):
        raise ValueError(
            f"dimensions ({len(dimensions)}), company ({len(company)}) and benchmark "
            f"({len(benchmark)}) must have the same length"
        )


def _profile_alt(kind: str, dimensions, company, benchmark, scale, decimal: str) -> str:
    pairs = "; ".join(
        f"{d}: company {format_number(c, decimal)}, benchmark {format_number(b, decimal)}"
        for d, c, b in zip(dimensions, company, benchmark, strict=True)
    )
    return (
        f"{kind} of {len(dimensions)} culture dimensions on a {scale[0]} to {scale[1]} scale, "
        f"company compared with the benchmark. {pairs}."
    )


def _closed(values: Sequence[float]) -> np.ndarray:
    """The values with the first repeated at the end, closing the radar polygon."""
    return np.append(values, values[0])


@functools.lru_cache(maxsize=8)
def _radar_figure(
    dimensions: tuple[str, ...],
    scale: tuple[float, float],
    names: tuple[str, str],
    decimal: str = ".",
):
    """The radar chart laid out for `dimensions`, and its benchmark line, company line and
    company area, which `radar_chart` gives each company's values."""
    angles = np.linspace(0, 2 * np.pi, len(dimensions), endpoint=False)
    closed = _closed(angles)
    middle = _closed(np.full(len(dimensions), (scale[0] + scale[1]) / 2))
    with matplotlib.rc_context(STYLE):
        fig, ax = _new_figure(5.5, 5.0, projection="polar")
        ax.set_theta_offset(np.pi / 2)
        ax.set_theta_direction(-1)
        (benchmark,) = ax.plot(closed, middle, "--", marker="s", color=INK, label=names[1])
        (company,) = ax.plot(closed, middle, "-", marker="o", color=INK, label=names[0])
        (area,) = ax.fill(closed, middle, color=LIGHT_GRAY, alpha=0.5)
        ax.set_xticks(angles, dimensions)
        ax.set_ylim(*scale)
        _decimal_ticks(ax.yaxis, decimal)
        ax.legend(loc="upper right", bbox_to_anchor=(1.15, 1.1))
        return _layered(fig, [benchmark, company, area]), benchmark, company, area


def radar_chart(
    dimensions: Sequence[str],
    company: Sequence[float],
    benchmark: Sequence[float],
    path: Path,
    scale: tuple[float, float] = (1, 5),
    names: tuple[str, str] = ("Company", "Benchmark"),
    decimal: str = ".",
) -> FigureFile:
    """Company profile (solid line, circles) against the benchmark (dashed line, squares);
    `names` labels the two in the legend and `decimal` separates the decimals of the scale's
    numbers (both in the report's language)."""
    _check_profile(dimensions, company, benchmark)
    layered, benchmark_line, company_line, area = _radar_figure(
        tuple(dimensions), tuple(scale), tuple(names), decimal
    )
    benchmark_line.set_ydata(_closed(benchmark))
    company_line.set_ydata(_closed(company))
    area.set_xy(np.column_stack([company_line.get_xdata(), _closed(company)]))
    alt = _profile_alt("Radar chart", dimensions, company, benchmark, scale, decimal)
    return FigureFile(_save_layered(layered, path), alt)


@functools.lru_cache(maxsize=8)
def _bar_figure(
    dimensions: tuple[str, ...],
    scale: tuple[float, float],
    names: tuple[str, str, str],
    decimal: str = ".",
):
    """The bar chart laid out for `dimensions`, and its company and benchmark bars, whose
    widths `bar_chart_alternative` sets to each company's values."""
    y = np.arange(len(dimensions))[::-1]
    height = 0.38
    middle = np.full(len(dimensions), (scale[0] + scale[1]) / 2)
    with matplotlib.rc_context(STYLE):
        fig, ax = _new_figure(6.0, 0.6 * len(dimensions) + 1.0)
        company = ax.barh(
            y + height / 2, middle, height, color=MID_GRAY, edgecolor=INK, label=names[0]
        )
        benchmark = ax.barh(
            y - height / 2,
            middle,
            height,
            color="white",
            edgecolor=INK,
            hatch="///",
            label=names[1],
        )
        ax.set_yticks(y, dimensions)
        ax.set_xlim(*scale)
        _decimal_ticks(ax.xaxis, decimal)
        ax.grid(axis="y", visible=False)
        ax.set_xlabel(f"{names[2]} ({scale[0]:g}-{scale[1]:g})")
        ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncols=2)
        return _layered(fig, [*company, *benchmark]), company, benchmark


def bar_chart_alternative(
    dimensions: Sequence[str],
    company: Sequence[float],
    benchmark: Sequence[float],
    path: Path,
    scale: tuple[float, float] = (1, 5),
    names: tuple[str, str, str] = ("Company", "Benchmark", "Mean score"),
    decimal: str = ".",
) -> FigureFile:
    """The radar chart's data as horizontal bars: company solid gray, benchmark hatched;
    `names` labels them and the axis, `decimal` separates the decimals of the axis's numbers
    (in the report's language)."""
    _check_profile(dimensions, company, benchmark)
    layered, company_bars, benchmark_bars = _bar_figure(
        tuple(dimensions), tuple(scale), tuple(names), decimal
    )
    for bars, values in [(company_bars, company), (benchmark_bars, benchmark)]:
        for bar, value in zip(bars, values, strict=True):
            bar.set_width(value)
    alt = _profile_alt("Bar chart", dimensions, company, benchmark, scale, decimal)
    return FigureFile(_save_layered(layered, path), alt)


def distribution_plot(
    values: Sequence[float],
    label: str,
    path: Path,
    marker: float | None = None,
    decimal: str = ".",
) -> FigureFile:
    """Histogram of company means; `marker` draws one value (e.g. "your company") as a line.

    No company is named or labelled: only the distribution (and the optional marker) is shown.
    """
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        raise ValueError(f"distribution_plot: no values for {label!r}")
    with matplotlib.rc_context(STYLE):
        fig, ax = _new_figure(6.0, 3.2)
        ax.hist(data, bins="auto", color=LIGHT_GRAY, edgecolor=INK)
        if marker is not None:
            ax.axvline(marker, color=INK, linewidth=2, linestyle="--", label="Your company")
            ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        _decimal_ticks(ax.xaxis, decimal)
        ax.set_xlabel(label)
        ax.set_ylabel("Number of companies")
        ax.grid(axis="x", visible=False)
    num = functools.partial(format_number, decimal=decimal)
    alt = (
        f"Histogram of {label} over {data.size} companies: minimum {num(data.min())}, "
        f"median {num(float(np.median(data)))}, maximum {num(data.max())}."
    )
    if marker is not None:
        alt += f" A dashed line marks your company at {num(marker)}."
    return FigureFile(_save(fig, path), alt)
