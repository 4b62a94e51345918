"""File permissions: a shareable file gets the mode any other tool would give it (0666 less the
umask), so colleagues can read the outputs where the umask lets them; a file of the restricted
zone stays its owner's only (0600, in folders of mode 0700), whatever the umask."""

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from pipeline.lineage.files import keep_version, write_atomic


@contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def current_umask() -> int:
    old = os.umask(0o077)
    os.umask(old)
    return old


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def replace_with(content: bytes):
    """A writer that replaces the file it is given rather than writing into it (as some
    libraries do): a new file, with the mode the umask gives."""

    def write(tmp: Path) -> None:
        other = tmp.with_name(tmp.name + ".other")
        other.write_bytes(content)
        os.replace(other, tmp)

    return write


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o002, 0o077])
def test_shareable_files_follow_the_umask_and_restricted_ones_stay_private(tmp_path, mask):
    with umask(mask):
        shared = write_atomic(tmp_path / "shared" / "deep" / "a.csv", lambda t: t.write_text("x"))
        replaced = write_atomic(tmp_path / "shared" / "b.csv", replace_with(b"y"))
        secret = write_atomic(
            tmp_path / "restricted" / "deep" / "c.parquet", lambda t: t.write_text("z"), True
        )
        secret_replaced = write_atomic(tmp_path / "restricted" / "d", replace_with(b"w"), True)
        kept_shared = keep_version(shared, tmp_path / "shared")
        kept_secret = keep_version(secret, tmp_path / "restricted")
    for path in (shared, replaced, kept_shared):
        assert mode(path) == 0o666 & ~mask, path
    for path in (secret, secret_replaced, kept_secret):
        assert mode(path) == 0o600, path
    for folder in (tmp_path / "shared" / "deep", kept_shared.parent):
        assert mode(folder) == 0o777 & ~mask, folder
    for folder in (tmp_path / "restricted", tmp_path / "restricted" / "deep", kept_secret.parent):
        assert mode(folder) == 0o700, folder
    assert shared.read_text() == "x" and replaced.read_bytes() == b"y"
    assert not list(tmp_path.rglob("*.tmp")) and not list(tmp_path.rglob("*.other"))


def test_a_failed_write_leaves_the_old_file_and_its_mode(tmp_path):
    path = write_atomic(tmp_path / "a.csv", lambda t: t.write_text("old"), private=True)

    def fail(tmp: Path) -> None:
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_atomic(path, fail, private=True)
    assert path.read_text() == "old" and mode(path) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["a.csv"]


def test_a_scan_run_writes_shareable_files_by_the_umask_and_restricted_ones_private(scan_run):
    """The session's `scan run` ran with this process's umask (a subprocess inherits it)."""
    mask = current_umask()
    shareable = [scan_run.data / "processed", scan_run.reports]
    files = [p for zone in shareable for p in zone.rglob("*") if p.is_file()]
    folders = [p for zone in shareable for p in zone.rglob("*") if p.is_dir()]
    assert len(files) > 100
    wrong = [f"{p}: {mode(p):o}" for p in files if mode(p) != 0o666 & ~mask]
    wrong += [f"{p}: {mode(p):o}" for p in folders if mode(p) != 0o777 & ~mask]
    assert not wrong, f"umask {mask:03o}: {wrong[:5]}"

    staging = scan_run.data / "raw" / "_staging"
    restricted = [staging, *staging.rglob("*")]
    assert sum(p.is_file() for p in restricted) > 10
    wrong = [
        f"{p}: {mode(p):o}" for p in restricted if mode(p) != (0o600 if p.is_file() else 0o700)
    ]
    assert not wrong, wrong[:5]
