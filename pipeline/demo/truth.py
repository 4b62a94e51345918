"""The demo's ground truth and company register: every raw row's planted problems, identifiers
and linkage-code errors (raw/_demo_truth/rows.csv), the parameters, planted effects and per-wave
counts (truth.json), and the simulated companies (company_register.csv).
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from pipeline.demo.simulation import PROBLEMS, Row, Simulation
from pipeline.lineage.fingerprint import sha256_file

QC_RULE = (
    "A row survives quality control when it has none of the problems; a row with any of them is "
    "quarantined with all its reasons. An unfinished response (Progress < 100) is a problem only "
    "when no scale has its minimum share of valid items."
)
PROBLEM_DEFINITIONS = {
    "duplicate": "an earlier submission of a person who later submitted a complete one",
    "preview": "Status = 1 (survey preview)",
    "test": "company code TEST or resp_code 'test' (any case, spaces)",
    "incomplete": "Progress < 100 and no scale has its minimum share (min_valid) of valid items",
    "speeder": "duration below 2 seconds per item, or below a third of the wave's median duration",
    "straightliner": "every item answered with the same code (reverse-keyed items included)",
    "out_of_range": "an item code that is neither in the response scale nor a missing code",
    "unknown_company": "a company code that is neither in the register nor the test code",
    "outside_window": "StartDate before the wave's start or after its end (dates, inclusive)",
}


def _write_csv_table(path: Path, header: list[str], rows: list[list]) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def write_register(sim: Simulation, path: Path) -> None:
    rows = [
        [c.code, c.name, c.sector, c.size, sim.waves[c.joined].name]
        for c in sorted(sim.companies, key=lambda c: c.code)
    ]
    header = ["company_code", "company_name", "sector", "employees", "joined_wave"]
    _write_csv_table(path, header, rows)


def _rounded(value):
    """Floats to 4 decimals, recursively, so truth.json does not depend on float noise."""
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_rounded(v) for v in value]
    return value


def _effects(sim: Simulation) -> dict:
    p = sim.params
    return {
        "icc1_target_observed_culture_scales": 0.10,
        "latent_company_share_culture": p.latent_company_share,
        "culture_correlation_latent": p.culture_correlation,
        "culture_to_individual": p.culture_to_individual,
        "culture_to_outcome_within_and_between": p.culture_to_outcome,
        "individual_to_outcome": p.individual_to_outcome,
        "wave_shift_sd": {w.name: p.wave_effect * i for i, w in enumerate(sim.waves)},
        "wave_shift_applies_to": ["culture", "outcome"],
        "item_loadings": dict(
            zip(sim.instrument.items, sim.instrument.loadings.tolist(), strict=True)
        ),
    }


def _wave_truth(table: list[dict]) -> dict:
    counts = {name: sum(name in r["problems"] for r in table) for name in PROBLEMS}
    return {
        "raw_rows": len(table),
        "expected_after_qc": sum(not r["problems"] for r in table),
        "unfinished_but_scorable": sum(r["unfinished"] and not r["problems"] for r in table),
        "rows_per_problem": counts,
        "rows_with_contact_or_identifying_comment": sum(len(r["identifiers"]) > 1 for r in table),
        "distinct_persons": len({r["person_uid"] for r in table if r["person_uid"]}),
        "resp_code_typed_differently": sum(r["code_variant"] for r in table),
        "resp_code_typos": sum(r["code_typo"] for r in table),
    }


def _code_errors(row: Row) -> tuple[bool, bool]:
    """(typed differently but the same after trimming and upper-casing, a real typo)."""
    if row.person is None:
        return False, False
    true, typed = row.person.resp_code, row.resp_code.strip().upper()
    return row.resp_code != true and typed == true, typed != true


def truth_rows(sim: Simulation, w: int, rows: list[Row], source: str, lines: list[int]):
    table = []
    median_duration = float(np.median([row.duration for row in rows]))
    for row, line in zip(rows, lines, strict=True):
        problems = sim.problems(row, w, median_duration)
        variant, typo = _code_errors(row)
        table.append(
            {
                "wave": sim.waves[w].name,
                "source_file": source,
                "source_row": line,
                "response_id": row.response_id,
                "person_uid": row.person.uid if row.person else "",
                "company_code_true": row.company_true,
                "problems": problems,
                "identifiers": list(dict.fromkeys(row.identifiers)),
                "unfinished": row.progress < 100,
                "code_variant": variant,
                "code_typo": typo,
            }
        )
    return table


def write_truth(sim: Simulation, seed: int, table: list[dict], folder: Path) -> dict:
    """rows.csv and truth.json; returns the per-wave truth."""
    folder.mkdir(exist_ok=True)
    header = ["wave", "source_file", "source_row", "response_id", "person_uid",
              "company_code_true", "code_variant", "code_typo", "problems",
              "planted_identifiers"]  # fmt: skip
    rows = [
        [
            *(r[k] for k in header[:-4]),
            int(r["code_variant"]),
            int(r["code_typo"]),
            ";".join(r["problems"]),
            ";".join(r["identifiers"]),
        ]
        for r in table
    ]
    _write_csv_table(folder / "rows.csv", header, rows)
    waves = {}
    for wave in sim.waves:
        in_wave = [r for r in table if r["wave"] == wave.name]
        source = in_wave[0]["source_file"]
        waves[wave.name] = {
            "source_file": source,
            "source_sha256": sha256_file(folder.parent / source),
            **_wave_truth(in_wave),
        }
    truth = {
        "seed": seed,
        "generator": "pipeline.demo.write_demo",
        "instrument": {"name": sim.codebook.instrument, "version": sim.codebook.version},
        "parameters": asdict(sim.params),
        "effects": _effects(sim),
        "qc_rule": QC_RULE,
        "problem_definitions": PROBLEM_DEFINITIONS,
        "companies": {"total": len(sim.companies), "persons_ever_employed": sim.people},
        "waves": waves,
    }
    text = json.dumps(_rounded(truth), sort_keys=True, indent=2, ensure_ascii=False)
    (folder / "truth.json").write_text(text + "\n", encoding="utf-8")
    return waves
