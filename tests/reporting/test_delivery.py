"""`scan deliver WAVE`: each company's report titled with its name, and a distribution list, in
the restricted zone only; the shareable reports stay pseudonymous."""

import hashlib
import html
import re
import shutil
import stat
from pathlib import Path
from typing import NamedTuple

import pandas as pd
import pypdf
import pytest
from conftest import DEMO_RAW, scan

from pipeline.instrument.codebook import CodebookError, load_codebook
from pipeline.lineage.settings import Settings
from pipeline.privacy.pseudonyms import DEMO_KEY, PseudonymKey
from pipeline.reporting.delivery import (
    DeliveryError,
    deliver,
    file_stem,
    match,
    register_companies,
    undeclared,
)

WAVE = "2021-T1"
CB = load_codebook(DEMO_RAW / "codebook.yaml")
REGISTER = pd.read_csv(DEMO_RAW / CB.company_register, dtype=str)


class Delivered(NamedTuple):
    data: Path
    reports: Path
    home: Path
    before: dict[str, str]  # sha256 of every shareable file before the delivery
    stdout: str


def digests(*zones: Path) -> dict[str, str]:
    return {
        str(p): hashlib.sha256(p.read_bytes()).hexdigest()
        for zone in zones
        for p in sorted(zone.rglob("*"))
        if p.is_file()
    }


def deliver_cli(data: Path, reports: Path, home: Path, wave: str = WAVE):
    return scan(
        "--data-dir", str(data), "--reports-dir", str(reports), "deliver", wave,
        home=home, cwd=data.parent,
    )  # fmt: skip


@pytest.fixture(scope="module")
def delivered(scan_run, tmp_path_factory) -> Delivered:
    """The session's finished `scan run`, copied, then `scan deliver 2021-T1`."""
    root = tmp_path_factory.mktemp("deliver")
    for name in ("data", "reports", "home"):
        shutil.copytree(getattr(scan_run, name), root / name)
    data, reports, home = root / "data", root / "reports", root / "home"
    before = digests(data / "processed", reports)
    done = deliver_cli(data, reports, home)
    assert done.returncode == 0, done.stdout + done.stderr
    return Delivered(data, reports, home, before, done.stdout)


def flat(text: str) -> str:
    return " ".join(text.split())


def test_each_report_is_delivered_titled_with_its_company_name(delivered):
    folder = delivered.data / "raw" / "_delivery" / WAVE
    distribution = pd.read_csv(folder / "distribution.csv", dtype=str, keep_default_na=False)
    numbers = pd.read_csv(delivered.data / "processed" / WAVE / "company_report_numbers.csv")
    reported = distribution[distribution["file"] != ""]
    # every company of the register is on the list; those with a report with its two files
    assert set(distribution["code"]) == set(REGISTER[CB.company_id])
    assert set(reported["pseudonym"]) == set(numbers["company_id"]) and len(reported) > 20
    assert (reported.groupby("code")["file"].count() == 2).all()
    names = REGISTER.set_index(CB.company_id)[CB.register_name]
    assert (distribution["company"] == names[distribution["code"]].to_numpy()).all()
    assert (distribution["contact"] == "").all()  # the demo register has no contact column
    assert {p.name for p in folder.iterdir()} == {*reported["file"], "distribution.csv"}
    for row in reported.itertuples():
        path = folder / row.file
        assert hashlib.sha256(path.read_bytes()).hexdigest() == row.sha256
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        title = f"Leercultuur in uw bedrijf ({row.company})"
        if path.suffix == ".pdf":
            assert pypdf.PdfReader(path).metadata["/Title"] == title
            continue
        # the same report as the shareable one of its pseudonym, but for the name in its title
        ours = flat(path.read_text(encoding="utf-8"))
        shared = delivered.reports / WAVE / "companies" / f"{row.pseudonym}.html"
        assert ours.count(html.escape(title, quote=False)) == 2  # <title> and <h1>
        named = ours.replace(html.escape(row.company, quote=False), row.pseudonym)
        assert named == flat(shared.read_text(encoding="utf-8")), row.file
    for where in (folder, folder.parent):
        assert stat.S_IMODE(where.stat().st_mode) == 0o700
    assert f"{reported['code'].nunique()} companies' reports" in delivered.stdout
    assert "contacts: not declared (registers.companies.contact)" in delivered.stdout


def test_the_shareable_zone_stays_pseudonymous_and_untouched(delivered):
    zones = (delivered.data / "processed", delivered.reports)
    assert digests(*zones) == delivered.before
    names = set(REGISTER[CB.register_name])
    texts = {  # each content once: _versions/ holds copies
        hashlib.sha256(data := p.read_bytes()).hexdigest(): (p, data.decode("utf-8", "replace"))
        for zone in zones
        for p in zone.rglob("*")
        if p.suffix in (".html", ".csv", ".json")
    }
    assert len(texts) > 100
    for path, text in texts.values():
        leaked = [name for name in names if name in text]
        assert not leaked, f"{path}: {leaked[:3]}"
    assert not [name for name in names if name in delivered.stdout]


