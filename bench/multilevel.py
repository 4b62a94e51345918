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

Then the difference-in-differences trajectory model (pipeline/models/trajectories.py) at national
size: 1,000 companies x 20-50 employees (35 on average) x 3 waves, each person answering each wave
with probability 0.85 (an unbalanced panel, ~90,000 rows), 40% of the companies with a trajectory
starting before wave 2 or before wave 3 (half each), simulated with a seeded numpy generator
(planted `after_start` effect 0.2; company sd 0.3, person sd 0.6, residual sd 0.8) and fitted by
REML as `y ~ wave + has_trajectory + after_start + (1 | company) + (1 | company:person)`, `wave` a
factor, with

- `pipeline.models.trajectories.trajectory_models`, the pipeline's end-to-end function (design
  building and `fit_guarded`: the fast engine, statsmodels only as fallback; the table names the
  engine the fit used), best of 3 runs; and, for the split, `fit_guarded` alone on the built
  design, best of 3 runs,
- lme4's `lmer`, timed as above.

The table has the rows, the seconds of both and the largest relative difference of our fixed effects
from lme4's. Target: no slower than lme4. `--only three-level` or `--only trajectory` runs one part.
"""

import argparse
import shutil
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from statsmodels.regression.mixed_linear_model import MixedLM

from pipeline.models.multilevel import fit_guarded
from pipeline.models.nested_lmm import fit_nested
from pipeline.models.trajectories import trajectory_models

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


def three_level() -> None:
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


# ---- the difference-in-differences trajectory model at national size --------------------------

NATIONAL_COMPANIES = 1000
EMPLOYEES_RANGE = (20, 50)  # per company, uniform: 35 on average
WAVE_LABELS = ["T0", "T1", "T2"]
ANSWER_RATE = 0.85  # per person and wave
TRAJECTORY_SHARE = 0.4  # of the companies; half start before wave 2, half before wave 3
WAVE_EFFECTS = np.array([0.0, 0.1, 0.15])
HAS_TRAJECTORY_EFFECT, AFTER_START_EFFECT = 0.1, 0.2
COMPANY_SD, PERSON_SD, RESIDUAL_SD = 0.3, 0.6, 0.8
TRAJECTORY_FORMULA = (
    "y ~ wave + has_trajectory + after_start + (1 | company_id) + (1 | company_id:person_id)"
)


def simulate_national(seed: int = 20261128) -> pd.DataFrame:
    """company_id, person_id, wave (a label of WAVE_LABELS), y, has_trajectory, after_start."""
    rng = np.random.default_rng(seed)
    low, high = EMPLOYEES_RANGE
    sizes = rng.integers(low, high + 1, size=NATIONAL_COMPANIES)
    company = np.repeat(np.arange(NATIONAL_COMPANIES), sizes)  # per person
    persons = len(company)
    treated = rng.permutation(NATIONAL_COMPANIES) < TRAJECTORY_SHARE * NATIONAL_COMPANIES
    # the first wave (index) on or after the start: 1 or 2, half each; never (3) without one
    first_after = np.where(treated, 1 + (rng.random(NATIONAL_COMPANIES) < 0.5), len(WAVE_LABELS))
    person_level = rng.normal(scale=COMPANY_SD, size=NATIONAL_COMPANIES)[company] + rng.normal(
        scale=PERSON_SD, size=persons
    )
    row = np.repeat(np.arange(persons), len(WAVE_LABELS))  # person per (person, wave)
    wave = np.tile(np.arange(len(WAVE_LABELS)), persons)
    answered = rng.random(len(row)) < ANSWER_RATE
    row, wave = row[answered], wave[answered]
    firm = company[row]
    has_trajectory = treated[firm].astype(float)
    after_start = (wave >= first_after[firm]).astype(float)
    y = (
        3
        + WAVE_EFFECTS[wave]
        + HAS_TRAJECTORY_EFFECT * has_trajectory
        + AFTER_START_EFFECT * after_start
        + person_level[row]
        + rng.normal(scale=RESIDUAL_SD, size=len(row))
    )
    return pd.DataFrame(
        {
            "company_id": firm,
            "person_id": row,
            "wave": np.array(WAVE_LABELS)[wave],
            "y": y,
            "has_trajectory": has_trajectory,
            "after_start": after_start,
        }
    )


def time_trajectory(frame: pd.DataFrame) -> tuple[float, float, str, np.ndarray]:
    """Best-of-3 seconds of `trajectory_models` and of `fit_guarded` on its design, the engine,
    the fixed effects (Intercept, wave[T1], wave[T2], has_trajectory, after_start)."""
    seconds = np.inf
    for _ in range(REPEATS):
        start = time.perf_counter()
        (result,) = trajectory_models(frame, ["y"], WAVE_LABELS)  # no participant column
        seconds = min(seconds, time.perf_counter() - start)
    design = result.design
    fit_seconds = np.inf
    for _ in range(REPEATS):
        start = time.perf_counter()
        guarded = fit_guarded(
            design.y, design.X, design.names, design.company, person=design.person, reml=True
        )
        fit_seconds = min(fit_seconds, time.perf_counter() - start)
    assert np.allclose(guarded.fit.fe, result.fit.fe, rtol=0, atol=1e-12)
    return seconds, fit_seconds, result.fit.engine, result.fit.fe


def trajectory() -> None:
    frame = simulate_national()
    companies, persons = frame["company_id"].nunique(), frame["person_id"].nunique()
    print(
        f"\n{len(frame)} rows, {companies} companies, {persons} persons, {len(WAVE_LABELS)} waves, "
        f"{ANSWER_RATE:.0%} answering per wave\n"
    )
    ours, fit_only, engine, fe = time_trajectory(frame)
    lme4 = time_lme4(frame, TRAJECTORY_FORMULA)
    print(
        "| model | rows | engine | seconds ours (trajectory_models) | of which fit_guarded "
        "| seconds lme4 lmer | max rel. diff. of fixed effects vs lme4 |"
    )
    print("|---|---:|---|---:|---:|---:|---:|")
    if lme4 is None:
        lme4_seconds, diff = "Rscript not on PATH", ""
    else:
        lme4_seconds = f"{lme4[0]:.3f}"
        diff = f"{np.max(np.abs(fe - lme4[1]) / np.abs(lme4[1])):.1e}"
    print(
        f"| y/trajectory | {len(frame)} | {engine} | {ours:.3f} | {fit_only:.3f} | "
        f"{lme4_seconds} | {diff} |"
    )
    print(f"\nafter_start: ours {fe[-1]:.4f}, planted {AFTER_START_EFFECT}")


PARTS = {"three-level": three_level, "trajectory": trajectory}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=PARTS, help="run one part of the benchmark")
    args = parser.parse_args()
    for name, part in PARTS.items():
        if args.only in (None, name):
            part()


if __name__ == "__main__":
    main()
