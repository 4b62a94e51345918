"""Code versions derived from source text, so a change to the code marks its assets stale."""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Sequence
from pathlib import Path

from pipeline.instrument.dictionary import CONTRACT


def source_version(*modules: str, data: Sequence[Path] = (), base: str = "") -> str:
    """A short hash of the source of the `modules` (dotted names) and of the `data` files they
    read as code (such as the data dictionary's contract), on top of a `base` version: changes
    exactly when their code changes. The source is read from the files, without importing the
    modules (matplotlib, for one, loads only when a figure is drawn)."""
    digest = hashlib.sha256(base.encode())
    for module in sorted(modules):
        spec = importlib.util.find_spec(module)
        if spec is None or spec.origin is None:
            raise ValueError(f"source_version: no module {module!r} to read the source of")
        digest.update(module.encode())
        digest.update(Path(spec.origin).read_text().encode())
    for path in data:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def shareable(code_version: str) -> str:
    """The code version of an asset that stores a shareable table: its own, and the data
    dictionary's (contract and code), whose descriptions the stored file carries as field
    metadata, so that a changed description marks the stored file stale too."""
    return source_version("pipeline.instrument.dictionary", data=[CONTRACT], base=code_version)
