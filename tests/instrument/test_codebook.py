"""The codebook loader accepts the demo codebook and rejects malformed ones by key and file."""

import pytest
from conftest import CODEBOOK

from pipeline.instrument.codebook import CodebookError, Release, load_codebook


def test_demo_codebook_describes_the_demo_instrument():
    cb = load_codebook(CODEBOOK)
    assert len(cb.scales) == 9
    assert len(cb.items) == 38
    levels = [s.level for s in cb.scales.values()]
    assert levels.count("culture") == 6 and levels.count("outcome") == 2
    reverse = {s.name: s.reverse for s in cb.scales.values()}
    assert sum(len(r) for n, r in reverse.items() if cb.scales[n].level == "culture") == 6
    assert sorted(cb.missing_codes) == [-99, 9]
    assert cb.scale_of("RF3").name == "RF" and "RF3" in cb.scales["RF"].reverse
    assert cb.background["age_band"].codes[1] == "<25"
    assert cb.aliases["Duration (in seconds)"] == "duration_s"
    assert cb.aliases["bedrijf"] == cb.company_id == "company_code"
    assert set(cb.direct_identifiers) >= {"name", "email", "ip_address"}
    assert all(text.strip() for text in cb.item_text.values())
    assert cb.models.outcomes == ("SL", "EM") and len(cb.models.culture) == 6


def write(tmp_path, text):
    path = tmp_path / "codebook.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("old", "new", "key", "message"),
    [
        (
            "    reverse: [LT4]\n",
            "    reverse: [LT9]\n",
            "scales.LT.reverse",
            "reverse item 'LT9' is not an item of scale LT",
        ),
        (
            "    reverse: [LT4]\n",
            "    reverse: [CL4]\n",
            "scales.LT.reverse",
            "reverse item 'CL4' is not an item of scale LT",
        ),
        (
            "items: [CL1, CL2, CL3, CL4]",
            "items: [CL1, CL2, CL3, CL4, LT2]",
            "scales.CL.items",
            "item 'LT2' is already in scale LT",
        ),
        (
            "  EM4: Door nieuwe",
            "  EM9: Door nieuwe",
            "item_text.EM9",
            "unknown item",
        ),
        (
            "    response_scale: freq5\n",
            "",
            "scales.PL.response_scale",
            "missing response scale",
        ),
        (
            "    response_scale: freq5\n",
            "    response_scale: often5\n",
            "scales.PL.response_scale",
            "unknown response scale 'often5'",
        ),
        (
            "items: [EN1, EN2, EN3]",
            "items: [EN1, EN2, EN2]",
            "scales.EN.items",
            "duplicate names: EN2",
        ),
        (
            "  leader: {label",
            "  LT1: {label",
            "background.LT1",
            "duplicate name 'LT1'",
        ),
        (
            "  EM:\n    label: Inzetbaarheid",
            "  LT:\n    label: Inzetbaarheid",
            "LT",
            "duplicate key 'LT'",
        ),
        (
            "  -99: gezien, niet beantwoord",
            "  3: gezien, niet beantwoord",
            "missing_codes.3",
            "lies inside response scale agree5",
        ),
        ("    level: outcome\n", "    level: result\n", "scales.SL.level", "'result'"),
        ("    min_valid: 0.66\n", "    min_valid: 1.5\n", "scales.LT.min_valid", "(0, 1]"),
        (
            "  company_code: {type: string,",
            "  company_code: {type: number,",
            "columns.company_code.type",
            "identifiers and free text are strings",
        ),
        (
            "  outcomes: [SL, EM]",
            "  outcomes: [SL, LT]",
            "models.outcomes",
            "LT: not a scale of level outcome",
        ),
        (
            "  culture: [LT, RF,",
            "  culture: [XX, RF,",
            "models.culture",
            "XX: not a scale of level culture",
        ),
        ("  controls: [age_band,", "  controls: [shoe_size,", "models.controls", "shoe_size"),
        ("  2019-T0: {label: T0,", "  all_waves: {label: T0,", "waves.all_waves", "reserved"),
        (
            "  scientific_use: {k: 3, m: 2}",
            "  scientific_use: {k: 3, m: 0}",
            "anonymisation.scientific_use.m",
            "whole number >= 1 or all",
        ),
        (
            "  public_use: {k: 5, m: 2}",
            "  public_use: {k: 1, m: all}",
            "anonymisation.public_use.k",
            ">= 2",
        ),
        (
            "  public_use: {k: 5, m: 2}",
            "  public_use: {k: 5, n: 2}",
            "anonymisation.public_use",
            "unknown keys: n",
        ),
        (
            '    coarser: {"<35": "<45", "35-44": "<45"}',
            '    coarser: {"25-34": "<45"}',
            "background.age_band.coarser",
            "unknown levels: 25-34",
        ),
        (
            "values: [nee, ja], quasi_identifier: true}",
            'values: [nee, "[suppressed]"], quasi_identifier: true}',
            "background.leader",
            "reserved for values withheld for privacy",
        ),
    ],
)
def test_malformed_codebook_names_key_and_file(tmp_path, codebook_text, old, new, key, message):
    assert old in codebook_text, "the test's anchor is gone from the demo codebook"
    path = write(tmp_path, codebook_text.replace(old, new, 1))
    with pytest.raises(CodebookError) as error:
        load_codebook(path)
    text = str(error.value)
    assert str(path) in text
    assert key in text
    assert message in text


