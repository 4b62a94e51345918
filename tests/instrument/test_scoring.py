"""Scale scores on small frames whose expected values are computed by hand below."""

import math

import pandas as pd
import pytest

from pipeline.instrument.codebook import load_codebook
from pipeline.instrument.scoring import recode_items, score_scales

NAN = math.nan

# Three scales of 3, 4 and 5 items; T and F on a 1..5 scale, V on a 1..7 scale.
CODEBOOK = """\
instrument: scoring-test
version: "1"
identifiers: {{respondent: resp_code, company: company_code, direct: []}}
free_text: []
missing_codes: {{9: weet niet, -99: niet beantwoord}}
columns:
  resp_code: {{type: string}}
  company_code: {{type: string}}
waves:
  W1: {{start: 2020-01-01, end: 2020-12-31}}
response_scales:
  agree5: {{min: 1, max: 5, labels: {{1: oneens, 5: eens}}}}
  agree7: {{min: 1, max: 7, labels: {{1: oneens, 7: eens}}}}
scales:
  T: {{label: T, level: culture, response_scale: agree5, items: [T1, T2, T3], reverse: [T3],
      min_valid: {t}}}
  F: {{label: F, level: individual, response_scale: agree5, items: [F1, F2, F3, F4],
      reverse: [F4], min_valid: {f}}}
  V: {{label: V, level: outcome, response_scale: agree7, items: [V1, V2, V3, V4, V5],
      reverse: [V5], min_valid: {v}}}
item_text: {{T1: t, T2: t, T3: t, F1: f, F2: f, F3: f, F4: f, V1: v, V2: v, V3: v, V4: v, V5: v}}
background: {{}}
"""

ITEMS = [*(f"T{i}" for i in range(1, 4)), *(f"F{i}" for i in range(1, 5))]
ITEMS += [f"V{i}" for i in range(1, 6)]

# One row per case; the expected scores follow from the comments.
ROWS = {
    # all valid. T: 4, 2, 5+1-1=5 -> 11/3.  F: 1, 2, 3, 5+1-4=2 -> 2.  V: 7, 6, 5, 4, 8-3=5 -> 27/5
    "valid": ([4, 2, 1], [1, 2, 3, 4], [7, 6, 5, 4, 3]),
    # just enough valid (2/3, 3/4, 4/5), missing codes 9 and -99 and a blank.
    # T: 5, 5+1-2=4 -> 9/2.  F: 3, 3, 5+1-5=1 -> 7/3.  V: 1, 2, 2, 8-7=1 -> 6/4
    "enough": ([5, 9, 2], [-99, 3, 3, 5], [1, NAN, 2, 2, 7]),
    # one valid item too few (1/3, 2/4, 3/5): no score
    "too_few": ([NAN, 9, 3], [2, 9, NAN, 4], [1, 2, 3, 9, -99]),
    # outside the range counts as missing: 6, 0, 2.5 on 1..5; 8 on 1..7, where 6 and 7 are valid.
    # T: none valid.  F: 1, 1, 5+1-1=5 -> 7/3.  V: 6, 7, 1, 8-1=7 -> 21/4
    "out_of_range": ([6, 0, 2.5], [6, 1, 1, 1], [6, 7, 8, 1, 1]),
}
EXPECTED = {
    "valid": {"T": 11 / 3, "F": 2.0, "V": 27 / 5, "T_n": 3, "F_n": 4, "V_n": 5},
    "enough": {"T": 9 / 2, "F": 7 / 3, "V": 6 / 4, "T_n": 2, "F_n": 3, "V_n": 4},
    "too_few": {"T": NAN, "F": NAN, "V": NAN, "T_n": 1, "F_n": 2, "V_n": 3},
    "out_of_range": {"T": NAN, "F": 7 / 3, "V": 21 / 4, "T_n": 0, "F_n": 3, "V_n": 4},
}


def make_codebook(tmp_path, t, f, v):
    path = tmp_path / "codebook.yaml"
    path.write_text(CODEBOOK.format(t=t, f=f, v=v), encoding="utf-8")
    return load_codebook(path)


def make_frame() -> pd.DataFrame:
    items = pd.DataFrame(
        [[*t, *f, *v] for t, f, v in ROWS.values()], index=list(ROWS), columns=ITEMS
    )
    return items.assign(resp_code="X")  # a column that is not an item is ignored


# The demo codebook's 0.66, and the exact shares 2/3 (rounded up in the YAML), 3/4 and 4/5:
# both must accept 2 of 3, 3 of 4 and 4 of 5 valid items and refuse one fewer.
@pytest.mark.parametrize("shares", [("0.66", "0.66", "0.66"), ("0.6666666667", "0.75", "0.8")])
def test_scores_match_hand_computed_values(tmp_path, shares):
    scores = score_scales(make_frame(), make_codebook(tmp_path, *shares))
    assert list(scores.columns) == ["T", "T_n_valid", "F", "F_n_valid", "V", "V_n_valid"]
    assert list(scores.index) == list(ROWS)
    for case, expected in EXPECTED.items():
        for scale in "TFV":
            got = scores.at[case, scale]
            assert (math.isnan(got) and math.isnan(expected[scale])) or got == pytest.approx(
                expected[scale]
            ), (case, scale, got)
            assert scores.at[case, f"{scale}_n_valid"] == expected[f"{scale}_n"], (case, scale)


def test_recode_items_blanks_missing_codes_and_reverses(tmp_path):
    items = recode_items(make_frame(), make_codebook(tmp_path, "0.66", "0.66", "0.66"))
    assert list(items.columns) == ITEMS
    assert items.loc["valid", ["T1", "T2", "T3"]].tolist() == [4, 2, 5]  # T3 reversed on 1..5
    assert items.at["valid", "V5"] == 5  # reversed on 1..7: 8 - 3
    assert items.loc["enough", ["T2", "F1", "V2"]].isna().all()  # 9, -99, blank
    assert items.loc["too_few", ["V4", "V5"]].isna().all()  # 9, -99 in a reversed item
    assert items.loc["out_of_range", ["T1", "T2", "T3", "V3"]].isna().all()  # 6, 0, 2.5, 8
    assert items.at["out_of_range", "V1"] == 6  # valid on 1..7
