"""Learning-community reports: one per community (none for the aggregate), its numbers with
decimal commas, hidden rows saying so, the spread section, partners and number ids."""

import dataclasses
import html
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from assets.lineage import NUMBER_ID
from pipeline.instrument.codebook import load_codebook
from pipeline.reporting.community_report import (
    HIDDEN,
    NO_CULTURE,
    NO_OUTCOMES,
    NUMBERS_ASSET,
    community_contexts,
    render_community_reports,
)
from pipeline.reporting.render import REPORTS_DIR, fill_template

CODEBOOK = load_codebook(Path(__file__).resolve().parents[2] / "data" / "raw" / "codebook.yaml")
WAVE, PREVIOUS = "2021-T1", "2019-T0"
NAMES = {
    "C1": "Leergemeenschap Metaal Oost",
    "C2": "Leergemeenschap Techniek West",
    "C3": "Leergemeenschap Zonder Rijen",  # too small to report: no rows, no report
}
PARTNERS = pd.DataFrame(
    {
        "community_id": ["C1", "C1", "C1"],
        "kind": ["hbo", "mbo", "opleidingsfonds"],
        "partner": ["Hogeschool Voorbeeld", "ROC Voorbeeldstad", "Opleidingsfonds Metaal"],
    }
)
# Per community and scale: (companies, pooled mean, sd of the companies' means, previous mean).
C1 = {
    "LT": (7, 3.47, 0.33, 3.25),
    "RF": (7, 2.83, 0.61, 2.94),
    "CL": (6, 3.62, 0.29, 3.51),
    "LL": (7, 3.09, 0.48, 3.02),
    "LS": (7, 2.71, 0.17, 2.66),
    "EN": (5, 3.36, 0.22, 3.19),
    "SL": (7, 3.88, 0.27, 3.70),
    "EM": (7, 3.54, 0.19, 3.57),
}
C2 = {s: (5, mean - 0.4, 0.2, np.nan) for s, (_, mean, _, _) in C1.items()}
C2["EN"] = (3, np.nan, np.nan, np.nan)  # fewer than 5 companies count: hidden
ALL = {s: (14, mean - 0.16, 0.3, np.nan) for s, (_, mean, _, _) in C1.items()}


def scale_rows(community: str, scales: dict) -> list[tuple]:
    rows = []
    for scale, (companies, mean, sd, previous) in scales.items():
        hidden = np.isnan(mean)
        stats = {
            "companies": companies,
            "n": companies * 11,
            "mean": mean,
            "companies_mean": mean - 0.04,
            "companies_sd": sd,
            "outside_companies": 20,
            "outside_mean": mean + 0.13,
            "previous_mean": previous,
            "change": mean - previous,
        }
        stats = {k: (v if k == "companies" or not hidden else np.nan) for k, v in stats.items()}
        rows += [(community, "scales", scale, k, v) for k, v in stats.items()]
    return rows


def numbers() -> pd.DataFrame:
    """The wave's community_numbers, as stored."""
    rows = [
        *[
            (c, "members", "community", "companies", m)
            for c, m in [("C1", 9), ("C2", 6), ("all", 15)]
        ],
        *[(c, "members", "community", "companies_reported", r) for c, r in [("C1", 7), ("C2", 5)]],
        ("all", "members", "community", "companies_reported", 12),
        *scale_rows("C1", C1),
        *scale_rows("C2", C2),
        *scale_rows("all", ALL),
        ("C1", "trajectories", "werkplekleren", "companies", 3),
        ("C1", "trajectories", "leerlijn", "companies", 2),
    ]
    return pd.DataFrame(rows, columns=["community_id", "table", "row", "statistic", "value"])


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    """The reports rendered once: (rendered, output folder, HTML per community)."""
    out = tmp_path_factory.mktemp("communities")
    rendered = render_community_reports(numbers(), WAVE, CODEBOOK, out, NAMES, PARTNERS, PREVIOUS)
    documents = {c: (out / f"{c}.html").read_text(encoding="utf-8") for c in rendered}
    return rendered, out, documents


def text(document: str) -> str:
    """The visible text of HTML, whitespace collapsed."""
    body = re.sub(r"<style.*?</style>", " ", document, flags=re.DOTALL)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", body)).split())


def section(document: str, heading: str) -> str:
    """The visible text of the section under the h2 `heading`, up to the next h2."""
    parts = [text(f"<h2{part}") for part in re.split(r"<h2\b", document)[1:]]
    found = [part for part in parts if part.startswith(f"{heading} ")]
    assert len(found) == 1, heading
    return found[0]


def row(part: str, label: str) -> str:
    """The text of the table row of `part` (a section's text) that starts with `label`."""
    return part[part.index(f" {label} ") :][:120]


def test_a_report_per_community_with_rows_and_none_for_the_aggregate(reports):
    rendered, out, _ = reports
    assert sorted(rendered) == ["C1", "C2"]
    assert sorted(p.name for p in out.iterdir()) == ["C1.html", "C1.pdf", "C2.html", "C2.pdf"]
    for community in rendered:
        pdf = (out / f"{community}.pdf").read_bytes()
        assert pdf.startswith(b"%PDF") and len(pdf) > 1000
        assert [f.format for f in rendered[community].files] == ["html", "pdf"]


