"""Disclosure control: risk against utility, and its time, on the demo and at national size.

For each k in 3, 5, 10 and m in 2, 3, all (the same k and m for both release files, with the
codebook's other settings), it makes both release files of every wave as the pipeline does
(`pipeline/privacy/anonymise.py`) from the demo's or a generated national scan, and reports per
release file, over the waves: the share of the quasi-identifier values suppressed, the records
changed, the largest individual risk after protection, and the utility measures of
`pipeline/models/release_utility.py` (scale means by background group and the per-wave multilevel
models, against the restricted data, in standard errors). The codebook's own settings are timed
per wave (the target: under 10 s per wave at national size).

    python bench/disclosure.py --sizes demo national [--cache /tmp/bench_cache]

Writes bench/results/disclosure.csv and prints the README's table (markdown).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from scale import SIZES  # noqa: E402

from pipeline.ingest.readers import read_wave  # noqa: E402
from pipeline.instrument.codebook import Codebook, Release, load_codebook  # noqa: E402
from pipeline.models.release_utility import release_utility  # noqa: E402
from pipeline.privacy.anonymise import pseudonymised, public_use, scientific_use  # noqa: E402
from pipeline.privacy.pseudonyms import PseudonymKey  # noqa: E402
from pipeline.validate.quality import (  # noqa: E402
    quality_reasons,
    read_register,
    split_quarantine,
)

KS = (3, 5, 10)
MS = (2, 3, None)
KEY = PseudonymKey(b"bench-disclosure-key-of-32-bytes!!", "bench")


def raw_scan(size: str, cache: Path | None) -> Path:
    """The raw folder of the scan: the demo's, or a generated one (kept under `cache`)."""
    if size == "demo":
        return ROOT / "data" / "raw"
    from pipeline.demo.write import write_demo

    folder = (cache or Path(tempfile.mkdtemp())) / size
    if not (folder / "raw" / "codebook.yaml").exists():
        shutil.rmtree(folder, ignore_errors=True)
        (folder / "raw").mkdir(parents=True)
        shutil.copy(ROOT / "data" / "raw" / "codebook.yaml", folder / "raw" / "codebook.yaml")
        write_demo(folder, params=SIZES[size])
    return folder / "raw"


def restricted(raw: Path, codebook: Codebook) -> dict[str, pd.DataFrame]:
    """Every wave's pseudonymised responses, from its rows that pass validation."""
    register = set()
    if codebook.company_register is not None:
        register = read_register(raw / codebook.company_register, codebook.company_id)
    validated = {}
    for wave in codebook.waves:
        if (raw / wave).is_dir():
            rows = read_wave(raw / wave, codebook, raw)
            validated[wave] = split_quarantine(rows, quality_reasons(rows, codebook, register))[0]
    return pseudonymised(validated, codebook, KEY)


def releases(waves: dict[str, pd.DataFrame], codebook: Codebook) -> list[dict]:
    """Per wave and release file: its report, utility and the seconds it took."""
    rows = []
    for wave, frame in waves.items():
        start = time.perf_counter()
        suf, suf_report, _ = scientific_use(waves, wave, codebook)
        puf, puf_report, _ = public_use(suf, codebook)
        seconds = time.perf_counter() - start
        for name, release, report in (("scientific", suf, suf_report), ("public", puf, puf_report)):
            k = codebook.anonymisation.k
            utility = release_utility(frame, release, codebook, k=k, public=name == "public")
            rows.append({"wave": wave, "release": name, "seconds": seconds, "report": report,
                         "utility": utility})  # fmt: skip
    return rows


def summary(rows: list[dict]) -> dict:
    """One release file over the waves: what it withholds, its risk and its utility."""
    reports = [r["report"] for r in rows]
    suppression = [r["utility"]["suppression"] for r in rows]
    means = [r["utility"]["group_means"] for r in rows]
    models = [r["utility"]["models"] for r in rows]
    withheld = sum(s["values_suppressed_total"] for s in suppression)
    given = sum(  # the quasi-identifier values given, back from each file's share
        s["values_suppressed_total"] / s["share_suppressed"]
        for s in suppression
        if s["share_suppressed"]
    )
    return {
        "withheld": withheld,
        "share_withheld": withheld / given if given else 0.0,
        "records_changed": sum(s["records_changed"] for s in suppression)
        / sum(s["records"] for s in suppression),
        "max_individual_risk": max(r.risk_after.max_individual_risk for r in reports),
        "global_risk": max(r.risk_after.global_risk for r in reports),
        "means_mean_abs_z": max(m["mean_abs_z"] or 0 for m in means),
        "means_max_abs_z": max(m["max_abs_z"] or 0 for m in means),
        "groups_lost": sum(m["groups_lost"] for m in means),
        "models_max_abs_z": max(m["max_abs_z"] or 0 for m in models),
        "seconds_per_wave": max(r["seconds"] for r in rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["demo"], choices=["demo", *SIZES])
    parser.add_argument("--cache", type=Path, default=None)
    args = parser.parse_args()
    base = load_codebook(ROOT / "data" / "raw" / "codebook.yaml")
    table = []
    for size in args.sizes:
        waves = restricted(raw_scan(size, args.cache), base)
        for k in KS:
            for m in MS:
                anonymisation = replace(
                    base.anonymisation, scientific_use=Release(k, m), public_use=Release(k, m)
                )
                rows = releases(waves, replace(base, anonymisation=anonymisation))
                for release in ("scientific", "public"):
                    mine = [r for r in rows if r["release"] == release]
                    table.append({"size": size, "k": k, "m": "all" if m is None else m,
                                  "release": release, **summary(mine)})  # fmt: skip
                    print(table[-1], flush=True)
        rows = releases(waves, base)
        print(f"{size}: codebook settings, seconds per wave (both files):",
              [round(r["seconds"], 2) for r in rows[::2]], flush=True)  # fmt: skip
    frame = pd.DataFrame(table)
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    frame.to_csv(ROOT / "bench" / "results" / "disclosure.csv", index=False)
    print(frame.to_markdown(index=False, floatfmt=".3g"))


if __name__ == "__main__":
    main()
