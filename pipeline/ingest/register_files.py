"""What the registers' readers share (pipeline/ingest/trajectories.py and communities.py): a
register file's cells as text, and errors that name the file, the line (CSV, header counted) or
row (Excel) and what was expected, never a company or linkage code (they identify)."""

from pathlib import Path

import pandas as pd

FIRST = 2  # the number of the first data line (CSV) or row (Excel): the header is 1


class RegisterError(ValueError):
    """A register file that does not follow its format."""


def read_cells(path: Path, what: str, declared: str) -> tuple[pd.DataFrame, str]:
    """The file's cells as text ("" when empty) and the word for its rows; `declared` names
    the codebook key that points to it."""
    if not path.is_file():
        raise RegisterError(f"{path}: {what} not found (the codebook's {declared})")
    if path.suffix.lower() == ".xlsx":
        frame = pd.read_excel(path, dtype=str, keep_default_na=False)
        return frame.map(str.strip), "row"
    if path.suffix.lower() == ".csv":
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        return frame.map(str.strip), "line"
    raise RegisterError(f"{path}: a {what} must be a .csv or .xlsx file")


def require_columns(frame: pd.DataFrame, columns: list[str], path: Path, what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise RegisterError(
            f"{path}: the {what} needs the columns {', '.join(columns)}; "
            f"missing {', '.join(missing)}"
        )


def require_filled(frame: pd.DataFrame, columns: list[str], path: Path, word: str) -> None:
    for column in columns:
        empty = frame[column].eq("")
        if empty.any():
            raise RegisterError(f"{place(path, word, first(empty))}: {column} is empty")


def first(mask: pd.Series) -> int:
    """The position of the first True of `mask`."""
    return int(mask.to_numpy().argmax())


def place(path: Path, word: str, index: int) -> str:
    return f"{path} {word} {FIRST + index}"


def require_unique(table: pd.DataFrame, keys: list[str], path: Path, word: str, what: str) -> None:
    """`table` (with `_source_row`) has no two rows alike on `keys`."""
    repeated = table[table.duplicated(keys, keep=False)]
    if not repeated.empty:
        rows = repeated.groupby(keys, sort=False)["_source_row"].apply(list).iloc[0]
        raise RegisterError(f"{path} {word}s {', '.join(map(str, rows))}: {what}")
