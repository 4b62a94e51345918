"""Benchmark: the whole pipeline on synthetic scans of growing size (issue #9).

    python bench/scale.py [--sizes demo,10x,national] [--keep] [--out bench/results]

For each size, `pipeline.demo.write.write_demo` writes a scan into a temporary data folder (the demo
codebook, `Params` scaled: `demo` is the demo itself, 40 companies of about 22 employees; `10x`
400 companies; `national` 1,000 companies of about 50 employees), then the real `scan run`
command runs on it in a subprocess with a fresh DAGSTER_HOME, `--data-dir` and
`--reports-dir`, and again with nothing changed (the rerun).

Recorded per size:

- wall time per stage, from the Dagster instance's run records: `startup` (imports, instance,
  first staleness check, until the first run starts), `waves` (the per-wave runs and the
  staleness checks between them), `cross_wave` (until the cross-wave run ends), `reports` (the
  per-wave report runs), `catalog` (the data dictionary) and `finish` (until the process
  exits); they add up to `total`;
- peak memory per stage and in total: the process tree (the `scan` process and every
  descendant, the report workers and pandoc/typst included) sampled every second from /proc, as
  the sum of PSS (proportional set size: pages shared between the processes count once; the
  headline figure) and as the sum of RSS (shared pages counted in every process: an upper
  bound);
- the rerun's wall time and peak, and its share of the full run's (target: under 5%);
- every Dagster step's duration (STEP_START to STEP_SUCCESS/FAILURE) per run, in
  `assets.csv`, so the slowest assets show.

Writes `scale.csv`, `scale.md` (the README's table), `scale.png` (cost against size) and
`assets.csv` under `--out`; results of sizes not measured in this call are kept, so sizes can
be measured one call at a time. Progress goes to stdout with timestamps.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.demo.simulation import Params  # noqa: E402
from pipeline.demo.write import write_demo  # noqa: E402

SIZES = {
    "demo": Params(),
    "10x": Params(companies=400, late_joiners=40),
    "national": Params(
        companies=1000, late_joiners=100, size_median=50.0, size_sigma=0.15, size_range=(20, 100)
    ),
}
STAGES = ("startup", "waves", "cross_wave", "reports", "catalog", "finish")
# the stage of each job `scan run` launches (assets/definitions.py, SCAN_RUN_JOBS)
JOB_STAGES = {
    "validate_wave": "waves",
    "protect_wave": "waves",
    "cross_wave": "cross_wave",
    "wave_reports": "reports",
    "catalog": "catalog",
}
INTERVAL = 1.0  # seconds between memory samples (reading PSS of a 1 GB process costs; at 0.2 s
# the sampler took 40% of a core, a fifth of the 2-core machine it measures)
PAGE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")
MIB = 2**20


def log(message: str) -> None:
    print(f"{dt.datetime.now():%H:%M:%S} {message}", flush=True)


# --- memory of a process tree, from /proc ---------------------------------------------------


def _processes() -> tuple[dict[int, list[int]], dict[int, int]]:
    """Every process's children, and its CPU time in clock ticks (its own and that of its
    children it has waited for: utime, stime, cutime, cstime)."""
    tree: dict[int, list[int]] = {}
    ticks: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        tree.setdefault(int(fields[1]), []).append(int(entry.name))
        ticks[int(entry.name)] = sum(int(f) for f in fields[11:15])
    return tree, ticks


def tree_usage(root: int) -> tuple[int, int, float, int]:
    """(PSS sum, RSS sum in bytes, CPU seconds so far, processes) of `root` and its
    descendants."""
    (tree, ticks), todo, pss, rss, cpu, n = _processes(), [root], 0, 0, 0, 0
    while todo:
        pid = todo.pop()
        todo += tree.get(pid, [])
        cpu += ticks.get(pid, 0)
        try:
            rss += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    pss += int(line.split()[1]) * 1024
                    break
            n += 1
        except (OSError, ValueError, IndexError):
            continue  # the process ended meanwhile
    return pss, rss, cpu / TICKS, n


class Sampler(threading.Thread):
    """Samples the memory and CPU time of a process tree, and the machine's load average,
    every INTERVAL seconds until stopped."""

    def __init__(self, root: int):
        super().__init__(daemon=True)
        self.root, self.samples, self.stopped = root, [], threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            pss, rss, cpu, n = tree_usage(self.root)
            load = float(Path("/proc/loadavg").read_text().split()[0])
            if n:
                self.samples.append((time.time(), pss, rss, cpu, load, n))
            self.stopped.wait(INTERVAL)

    def frame(self) -> pd.DataFrame:
        columns = ["time", "pss", "rss", "cpu", "load", "processes"]
        return pd.DataFrame(self.samples, columns=columns)


def run_scan(
    code: Path, data_dir: Path, reports_dir: Path, home: Path, log_path: Path, timeout: float
) -> dict:
    """`scan run` of the source tree `code` in a subprocess, its memory sampled; start, end,
    samples and exit code ("timeout" when it ran longer than `timeout` seconds and was
    stopped, with every process it started)."""
    command = [sys.executable, "-c", "from assets.cli import main; main()"]
    command += ["--data-dir", str(data_dir), "--reports-dir", str(reports_dir), "run"]
    env = {**os.environ, "DAGSTER_HOME": str(home), "PYTHONPATH": str(code)}
    env.pop("SCAN_DATA_DIR", None)
    env.pop("SCAN_REPORTS_DIR", None)
    with log_path.open("a") as out:
        start = time.time()
        process = subprocess.Popen(
            command, cwd=code, env=env, stdout=out, stderr=out, start_new_session=True
        )
        sampler = Sampler(process.pid)
        sampler.start()
        stopper = threading.Timer(timeout, os.killpg, (process.pid, signal.SIGKILL))
        stopper.start()
        _, status, usage = os.wait4(process.pid, 0)
        end = time.time()
        timed_out = not stopper.is_alive()
        stopper.cancel()
        process.returncode = code = os.waitstatus_to_exitcode(status)
        if timed_out:
            code = "timeout"
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # the report workers, pandoc, typst
        sampler.stopped.set()
        sampler.join()
    cpu = usage.ru_utime + usage.ru_stime  # the process and every descendant it waited for
    return {"start": start, "end": end, "code": code, "samples": sampler.frame(), "cpu": cpu}


def revision(code: Path) -> str:
    """The commit of the measured tree (git, or a COMMIT file beside a `git archive`), '+' if
    modified."""
    if (code / ".git").exists():
        git = ["git", "--no-optional-locks", "-C", str(code)]
        head = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        )
        dirty = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True)  # fmt: skip
        return head.stdout.strip() + ("+" if dirty.stdout.strip() else "")
    stamp = code / "COMMIT"
    return stamp.read_text().strip()[:7] if stamp.exists() else "unknown"


# --- what the Dagster instance recorded -------------------------------------------------------


def runs_and_steps(home: Path, since: float) -> tuple[list[dict], list[dict]]:
    """The runs started after `since`, in order, with their stage; and every step's duration."""
    import dagster as dg
    from dagster._core.events import DagsterEventType

    instance = dg.DagsterInstance.from_config(str(home))
    records = sorted(
        (r for r in instance.get_run_records() if r.start_time and r.start_time >= since),
        key=lambda r: r.start_time,
    )
    runs, steps = [], []
    kinds = {
        DagsterEventType.STEP_START,
        DagsterEventType.STEP_SUCCESS,
        DagsterEventType.STEP_FAILURE,
    }
    for record in records:
        run = record.dagster_run
        partition = run.tags.get("dagster/partition")
        stage = JOB_STAGES.get(run.job_name, run.job_name)
        runs.append(
            {
                "run_id": run.run_id,
                "stage": stage,
                "partition": partition or "all_waves",
                "start": record.start_time,
                "end": record.end_time,
                "status": run.status.value,
            }
        )
        started: dict[str, float] = {}
        for entry in instance.all_logs(run.run_id, of_type=kinds):
            kind = entry.dagster_event.event_type
            if kind == DagsterEventType.STEP_START:
                started[entry.step_key] = entry.timestamp
            elif entry.step_key in started:
                steps.append(
                    {
                        "stage": stage,
                        "partition": partition or "all_waves",
                        "step": entry.step_key,
                        "seconds": round(entry.timestamp - started.pop(entry.step_key), 3),
                        "status": "success" if kind == DagsterEventType.STEP_SUCCESS else "failure",
                        "run_id": run.run_id,
                    }
                )
    return runs, steps


