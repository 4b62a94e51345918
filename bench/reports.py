"""Benchmark: company feedback reports rendered per second (issue #7).

    python bench/reports.py [--companies 40] [--employees 20]

Simulates one wave's shareable scale scores for `--companies` companies of `--employees`
respondents (culture and outcome scales of the demo codebook, scores 1-5, a leader flag) and an
earlier wave, then times `report_numbers` and `render_company_reports` as the report assets run them
(content, figures, HTML and PDF of every report), in one process and in one per core.
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.aggregation import company_table
from pipeline.codebook import load_codebook
from pipeline.company_report import render_company_reports, report_numbers
from pipeline.render import engine_description

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
            rendered = render_company_reports(
                report_numbers(waves[-1], scores, responses, company_scores, codebook),
                waves[-1],
                codebook,
                Path(tmp),
                workers,
            )
            rows.append((workers, time.perf_counter() - start))
    print(f"{len(rendered)} company reports (HTML + PDF, with figures), {engine_description()}\n")
    print("| processes | seconds | reports per second |\n|---:|---:|---:|")
    for workers, seconds in rows:
        print(f"| {workers} | {seconds:.1f} | {len(rendered) / seconds:.1f} |")


if __name__ == "__main__":
    main()
