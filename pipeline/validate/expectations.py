"""The distribution-level expectations of a wave, as plain data, and the frame they are run on.

Great Expectations sees only `deidentified(frame)`: no identifier, no free text, no source
path, so nothing it records or prints can identify anyone. The suite is a plain dict
(`expectation_suite`) so that this module stays free of the great_expectations import; the
Dagster resource `assets.gx_resource.GreatExpectations` turns it into GX objects.
"""

import pandas as pd

from pipeline.instrument.codebook import Codebook
from pipeline.instrument.scoring import score_scales


def score_columns(codebook: Codebook) -> list[str]:
    return [column for scale in codebook.scales for column in (scale, f"{scale}_n_valid")]


def allowed_columns(codebook: Codebook) -> list[str]:
    """The columns of `deidentified`, in order."""
    hidden = set(codebook.identifying)
    return [
        "wave",
        "_source_row",
        *(name for name in codebook.columns if name not in hidden),
        *codebook.background,
        *codebook.items,
        *score_columns(codebook),
    ]


def deidentified(frame: pd.DataFrame, codebook: Codebook) -> pd.DataFrame:
    """The allowed columns of `frame`, missing codes as NaN, plus the scale scores.

    The index is reset because GX reports unexpected rows by index label, and an index could
    itself be an identifier; `_source_row` still leads back to the export.
    """
    kept = [c for c in allowed_columns(codebook) if c in frame.columns]
    out = frame[kept].copy()
    coded = out.columns.intersection([*codebook.background, *codebook.items])
    out[coded] = out[coded].mask(out[coded].isin(list(codebook.missing_codes)))
    out = pd.concat([out, score_scales(frame, codebook)], axis=1)
    return out.reset_index(drop=True)


def expectation_suite(
    codebook: Codebook,
    wave_name: str,
) -> dict:
    """The suite for one wave: `{"name", "meta", "expectations": [{"type", "kwargs", "meta"}]}`.

    Types are the snake_case names of GX 1.x expectation classes. Every expectation says in
    `meta.why` what it guards against, for the auditor reading the validation page.
    """
    min_completion_rate = codebook.quality.min_completion_rate
    max_item_missing_share = codebook.quality.max_item_missing_share
    present = round(1 - max_item_missing_share, 10)
    hidden = ", ".join(codebook.identifying)
    expectations = [
        _expect(
            "expect_table_columns_to_match_set",
            f"Exactly the de-identified columns: no identifier or free text ({hidden}) and no "
            "source path reaches the validation, and no expected column is missing.",
            column_set=allowed_columns(codebook),
            exact_match=True,
        ),
    ]
    if "completed" in codebook.platform:  # the platform's flag: 1 = finished, 0 = not
        expectations.append(
            _expect(
                "expect_column_mean_to_be_between",
                f"At least {min_completion_rate:.0%} of the responses are finished; fewer points "
                "to a broken survey link or a questionnaire that is too long.",
                column=codebook.platform["completed"],
                min_value=min_completion_rate,
                max_value=1,
            )
        )
    for item in codebook.items:
        scale = codebook.scale_of(item)
        response_scale = codebook.response_scale_of(item)
        low, high = response_scale.min, response_scale.max
        expectations += [
            _expect(
                "expect_column_values_to_be_in_set",
                f"Answers to {item}{f' ({scale.name})' if scale else ''} are codes {low}..{high} "
                f"of the {response_scale.name} scale; missing codes are already blank.",
                column=item,
                value_set=list(range(low, high + 1)),
            ),
            _expect(
                "expect_column_values_to_not_be_null",
                f"At most {max_item_missing_share:.0%} of the answers to {item} are missing; more "
                "points to an unclear or sensitive question, or a routing error.",
                column=item,
                mostly=present,
            ),
        ]
    for name, background in codebook.background.items():
        if background.is_number:
            if background.min is None and background.max is None:
                continue  # no range given: nothing to expect
            expectations.append(
                _expect(
                    "expect_column_values_to_be_between",
                    f"{name} is a number within the codebook's range (min {background.min}, "
                    f"max {background.max}); missing codes are already blank.",
                    column=name,
                    min_value=background.min,
                    max_value=background.max,
                )
            )
            continue
        codes = ", ".join(f"{c} {v}" for c, v in background.codes.items())
        expectations.append(
            _expect(
                "expect_column_values_to_be_in_set",
                f"{name} holds the codes of its values ({codes}); missing codes are already blank.",
                column=name,
                value_set=list(background.codes),
            )
        )
    for name, scale in codebook.scales.items():
        low, high = scale.response_scale.min, scale.response_scale.max
        expectations += [
            _expect(
                "expect_column_values_to_be_between",
                f"Scale score {name} lies within {low}..{high}: no missing or out-of-range code "
                "entered the mean.",
                column=name,
                min_value=low,
                max_value=high,
            ),
            _expect(
                "expect_column_values_to_not_be_null",
                f"At most {max_item_missing_share:.0%} of the responses lack a {name} score "
                f"(a score needs {scale.min_valid:.0%} of its {len(scale.items)} items).",
                column=name,
                mostly=present,
            ),
        ]
    return {
        "name": f"{codebook.instrument}.{wave_name}",
        "meta": {
            "instrument": codebook.instrument,
            "codebook_version": codebook.version,
            "wave": wave_name,
        },
        "expectations": expectations,
    }


def _expect(kind: str, why: str, **kwargs) -> dict:
    return {"type": kind, "kwargs": kwargs, "meta": {"why": why}}


# What GX writes that changes on every run (random ids, clock times) without changing the result.
VOLATILE_KEYS = frozenset({"id", "validation_id", "ge_load_time", "run_time", "validation_time"})


def stable_result(result):
    """The validation result without its run-specific ids and times, so that the same data give
    the same file (the run itself is recorded by Dagster)."""
    if isinstance(result, dict):
        return {k: stable_result(v) for k, v in result.items() if k not in VOLATILE_KEYS}
    if isinstance(result, list):
        return [stable_result(v) for v in result]
    return result
