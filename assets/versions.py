"""Code versions derived from source text, so a change to the code marks its assets stale."""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from pipeline.instrument import dictionary
from pipeline.instrument.dictionary import CONTRACT


def source_version(*modules: ModuleType, data: Sequence[Path] = (), base: str = "") -> str:
    """A short hash of the modules' source and of the `data` files they read as code (such as
    the data dictionary's contract), on top of a `base` version: changes exactly when their
    code changes."""
    digest = hashlib.sha256(base.encode())
    for module in sorted(modules, key=lambda m: m.__name__):
        digest.update(module.__name__.encode())
        digest.update(inspect.getsource(module).encode())
    for path in data:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def shareable(code_version: str) -> str:
    """The code version of an asset that stores a shareable table: its own, and the data
    dictionary's (contract and code), whose descriptions the stored file carries as field
    metadata, so that a changed description marks the stored file stale too."""
    return source_version(dictionary, data=[CONTRACT], base=code_version)
