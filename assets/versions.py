"""Code versions derived from source text, so a change to the code marks its assets stale."""

from __future__ import annotations

import hashlib
import inspect
from types import ModuleType


def source_version(*modules: ModuleType) -> str:
    """A short hash of the modules' source: changes exactly when their code changes."""
    digest = hashlib.sha256()
    for module in sorted(modules, key=lambda m: m.__name__):
        digest.update(module.__name__.encode())
        digest.update(inspect.getsource(module).encode())
    return digest.hexdigest()[:16]
