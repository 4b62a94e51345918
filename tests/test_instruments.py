"""Any instrument runs: hypothesis draws instruments (scales, items, answer ranges, reverse
keys, each optional codebook section present or absent, 1 to 3 waves, each export format),
writes a small scan of it, and runs `scan run` on it end to end. Each must exit 0 with its
reports, and its reliability must equal a direct computation on the shareable responses.
"""

import datetime as dt
import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyreadstat
import pytest
import yaml
from conftest import check_dictionary, scan
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

KEY = "instrument-test-key-0123456789abcdef"
COMPANIES, PER_COMPANY = 6, 8
FORMATS = ("sav", "qualtrics", "xlsx", "csv")
PLATFORM = {  # role -> (column name of this test's platform, type)
    "started": ("begonnen", "datetime"),
    "ended": ("ingeleverd", "datetime"),
    "duration": ("seconden", "number"),
    "percent_complete": ("voortgang", "number"),
    "completed": ("klaar", "number"),
    "preview": ("proef", "number"),
}


@dataclass
class Instrument:
    scales: dict[str, dict]  # name -> {items, reverse, level, range}
    unscaled: dict[str, tuple[int, int]]
    background: dict[str, dict]
    waves: list[str]
    formats: list[str]
    platform: bool
    windows: bool
    register: bool
    management: bool
    seed: int
    missing_code: int | None
    codebook: dict = field(default_factory=dict)


@st.composite
def instruments(draw) -> Instrument:
    names = draw(
        st.lists(st.from_regex(r"[A-Z]{2,3}", fullmatch=True), min_size=1, max_size=3, unique=True)
    )
    ranges = draw(st.lists(st.sampled_from([(1, 5), (1, 6), (1, 7), (0, 10), (0, 4)]), min_size=1))
    scales = {}
    for name in names:
        items = [f"{name}{j}" for j in range(1, draw(st.integers(1, 5)) + 1)]
        scales[name] = {
            "items": items,
            "reverse": draw(st.lists(st.sampled_from(items), unique=True, max_size=2)),
            "level": draw(st.sampled_from(["culture", "outcome", "individual", None])),
            "range": draw(st.sampled_from(ranges)),
        }
    unscaled = {f"vraag{j}": draw(st.sampled_from(ranges)) for j in range(draw(st.integers(0, 2)))}
    kinds = draw(st.lists(st.sampled_from(["labels", "ints", "mapping", "years"]), unique=True))
    background = {f"achtergrond_{kind}": {"kind": kind} for kind in kinds}
    n_waves = draw(st.integers(1, 3))
    return Instrument(
        scales=scales,
        unscaled=unscaled,
        background=background,
        waves=[f"{2020 + 2 * i}-M{i}" for i in range(n_waves)],
        formats=[draw(st.sampled_from(FORMATS)) for _ in range(n_waves)],
        platform=draw(st.booleans()),
        windows=draw(st.booleans()),
        register=draw(st.booleans()),
        management=draw(st.booleans()),
        seed=draw(st.integers(0, 2**16)),
        missing_code=draw(st.sampled_from([None, -99, 99])),
    )


def codebook_of(ins: Instrument) -> dict:
    response_scales = {
        f"r{low}_{high}": {"min": low, "max": high}
        for low, high in {s["range"] for s in ins.scales.values()} | set(ins.unscaled.values())
    }
    scales = {}
    for name, s in ins.scales.items():
        low, high = s["range"]
        scales[name] = {"response_scale": f"r{low}_{high}", "items": s["items"]}
        if s["reverse"]:
            scales[name]["reverse"] = s["reverse"]
        if s["level"]:
            scales[name]["level"] = s["level"]
    book: dict = {
        "instrument": "hypothesis-instrument",
        "identifiers": {"respondent": "koppelcode", "company": "organisatie"},
        "waves": {
            wave: (
                {
                    "label": f"M{i}",
                    "start": dt.date(2020 + 2 * i, 1, 1),
                    "end": dt.date(2020 + 2 * i, 12, 31),
                }
                if ins.windows
                else f"M{i}"
            )
            for i, wave in enumerate(ins.waves)
        },  # fmt: skip
        "response_scales": response_scales,
        "scales": scales,
    }
    if ins.missing_code is not None:
        book["missing_codes"] = {ins.missing_code: "weet niet"}
    if ins.unscaled:
        book["items"] = {
            item: {"response_scale": f"r{low}_{high}"} for item, (low, high) in ins.unscaled.items()
        }
    if ins.background:
        book["background"] = {}
    for name, spec in ins.background.items():
        book["background"][name] = {
            "labels": {"values": ["laag", "midden", "hoog"], "quasi_identifier": True},
            "ints": {"values": [0, 1]},
            "mapping": {"values": {10: "een", 20: "twee"}, "quasi_identifier": True},
            "years": {"type": "number", "min": 16, "max": 70, "bands": [30, 45],
                      "quasi_identifier": True},
        }[spec["kind"]]  # fmt: skip
    if ins.platform:
        book["columns"] = {column: {"type": kind} for column, kind in PLATFORM.values()}
        book["platform"] = {role: column for role, (column, _) in PLATFORM.items()}
    if ins.register:
        book["registers"] = {"companies": "bedrijven.csv"}
    labelled = [n for n, s in ins.background.items() if s["kind"] == "labels"]
    if ins.management and labelled:
        book["management"] = {"variable": labelled[0], "value": "hoog"}
    return book


