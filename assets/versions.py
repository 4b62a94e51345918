"""Code versions derived from source text, so a change to the code marks its assets stale."""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType


def source_version(*modules: ModuleType, data: Sequence[Path] = ()) -> str:
    """A short hash of the modules' source and of the `data` files they read as code (such as
    the data dictionary's contract): changes exactly when their code changes."""
    digest = hashlib.sha256()
    for module in sorted(modules, key=lambda m: m.__name__):
        digest.update(module.__name__.encode())
        digest.update(inspect.getsource(module).encode())
    for path in data:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]
