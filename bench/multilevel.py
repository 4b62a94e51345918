"""Benchmark: three-level models (waves in persons in companies), three engines.

400 companies x 25 employees x 3 waves = 30,000 rows, simulated with a seeded numpy generator
(with a company wave slope), fitted by REML as `y ~ wave + x + z + (1 | company/person)` and with
a correlated company wave slope, `y ~ wave + x + z + (1 + wave | company) + (1 | company:person)`,
with

- `pipeline.models.nested_lmm.fit_nested` (best of 3 runs),
- statsmodels' MixedLM with `vc_formula` for persons (one run: model building and fit),
- lme4's `lmer`, when Rscript is on PATH (best of 3 `system.time`s of the `lmer` call alone; the
  data reach R through a temporary CSV that is read before the clock starts).

Run from the repository root: `python bench/multilevel.py`. Prints a markdown table with seconds and
the largest relative difference of the fixed effects from statsmodels'.
"""

import shutil
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from statsmodels.regression.mixed_linear_model import MixedLM

from pipeline.models.nested_lmm import fit_nested

COMPANIES, EMPLOYEES, WAVES = 400, 25, 3
TERMS = ["(Intercept)", "wave", "x", "z"]
REPEATS = 3
R_SCRIPT = """
suppressPackageStartupMessages(library(lme4))
args <- commandArgs(trailingOnly = TRUE)
data <- read.csv(args[1])
seconds <- Inf
for (i in seq_len({repeats})) {{
  elapsed <- system.time(fit <- lmer({formula}, data))[["elapsed"]]
  seconds <- min(seconds, elapsed)
}}
cat(sprintf("%.17g", c(seconds, fixef(fit))), sep = "\\n")
"""


def simulate(seed: int = 20261127) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    persons = COMPANIES * EMPLOYEES
    company = np.repeat(np.arange(COMPANIES), EMPLOYEES)  # per person
    z = rng.normal(size=COMPANIES)
    x = rng.normal(size=persons)
    person_effect = rng.normal(scale=0.5, size=COMPANIES)[company] + rng.normal(
        scale=0.8, size=persons
    )
    row = np.repeat(np.arange(persons), WAVES)
    wave = np.tile(np.arange(1, WAVES + 1), persons)
    slope = 0.2 + rng.normal(scale=0.15, size=COMPANIES)[company]
    y = 3 + slope[row] * wave + 0.5 * x[row] - 0.3 * z[company[row]] + person_effect[row]
    y += rng.normal(size=len(row))
    return pd.DataFrame(
        {
            "company": company[row],
            "person": row % EMPLOYEES,  # labels restart in every company
            "wave": wave,
            "x": x[row],
            "z": z[company[row]],
            "y": y,
        }
    )


MODELS = {
    "random intercepts": "y ~ wave + x + z + (1 | company/person)",
    "with wave slope": "y ~ wave + x + z + (1 + wave | company) + (1 | company:person)",
}


def time_fast(data: pd.DataFrame, slope: bool) -> tuple[float, np.ndarray]:
    X = np.column_stack([np.ones(len(data)), data["wave"], data["x"], data["z"]])
    wave = data["wave"] if slope else None
    seconds = np.inf
    for _ in range(REPEATS):
        start = time.perf_counter()
        fit = fit_nested(data["y"], X, TERMS, data["company"], data["person"], wave_slope=wave)
        seconds = min(seconds, time.perf_counter() - start)
    assert fit.converged
    return seconds, fit.fe


def time_statsmodels(data: pd.DataFrame, slope: bool) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    model = MixedLM.from_formula(
        "y ~ wave + x + z",
        data,
        groups="company",
        re_formula="1 + wave" if slope else "1",
        vc_formula={"person": "0 + C(person)"},
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = model.fit(reml=True)
    return time.perf_counter() - start, result.fe_params.to_numpy()


def time_lme4(data: pd.DataFrame, formula: str) -> tuple[float, np.ndarray] | None:
    rscript = shutil.which("Rscript")
    if rscript is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        csv, script = Path(tmp) / "data.csv", Path(tmp) / "lmer.R"
        data.to_csv(csv, index=False)
        script.write_text(R_SCRIPT.format(repeats=REPEATS, formula=formula))
        out = subprocess.run(
            [rscript, str(script), str(csv)], capture_output=True, text=True, check=True
        )
    values = np.array(out.stdout.split(), dtype=float)
    return values[0], values[1:]


def main() -> None:
    data = simulate()
    print(f"{len(data)} rows, {COMPANIES} companies x {EMPLOYEES} employees x {WAVES} waves\n")
    print("| model | engine | seconds | max rel. diff. of fixed effects vs statsmodels |")
    print("|---|---|---:|---:|")
    for (name, formula), slope in zip(MODELS.items(), (False, True), strict=True):
        fast = time_fast(data, slope)
        statsmodels = time_statsmodels(data, slope)
        rows = [("nested_lmm.fit_nested", fast), ("statsmodels MixedLM", statsmodels)]
        lme4 = time_lme4(data, formula)
        if lme4 is not None:
            rows.append(("lme4 lmer", lme4))
        reference = statsmodels[1]
        for engine, (seconds, fe) in rows:
            diff = np.max(np.abs(fe - reference) / np.abs(reference))
            print(f"| {name} | {engine} | {seconds:.3f} | {diff:.1e} |")
        if lme4 is None:
            print(f"| {name} | lme4 lmer | Rscript not on PATH | |")


if __name__ == "__main__":
    main()
