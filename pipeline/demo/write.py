"""The demo scan: a fictitious consortium of technical SMEs, surveyed in three waves.

`write_demo` reads the instrument from the codebook, simulates a panel of companies and employees
with a planted multilevel structure (`simulation`), and writes each wave in a format real exports
arrive in (SPSS .sav, Qualtrics CSV, Excel: `exports`), with the data-quality problems the
validation must catch and the identifiers the anonymisation must remove. When the codebook
declares a trajectory register, some companies run development trajectories with a known effect,
written to the register and participants list it names; when it declares a community register,
some form learning communities with a known level and growth, written to the register and
partners list it names. The truth (planted effects, every raw row's problems and identifiers)
goes to raw/_demo_truth/ (`truth`). Everything comes from one seed, nothing from the clock: two
runs with the same seed write byte-identical files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.demo.exports import WRITERS, check_headers, frame
from pipeline.demo.exports import columns as export_columns
from pipeline.demo.simulation import Params, Simulation
from pipeline.demo.simulation import layout as wave_layout
from pipeline.demo.truth import (
    truth_rows,
    write_community_register,
    write_register,
    write_trajectory_register,
    write_truth,
)
from pipeline.instrument.codebook import load_codebook

DEFAULT_SEED = 20190304
TRUTH_DIR = "_demo_truth"
REGISTER = "company_register.csv"


@dataclass(frozen=True)
class DemoSummary:
    raw_rows: dict[str, int]
    expected_after_qc: dict[str, int]
    files: tuple[str, ...]  # relative to data/raw

    def __str__(self) -> str:
        lines = [
            f"{wave}: {n} raw rows, {self.expected_after_qc[wave]} expected after quality control"
            for wave, n in self.raw_rows.items()
        ]
        return "\n".join([*lines, f"{len(self.files)} files written"])


def _write_wave(sim: Simulation, w: int, raw: Path) -> list[dict]:
    """Simulate and write one wave's export; return its rows' truth."""
    codebook, wave, layout = sim.codebook, sim.waves[w], wave_layout(w)
    rows = sim.wave(w)
    columns = export_columns(layout, codebook)
    check_headers(columns, codebook)
    source = f"{wave.name}/leercultuurscan_{wave.name}.{layout.ext}"
    (raw / wave.name).mkdir(parents=True, exist_ok=True)
    lines = WRITERS[layout.ext](frame(rows, codebook), columns, codebook, raw / source)
    return truth_rows(sim, w, rows, source, lines)


def write_demo(
    data_dir: Path, seed: int = DEFAULT_SEED, params: Params | None = None
) -> DemoSummary:
    """Write the demo exports, the company register, the trajectory register and participants
    list and the community register and partners list (when the codebook declares them) and the
    ground truth under data_dir/raw/.

    The codebook is read from data_dir/raw/codebook.yaml and never written. `params` changes
    the simulated scan (more companies, larger ones, for the scale benchmark `bench/scale.py`);
    the default is the demo, `Params()`.
    """
    raw = Path(data_dir) / "raw"
    params = Params() if params is None else params
    sim = Simulation(load_codebook(raw / "codebook.yaml"), params, seed)
    table = [row for w in range(len(sim.waves)) for row in _write_wave(sim, w, raw)]
    write_register(sim, raw / REGISTER)
    trajectory_files = write_trajectory_register(sim, raw)
    community_files = write_community_register(sim, raw)
    waves = write_truth(sim, seed, table, raw / TRUTH_DIR)
    exports = [t["source_file"] for t in waves.values()]
    return DemoSummary(
        raw_rows={name: t["raw_rows"] for name, t in waves.items()},
        expected_after_qc={name: t["expected_after_qc"] for name, t in waves.items()},
        files=(
            *exports,
            REGISTER,
            *trajectory_files,
            *community_files,
            f"{TRUTH_DIR}/rows.csv",
            f"{TRUTH_DIR}/truth.json",
        ),
    )
