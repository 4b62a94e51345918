"""The validation dossier of the demo (the session's `pipeline_run`): one English report across
the waves whose numbers are the stored tables' numbers, each id resolving to its cell."""

import re
from html import unescape

import pandas as pd
import pypdf
from conftest import WAVES

from pipeline.lineage.settings import ALL_WAVES


def text_of(html: str) -> str:
    body = re.sub(r"<(script|style)\b.*?</\1>", " ", html, flags=re.S)
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", body)).split())


def test_the_dossier_shows_every_wave_and_section_from_the_stored_tables(pipeline_run):
    settings, results, *_ = pipeline_run
    folder = settings.reports_dir / ALL_WAVES
    html = text_of((folder / "validation_dossier.html").read_text(encoding="utf-8"))
    pdf = " ".join(
        " ".join(page.extract_text().split())
        for page in pypdf.PdfReader(folder / "validation_dossier.pdf").pages
    )
    for section in (
        "Factor structure and fit",
        "Reliability",
        "Invariance over the waves",
        "Invariance over groups",
        "Validity evidence",
        "Item statistics",
        "What changed since the last wave",
    ):
        assert section in html and section in pdf, section
    for wave in WAVES:
        fit = pd.read_csv(settings.processed_dir / wave / "cfa_fit.csv").iloc[0]
        assert f"{fit['cfi_robust']:.3f}" in html and f"{fit['rmsea_robust']:.3f}" in pdf
        alpha = pd.read_csv(settings.processed_dir / wave / "reliability.csv")["alpha"]
        assert all(f"{a:.3f}" in html for a in alpha)
    invariance = pd.read_csv(settings.processed_dir / ALL_WAVES / "invariance.csv")
    assert f"{invariance['cfi_robust'][1]:.3f}" in html
    # both tests over the waves, and which one the wave reports use
    assert "The wave reports use the first" in html and "The panel, scale by scale" in pdf
    panel = pd.read_csv(settings.processed_dir / ALL_WAVES / "longitudinal_invariance.csv")
    assert all(f"{v:.3f}" in html for v in panel["cfi_robust"].dropna())
    assert "Scalar invariance over the waves in the panel holds for" in html
    last = WAVES[-1]
    pairs = pd.read_csv(settings.processed_dir / last / "validity_pairs.csv")
    between = pairs[pairs["kind"] == "culture-outcome"]
    assert all(f"{r:.3f}" in html for r in between["r"])
    assert f"Wave {WAVES[-2]} and wave {last} side by side" in html
    assert "no background variables to test invariance across" in html  # the demo names none


def test_each_example_id_of_the_dossier_names_a_stored_number(pipeline_run):
    """The appendix gives, per table, an id `asset[partition](row).column`; each resolves to a
    cell of the stored CSV that holds a number."""
    settings, *_ = pipeline_run
    html = text_of(
        (settings.reports_dir / ALL_WAVES / "validation_dossier.html").read_text(encoding="utf-8")
    )
    ids = re.findall(r"(\w+)\[([^\]<]+)\]\(([^)<]*)\)\.(\w+)", html)
    files = {
        "measurement_invariance": "invariance.csv",
        "longitudinal_invariance": "longitudinal_invariance.csv",
        "validity_scales": "validity_scales.csv",
        "validity_pairs": "validity_pairs.csv",
    }
    assert len(ids) >= 6 and "longitudinal_invariance" in {asset for asset, *_ in ids}
    for asset, partition, row, column in ids:
        table = pd.read_csv(settings.processed_dir / partition / files.get(asset, f"{asset}.csv"))
        keys = row.split(",")
        match = table[(table.iloc[:, : len(keys)].astype(str) == keys).all(axis=1)]
        assert len(match) == 1 and pd.notna(match[column].iloc[0]), (asset, row, column)
