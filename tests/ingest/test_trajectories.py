"""The trajectory register and its participants list, declared in the codebook and validated like
an export: every problem names the file, the line or row and what was expected, and never a
company or linkage code."""

from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from conftest import DEMO_RAW

from assets.definitions import ALL_ASSETS, ALL_CHECKS, build_definitions
from assets.ingest import trajectory_register
from assets.resources import resources_for
from assets.staleness import pipeline_status
from pipeline.ingest.trajectories import RegisterError, read_participants, read_trajectories
from pipeline.instrument.codebook import CodebookError, load_codebook
from pipeline.lineage.settings import Settings
from pipeline.validate.quality import read_register

DECLARED = """
  trajectories:
    file: trajectory_register.csv
    types: [werkplekleren, leiderschap]
    participation: {variable: trajectory, value: ja}
    participants: trajectory_participants.csv
"""
HEADER = "company_code,trajectory_id,type,start,end,target_group\n"
GOOD = (
    HEADER
    + "C002,T1,werkplekleren,2019-09-01,2020-06-30,productie\n"
    + "C002,T2,werkplekleren,2020-09-01,,productie\n"  # follows T1, still running
    + "C002,T3,leiderschap,2020-01-15,2020-12-31,leidinggevenden\n"
    + "C003,T1,werkplekleren,2021-01-01,2021-12-31,alle medewerkers\n"
)


def with_register(text: str, block: str = DECLARED) -> str:
    """The codebook text with its registers.trajectories block replaced by `block`."""
    lines = text.splitlines(keepends=True)
    start = lines.index(next(line for line in lines if line.startswith("  trajectories:")))
    end = next(i for i in range(start + 1, len(lines)) if not lines[i].startswith("    "))
    return "".join(lines[:start]) + block.lstrip("\n") + "".join(lines[end:])


@pytest.fixture
def codebook(tmp_path, codebook_text):
    path = tmp_path / "codebook.yaml"
    path.write_text(with_register(codebook_text))
    return load_codebook(path)


@pytest.fixture
def companies() -> set[str]:
    return read_register(DEMO_RAW / "company_register.csv", "company_code")


def write(tmp_path: Path, text: str, name: str = "trajectory_register.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def codebook_file(folder: Path, text: str) -> Path:
    path = folder / "other.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_codebook_declares_the_register(codebook, codebook_text, tmp_path):
    spec = codebook.trajectories
    assert spec.file == "trajectory_register.csv" and spec.types == ("werkplekleren", "leiderschap")
    assert (spec.participation.variable, spec.participation.value) == ("trajectory", "ja")
    assert spec.participants == "trajectory_participants.csv"
    assert load_codebook(DEMO_RAW / "codebook.yaml").trajectories is not None  # the demo's
    path = codebook_file(tmp_path, with_register(codebook_text, ""))
    assert load_codebook(path).trajectories is None  # optional


def test_a_good_register_reads_with_dates_and_lines(tmp_path, codebook, companies):
    table = read_trajectories(write(tmp_path, GOOD), codebook, companies)
    assert list(table.columns) == [
        "company", "trajectory_id", "type", "start", "end", "target_group", "_source_row"
    ]  # fmt: skip
    assert list(table["_source_row"]) == [2, 3, 4, 5]
    assert table["start"].iloc[0] == pd.Timestamp("2019-09-01")
    assert pd.isna(table["end"].iloc[1])  # still running
    excel = tmp_path / "trajectory_register.xlsx"
    pd.read_csv(write(tmp_path, GOOD), dtype=str, keep_default_na=False).to_excel(
        excel, index=False
    )
    assert read_trajectories(excel, codebook, companies).equals(table)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("C002,T9,werkplekleren,,2020-06-30,x\n", "line 6: start is empty"),
        (
            "C002,T9,werkplekleren,2021-02-30,,x\n",
            "line 6: start '2021-02-30' is not a date (expected YYYY-MM-DD",
        ),
        ("C002,T9,werkplekleren,2021-03-01,2021-02-01,x\n", "line 6: end 2021-02-01 is before"),
        ("C002,T9,coaching,2021-03-01,,x\n", "line 6: type 'coaching' is not one of"),
        (
            "C999,T9,werkplekleren,2021-03-01,,x\n",
            "line 6: its company is not in the company register",
        ),
        ("C003,T1,leiderschap,2022-01-01,,x\n", "lines 5, 6: a trajectory id repeats"),
        (
            "C002,T9,werkplekleren,2020-06-01,2020-08-31,productie\n",
            "lines 2 and 6: two trajectories of the same type and target group overlap",
        ),
    ],
)
def test_each_problem_names_file_line_and_expectation(tmp_path, codebook, companies, line, message):
    path = write(tmp_path, GOOD + line)
    with pytest.raises(RegisterError) as error:
        read_trajectories(path, codebook, companies)
    text = str(error.value)
    assert text.startswith(str(path)) and message in text, text
    assert "C002" not in text and "C003" not in text and "C999" not in text  # no company code


def test_overlap_is_allowed_across_types_and_target_groups(tmp_path, codebook, companies):
    other_group = GOOD + "C002,T9,werkplekleren,2020-01-01,2020-03-31,kantoor\n"
    assert len(read_trajectories(write(tmp_path, other_group), codebook, companies)) == 5


