"""Every path the pipeline uses comes from here (DESIGN.md, "One settings object")."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# The project folder: its templates, fonts and lock file (the checkout or the installed tree).
PROJECT_ROOT = Path(__file__).resolve().parents[2]
REPORTS_DIR = PROJECT_ROOT / "reports"  # the report templates and their fonts
ALL_WAVES = "all_waves"  # the folder and asset group of the cross-wave results


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    reports_dir: Path

    @classmethod
    def from_env(cls, data_dir: str | Path | None = None, reports_dir: str | Path | None = None):
        """Explicit arguments win over SCAN_DATA_DIR / SCAN_REPORTS_DIR, which win over defaults."""
        data = data_dir or os.environ.get("SCAN_DATA_DIR") or "data"
        reports = reports_dir or os.environ.get("SCAN_REPORTS_DIR") or "reports/output"
        return cls(Path(data).resolve(), Path(reports).resolve())

    @property
    def raw_dir(self) -> Path:
        """The restricted zone: identified exports and everything derived before anonymisation."""
        return self.data_dir / "raw"

    @property
    def codebook_path(self) -> Path:
        return self.raw_dir / "codebook.yaml"

    @property
    def staging_dir(self) -> Path:
        """The pipeline's own restricted intermediate files (git-ignored)."""
        return self.raw_dir / "_staging"

    @property
    def processed_dir(self) -> Path:
        """The shareable zone for data; nothing identifying is written here."""
        return self.data_dir / "processed"

    def wave_dir(self, wave: str) -> Path:
        return self.raw_dir / wave

    def waves(self) -> list[str]:
        """Wave folders under raw/: every directory not starting with '_' or '.'."""
        if not self.raw_dir.is_dir():
            return []
        return sorted(
            p.name for p in self.raw_dir.iterdir() if p.is_dir() and p.name[0] not in "_."
        )