def stage_windows(scan: dict, runs: list[dict]) -> dict[str, tuple[float, float]]:
    """Consecutive windows that cover the process's lifetime, cut at the runs' ends."""
    windows, cursor = {}, scan["start"]
    if runs:
        windows["startup"] = (cursor, runs[0]["start"])
        cursor = runs[0]["start"]
    for stage in STAGES[1:-1]:
        mine = [r for r in runs if r["stage"] == stage]
        if mine:
            end = max(r["end"] or scan["end"] for r in mine)  # None: stopped by the timeout
            windows[stage] = (cursor, end)
            cursor = end
    windows["finish"] = (cursor, scan["end"])
    return windows


def usage(samples: pd.DataFrame, start: float, end: float) -> dict:
    """Peak PSS and RSS (MiB), CPU seconds (from the tree's CPU time at the window's edges)
    and the mean load average of the samples in [start, end]."""
    if samples.empty:
        return {"peak_pss_mib": None, "peak_rss_mib": None, "cpu_s": None, "load": None}
    inside = samples[(samples["time"] >= start) & (samples["time"] <= end)]
    if inside.empty:  # a window shorter than the interval: the nearest sample
        inside = samples.iloc[[(samples["time"] - (start + end) / 2).abs().argmin()]]
    before = samples[samples["time"] <= start]
    cpu_start = before["cpu"].iloc[-1] if len(before) else 0.0
    after = samples[samples["time"] >= end]
    cpu_end = after["cpu"].iloc[0] if len(after) else samples["cpu"].iloc[-1]
    return {
        "peak_pss_mib": round(inside["pss"].max() / MIB),
        "peak_rss_mib": round(inside["rss"].max() / MIB),
        "cpu_s": round(max(cpu_end - cpu_start, 0.0), 1),
        "load": round(inside["load"].mean(), 1),
    }