def test_missing_and_unparsable_codebook(tmp_path):
    with pytest.raises(CodebookError, match="codebook not found"):
        load_codebook(tmp_path / "nope.yaml")
    with pytest.raises(CodebookError, match="not valid YAML"):
        load_codebook(write(tmp_path, "scales: [unclosed"))
    with pytest.raises(CodebookError, match="response_scales: required key is missing"):
        load_codebook(write(tmp_path, "instrument: x\n"))


MINIMAL = """\
instrument: minimal
identifiers: {respondent: code, company: org}
waves: {w1: first}
response_scales: {six: {min: 1, max: 6}}
scales:
  A: {response_scale: six, items: [A1, A2], reverse: [A2]}
"""


def test_the_required_core_is_small_and_everything_else_has_a_default(tmp_path):
    cb = load_codebook(write(tmp_path, MINIMAL))
    assert cb.version == "1" and cb.missing_codes == {} and cb.background == {}
    assert cb.waves["w1"].label == "first" and cb.waves["w1"].start is None
    scale = cb.scales["A"]
    assert (scale.level, scale.label, scale.min_valid) == ("individual", "A", 0.5)
    assert cb.platform == {} and cb.company_register is None and cb.management is None
    assert cb.quality.test_company_codes == () and cb.quality.test_respondent_codes == ()
    # identifiers need not be declared under columns: they are string columns
    assert {c.name: c.type for c in cb.columns.values()} == {"code": "string", "org": "string"}
    assert cb.models.outcomes == () and cb.models.culture == ()
    assert cb.item_label("A1") == "A1"
    assert (cb.cfa.estimator, cb.cfa.missing, cb.cfa.groups) == ("MLR", "fiml", ())
    assert cb.linkage is None  # linkage codes link only when exactly the same
    anonymisation = cb.anonymisation
    assert (anonymisation.k, anonymisation.scientific_use, anonymisation.public_use) == (
        5,
        Release(5, 2),
        Release(5, 3),
    )


def test_release_files_take_their_k_and_m_and_the_coarser_levels(codebook_text, tmp_path):
    cb = load_codebook(write(tmp_path, codebook_text))
    assert cb.anonymisation.scientific_use == Release(3, 2)
    assert cb.anonymisation.public_use == Release(5, 2)
    assert cb.background["age_band"].public_levels == ("<45", "45+")
    assert cb.background["gender"].public_levels == cb.background["gender"].levels
    text = codebook_text.replace("  public_use: {k: 5, m: 2}", "  public_use: {m: all}")
    assert load_codebook(write(tmp_path, text)).anonymisation.public_use == Release(5, None)


def test_linkage_settings_and_their_defaults(tmp_path):
    demo = load_codebook(CODEBOOK).linkage
    assert demo.max_edits == 1 and demo.min_agreeing == 1
    assert "gender" in demo.consistent and "trajectory" not in demo.consistent
    background = "background: {sex: {values: [m, f]}, role: {values: [staff, boss]}}\n"
    cb = load_codebook(write(tmp_path, MINIMAL + background + "linkage: {consistent: [sex]}\n"))
    assert (cb.linkage.max_edits, cb.linkage.consistent, cb.linkage.min_agreeing) == (
        1,
        ("sex",),
        1,
    )
    cb = load_codebook(write(tmp_path, MINIMAL + "linkage: {max_edits: 0}\n"))
    assert (cb.linkage.max_edits, cb.linkage.consistent, cb.linkage.min_agreeing) == (0, (), 0)