def test_deliver_refuses_without_up_to_date_reports(delivered, tmp_path):
    unknown = deliver_cli(delivered.data, delivered.reports, delivered.home, "2030-T9")
    assert unknown.returncode == 1 and "2030-T9: not a wave of" in unknown.stderr
    for name in ("data", "reports", "home"):
        shutil.copytree(getattr(delivered, name), tmp_path / name)
    data, reports, home = tmp_path / "data", tmp_path / "reports", tmp_path / "home"
    shutil.rmtree(data / "raw" / "_delivery")
    report = next((reports / WAVE / "companies").glob("*.pdf"))
    report.unlink()
    refused = deliver_cli(data, reports, home)
    assert refused.returncode == 1
    assert f"the company reports of {WAVE} are not up to date (" in refused.stderr
    assert report.name in refused.stderr and "run `scan run` first" in refused.stderr
    assert not (data / "raw" / "_delivery").exists()


def register_with_contacts(tmp_path: Path, codebook_entry: str) -> Settings:
    raw = tmp_path / "data" / "raw"
    raw.mkdir(parents=True)
    register = REGISTER.assign(mail=[f"hr{i}@example.org" for i in range(len(REGISTER))])
    register.loc[0, CB.register_name] = 'Müller "De Ster" & Zn *B.V.* [x] \\ #1 $5 @ref <b>'
    register.to_csv(raw / "bedrijven.csv", index=False)
    text = (DEMO_RAW / "codebook.yaml").read_text(encoding="utf-8")
    start, end = text.index("\nregisters:\n"), text.index("\nquality:")
    (raw / "codebook.yaml").write_text(
        text[:start] + f"\nregisters:\n  companies: {codebook_entry}\n" + text[end:]
    )
    return Settings(tmp_path / "data", tmp_path / "reports")


def test_the_distribution_list_has_each_companys_contact_and_odd_names_stay_literal(
    scan_run, tmp_path
):
    settings = register_with_contacts(
        tmp_path, f"{{file: bedrijven.csv, name: {CB.register_name}, contact: mail}}"
    )
    codebook = load_codebook(settings.codebook_path)
    assert undeclared(codebook) == []
    companies = match(register_companies(settings, codebook), [], PseudonymKey(DEMO_KEY, "demo"))
    odd = companies.iloc[0]
    numbers = pd.read_csv(scan_run.data / "processed" / WAVE / "company_report_numbers.csv")
    one = numbers[numbers["company_id"] == odd["pseudonym"]]
    assert len(one)
    folder = settings.raw_dir / "_delivery" / WAVE
    folder.mkdir(parents=True)
    (folder / "left-over.pdf").write_bytes(b"a report of an earlier delivery")
    monitoring = pd.read_csv(scan_run.data / "processed" / WAVE / "company_monitoring_numbers.csv")
    distribution = deliver(one, monitoring, companies, WAVE, codebook, folder, workers=1)
    assert not (folder / "left-over.pdf").exists()
    assert sorted(distribution["contact"].unique()) == sorted(
        f"hr{i}@example.org" for i in range(len(REGISTER))
    )
    mine = distribution[distribution["code"] == odd["code"]]
    stem = file_stem(odd["code"], odd["name"])
    assert list(mine["file"]) == [f"{stem}.html", f"{stem}.pdf"]
    assert (distribution["file"] != "").sum() == 2
    title = f"Leercultuur in uw bedrijf ({odd['name']})"
    pdf = pypdf.PdfReader(folder / f"{stem}.pdf")
    assert pdf.metadata["/Title"] == title
    assert flat(title) in flat(pdf.pages[0].extract_text())
    page = flat((folder / f"{stem}.html").read_text(encoding="utf-8"))
    assert f'<h1 class="title">{html.escape(title, quote=False)}</h1>' in page


def test_a_file_name_keeps_no_path_characters():
    assert file_stem("C1", "A/B ../x: y") == "C1 A_B .._x_ y"
    assert file_stem("C1", "") == "C1"


def test_the_register_must_have_the_columns_the_codebook_names(tmp_path):
    settings = register_with_contacts(tmp_path, "{file: bedrijven.csv, contact: email_hr}")
    codebook = load_codebook(settings.codebook_path)
    assert codebook.register_name is None
    assert undeclared(codebook) == [
        "company names: not declared (registers.companies.name): the reports are titled with "
        "the company code"
    ]
    expected = "bedrijven.csv: no column 'email_hr' (the codebook's registers.companies.contact)"
    with pytest.raises(DeliveryError, match=re.escape(expected)):
        register_companies(settings, codebook)


def test_a_company_code_twice_in_the_register_is_refused_by_its_lines(tmp_path):
    settings = register_with_contacts(tmp_path, "bedrijven.csv")
    register = pd.read_csv(settings.raw_dir / "bedrijven.csv", dtype=str)
    again = register.iloc[[3]].copy()
    again[CB.company_id] = f" {again[CB.company_id].iloc[0].lower()} "  # the same, as typed
    pd.concat([register, again]).to_csv(settings.raw_dir / "bedrijven.csv", index=False)
    with pytest.raises(DeliveryError, match=rf"lines 5, {len(register) + 2} hold the same"):
        register_companies(settings, load_codebook(settings.codebook_path))


@pytest.mark.parametrize(
    ("entry", "key"),
    [("{name: x}", "registers.companies.file"), ("{file: a.csv, owner: x}", "companies.owner")],
)
def test_the_codebook_refuses_a_register_entry_it_does_not_know(tmp_path, entry, key):
    with pytest.raises(CodebookError, match=re.escape(key)):
        load_codebook(register_with_contacts(tmp_path, entry).codebook_path)
