"""Writing files so that a reader never sees half of one."""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

RUN_LOCK = ".scan-run.lock"  # in the data folder: held by the `scan run` working on it


def write_atomic(path: Path, write: Callable[[Path], object]) -> Path:
    """Call `write(tmp)` on a temporary file beside `path`, then rename it into place.

    A failure (or a killed process) leaves the previous file untouched and no partial file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


SAV_STAMP = b"04 Mar 1900:00:00"  # 2019-03-04 00:00 as ReadStat writes it (not locale-dependent)


def fix_sav_timestamp(path: Path) -> None:
    """ReadStat stamps the creation date and time into a .sav header (bytes 92-108); a fixed
    stamp makes the same data give the same file."""
    data = bytearray(path.read_bytes())
    stamp = slice(92, 109)
    if not re.fullmatch(rb"\d\d \w\w\w \d\d\d\d:\d\d:\d\d", bytes(data[stamp])):
        raise RuntimeError(f"{path}: unexpected .sav header, cannot fix its timestamp")
    data[stamp] = SAV_STAMP
    path.write_bytes(bytes(data))


VERSIONS = "_versions"  # the folder, in each zone, that keeps every version of every output


def keep_version(path: Path, zone: Path) -> Path:
    """Keep `path`'s current content as `zone/_versions/<sha256><suffix>`, so that a later run
    that overwrites `path` loses nothing: every materialization records the sha256, and with it
    an auditor opens the file as it was. The same content is stored once."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    kept = zone / VERSIONS / f"{digest}{path.suffix}"
    if not kept.exists():
        kept.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(kept, lambda tmp: shutil.copyfile(path, tmp))
    return kept


class Busy(RuntimeError):
    """Another process holds the lock."""


@contextmanager
def exclusive(lock: Path, wait: bool = False) -> Iterator[None]:
    """Hold an exclusive lock on the file `lock` (created if missing) for the `with` block, or
    raise Busy naming its holder; with `wait`, block until it is free. The kernel releases the
    lock when its holder ends, however it ends (a killed process leaves no stale lock)."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            handle.seek(0)
            raise Busy(f"{lock} is held by {handle.read().strip() or 'another process'}") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} since {datetime.now().isoformat(timespec='seconds')}\n")
        handle.flush()
        yield


def remove_partial_files(root: Path) -> list[Path]:
    """Remove the temporary files `write_atomic` leaves when its process is killed mid-write
    (never the outputs themselves); only safe while no writer runs."""
    partial = sorted(root.rglob(".*.tmp")) if root.exists() else []
    for path in partial:
        path.unlink()
    return partial
