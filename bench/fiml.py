"""Benchmark: the FIML MLR CFA of the demo instrument against lavaan (issue #18).

    python bench/fiml.py [--respondents 100000] [--missing 0.2] [--seed 1] [--no-lavaan]

Simulates answers to the demo codebook's scales (each item loading .7 on its scale's factor,
the factors correlated .3, answers on the item's scale), blanks each answer with probability
`--missing` (completely at random), then fits the scales' measurement model with
`pipeline.psychometrics.fiml.fit_fiml(..., "MLR")` and, when Rscript with lavaan is on PATH,
lavaan's `cfa(..., missing = "ml", estimator = "MLR")` on the same CSV in the same run (unless
`--no-lavaan`: lavaan needs hours where answers are missing at random in many items). Prints
the respondents, missing-data patterns, seconds of each, and the largest relative difference of
the chi-square, the scaled chi-square and the robust CFI and RMSEA.
"""

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.instrument.codebook import load_codebook
from pipeline.psychometrics.cfa import scale_model
from pipeline.psychometrics.fiml import fit_fiml, patterns

CODEBOOK = Path(__file__).parents[1] / "data" / "raw" / "codebook.yaml"
R_SCRIPT = """
suppressMessages(library(lavaan))
x <- read.csv("{path}")
model <- "{model}"
elapsed <- system.time(
  fit <- cfa(model, data = x, missing = "ml", estimator = "MLR")
)[["elapsed"]]
fm <- fitMeasures(fit, c("chisq", "chisq.scaled", "cfi.robust", "rmsea.robust"))
cat(elapsed, fm, "\\n")
"""


def simulate(n: int, missing: float, seed: int) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    codebook = load_codebook(CODEBOOK)
    model, _ = scale_model({name: list(scale.items) for name, scale in codebook.scales.items()})
    rng = np.random.default_rng(seed)
    m = len(model)
    factors = rng.multivariate_normal(np.zeros(m), 0.3 + 0.7 * np.eye(m), size=n)
    columns = {}
    for f, items in enumerate(model.values()):
        for item in items:
            scale = codebook.response_scale_of(item)
            latent = 0.7 * factors[:, f] + np.sqrt(1 - 0.49) * rng.normal(size=n)
            cuts = np.quantile(latent, np.linspace(0, 1, scale.max - scale.min + 2)[1:-1])
            answers = (np.digitize(latent, cuts) + scale.min).astype(float)
            answers[rng.random(n) < missing] = np.nan
            columns[item] = answers
    return pd.DataFrame(columns), model


def lavaan(frame: pd.DataFrame, model: dict[str, list[str]]) -> list[float] | None:
    if shutil.which("Rscript") is None:
        return None
    syntax = "; ".join(f"{factor} =~ {' + '.join(items)}" for factor, items in model.items())
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data.csv"
        frame.to_csv(path, index=False, na_rep="NA")
        script = R_SCRIPT.format(path=path, model=syntax)
        done = subprocess.run(["Rscript", "-e", script], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(done.stderr)
    return [float(v) for v in done.stdout.split()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--respondents", type=int, default=100_000)
    parser.add_argument("--missing", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-lavaan", action="store_true", help="time the pipeline's fit only")
    args = parser.parse_args()
    frame, model = simulate(args.respondents, args.missing, args.seed)
    n_patterns = len(patterns(frame.to_numpy(dtype=float)).rows)
    start = time.perf_counter()
    ours = fit_fiml(frame, model, "MLR")
    seconds = time.perf_counter() - start
    print(f"respondents {args.respondents}, missing {args.missing:.0%}, patterns {n_patterns}")
    print(f"fit_fiml MLR: {seconds:.1f} s", flush=True)
    theirs = None if args.no_lavaan else lavaan(frame, model)
    if theirs is None:
        print("lavaan: not run (--no-lavaan, or Rscript not on PATH)")
        return
    mine = [ours.chisq, ours.chisq_scaled, ours.cfi_robust, ours.rmsea_robust]
    worst = max(abs(a - b) / abs(b) for a, b in zip(mine, theirs[1:], strict=True))
    print(f"lavaan MLR: {theirs[0]:.1f} s; largest relative difference {worst:.1e}")


if __name__ == "__main__":
    main()