# --- one size ---------------------------------------------------------------------------------


def generate(size: str, params: Params, data: Path, cache: Path | None) -> tuple[dict, float]:
    """The scan of that size under data/raw/ (from `cache/<size>/raw` when it is there, else
    written by `write_demo` and, with a cache, kept there): its truth per wave, and the seconds
    the generator took (NaN when cached)."""
    cached = cache / size / "raw" if cache else None
    if cached and (cached / "_demo_truth" / "truth.json").exists():
        log(f"{size}: copying the generated scan from {cached}")
        shutil.copytree(cached, data / "raw")
        generate_s = float("nan")
    else:
        (data / "raw").mkdir(parents=True)
        shutil.copy(ROOT / "data" / "raw" / "codebook.yaml", data / "raw" / "codebook.yaml")
        log(f"{size}: generating ({params.companies} companies) into {data}")
        start = time.perf_counter()
        write_demo(data, params=params)
        generate_s = time.perf_counter() - start
        if cached:
            shutil.copytree(data / "raw", cached)
    truth = json.loads((data / "raw" / "_demo_truth" / "truth.json").read_text())
    return truth["waves"], generate_s


def measure(
    size: str, params: Params, work: Path, code: Path, timeout: float, cache: Path | None
) -> tuple[list[dict], list[dict]]:
    data, reports, home = work / "data", work / "reports", work / "dagster_home"
    home.mkdir()
    waves, generate_s = generate(size, params, data, cache)
    raw_rows = sum(w["raw_rows"] for w in waves.values())
    log(f"{size}: {raw_rows} raw rows in {generate_s:.1f} s; scan run ...")
    common = {
        "size": size,
        "companies": params.companies,
        "raw_rows": raw_rows,
        "expected_validated": sum(w["expected_after_qc"] for w in waves.values()),
        "generate_s": round(generate_s, 1),
        "date": f"{dt.date.today()}",
        "code": revision(code),
    }
    scan_log = work / "scan.log"
    full = run_scan(code, data, reports, home, scan_log, timeout)
    log(f"{size}: scan run exit {full['code']} in {full['end'] - full['start']:.1f} s")
    if full["code"] == "timeout":  # a rerun would compute what is missing: no rerun
        rerun = {**full, "start": full["end"], "code": "not run", "cpu": float("nan")}
        rerun["samples"] = full["samples"].iloc[0:0]
    else:
        rerun = run_scan(code, data, reports, home, scan_log, timeout)
        log(f"{size}: rerun exit {rerun['code']} in {rerun['end'] - rerun['start']:.1f} s")
    if full["code"] or rerun["code"]:
        log(f"{size}: scan run failed; its output:\n{scan_log.read_text()[-4000:]}")
    runs, steps = runs_and_steps(home, full["start"])
    full_runs = [r for r in runs if r["start"] <= full["end"]]
    rows = []
    for stage, (start, end) in stage_windows(full, full_runs).items():
        if stage == "finish" and full["code"] == "timeout":
            continue  # stopped, not finished
        rows.append(
            {
                **common,
                "stage": stage,
                "runs": sum(r["stage"] == stage for r in full_runs),
                "complete": all(r["end"] for r in full_runs if r["stage"] == stage),
                "wall_s": round(end - start, 2),
                **usage(full["samples"], start, end),
                "exit_code": full["code"],
            }
        )
    ends = [("total", full, len(full_runs))]
    if rerun["code"] != "not run":
        ends.append(("rerun", rerun, 0))
    for stage, scan, n in ends:
        rows.append(
            {
                **common,
                "stage": stage,
                "runs": n if stage == "total" else len(runs) - len(full_runs),
                "complete": scan["code"] != "timeout",
                "wall_s": round(scan["end"] - scan["start"], 2),
                **usage(scan["samples"], scan["start"], scan["end"]),
                "exit_code": scan["code"],
            }
        )
        rows[-1]["cpu_s"] = round(scan["cpu"], 1)  # exact, from wait4
    steps = [{"size": size, "raw_rows": raw_rows, **s} for s in steps if s["run_id"] in
             {r["run_id"] for r in full_runs}]  # fmt: skip
    return rows, steps


