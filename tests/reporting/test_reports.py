"""The reports of the demo, rendered by the pipeline (the session's `pipeline_run`): in a headless
browser, as PDF text, and against small-cell disclosure. That a second clean run renders the same
bytes is in test_lineage.py."""

import re

import matplotlib.image
import pandas as pd
import pypdf
from browser import html_tables, run_chromium
from conftest import WAVES

from assets.reports import _remove_other_reports
from pipeline.instrument.codebook import load_codebook

K = 5  # the demo codebook's anonymisation.k, the reporting minimum


def reports(root):
    return sorted(p for p in root.rglob("*") if p.suffix in (".html", ".pdf"))


def key_numbers(settings, wave) -> list[str]:
    """Numbers of the wave's CSV outputs that its report must show, formatted as it shows them."""
    folder = settings.processed_dir / wave
    quality = pd.read_csv(folder / "quality_summary.csv").set_index("reason")["rows"]
    reliability = pd.read_csv(folder / "reliability.csv")
    icc = pd.read_csv(folder / "aggregation.csv")
    return [
        f"{quality['validated']} passed validation",
        *(f"{a:.3f}" for a in reliability["alpha"]),
        *(f"{v:.3f}" for v in icc["icc1"]),
    ]


def test_every_wave_has_a_report_and_every_company_with_k_respondents_one(pipeline_run):
    settings, results, *_ = pipeline_run
    for wave in WAVES:
        assert results[f"reports/{wave}"].success
        folder = settings.reports_dir / wave
        assert (folder / "wave_report.html").exists() and (folder / "wave_report.pdf").exists()
        scores = pd.read_parquet(settings.processed_dir / wave / "scale_scores.parquet")
        sizes = scores.groupby("company_id").size()
        expected = set(sizes[sizes >= K].index)
        assert {p.stem for p in (folder / "companies").glob("*.html")} == expected
        assert {p.stem for p in (folder / "companies").glob("*.pdf")} == expected
        listed = pd.read_csv(settings.processed_dir / wave / "company_reports.csv")
        assert set(listed["company_id"]) == expected
        html = (folder / "wave_report.html").read_text()
        assert f"{len(sizes) - len(expected)} do not" in html  # companies without a report


def test_wave_report_loads_in_chromium_and_shows_the_numbers_of_the_outputs(
    pipeline_run, chromium, tmp_path
):
    settings, *_ = pipeline_run
    wave = WAVES[1]
    html = settings.reports_dir / wave / "wave_report.html"
    shot, printed = tmp_path / "shot.png", tmp_path / "printed.pdf"
    logs = run_chromium(
        chromium, html, tmp_path / "p", f"--screenshot={shot}", "--window-size=1000,1400"
    )
    logs += run_chromium(chromium, html, tmp_path / "p", f"--print-to-pdf={printed}")
    assert not [line for line in logs.splitlines() if ":CONSOLE" in line], logs
    assert matplotlib.image.imread(shot)[..., :3].std() > 0.05, "blank screenshot"
    seen = " ".join(" ".join(p.extract_text().split()) for p in pypdf.PdfReader(printed).pages)
    ours = " ".join(
        " ".join(p.extract_text().split())
        for p in pypdf.PdfReader(settings.reports_dir / wave / "wave_report.pdf").pages
    )
    for number in key_numbers(settings, wave):
        assert number in seen, number
        assert number in ours, number


def test_company_report_shows_the_company_mean_in_browser_and_pdf(pipeline_run, chromium, tmp_path):
    settings, *_ = pipeline_run
    wave = WAVES[2]
    folder = settings.reports_dir / wave / "companies"
    company = sorted(p.stem for p in folder.glob("*.html"))[0]
    scores = pd.read_parquet(settings.processed_dir / wave / "scale_scores.parquet")
    codebook = load_codebook(settings.codebook_path)
    means = scores[scores["company_id"] == company][list(codebook.models.culture)].mean()
    expected = [f"{m:.2f}".replace(".", ",") for m in means]  # Dutch decimal comma
    html = folder / f"{company}.html"
    shot, printed = tmp_path / "shot.png", tmp_path / "printed.pdf"
    logs = run_chromium(
        chromium, html, tmp_path / "p", f"--screenshot={shot}", "--window-size=1000,1400"
    )
    logs += run_chromium(chromium, html, tmp_path / "p", f"--print-to-pdf={printed}")
    assert not [line for line in logs.splitlines() if ":CONSOLE" in line], logs
    assert matplotlib.image.imread(shot)[..., :3].std() > 0.05, "blank screenshot"
    for pdf in (printed, folder / f"{company}.pdf"):
        text = " ".join(p.extract_text() for p in pypdf.PdfReader(pdf).pages)
        assert company in text and all(m in text for m in expected), (pdf, expected)


def test_no_reported_count_rests_on_fewer_than_k(pipeline_run):
    """Every count column of every table in every HTML report is 0, at least k, or suppressed;
    small companies have no report and no company is named in the wave report."""
    settings, *_ = pipeline_run
    checked = 0
    for html in (p for p in reports(settings.reports_dir) if p.suffix == ".html"):
        for table in html_tables(html.read_text()):
            header, *rows = table
            for column, name in enumerate(header):
                if name not in ("n", "N", "Respondents", "Rows"):  # Rows: quarantine by reason
                    continue
                for row in rows:
                    cell = row[column]
                    assert not cell.isdigit() or int(cell) == 0 or int(cell) >= K, (html, row)
                    checked += 1
    assert checked > 100
    for wave in WAVES:
        text = (settings.reports_dir / wave / "wave_report.html").read_text()
        companies = pd.read_csv(settings.processed_dir / wave / "company_scores.csv")["company_id"]
        assert not any(c in text for c in companies.unique())


def test_a_company_that_falls_under_k_loses_its_earlier_report(tmp_path):
    for name in ("c_kept.html", "c_kept.pdf", "c_gone.html", "c_gone.pdf", "notes.txt"):
        (tmp_path / name).write_text("x")
    _remove_other_reports(tmp_path, {"c_kept"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c_kept.html", "c_kept.pdf", "notes.txt"]


def test_every_report_states_its_data_version_and_waves(pipeline_run):
    """Each report names the data version it was made from: wave reports over the cross-wave
    tables list every wave and differ per wave; every company report has a version of its own."""
    settings, *_ = pipeline_run
    version = re.compile(r"(Data version|Gegevensversie) <code>([0-9a-f]{12})</code>")
    found = {}
    for html in (p for p in reports(settings.reports_dir) if p.suffix == ".html"):
        match = version.search(html.read_text(encoding="utf-8"))
        assert match, html
        found[html] = match.group(2)
    wave_versions = set()
    for wave in WAVES:
        text = (settings.reports_dir / wave / "wave_report.html").read_text(encoding="utf-8")
        text = " ".join(text.split())
        assert f"made from the data of waves {WAVES[0]}, {WAVES[1]} and {WAVES[2]}" in text
        wave_versions.add(found[settings.reports_dir / wave / "wave_report.html"])
    assert len(wave_versions) == len(WAVES)
    companies = [v for p, v in found.items() if p.parent.name == "companies"]
    assert len(companies) > 50 and len(set(companies)) == len(companies)
