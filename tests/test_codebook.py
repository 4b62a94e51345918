"""The codebook loader accepts the demo codebook and rejects malformed ones by key and file."""

import pytest
from conftest import CODEBOOK

from pipeline.codebook import CodebookError, load_codebook


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
            "  company: company_code",
            "  company: bedrijfscode",
            "identifiers.company",
            "'bedrijfscode' is not declared under columns",
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
