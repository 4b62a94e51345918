"""Benchmark: company feedback reports rendered per second (issue #7).

    python bench/reports.py [--companies 40] [--employees 20]

Simulates one wave's shareable scale scores for `--companies` companies of `--employees`
respondents (culture and outcome scales of the demo codebook, scores 1-5, a leader flag) and an
earlier wave, then times `report_numbers` and `render_company_reports` as the report assets run them
(content, figures, HTML and PDF of every report), in one process and in one per core. Then, in
this process, the CPU time per report (this process and its children, so pandoc counts) of the
two parts: the contexts with their figures, and rendering (pandoc, typst, writing).
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.instrument.codebook import load_codebook
from pipeline.psychometrics.aggregation import company_table
from pipeline.reporting.company_report import (
    company_contexts,
    render_company_reports,
    report_numbers,
)
from pipeline.reporting.render import REPORTS_DIR, engine_description, render_reports

CODEBOOK = Path(__file__).parents[1] / "data" / "raw" / "codebook.yaml"


def simulate(codebook, wave: str, companies: int, employees: int, seed: int):
    rng = np.random.default_rng(seed)
    n = companies * employees
    company = np.repeat([f"c_{i:016x}" for i in range(companies)], employees)
    effect = np.repeat(rng.normal(0, 0.3, companies), employees)
    scores = pd.DataFrame({"person_id": [f"p_{i:016x}" for i in range(n)], "company_id": company})
    scores["wave"] = wave
    for name, scale in codebook.scales.items():
        scores[name] = np.clip(3.4 + effect + rng.normal(0, 0.6, n), 1, 5).round(2)
        scores[f"{name}_n_valid"] = len(scale.items)
    responses = pd.DataFrame({"person_id": scores["person_id"]})
    responses["leader"] = pd.array(rng.choice(["ja", "nee", None], n, p=[0.3, 0.6, 0.1]))
    return scores, responses


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (pandoc)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def cpu_per_part(numbers: pd.DataFrame, wave: str, codebook) -> dict[str, float]:
    """CPU seconds per report of building the contexts (figures included) and of rendering."""
    companies = numbers["company_id"].nunique()
    with tempfile.TemporaryDirectory() as tmp:
        start = cpu_seconds()
        contexts = company_contexts(numbers, wave, codebook, Path(tmp))
        built = cpu_seconds()
        render_reports(REPORTS_DIR / "company.qmd", contexts, Path(tmp) / "out")
        done = cpu_seconds()
    return {
        "contexts and figures": (built - start) / companies,
        "rendering": (done - built) / companies,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--companies", type=int, default=40)
    parser.add_argument("--employees", type=int, default=20)
    args = parser.parse_args()
    codebook = load_codebook(CODEBOOK)
    k = codebook.anonymisation.k
    culture = [n for n, s in codebook.scales.items() if s.level == "culture"]
    waves = list(codebook.waves)[:2]
    company_scores = {}
    for seed, wave in enumerate(waves):
        scores, responses = simulate(codebook, wave, args.companies, args.employees, seed)
        company_scores[wave] = pd.concat(
            [company_table(scores, s, "company_id", k) for s in culture], ignore_index=True
        )
    rows = []
    for workers in sorted({1, len(os.sched_getaffinity(0))}):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            numbers = report_numbers(waves[-1], scores, responses, company_scores, codebook)
            rendered = render_company_reports(numbers, waves[-1], codebook, Path(tmp), workers)
            rows.append((workers, time.perf_counter() - start))
    print(f"{len(rendered)} company reports (HTML + PDF, with figures), {engine_description()}\n")
    print("| processes | seconds | reports per second |\n|---:|---:|---:|")
    for workers, seconds in rows:
        print(f"| {workers} | {seconds:.1f} | {len(rendered) / seconds:.1f} |")
    parts = cpu_per_part(numbers, waves[-1], codebook)
    print("\n| part | CPU ms per report |\n|:--|---:|")
    for part, seconds in [*parts.items(), ("total", sum(parts.values()))]:
        print(f"| {part} | {1000 * seconds:.0f} |")


if __name__ == "__main__":
    main()
