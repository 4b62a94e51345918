"""The trajectory register and its participants list (restricted zone), read and validated like
an export.

The register (the codebook's `registers.trajectories.file`, CSV or Excel) has one row per
development trajectory: the company's code (in the column named as the codebook's company
identifier), `trajectory_id`, `type`, `start` and `end` (ISO dates, YYYY-MM-DD; `end` empty while
it runs) and `target_group`. The participants list (`participants`) has one row per person and
trajectory: the company code, the person's linkage code (in the column named as the codebook's
respondent identifier) and `trajectory_id`.

Every problem raises a RegisterError naming the file, the line (CSV, header counted) or row
(Excel), the column and what was expected. It never quotes a company or linkage code: they
identify. The rules:

- every column present, no cell of the required ones empty (`end` may be);
- a date is a real calendar date, and `end` is not before `start`;
- `type` is one the codebook lists (when it lists any);
- the company is in the company register (when the codebook declares one);
- a trajectory id appears once per company;
- two trajectories of one company with the same type and target group do not overlap in time
  (the same programme registered twice, whose effects could not be told apart);
- a participant's trajectory is in the register for that company, and a person is listed once
  per trajectory.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pipeline.ingest.register_files import (
    FIRST,
    RegisterError,
    first,
    place,
    read_cells,
    require_columns,
    require_filled,
    require_unique,
)
from pipeline.instrument.codebook import Codebook, TrajectoryRegister

REGISTER_COLUMNS = ("trajectory_id", "type", "start", "end", "target_group")
OPTIONAL = {"end"}  # a trajectory that still runs has no end
DECLARED = "registers.trajectories"


def _dates(frame: pd.DataFrame, column: str, path: Path, word: str) -> pd.Series:
    parsed = pd.to_datetime(frame[column], format="%Y-%m-%d", errors="coerce")
    bad = frame[column].ne("") & parsed.isna()
    if bad.any():
        index = first(bad)
        raise RegisterError(
            f"{place(path, word, index)}: {column} {frame[column].iat[index]!r} is not a "
            "date (expected YYYY-MM-DD, a real calendar date)"
        )
    return parsed


def read_trajectories(
    path: Path, codebook: Codebook, companies: set[str] | None = None
) -> pd.DataFrame:
    """The register as a table (company, trajectory_id, type, start, end, target_group, and
    `_source_row`), validated; `companies` the company register's codes, if there is one."""
    spec: TrajectoryRegister | None = codebook.trajectories
    if spec is None:
        raise RegisterError("the codebook declares no trajectory register")
    frame, word = read_cells(path, "trajectory register", DECLARED)
    company = codebook.company_id
    require_columns(frame, [company, *REGISTER_COLUMNS], path, "trajectory register")
    required = [c for c in [company, *REGISTER_COLUMNS] if c not in OPTIONAL]
    require_filled(frame, required, path, word)
    start = _dates(frame, "start", path, word)
    end = _dates(frame, "end", path, word)
    for index in range(len(frame)):
        where = place(path, word, index)
        if pd.notna(end.iat[index]) and end.iat[index] < start.iat[index]:
            raise RegisterError(f"{where}: end {frame['end'].iat[index]} is before start")
        if spec.types and frame["type"].iat[index] not in spec.types:
            raise RegisterError(
                f"{where}: type {frame['type'].iat[index]!r} is not one of the codebook's "
                f"registers.trajectories.types ({', '.join(spec.types)})"
            )
        if companies is not None and frame[company].iat[index] not in companies:
            raise RegisterError(
                f"{where}: its company is not in the company register (registers.companies)"
            )
    table = pd.DataFrame(
        {
            "company": frame[company],
            "trajectory_id": frame["trajectory_id"],
            "type": frame["type"],
            "start": start,
            "end": end,
            "target_group": frame["target_group"],
            "_source_row": range(FIRST, FIRST + len(frame)),
        }
    )
    require_unique(
        table,
        ["company", "trajectory_id"],
        path,
        word,
        "a trajectory id repeats within one company",
    )
    _no_overlap(table, path, word)
    return table


def _no_overlap(table: pd.DataFrame, path: Path, word: str) -> None:
    """Trajectories of one company with one type and target group follow each other."""
    for _, group in table.groupby(["company", "type", "target_group"], sort=False):
        ordered = group.sort_values(["start", "_source_row"])
        ends = ordered["end"].fillna(pd.Timestamp.max)
        later = ordered["start"].iloc[1:].to_numpy() <= ends.iloc[:-1].to_numpy()
        if later.any():
            k = int(later.argmax())
            rows = ordered["_source_row"].iloc[[k, k + 1]].tolist()
            raise RegisterError(
                f"{path} {word}s {rows[0]} and {rows[1]}: two trajectories of the same type and "
                "target group overlap in time within one company"
            )


def read_participants(path: Path, codebook: Codebook, register: pd.DataFrame) -> pd.DataFrame:
    """The participants list as a table (company, person, trajectory_id, `_source_row`),
    validated against the `register` that `read_trajectories` returned."""
    frame, word = read_cells(path, "participants list", DECLARED)
    company, person = codebook.company_id, codebook.respondent_id
    require_columns(frame, [company, person, "trajectory_id"], path, "participants list")
    require_filled(frame, [company, person, "trajectory_id"], path, word)
    table = pd.DataFrame(
        {
            "company": frame[company],
            "person": frame[person],
            "trajectory_id": frame["trajectory_id"],
            "_source_row": range(FIRST, FIRST + len(frame)),
        }
    )
    known = table.merge(register[["company", "trajectory_id"]], how="left", indicator=True)
    unknown = known["_merge"].eq("left_only").to_numpy()
    if unknown.any():
        index = int(unknown.argmax())
        raise RegisterError(
            f"{place(path, word, index)}: trajectory_id "
            f"{table['trajectory_id'].iat[index]!r} is not in the trajectory register for its "
            "company"
        )
    require_unique(
        table,
        ["company", "person", "trajectory_id"],
        path,
        word,
        "a person is listed twice for one trajectory",
    )
    return table
