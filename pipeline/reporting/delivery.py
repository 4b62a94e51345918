"""Delivering the company reports: each company gets its own report, titled with its name.

The shareable reports are named and titled by the company's pseudonym only, so nothing in the
shareable zone says whose report is whose. `deliver` makes, in the restricted zone, a copy of
each report titled with the company's name from the register (rendered again from the same
stored numbers, by the same code, so it differs from the shareable one in the title only), and
a distribution list: per company its contact and each file with its sha256. The pseudonym is
made again from the register's company code with the key, as anonymisation made it.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

import pandas as pd

from pipeline.instrument.codebook import Codebook
from pipeline.lineage.files import make_folders, write_atomic
from pipeline.lineage.settings import Settings
from pipeline.privacy.anonymise import COMPANY_PREFIX
from pipeline.privacy.pseudonyms import PseudonymKey, pseudonymise
from pipeline.reporting.company_report import render_company_reports

DELIVERY = "_delivery"  # under raw/: the named copies, per wave
DISTRIBUTION = "distribution.csv"
DISTRIBUTION_COLUMNS = ["company", "contact", "file", "sha256", "code", "pseudonym"]


class DeliveryError(ValueError):
    """The reports cannot be delivered; the message says which file or column, and why."""


def delivery_folder(settings: Settings, wave: str) -> Path:
    return settings.raw_dir / DELIVERY / wave


def undeclared(codebook: Codebook) -> list[str]:
    """What the codebook does not say about the register, and what the delivery does instead."""
    notes = []
    if codebook.register_name is None:
        notes.append(
            "company names: not declared (registers.companies.name): the reports are titled "
            "with the company code"
        )
    if codebook.register_contact is None:
        notes.append(
            "contacts: not declared (registers.companies.contact): the distribution list "
            "leaves them blank"
        )
    return notes


def register_companies(settings: Settings, codebook: Codebook) -> pd.DataFrame:
    """The register's companies: `code`, `name` and `contact` (blank where not declared)."""
    if codebook.company_register is None:
        raise DeliveryError(
            f"{codebook.path}: no company register (registers.companies): without it no report "
            "can be matched to its company"
        )
    path = settings.raw_dir / codebook.company_register
    if not path.is_file():
        raise DeliveryError(f"{path}: company register not found (registers.companies)")
    register = pd.read_csv(path, dtype=str, keep_default_na=False)
    wanted = {
        "code": (codebook.company_id, "identifiers.company"),
        "name": (codebook.register_name, "registers.companies.name"),
        "contact": (codebook.register_contact, "registers.companies.contact"),
    }
    for column, key in wanted.values():
        if column is not None and column not in register:
            raise DeliveryError(
                f"{path}: no column {column!r} (the codebook's {key}); it has "
                f"{', '.join(register.columns)}"
            )
    companies = pd.DataFrame(
        {
            field: register[column].str.strip() if column else ""
            for field, (column, _) in wanted.items()
        }
    )
    companies = companies[companies["code"] != ""]
    twice = companies["code"].str.casefold().duplicated(keep=False)  # as pseudonymise compares
    if twice.any():
        lines = ", ".join(str(i + 2) for i in companies.index[twice])  # after the header line
        raise DeliveryError(f"{path}: lines {lines} hold the same company code")
    return companies


def match(companies: pd.DataFrame, reported: list[str], key: PseudonymKey) -> pd.DataFrame:
    """The register's companies with their `pseudonym`, made again with the key; every
    reported pseudonym must be among them."""
    matched = companies.assign(pseudonym=pseudonymise(companies["code"], key, COMPANY_PREFIX))
    unknown = sorted(set(reported) - set(matched["pseudonym"]))
    if unknown:
        raise DeliveryError(
            f"{len(unknown)} report(s), e.g. {unknown[0]}, match no company of the register "
            "under the current pseudonymisation key: a changed key or register since the "
            "reports were made? `scan status` tells"
        )
    return matched


def file_stem(code: str, name: str) -> str:
    """A file name a steward recognises: the code and the name, without path characters."""
    text = f"{code} {name}".strip()
    return re.sub(r"[^\w .,&()+-]+", "_", text).strip(" .") or "_"


def title(name: str) -> str:
    """`name` as literal text in the report template's title, a YAML double-quoted string read
    as pandoc markdown: every ASCII punctuation mark escaped (no emphasis, citation, math)."""
    literal = re.sub(r"([!-/:-@\[-`{-~])", r"\\\1", " ".join(name.split()))
    return literal.replace("\\", "\\\\").replace('"', '\\"')


def deliver(
    numbers: pd.DataFrame,
    monitoring: pd.DataFrame,
    companies: pd.DataFrame,
    wave: str,
    codebook: Codebook,
    folder: Path,
    workers: int,
) -> pd.DataFrame:
    """Write each reported company's report titled with its name (else its code) to `folder`,
    private, and `distribution.csv`: per company of the register its contact and each file
    with its sha256 (a company without a report this wave has a row with no file). Files of an
    earlier delivery that this one does not make again are removed. Returns the list."""
    make_folders(folder, private=True)
    names = {c.pseudonym: title(c.name or c.code) for c in companies.itertuples()}
    rows, written = [], set()
    with tempfile.TemporaryDirectory(prefix=".render-", dir=folder.parent) as work:
        rendered = render_company_reports(
            numbers, wave, codebook, Path(work), workers, names, monitoring
        )
        for company in companies.sort_values(["name", "code"]).itertuples():
            files = rendered[company.pseudonym].files if company.pseudonym in rendered else ()
            entry = {
                "company": company.name or company.code,
                "contact": company.contact,
                "code": company.code,
                "pseudonym": company.pseudonym,
            }
            if not files:
                rows.append({**entry, "file": "", "sha256": ""})
            for file in files:
                name = f"{file_stem(company.code, company.name)}.{file.format}"
                source = file.path
                write_atomic(folder / name, lambda tmp, s=source: shutil.copyfile(s, tmp), True)
                rows.append({**entry, "file": name, "sha256": file.sha256})
                written.add(name)
    for old in folder.iterdir():
        if old.suffix in (".html", ".pdf") and old.name not in written:
            old.unlink()
    distribution = pd.DataFrame(rows, columns=DISTRIBUTION_COLUMNS)
    write_atomic(folder / DISTRIBUTION, lambda tmp: distribution.to_csv(tmp, index=False), True)
    return distribution