# --- outputs ----------------------------------------------------------------------------------


def merged(path: Path, new: pd.DataFrame, sizes: list[str]) -> pd.DataFrame:
    """The new rows, and the old rows of sizes not measured now, in size order."""
    if path.exists():
        old = pd.read_csv(path)
        new = pd.concat([old[~old["size"].isin(sizes)], new], ignore_index=True)
    order = {name: i for i, name in enumerate(SIZES)}
    return new.sort_values("size", key=lambda s: s.map(order), kind="stable").reset_index(drop=True)


def markdown(table: pd.DataFrame) -> str:
    lines = [
        "| size | companies | raw rows | stage | wall s | CPU s | peak MiB (PSS) | "
        "peak MiB (RSS sum) | load |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for size, rows in table.groupby("size", sort=False):
        first = rows.iloc[0]
        for i, row in enumerate(rows.itertuples()):
            head = (
                f"{size} | {first['companies']:,} | {first['raw_rows']:,}" if i == 0 else " |  | "
            )
            stage = f"**{row.stage}**" if row.stage in ("total", "rerun") else row.stage
            if getattr(row, "complete", True) is False:
                stage += " (stopped at the timeout)" if row.stage == "total" else " (unfinished)"

            lines.append(
                f"| {head} | {stage} | {row.wall_s:,.1f} | {_number(row, 'cpu_s', '.1f')} | "
                f"{_number(row, 'peak_pss_mib', '.0f')} | {_number(row, 'peak_rss_mib', '.0f')} | "
                f"{_number(row, 'load', '.1f')} |"
            )
        total = rows.loc[rows["stage"] == "total", "wall_s"].iloc[0]
        again = rows.loc[rows["stage"] == "rerun", "wall_s"]
        if len(again):
            share = f"{100 * again.iloc[0] / total:.1f}%"
            cpu = rows.set_index("stage")["cpu_s"] if "cpu_s" in rows else pd.Series()
            cpu_share = (
                f"{100 * cpu['rerun'] / cpu['total']:.1f}%"
                if {"rerun", "total"} <= set(cpu.dropna().index)
                else ""
            )
            lines.append(f"|  |  |  | rerun / total | {share} | {cpu_share} |  |  |  |")
    measured = ", ".join(
        f"{size} {rows['date'].iloc[0]} (commit {rows['code'].iloc[0]})"
        for size, rows in table.groupby("size", sort=False)
    )
    lines += [
        "",
        "`python bench/scale.py` on this 2-core machine; measured: "
        f"{measured}. Wall s: the stage's wall time (startup: imports and the first staleness "
        "check; waves, cross_wave, reports, catalog: until the stage's last Dagster run ends; "
        "finish: the summary). CPU s: CPU time of the `scan` process tree in the stage. Peak MiB: "
        "of the process tree, sampled every second (PSS counts shared pages once; the RSS sum is an"
        " upper bound). Load: the machine's mean 1-minute load average in the stage (it includes "
        "the run's own processes: the reports stage runs one report worker per core beside the "
        "main process). Rerun: `scan run` again with nothing changed.",
    ]
    return "\n".join(lines) + "\n"


def _number(row, column: str, spec: str) -> str:
    value = getattr(row, column, None)
    return "" if value is None or pd.isna(value) else f"{value:,{spec}}"


def plot(table: pd.DataFrame, path: Path) -> None:
    """Wall time and CPU time per stage, and peak memory, against raw rows (log-log); a run
    stopped at the timeout is drawn hollow."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    fig, (time_ax, cpu_ax, memory_ax) = plt.subplots(1, 3, figsize=(15, 4.6))
    colours = dict(zip((*STAGES, "total", "rerun"), plt.get_cmap("tab10").colors, strict=False))
    colours["total"] = "black"
    for ax, column, title in (
        (time_ax, "wall_s", "Wall time per stage (s)"),
        (cpu_ax, "cpu_s", "CPU time of the process tree per stage (s)"),
    ):
        for stage in (*STAGES, "total", "rerun"):
            rows = table[table["stage"] == stage]
            if column not in rows or rows[column].isna().all():
                continue
            rows = rows.dropna(subset=[column])
            lw = 2.5 if stage == "total" else 1.5
            ax.plot(rows["raw_rows"], rows[column], color=colours[stage], lw=lw, label=stage)
            done = rows.get("complete", pd.Series(True, index=rows.index)).astype(str) != "False"
            for filled, part in ((True, rows[done]), (False, rows[~done])):
                ax.scatter(part["raw_rows"], part[column], color=colours[stage], zorder=3,
                           facecolors=colours[stage] if filled else "white")  # fmt: skip
        ax.axhline(600, color="grey", ls="--", lw=1)
        ax.annotate("10 min", (0.02, 600), xycoords=("axes fraction", "data"), va="bottom",
                    color="grey")  # fmt: skip
        ax.set(xscale="log", yscale="log", xlabel="raw rows (all waves)", title=title)
        ax.legend(fontsize=8)
    for column, label in (("peak_pss_mib", "PSS"), ("peak_rss_mib", "RSS sum")):
        rows = table[table["stage"] == "total"]
        memory_ax.plot(rows["raw_rows"], rows[column], marker="o", label=f"whole run, {label}")
    for stage in STAGES[1:-1]:
        rows = table[table["stage"] == stage]
        memory_ax.plot(rows["raw_rows"], rows["peak_pss_mib"], marker="s", ls=":", lw=1,
                       color=colours[stage], label=f"{stage}, PSS")  # fmt: skip
    memory_ax.axhline(4096, color="grey", ls="--", lw=1)
    memory_ax.annotate("4 GiB", (0.02, 4096), xycoords=("axes fraction", "data"),
                       va="bottom", color="grey")  # fmt: skip
    memory_ax.set(xscale="log", xlabel="raw rows (all waves)", title="Peak memory (MiB)")
    memory_ax.set_ylim(0, max(4500, table["peak_rss_mib"].max() * 1.1))
    memory_ax.legend(fontsize=8)
    sizes = table.drop_duplicates("size")
    for ax in (time_ax, cpu_ax, memory_ax):
        ax.grid(True, which="both", alpha=0.3)
        ax.set_xticks(sizes["raw_rows"], [f"{n:,}\n{s}" for n, s in zip(sizes["raw_rows"],
                      sizes["size"], strict=True)])  # fmt: skip
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda *_: ""))
    fig.suptitle("scan run: cost against size, 2 cores (hollow: stopped at the timeout)")
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", default="demo,10x,national", help="comma-separated: " + ", ".join(SIZES)
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument(
        "--code",
        type=Path,
        default=ROOT,
        help="the source tree whose `scan run` is measured (default: this working tree; e.g. a "
        "`git archive` of a commit with the commit id in a file COMMIT, to measure it while "
        "the working tree changes)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=4 * 3600,
        help="stop a `scan run` after this many seconds and record the stages it reached",
    )
    parser.add_argument(
        "--cache", type=Path, help="keep generated scans here (<cache>/<size>/raw) and reuse them"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary data folders")
    args = parser.parse_args()
    sizes = args.sizes.split(",")
    unknown = set(sizes) - set(SIZES)
    if unknown:
        parser.error(f"unknown sizes {sorted(unknown)}; known: {', '.join(SIZES)}")
    args.out.mkdir(parents=True, exist_ok=True)
    for size in sizes:
        work = Path(tempfile.mkdtemp(prefix=f"scale-{size}-"))
        try:
            rows, steps = measure(
                size, SIZES[size], work, args.code.resolve(), args.timeout, args.cache
            )
        finally:
            if not args.keep:
                shutil.rmtree(work, ignore_errors=True)
            else:
                log(f"{size}: kept {work}")
        table = merged(args.out / "scale.csv", pd.DataFrame(rows), [size])
        table.to_csv(args.out / "scale.csv", index=False)
        step_table = merged(args.out / "assets.csv", pd.DataFrame(steps), [size])
        step_table.to_csv(args.out / "assets.csv", index=False)
        (args.out / "scale.md").write_text(markdown(table))
        plot(table, args.out / "scale.png")
        log(f"{size}: done\n{markdown(table[table['size'] == size])}")
        slowest = pd.DataFrame(steps).sort_values("seconds", ascending=False).head(8)
        log(f"{size}: slowest steps\n{slowest.to_string(index=False)}")


if __name__ == "__main__":
    main()