def test_a_missing_column_or_file_says_which(tmp_path, codebook):
    path = write(tmp_path, GOOD.replace(",target_group\n", "\n", 1))
    with pytest.raises(RegisterError, match="needs the columns .*; missing target_group"):
        read_trajectories(path, codebook)
    with pytest.raises(RegisterError, match="trajectory register not found"):
        read_trajectories(tmp_path / "absent.csv", codebook)


def test_participants_are_checked_against_the_register(tmp_path, codebook, companies):
    register = read_trajectories(write(tmp_path, GOOD), codebook, companies)
    header = "company_code,resp_code,trajectory_id\n"
    good = header + "C002,AB12CD,T1\nC002,AB12CD,T3\nC003,XY99ZZ,T1\n"
    path = write(tmp_path, good, "trajectory_participants.csv")
    table = read_participants(path, codebook, register)
    assert list(table["_source_row"]) == [2, 3, 4] and set(table["person"]) == {"AB12CD", "XY99ZZ"}
    for extra, message in [
        ("C003,QQ11QQ,T3\n", "line 5: trajectory_id 'T3' is not in the trajectory register"),
        ("C002,AB12CD,T1\n", "lines 2, 5: a person is listed twice for one trajectory"),
        ("C002,,T1\n", "line 5: resp_code is empty"),
    ]:
        path = write(tmp_path, good + extra, "trajectory_participants.csv")
        with pytest.raises(RegisterError) as error:
            read_participants(path, codebook, register)
        text = str(error.value)
        assert message in text and "AB12CD" not in text and "QQ11QQ" not in text, text


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("value: ja}", "value: maybe}", "registers.trajectories.participation.value: 'maybe'"),
        ("{variable: trajectory,", "{variable: shoe_size,", "'shoe_size' is not a background"),
        ("    types:", "    kinds:", "registers.trajectories.kinds: unknown key"),
        ("file: trajectory_register.csv", "files: x.csv", "registers.trajectories.file"),
    ],
)
def test_a_malformed_declaration_names_its_key(tmp_path, codebook_text, old, new, message):
    path = tmp_path / "codebook.yaml"
    path.write_text(with_register(codebook_text).replace(old, new, 1))
    with pytest.raises(CodebookError, match=message.replace("(", r"\(")):
        load_codebook(path)


def declare(data: Path, register: str, participants: str | None = None) -> None:
    """The demo codebook with the register declared, and its files under raw/."""
    codebook = data / "raw" / "codebook.yaml"
    text = codebook.read_text(encoding="utf-8")
    codebook.write_text(with_register(text))
    (data / "raw" / "trajectory_register.csv").write_text(register, encoding="utf-8")
    if participants is not None:
        (data / "raw" / "trajectory_participants.csv").write_text(participants, encoding="utf-8")


def materialize_register(data: Path, instance) -> dg.ExecuteInProcessResult:
    settings = Settings(data, data.parent / "reports")
    return dg.materialize(
        [*ALL_ASSETS, *ALL_CHECKS],
        selection=dg.AssetSelection.assets(trajectory_register),
        instance=instance,
        resources=resources_for(settings),
        raise_on_error=False,
    )


def test_the_register_asset_stores_it_restricted_and_status_follows_its_files(demo_data, instance):
    settings = Settings(demo_data, demo_data.parent / "reports")
    participants = "company_code,resp_code,trajectory_id\nC002,AB12CD,T1\n"
    declare(demo_data, GOOD, participants)
    assert materialize_register(demo_data, instance).success
    stored = pd.read_parquet(settings.staging_dir / "trajectory_register" / "all.parquet")
    listed = pd.read_parquet(settings.staging_dir / "trajectory_participants" / "all.parquet")
    assert len(stored) == 4 and list(listed["person"]) == ["AB12CD"]
    assert not any(settings.processed_dir.rglob("*trajector*"))  # nothing in the shareable zone
    definitions = build_definitions(settings)
    assert pipeline_status(instance, definitions, settings)[("trajectory_register", None)] == ""
    # a changed register makes it stale; a broken one fails the run and keeps what was stored
    (demo_data / "raw" / "trajectory_register.csv").write_text(GOOD + "C002,T1,x,y,z,w\n")
    reason = pipeline_status(instance, definitions, settings)[("trajectory_register", None)]
    assert reason == "trajectory register or its inputs changed"
    failed = materialize_register(demo_data, instance)
    assert not failed.success
    error = failed.get_step_failure_events()[0].event_specific_data.error.cause.message
    assert "trajectory_register.csv line 6: start 'y' is not a date" in error
    assert pd.read_parquet(settings.staging_dir / "trajectory_register" / "all.parquet").equals(
        stored
    )


def test_without_a_declared_register_the_asset_is_empty_and_says_why(demo_data, instance):
    codebook = demo_data / "raw" / "codebook.yaml"
    codebook.write_text(with_register(codebook.read_text(encoding="utf-8"), ""))
    result = materialize_register(demo_data, instance)
    assert result.success
    notes = {
        e.asset_key.to_user_string(): e.materialization.metadata["note"].value
        for e in result.get_asset_materialization_events()
    }
    assert notes == {
        "trajectory_register": "no trajectory register declared (the codebook's "
        "registers.trajectories)",
        "trajectory_participants": "no trajectory register declared (the codebook's "
        "registers.trajectories)",
    }
