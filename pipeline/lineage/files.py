"""Writing files so that a reader never sees half of one."""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

RUN_LOCK = ".scan-run.lock"  # in the data folder: held by the `scan run` working on it


def write_atomic(path: Path, write: Callable[[Path], object], private: bool = False) -> Path:
    """Call `write(tmp)` on a temporary file beside `path`, then rename it into place.

    A failure (or a killed process) leaves the previous file untouched and no partial file. A
    shareable file gets the mode any other tool would give it (0666 less the umask); a `private`
    one, of the restricted zone, is its owner's only (0600), and so are the folders this makes
    for it (0700).
    """
    make_folders(path.parent, private)
    mode = 0o600 if private else 0o666
    tmp = path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode))  # the umask applies
    mode = os.stat(tmp).st_mode & 0o777
    try:
        write(tmp)
        os.chmod(tmp, mode)  # a writer may have replaced the file rather than written into it
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def make_folders(folder: Path, private: bool) -> None:
    """`folder` and its missing parents, private ones (0700) or as the umask has it."""
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    for each in reversed(missing):
        each.mkdir(mode=0o700 if private else 0o777, exist_ok=True)


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
    an auditor opens the file as it was. The same content is stored once, as private as
    `path` is (a restricted file, readable by its owner only, stays so)."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    kept = zone / VERSIONS / f"{digest}{path.suffix}"
    if not kept.exists():
        private = not path.stat().st_mode & 0o077
        write_atomic(kept, lambda tmp: shutil.copyfile(path, tmp), private)
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