def responses_of(ins: Instrument, wave_index: int) -> pd.DataFrame:
    """The wave's answers: per scale a latent score per person (persons keep theirs across
    waves), items as rounded noisy indicators, reverse items flipped, some answers missing."""
    rng = np.random.default_rng(ins.seed)
    n = COMPANIES * PER_COMPANY
    latent = rng.normal(size=(n, len(ins.scales)))
    wave_rng = np.random.default_rng([ins.seed, wave_index])
    frame = pd.DataFrame(
        {
            "koppelcode": [f"p{i:03d}" for i in range(n)],
            "organisatie": [f"B{i // PER_COMPANY}" for i in range(n)],
        }
    )
    for j, s in enumerate(ins.scales.values()):
        low, high = s["range"]
        for item in s["items"]:
            x = (low + high) / 2 + latent[:, j] * (high - low) / 4
            x = np.clip(np.rint(x + wave_rng.normal(scale=0.8, size=n)), low, high)
            frame[item] = low + high - x if item in s["reverse"] else x
    for item, (low, high) in ins.unscaled.items():
        frame[item] = wave_rng.integers(low, high + 1, n).astype(float)
    items = [i for s in ins.scales.values() for i in s["items"]] + list(ins.unscaled)
    if ins.missing_code is not None:  # a few "don't know" answers, never a whole scale
        for item in items[1:]:
            frame.loc[wave_rng.random(n) < 0.05, item] = ins.missing_code
    for name, spec in ins.background.items():
        frame[name] = {
            "labels": lambda: wave_rng.integers(1, 4, n),
            "ints": lambda: wave_rng.integers(0, 2, n),
            "mapping": lambda: wave_rng.choice([10, 20], n),
            "years": lambda: wave_rng.integers(18, 66, n),
        }[spec["kind"]]().astype(float)
    if ins.platform:
        start = pd.Timestamp(2020 + 2 * wave_index, 5, 1, 9) + pd.to_timedelta(
            np.arange(n), unit="min"
        )
        frame["begonnen"] = start
        frame["ingeleverd"] = start + pd.Timedelta(minutes=10)
        frame["seconden"] = 600.0
        frame["voortgang"] = 100.0
        frame["klaar"] = 1.0
        frame["proef"] = 0.0
    return frame


def write_export(frame: pd.DataFrame, kind: str, path_stem, codebook: dict) -> None:
    if kind == "sav":
        labels = {
            name: {float(c): v for c, v in spec["values"].items()}
            for name, spec in codebook.get("background", {}).items()
            if isinstance(spec.get("values"), dict)
        }
        pyreadstat.write_sav(frame, f"{path_stem}.sav", variable_value_labels=labels)
    elif kind == "xlsx":
        frame.to_excel(f"{path_stem}.xlsx", index=False)
    elif kind == "csv":
        frame.to_csv(f"{path_stem}.csv", index=False)
    else:  # Qualtrics: names, question texts, import ids, then the rows
        texts = pd.DataFrame([[f"Vraag {c}" for c in frame.columns]], columns=frame.columns)
        ids = pd.DataFrame(
            [[json.dumps({"ImportId": f"QID{i}"}) for i in range(len(frame.columns))]],
            columns=frame.columns,
        )
        pd.concat([texts, ids, frame.astype(object)]).to_csv(f"{path_stem}.csv", index=False)