def test_numbers_appear_with_decimal_commas(reports):
    document = reports[2]["C1"]
    assert "Leergemeenschap Metaal Oost" in document and "meting T1" in document
    position = section(document, "Waar staat de leergemeenschap")
    lt = row(position, "Leerrijk werk")
    # companies, pooled, mean of the companies, other companies, all communities
    assert lt.startswith(" Leerrijk werk 7 3,47 3,43 3,60 3,31 ")
    assert "3.47" not in document
    guide = section(document, "Zo leest u dit rapport")
    assert "9 bedrijven lid" in guide and "Van 7 daarvan" in guide
    change = section(document, "Wat is er veranderd")
    assert row(change, "Leerrijk werk").startswith(" Leerrijk werk 3,25 3,47 +0,22 ")
    assert row(change, "Reflectie en leren van fouten").startswith(
        " Reflectie en leren van fouten 2,94 2,83 -0,11 "
    )
    assert "kan per meting verschillen" in change
    outcomes = section(document, "Opbrengsten van leren")
    assert row(outcomes, "Inzetbaarheid").startswith(" Inzetbaarheid 7 3,54 3,50 3,67 3,38 ")
    assert " Inzetbaarheid 3,57 3,54 -0,03 " in f"{outcomes} "
    trajectories = section(document, "Ontwikkeltrajecten")
    assert "werkplekleren 3" in trajectories and "leerlijn 2" in trajectories


def test_a_hidden_row_says_too_few_companies_and_no_previous_figure_no_change(reports):
    document = reports[2]["C2"]
    position = section(document, "Waar staat de leergemeenschap")
    assert row(position, "Extern leernetwerk").startswith(f" Extern leernetwerk 3 {HIDDEN} – – ")
    assert row(position, "Leerrijk werk").startswith(" Leerrijk werk 5 3,07 ")
    spread = section(document, "Waar de bedrijven het meest verschillen")
    assert "Extern leernetwerk" not in spread.split("Dimensie Bedrijven")[1]  # not in its table
    change = section(document, "Wat is er veranderd")
    assert "Er is geen verandering te tonen" in change and "Meting T0" not in change
    assert "Ontwikkeltrajecten" not in text(document)  # no trajectory rows, no section


def test_the_spread_names_the_scales_where_companies_differ_most(reports):
    spread = section(reports[2]["C1"], "Waar de bedrijven het meest verschillen")
    note, table = spread.split("Dimensie Bedrijven")
    assert note.index("Reflectie en leren van fouten (spreiding 0,61)") < note.index(
        "Lerend leiderschap (spreiding 0,48)"
    )
    order = [C1[s][2] for s in ("LT", "RF", "CL", "LL", "LS", "EN")]
    labels = [CODEBOOK.scales[s].label for s in ("LT", "RF", "CL", "LL", "LS", "EN")]
    ranked = [label for _, label in sorted(zip(order, labels, strict=True), reverse=True)]
    assert sorted(ranked, key=table.index) == ranked
    assert row(table, "Reflectie en leren van fouten").startswith(
        " Reflectie en leren van fouten 7 0,61 "
    )


def test_partners_appear_by_kind_in_their_own_community_only(reports):
    one, two = (section(reports[2][c], "Zo leest u dit rapport") for c in ("C1", "C2"))
    # in the codebook's order of kinds
    assert one.index("mbo : ROC Voorbeeldstad") < one.index("hbo : Hogeschool Voorbeeld")
    assert "opleidingsfonds : Opleidingsfonds Metaal" in one
    assert "geen partners geregistreerd" in two and "Voorbeeld" not in two


def test_number_ids_parse_as_scan_trace_reads_them(reports):
    document = reports[2]["C1"]
    ids = [html.unescape(c) for c in re.findall(r"<code>([^<]*\[[^<]*)</code>", document)]
    assert len(ids) == 1 + len(C1) + 1 + 1 + 1  # members, scales, trajectories, all, example
    for number in ids:
        match = NUMBER_ID.match(number)
        assert match, number
        assert (match["asset"], match["partition"]) == (NUMBERS_ASSET, WAVE)
    example = "community_numbers[2021-T1](C1,scales,LT,mean).value"
    assert example in ids and f"{example} het id van de score" in text(document)
    assert "community_numbers[2021-T1](C1,members,community,<statistic>).value" in ids


@pytest.mark.parametrize("level", ["culture", "outcome"])
def test_without_culture_or_outcome_scales_a_sentence_replaces_the_section(level):
    scales = {n: s for n, s in CODEBOOK.scales.items() if s.level != level}
    codebook = dataclasses.replace(CODEBOOK, scales=scales)
    contexts = community_contexts(numbers(), WAVE, codebook, NAMES, PARTNERS, None)
    document = fill_template(REPORTS_DIR / "community.qmd", contexts["C1"])
    assert (NO_CULTURE if level == "culture" else NO_OUTCOMES) in document
    assert ("| Opbrengst |" in document) == (level == "culture")
    assert ("| Dimensie |" in document) == (level == "outcome")
    assert ("## Waar de bedrijven het meest verschillen" in document) == (level == "outcome")
    if level == "outcome":  # the first wave: no change to show
        assert "Dit is de eerste meting van de leergemeenschap" in document
