"""Writing files so that a reader never sees half of one."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


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