def direct_alpha(items: np.ndarray) -> float:
    """Cronbach's alpha from the complete-case formula, k / (k - 1) (1 - sum var / var sum),
    on pairwise-complete covariances (as psych's alpha with missing answers)."""
    cov = pd.DataFrame(items).cov().to_numpy()
    k = cov.shape[0]
    return k / (k - 1) * (1 - np.trace(cov) / cov.sum())


@settings(
    max_examples=1,  # and the explicit example below: each costs a whole `scan run`
    derandomize=True,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ins=instruments())
@example(  # every optional section present, three waves in three formats
    ins=Instrument(
        scales={
            "LK": {"items": ["LK1", "LK2", "LK3"], "reverse": ["LK2"], "level": "culture",
                   "range": (0, 10)},
            "UIT": {"items": ["UIT1", "UIT2"], "reverse": [], "level": "outcome",
                    "range": (1, 7)},
        },
        unscaled={"vraag0": (1, 6)},
        background={f"achtergrond_{k}": {"kind": k} for k in ("labels", "ints", "mapping",
                                                              "years")},
        waves=["2020-M0", "2022-M1", "2024-M2"],
        formats=["sav", "qualtrics", "xlsx"],
        platform=True, windows=True, register=True, management=True, seed=7, missing_code=-99,
    )
)  # fmt: skip
def test_any_instrument_runs_end_to_end(tmp_path_factory, ins: Instrument):
    root = tmp_path_factory.mktemp("instrument")
    raw = root / "data" / "raw"
    raw.mkdir(parents=True)
    book = codebook_of(ins)
    (raw / "codebook.yaml").write_text(yaml.safe_dump(book, sort_keys=False, allow_unicode=True))
    if ins.register:
        codes = [f"B{i}" for i in range(COMPANIES)]
        pd.DataFrame({"organisatie": codes}).to_csv(raw / "bedrijven.csv", index=False)
    for i, (wave, kind) in enumerate(zip(ins.waves, ins.formats, strict=True)):
        (raw / wave).mkdir()
        write_export(responses_of(ins, i), kind, raw / wave / "export", book)

    done = scan(
        "--data-dir", str(root / "data"), "--reports-dir", str(root / "reports"), "run",
        home=root / "home", cwd=root, key=KEY,
    )  # fmt: skip
    assert done.returncode == 0, f"{book}\n{done.stdout}\n{done.stderr}"

    processed = root / "data" / "processed"
    for wave in ins.waves:
        assert (root / "reports" / wave / "wave_report.html").is_file(), done.stdout
        assert (root / "reports" / wave / "wave_report.pdf").is_file()
        responses = pd.read_parquet(processed / wave / "responses.parquet")
        reliability = pd.read_csv(processed / wave / "reliability.csv").set_index("scale")
        summary = pd.read_csv(processed / wave / "quality_summary.csv").set_index("reason")
        assert summary.loc["validated", "rows"] == len(responses) > 0
        speeder = summary.loc["speeder", "rule_status"]
        assert (speeder == "applied") == ins.platform, speeder
        for name, s in ins.scales.items():
            low, high = s["range"]
            items = responses[s["items"]].to_numpy(dtype=float)
            flip = np.isin(s["items"], s["reverse"])
            items[:, flip] = low + high - items[:, flip]
            row = reliability.loc[name]
            if len(s["items"]) >= 2:
                assert row["alpha"] == pytest.approx(direct_alpha(items), abs=1e-9)
            else:
                assert np.isnan(row["alpha"]) and "alpha not estimable" in row["note"]
            if len(s["items"]) < 3:
                assert np.isnan(row["omega_total"]) and "omega_total not estimable" in row["note"]
    # the data dictionary describes exactly this instrument's files, and the package validates
    package = check_dictionary(processed)
    first = next(r for r in package["resources"] if r["path"].endswith("/responses.parquet"))
    described = {f["name"]: f["description"] for f in first["schema"]["fields"]}
    for name, s in ins.scales.items():
        for item in s["items"]:
            assert f"scale {name}" in described[item] and f"{s['range'][0]} to" in described[item]
