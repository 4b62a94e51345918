"""Keyed pseudonyms (GDPR Art. 4(5)): HMAC-SHA256 of a normalised code under a secret key.

The same code gives the same pseudonym in every wave under the same key, so waves link; without
the key nobody can recompute or reverse them, and another key gives unrelated pseudonyms. The key
lives outside the repository and the Dagster instance: in SCAN_PSEUDONYM_KEY, or in a file named
by SCAN_PSEUDONYM_KEY_FILE. Only the key's identifier (a hash of it) is ever written down.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pipeline.lineage.fingerprint import sha256_file
from pipeline.lineage.settings import PROJECT_ROOT

# Documented in the README; accepted only for the unchanged demo exports (see `is_demo`).
DEMO_KEY = b"leercultuurscan demo key: public, for the demo data only"
MIN_KEY_LENGTH = 32


class PseudonymKeyError(ValueError):
    """No usable key; the message says how to provide one."""


@dataclass(frozen=True)
class PseudonymKey:
    secret: bytes
    source: str  # where it came from, for the record: never the key itself

    @property
    def key_id(self) -> str:
        """Identifies the key in outputs without revealing it."""
        return hashlib.sha256(b"leercultuurscan key id\0" + self.secret).hexdigest()[:16]


def load_key(data_dir: Path, env: Mapping[str, str] | None = None) -> PseudonymKey:
    """The key from the environment or a key file; the demo key only for the demo exports."""
    env = os.environ if env is None else env
    if env.get("SCAN_PSEUDONYM_KEY"):
        return _checked(env["SCAN_PSEUDONYM_KEY"].encode("utf-8"), "SCAN_PSEUDONYM_KEY")
    if env.get("SCAN_PSEUDONYM_KEY_FILE"):
        path = Path(env["SCAN_PSEUDONYM_KEY_FILE"]).expanduser().resolve()
        for zone in (PROJECT_ROOT, Path(data_dir).resolve()):
            if path.is_relative_to(zone):
                raise PseudonymKeyError(
                    f"{path}: the key file must live outside {zone}, "
                    "so that it is never committed or shared with the data"
                )
        if not path.is_file():
            raise PseudonymKeyError(f"{path}: key file not found (SCAN_PSEUDONYM_KEY_FILE)")
        return _checked(path.read_bytes().strip(), "key file")
    if is_demo(data_dir):
        return PseudonymKey(DEMO_KEY, "demo key")
    raise PseudonymKeyError(
        "no pseudonymisation key: set SCAN_PSEUDONYM_KEY, or SCAN_PSEUDONYM_KEY_FILE to a file "
        f"outside the repository and the data folder, holding at least {MIN_KEY_LENGTH} "
        "random characters (e.g. `python -c 'import secrets; print(secrets.token_urlsafe(48))'`). "
        "The public demo key is used only for the unchanged demo exports."
    )


def _checked(secret: bytes, source: str) -> PseudonymKey:
    if len(secret) < MIN_KEY_LENGTH:
        raise PseudonymKeyError(f"{source}: the key is shorter than {MIN_KEY_LENGTH} characters")
    return PseudonymKey(secret, source)


def is_demo(data_dir: Path) -> bool:
    """True when every export under raw/ is a demo export, unchanged (by sha256)."""
    raw = Path(data_dir) / "raw"
    truth = raw / "_demo_truth" / "truth.json"
    if not truth.is_file():
        return False
    known = {
        w["source_file"]: w["source_sha256"]
        for w in json.loads(truth.read_text())["waves"].values()
    }
    exports = [
        p
        for wave in raw.iterdir()
        if wave.is_dir() and wave.name[0] not in "._"
        for p in wave.iterdir()
        if p.is_file() and p.name[0] not in "._"
    ]
    return all(known.get(p.relative_to(raw).as_posix()) == sha256_file(p) for p in exports)


def normalise(code: str) -> str:
    """Linkage codes are self-typed: spaces around them and letter case do not count."""
    return code.strip().casefold()


def pseudonymise(codes: pd.Series, key: PseudonymKey, prefix: str) -> pd.Series:
    """`<prefix>_` + 16 hex digits of HMAC-SHA256(key, normalised code); missing stays missing."""

    def one(code) -> str | None:
        if pd.isna(code) or not normalise(str(code)):
            return None
        digest = hmac.new(key.secret, normalise(str(code)).encode("utf-8"), hashlib.sha256)
        return f"{prefix}_{digest.hexdigest()[:16]}"

    return pd.Series([one(c) for c in codes], index=codes.index, dtype="string")
