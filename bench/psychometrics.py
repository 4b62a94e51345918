"""Benchmark: scale scores and reliability for 100,000 respondents x 60 items (issue #5).

    python bench/psychometrics.py [--respondents 100000] [--scales 12] [--repeats 3]

Simulates 12 five-item agree5 scales (one reverse-keyed item each, 2% missing codes), then times
`score_scales` and `reliability_tables` (alpha, standardised alpha, omega total and the item
statistics) as the pipeline runs them, best of `--repeats`; the bootstrap interval of alpha is
timed apart, on a wave of the demo's size (600 respondents). When Rscript with psych is on PATH
it times `psych::alpha` on the same items, scale by scale, in the same run.
"""

import argparse
import dataclasses
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.instrument.codebook import Scale, load_codebook
from pipeline.instrument.scoring import recode_items, score_scales
from pipeline.psychometrics.reliability import alpha, reliability_tables

CODEBOOK = Path(__file__).parents[1] / "data" / "raw" / "codebook.yaml"
ITEMS_PER_SCALE = 5
WAVE_SIZE = 600
R_SCRIPT = """
suppressMessages(library(psych))
x <- read.csv("{path}")
keys <- split(names(x), sub("_[0-9]+$", "", names(x)))
elapsed <- system.time(for (k in keys) psych::alpha(x[, k], check.keys = FALSE))[["elapsed"]]
cat(elapsed)
"""


def simulate(n: int, n_scales: int, seed: int = 1):
    codebook = load_codebook(CODEBOOK)
    agree5 = codebook.response_scales["agree5"]
    rng = np.random.default_rng(seed)
    columns, scales = {}, {}
    for s in range(n_scales):
        name = f"S{s:02d}"
        items = tuple(f"{name}_{i}" for i in range(1, ITEMS_PER_SCALE + 1))
        trait = rng.normal(size=n)
        for i, item in enumerate(items):
            latent = 0.7 * trait + 0.7 * rng.normal(size=n)
            latent = -latent if i == ITEMS_PER_SCALE - 1 else latent
            answers = np.digitize(latent, [-1.5, -0.5, 0.5, 1.5]) + 1
            answers[rng.random(n) < 0.02] = 9  # "weet niet"
            columns[item] = answers
        scales[name] = Scale(name, name, "culture", agree5, items, (items[-1],), 0.66)
    return pd.DataFrame(columns), dataclasses.replace(codebook, scales=scales)


def best_of(repeats: int, job) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        job()
        times.append(time.perf_counter() - start)
    return min(times)


def r_seconds(frame: pd.DataFrame, codebook) -> float | None:
    if shutil.which("Rscript") is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "items.csv"
        recode_items(frame, codebook).to_csv(path, index=False)
        out = subprocess.run(
            ["Rscript", "-e", R_SCRIPT.format(path=path)], capture_output=True, text=True
        )
    return float(out.stdout.strip()) if out.returncode == 0 else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--respondents", type=int, default=100_000)
    parser.add_argument("--scales", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    frame, codebook = simulate(args.respondents, args.scales)
    recoded = recode_items(frame, codebook)
    rows = {
        "score_scales": best_of(args.repeats, lambda: score_scales(frame, codebook)),
        "alpha only (as psych::alpha)": best_of(
            args.repeats,
            lambda: [alpha(recoded[list(s.items)]) for s in codebook.scales.values()],
        ),
        "reliability_tables (alpha, omega, items)": best_of(
            args.repeats, lambda: reliability_tables(frame, codebook, "bench", replicates=0)
        ),
    }
    rows["scores + reliability_tables"] = (
        rows["score_scales"] + rows["reliability_tables (alpha, omega, items)"]
    )
    wave, _ = simulate(WAVE_SIZE, args.scales)
    rows[f"bootstrap CIs of alpha, {WAVE_SIZE} respondents, 1,000 replicates"] = best_of(
        args.repeats, lambda: reliability_tables(wave, codebook, "bench")
    ) - best_of(args.repeats, lambda: reliability_tables(wave, codebook, "bench", replicates=0))
    r = r_seconds(frame, codebook)
    if r is not None:
        rows["R psych::alpha, same items"] = r
    items = args.scales * ITEMS_PER_SCALE
    print(f"{args.respondents:,} respondents x {items} items, best of {args.repeats}\n")
    print("| job | seconds |\n|---|---:|")
    for job, seconds in rows.items():
        print(f"| {job} | {seconds:.2f} |")


if __name__ == "__main__":
    main()
