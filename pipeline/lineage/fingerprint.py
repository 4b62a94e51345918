"""Content hashes: files are identified by their sha256, never by their modification time."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_hashes(paths: Iterable[Path], root: Path) -> dict[str, str]:
    """sha256 per file, keyed by the path relative to `root`."""
    return {p.relative_to(root).as_posix(): sha256_file(p) for p in sorted(paths)}


def combine(parts: Mapping[str, object]) -> str:
    """One sha256 over named parts (file hashes, code versions), independent of dict order."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def derived_seed(*parts: str) -> int:
    """A seed derived from names (stage, wave, scale), as R's targets gives each target its own:
    stable across runs and machines, different for every target, never drawn from the clock."""
    digest = hashlib.sha256("/".join(parts).encode("utf8")).digest()
    return int.from_bytes(digest[:4], "big")


def frame_digest(frame: pd.DataFrame) -> str:
    """sha256 of a table's content (columns, types and values, not the index): a data version
    that changes exactly when the rows do, also when what changed them is not a file."""
    header = json.dumps([list(map(str, frame.columns)), list(map(str, frame.dtypes))])
    digest = hashlib.sha256(header.encode("utf-8"))
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()
