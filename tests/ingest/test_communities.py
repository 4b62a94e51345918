"""The community register and its partners list, declared in the codebook and validated like an
export: every problem names the file, the line or row and what was expected, and never a
company code."""

from pathlib import Path

import pandas as pd
import pytest
from conftest import CODEBOOK, DEMO_RAW

from pipeline.ingest.communities import members_in, read_communities, read_partners
from pipeline.ingest.register_files import RegisterError
from pipeline.instrument.codebook import CodebookError, load_codebook
from pipeline.validate.quality import read_register

HEADER = "community_id,community,company_code,joined,left\n"
GOOD = (
    HEADER
    + "LG1,Metaal Oost,C002,2019-T0,\n"
    + "LG1,Metaal Oost,C003,2019-T0,2022-T2\n"
    + "LG2,Installatie West,C003,2022-T2,\n"  # after it left LG1: allowed when exclusive
    + "LG2,Installatie West,C013,2021-T1,\n"
)
PARTNERS = "community_id,kind,partner\nLG1,mbo,ROC Oost\nLG2,branche,Techniek West\n"


@pytest.fixture(scope="module")
def codebook():
    return load_codebook(CODEBOOK)


@pytest.fixture(scope="module")
def companies() -> set[str]:
    return read_register(DEMO_RAW / "company_register.csv", "company_code")


def write(tmp_path: Path, text: str, name: str = "community_register.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_a_good_register_and_who_is_a_member_when(tmp_path, codebook, companies):
    table = read_communities(write(tmp_path, GOOD), codebook, companies)
    assert list(table.columns) == [
        "community_id",
        "community",
        "company",
        "joined",
        "left",
        "_source_row",
    ]
    assert list(table["_source_row"]) == [2, 3, 4, 5]
    waves = list(codebook.waves)
    assert set(members_in(table, "2019-T0", waves)["company"]) == {"C002", "C003"}
    assert list(members_in(table, "2021-T1", waves)["community_id"]) == ["LG1", "LG1", "LG2"]
    now = members_in(table, "2022-T2", waves)
    assert sorted(zip(now["community_id"], now["company"], strict=True)) == [
        ("LG1", "C002"),
        ("LG2", "C003"),
        ("LG2", "C013"),
    ]
    partners = read_partners(write(tmp_path, PARTNERS, "partners.csv"), codebook, table)
    assert list(partners["kind"]) == ["mbo", "branche"]


def test_an_excel_register_counts_rows(tmp_path, codebook, companies):
    path = tmp_path / "community_register.xlsx"
    rows = [line.split(",") for line in GOOD.splitlines()]
    frame = pd.DataFrame(rows[1:], columns=rows[0])
    frame.loc[1, "joined"] = "2020-T9"
    frame.to_excel(path, index=False)
    with pytest.raises(RegisterError, match=r"community_register.xlsx row 3: joined '2020-T9'"):
        read_communities(path, codebook, companies)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("LG3,Nieuw,C016,2019-T0,2019-T0\n", "line 6: left is not after joined"),
        ("LG3,Nieuw,C016,2019-T1,\n", "line 6: joined '2019-T1' is not a wave of the codebook"),
        ("LG3,Nieuw,C016,2019-T0,later\n", "line 6: left 'later' is not a wave"),
        ("LG3,Nieuw,,2019-T0,\n", "line 6: company_code is empty"),
        ("LG1,Metaal Noord,C016,2019-T0,\n", "line 6: community differs from the name"),
        ("all,Alle,C016,2019-T0,\n", "line 6: community_id 'all' is reserved"),
        ("LG3,Nieuw,C999,2019-T0,\n", "line 6: its company is not in the company register"),
        ("LG1,Metaal Oost,C002,2022-T2,\n", "lines 2 and 6: a company is a member twice"),
        ("LG3,Nieuw,C002,2021-T1,\n", "in two communities (the codebook's exclusive)"),
    ],
)
def test_each_problem_names_file_and_line(tmp_path, codebook, companies, extra, message):
    with pytest.raises(RegisterError) as error:
        read_communities(write(tmp_path, GOOD + extra), codebook, companies)
    text = str(error.value)
    assert message in text and "community_register.csv" in text, text
    assert "C002" not in text and "C999" not in text and "C016" not in text, text


def test_a_company_may_be_in_two_communities_when_not_exclusive(tmp_path, codebook, companies):
    from dataclasses import replace

    shared = replace(codebook, communities=replace(codebook.communities, exclusive=False))
    table = read_communities(write(tmp_path, GOOD + "LG3,Nieuw,C002,2021-T1,\n"), shared, companies)
    assert (table["company"] == "C002").sum() == 2


def test_missing_columns_and_files(tmp_path, codebook, companies):
    with pytest.raises(RegisterError, match="needs the columns .*; missing left"):
        read_communities(write(tmp_path, GOOD.replace(",left", ",gone")), codebook, companies)
    with pytest.raises(RegisterError, match="community register not found .*communities"):
        read_communities(tmp_path / "absent.csv", codebook, companies)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("LG9,mbo,ROC\n", "line 4: community_id 'LG9' is not in the community register"),
        ("LG1,school,ROC\n", "line 4: kind 'school' is not one of the codebook's"),
        ("LG1,mbo,\n", "line 4: partner is empty"),
    ],
)
def test_partner_problems_name_file_and_line(tmp_path, codebook, companies, extra, message):
    table = read_communities(write(tmp_path, GOOD), codebook, companies)
    with pytest.raises(RegisterError, match=message.replace("(", r"\(")):
        read_partners(write(tmp_path, PARTNERS + extra, "partners.csv"), codebook, table)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("    exclusive: true", "    exclusive: maybe", "registers.communities.exclusive"),
        ("    partners: community", "    partner: community", "registers.communities.partner:"),
        ("partner_kinds: [mbo, hbo,", "partner_kinds: [mbo, mbo,", "duplicate names: mbo"),
    ],
)
def test_a_malformed_declaration_names_its_key(tmp_path, old, new, message):
    text = CODEBOOK.read_text()
    assert old in text
    path = tmp_path / "codebook.yaml"
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(CodebookError, match=message):
        load_codebook(path)
