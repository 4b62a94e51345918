"""The scale benchmark's generator plumbing (`bench/scale.py`): `write_demo` with other `Params`
writes a scan of that size, records the parameters, and its paths for scans larger than the demo
(company numbers beyond C150, office IPs beyond one /24, linkage codes beyond the invented
names) keep every code unique. The default stays the demo (tests/demo/test_demo.py checks it
byte for byte). The harness itself runs the whole pipeline, which is not a test's job."""

import json
import shutil

import pandas as pd
from conftest import CODEBOOK

import pipeline.demo.simulation as demo
from pipeline.demo.simulation import Params
from pipeline.demo.write import write_demo

SMALL = Params(companies=60, late_joiners=2, size_median=6.0, size_sigma=0.2, size_range=(5, 8))


def generate(tmp_path, params):
    (tmp_path / "raw").mkdir(parents=True)
    shutil.copy(CODEBOOK, tmp_path / "raw" / "codebook.yaml")
    summary = write_demo(tmp_path, params=params)
    truth = json.loads((tmp_path / "raw" / "_demo_truth" / "truth.json").read_text())
    return summary, truth


def test_params_reach_the_generator_and_the_truth(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "WIDE_CODES_AFTER", 100)  # random letters after 100 codes
    monkeypatch.setattr(demo, "COMPANY_IPS", 20)  # IPv6 offices after 20 companies
    summary, truth = generate(tmp_path, SMALL)
    assert truth["parameters"]["companies"] == 60
    assert truth["parameters"]["size_range"] == [5, 8]
    assert truth["companies"]["total"] == 60
    register = pd.read_csv(tmp_path / "raw" / "company_register.csv", dtype=str)
    assert register["company_code"].is_unique and len(register) == 60
    assert max(int(c[1:]) for c in register["company_code"]) <= 180  # 3 numbers per company
    rows = sum(summary.raw_rows.values())
    assert 60 * 5 * 0.5 < rows / len(summary.raw_rows) < 60 * 8 * 1.2
    assert truth["companies"]["persons_ever_employed"] > 100  # so the wide codes were drawn
