"""Report figures in one style that reads in black and white, written byte-identically.

Every function writes one PNG and returns `FigureFile(path, alt)`: the alt text describes the
data so a reader without the image loses nothing. Grays, hatches, line styles and markers carry
the distinctions, never colour alone. The font is the project's DejaVu Sans (reports/fonts).
PNGs are written without the Software/date metadata, so the same data gives the same bytes
(for a given matplotlib version).
"""

from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import matplotlib
import numpy as np
import pandas as pd
from matplotlib import font_manager
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from pipeline.files import write_atomic

FONTS_DIR = Path(__file__).resolve().parent.parent / "reports" / "fonts"
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


def _save(fig: Figure, path: Path) -> Path:
    with matplotlib.rc_context(STYLE):
        write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", metadata={"Software": None}))
    return path


def _num(x: float) -> str:
    return f"{x:.2f}"


def _require_columns(table: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"{what}: table lacks column(s) {missing}; expected {list(columns)}")


def coefficient_plot(table: pd.DataFrame, path: Path, title: str = "") -> FigureFile:
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
        ax.set_yticks(y, rows["term"])
        ax.grid(axis="y", visible=False)
        ax.set_xlabel("Estimate with 95% confidence interval")
        if title:
            ax.set_title(title)
    terms = "; ".join(
        f"{r.term}: {_num(r.estimate)} (95% CI {_num(r.ci_low)} to {_num(r.ci_high)})"
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


def _profile_alt(kind: str, dimensions, company, benchmark, scale) -> str:
    pairs = "; ".join(
        f"{d}: company {_num(c)}, benchmark {_num(b)}"
        for d, c, b in zip(dimensions, company, benchmark, strict=True)
    )
    return (
        f"{kind} of {len(dimensions)} culture dimensions on a {scale[0]} to {scale[1]} scale, "
        f"company compared with the benchmark. {pairs}."
    )


def radar_chart(
    dimensions: Sequence[str],
    company: Sequence[float],
    benchmark: Sequence[float],
    path: Path,
    scale: tuple[float, float] = (1, 5),
    names: tuple[str, str] = ("Company", "Benchmark"),
) -> FigureFile:
    """Company profile (solid line, circles) against the benchmark (dashed line, squares);
    `names` labels the two in the legend (in the report's language)."""
    _check_profile(dimensions, company, benchmark)
    angles = np.linspace(0, 2 * np.pi, len(dimensions), endpoint=False)
    closed = np.append(angles, angles[0])
    with matplotlib.rc_context(STYLE):
        fig, ax = _new_figure(5.5, 5.0, projection="polar")
        ax.set_theta_offset(np.pi / 2)
        ax.set_theta_direction(-1)
        for values, style, marker, label in [
            (benchmark, "--", "s", names[1]),
            (company, "-", "o", names[0]),
        ]:
            ax.plot(
                closed, np.append(values, values[0]), style, marker=marker, color=INK, label=label
            )
        ax.fill(closed, np.append(company, company[0]), color=LIGHT_GRAY, alpha=0.5)
        ax.set_xticks(angles, dimensions)
        ax.set_ylim(*scale)
        ax.legend(loc="upper right", bbox_to_anchor=(1.15, 1.1))
    alt = _profile_alt("Radar chart", dimensions, company, benchmark, scale)
    return FigureFile(_save(fig, path), alt)


def bar_chart_alternative(
    dimensions: Sequence[str],
    company: Sequence[float],
    benchmark: Sequence[float],
    path: Path,
    scale: tuple[float, float] = (1, 5),
    names: tuple[str, str, str] = ("Company", "Benchmark", "Mean score"),
) -> FigureFile:
    """The radar chart's data as horizontal bars: company solid gray, benchmark hatched;
    `names` labels them and the axis (in the report's language)."""
    _check_profile(dimensions, company, benchmark)
    y = np.arange(len(dimensions))[::-1]
    height = 0.38
    with matplotlib.rc_context(STYLE):
        fig, ax = _new_figure(6.0, 0.6 * len(dimensions) + 1.0)
        ax.barh(y + height / 2, company, height, color=MID_GRAY, edgecolor=INK, label=names[0])
        ax.barh(
            y - height / 2,
            benchmark,
            height,
            color="white",
            edgecolor=INK,
            hatch="///",
            label=names[1],
        )
        ax.set_yticks(y, dimensions)
        ax.set_xlim(*scale)
        ax.grid(axis="y", visible=False)
        ax.set_xlabel(f"{names[2]} ({scale[0]:g}-{scale[1]:g})")
        ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncols=2)
    alt = _profile_alt("Bar chart", dimensions, company, benchmark, scale)
    return FigureFile(_save(fig, path), alt)


def distribution_plot(
    values: Sequence[float], label: str, path: Path, marker: float | None = None
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
        ax.set_xlabel(label)
        ax.set_ylabel("Number of companies")
        ax.grid(axis="x", visible=False)
    alt = (
        f"Histogram of {label} over {data.size} companies: minimum {_num(data.min())}, "
        f"median {_num(float(np.median(data)))}, maximum {_num(data.max())}."
    )
    if marker is not None:
        alt += f" A dashed line marks your company at {_num(marker)}."
    return FigureFile(_save(fig, path), alt)