def test_instrument_shapes_of_real_scans(tmp_path):
    text = MINIMAL.replace(
        "{six: {min: 1, max: 6}}", "{six: {min: 1, max: 6}, eleven: {min: 0, max: 10}}"
    )
    text += """\
items:
  Q9: {response_scale: eleven}
item_text: {Q9: "How likely ...?"}
background:
  age: {type: number, min: 16, max: 70, bands: [25, 35, 45, 55],
        generalise: {"<25": "<35", "25-34": "<35"}}
  size: {values: [1, 2, 3]}
  sex: {values: {0: male, 1: female}}
  role: {values: [staff, boss]}
management: {variable: role, value: boss}
"""
    cb = load_codebook(write(tmp_path, text))
    assert cb.items == ["A1", "A2", "Q9"] and cb.scale_of("Q9") is None
    assert cb.response_scale_of("Q9").max == 10 and cb.item_label("Q9") == "How likely ...?"
    age = cb.background["age"]
    assert age.is_number and age.values == ("<25", "25-34", "35-44", "45-54", "55+")
    assert age.levels == ("<35", "35-44", "45-54", "55+") and (age.min, age.max) == (16, 70)
    assert cb.background["size"].codes == {1: "1", 2: "2", 3: "3"}
    assert cb.background["sex"].codes == {0: "male", 1: "female"}
    assert cb.background["role"].codes == {1: "staff", 2: "boss"}
    assert (cb.management.variable, cb.management.value) == ("role", "boss")


@pytest.mark.parametrize(
    ("addition", "key", "message"),
    [
        ("platfrom: {}\n", "platfrom", "unknown section"),
        ("platform: {began: code}\n", "platform.began", "unknown role"),
        ("platform: {duration: secs}\n", "platform.duration", "'secs' is not declared"),
        (
            "columns: {secs: {type: string}}\nplatform: {duration: secs}\n",
            "platform.duration",
            "must be a number column",
        ),
        ("quality: {skip: [speedster]}\n", "quality.skip", "'speedster' is not a rule"),
        ("quality: {skip: [out_of_range]}\n", "quality.skip", "guards the data contract"),
        ("registers: {schools: s.csv}\n", "registers.schools", "unknown register"),
        ("cfa: {estimator: WLSMV}\n", "cfa.estimator", "expected one of ML, MLR"),
        ("cfa: {missing: pairwise}\n", "cfa.missing", "expected one of fiml, listwise"),
        ("cfa: {rotation: none}\n", "cfa.rotation", "unknown setting"),
        ("cfa: {groups: [sector]}\n", "cfa.groups", "sector: not a background variable"),
        ("linkage: [1]\n", "linkage", "expected a mapping"),
        ("linkage: {max_edit: 1}\n", "linkage.max_edit", "unknown setting"),
        ("linkage: {max_edits: 2}\n", "linkage.max_edits", "expected 0 (exact codes only) or 1"),
        ("linkage: {max_edits: true}\n", "linkage.max_edits", "expected 0"),
        ("linkage: {consistent: [sex]}\n", "linkage.consistent", "sex: not a background"),
        (
            "background: {sex: {values: [m, f]}}\nlinkage: {consistent: [sex], min_agreeing: 2}\n",
            "linkage.min_agreeing",
            "expected a whole number from 0 to the 1 consistent variables",
        ),
        (
            "background: {role: {values: [a, b]}}\nmanagement: {variable: role, value: c}\n",
            "management.value",
            "'c' is not a value of role",
        ),
        ("management: {variable: role, value: c}\n", "management.variable", "not a background"),
        (
            "background: {age: {type: number, bands: [30, 20]}}\n",
            "background.age.bands",
            "must increase",
        ),
        (
            "background: {age: {values: [a], min: 3}}\n",
            "background.age.min",
            "a range is for numbers",
        ),
    ],
)
def test_optional_sections_are_checked_when_given(tmp_path, addition, key, message):
    with pytest.raises(CodebookError) as error:
        load_codebook(write(tmp_path, MINIMAL + addition))
    assert f"{key}: " in str(error.value) and message in str(error.value)
    assert str(tmp_path / "codebook.yaml") in str(error.value)


def test_an_empty_section_is_an_absent_one(tmp_path):
    cb = load_codebook(write(tmp_path, MINIMAL + "models:\nbackground:\nquality:\n"))
    assert cb.models.outcomes == () and cb.background == {} and cb.quality.skip == ()
    with pytest.raises(CodebookError, match="scales: required key is missing"):
        load_codebook(write(tmp_path, MINIMAL.split("scales:\n")[0] + "scales:\n"))


def test_a_fieldwork_window_is_whole_or_absent(tmp_path):
    text = MINIMAL.replace("{w1: first}", "{w1: {label: first, start: 2020-01-01}}")
    with pytest.raises(CodebookError, match="waves.w1: give both start and end"):
        load_codebook(write(tmp_path, text))
