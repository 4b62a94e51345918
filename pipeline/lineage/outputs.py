"""The files an asset wrote, as each materialization records them, and checked against disk.

A file is recorded by a key relative to its folder, not by its absolute path: relative to the
data folder (`processed/2021-T1/reliability.csv`, `raw/_staging/...`), or `reports/...` relative
to the reports folder. A project moved with its Dagster instance stays up to date; a Dagster
instance pointed at another data folder finds the files it recorded missing there.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from pathlib import Path

from pipeline.lineage.fingerprint import sha256_file
from pipeline.lineage.settings import Settings

FILES = "files"  # the metadata entry of every materialization: {key: sha256}
REPORTS = "reports"  # the key prefix of files in the reports folder
MISSING, CHANGED = "missing", "changed"


def output_key(path: Path, settings: Settings) -> str:
    """How a written file is recorded: relative to the reports or the data folder."""
    path, reports = Path(path).resolve(), settings.reports_dir.resolve()
    if path.is_relative_to(reports):
        return f"{REPORTS}/{path.relative_to(reports).as_posix()}"
    return path.relative_to(settings.data_dir.resolve()).as_posix()


def output_path(key: str, settings: Settings) -> Path:
    """Where a recorded file is in the current folders."""
    first, _, rest = key.partition("/")
    return settings.reports_dir / rest if first == REPORTS else settings.data_dir / key


def recorded(paths: Iterable[Path], settings: Settings) -> dict[str, str]:
    """{key: sha256} of files just written, for a materialization's metadata."""
    return {output_key(p, settings): sha256_now(Path(p)) for p in sorted(paths)}


def sha256_now(path: Path) -> str:
    """sha256 of a file, hashed once per content as long as it is not rewritten: `scan run`
    checks every output before each of its stages, and a rewrite (os.replace in write_atomic)
    gives a new inode and modification time."""
    stat = path.stat()
    return _sha256(path, stat.st_ino, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=100_000)
def _sha256(path: Path, inode: int, size: int, mtime_ns: int) -> str:
    return sha256_file(path)


def file_state(key: str, sha256: str, settings: Settings) -> tuple[str, str]:
    """("", sha256) when the file is as recorded, (MISSING, "") or (CHANGED, its sha256 now)."""
    path = output_path(key, settings)
    if not path.is_file():
        return MISSING, ""
    now = sha256_now(path)
    return ("" if now == sha256 else CHANGED), now


def file_problems(files: Mapping[str, str], settings: Settings) -> list[tuple[str, str]]:
    """[(key, MISSING or CHANGED)] of the recorded files that are not on disk as recorded."""
    states = ((key, file_state(key, sha, settings)[0]) for key, sha in sorted(files.items()))
    return [(key, state) for key, state in states if state]


def describe_problems(problems: list[tuple[str, str]]) -> str:
    """'output missing: processed/2021-T1/responses.parquet (and 2 more)'."""
    key, state = problems[0]
    what = "output missing" if state == MISSING else "output changed by hand"
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return f"{what}: {key}{more}"
