"""Content hashes: files are identified by their sha256, never by their modification time."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
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


@dataclass(frozen=True)
class ReportVersion:
    """The data version a report states, so that two versions of a report can be told apart:
    a content hash over the tables it was made from, and the waves those tables hold."""

    digest: str  # the first 12 hex digits of a sha256
    waves: tuple[str, ...]

    def waves_listed(self, last: str) -> str:
        """The waves as a list in words: `a`, `a <last> b`, `a, b <last> c`."""
        head = ", ".join(self.waves[:-1])
        return f"{head} {last} {self.waves[-1]}" if head else "".join(self.waves)


def report_version(frames: Iterable[pd.DataFrame], waves: Sequence[str]) -> ReportVersion:
    """The version of a report made from `frames` (in a fixed order) holding `waves`: the same
    tables give the same version, and so the same bytes; any changed row another one."""
    digest = hashlib.sha256(json.dumps(list(waves)).encode("utf-8"))
    for frame in frames:
        digest.update(frame_digest(frame).encode("ascii"))
    return ReportVersion(digest.hexdigest()[:12], tuple(waves))
