"""What a release file costs a researcher: its information loss against the restricted data.

Two kinds of measure, after Hundepool et al. (2012), *Statistical Disclosure Control*, §3.7
(information loss), and Karr et al. (2006), "A framework for evaluating the utility of data altered
to protect confidentiality", *The American Statistician* 60(3):
- generic: the quasi-identifier values withheld (the counts sdcMicro's local suppression
  reports) and the records whose background the release changes;
- analysis-specific: the analyses a researcher runs, on the release and on the restricted data.
  Each estimate's shift is expressed in standard errors of the restricted estimate,
  z = (release - restricted) / SE: |z| well under 1 is a shift within sampling noise.
  There are two such analyses: the mean scale score per background group (groups of at least k)
  and the fixed effects of the pipeline's per-wave multilevel models.

A release has the rows of `restricted` in the same order. Its items are `restricted`'s (checked),
so the scale scores are computed once from `restricted`, for both sides. A release's background
holds per cell `restricted`'s level, or in the public use file that level's `coarser` level, or
SUPPRESSED (checked). So a release group is a subset of the restricted group it is compared with.

Only summaries leave: no group's sizes or means, and its z to 2 decimals (the release's group
mean beside a group's exact restricted mean would give back its withheld members' mean). The
models' worst coefficients are listed: the published models already show them.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.instrument.codebook import Background, Codebook, Models
from pipeline.instrument.scoring import score_scales
from pipeline.models.multilevel import COMPANY, build_design, fit_model
from pipeline.privacy.disclosure import SUPPRESSED

WORST = 5  # coefficients listed with their z, largest |z| first
# A restricted group whose scores' sd is below this has a single score, which any subset also
# has: z = 0, not the rounding noise of the two means divided by ~0.
NOISE = 1e-9
NONE, WITHHELD = -1, -2  # codes of a value not given and of SUPPRESSED


@dataclass(frozen=True)
class Coded:
    """One background variable as codes: `before` of the restricted levels, `expected` and
    `after` of the release's levels (the coarser ones in the public use file): what the release
    shows when nothing is suppressed, and what it shows. NONE where not given; WITHHELD where
    suppressed."""

    before: np.ndarray
    expected: np.ndarray
    after: np.ndarray
    levels: tuple[str, ...]  # the restricted levels
    shown: tuple[str, ...]  # the release's levels
    recoded: np.ndarray  # per restricted level: the release shows another label for it


def release_utility(
    restricted: pd.DataFrame, release: pd.DataFrame, codebook: Codebook, *, k: int, public: bool
) -> dict:
    """The information loss of `release`, the public use file when `public`, else the
    scientific use file, against `restricted` (one wave). Groups under `k` are neither compared
    nor shown. Returns a JSON-ready dict (NaN as None) with three sections: `suppression`,
    `group_means` and `models`."""
    _check_rows(restricted, release, codebook)
    coded = {
        name: _code(restricted[name], release[name], variable, public)
        for name, variable in codebook.background.items()
    }
    scores = score_scales(restricted, codebook)[list(codebook.scales)]
    company = restricted[COMPANY].to_numpy()
    return {
        "release": "public_use" if public else "scientific_use",
        "k": int(k),
        "suppression": _suppression(coded, codebook, len(restricted)),
        "group_means": _group_means(scores, coded, k),
        "models": _models(scores, company, coded, codebook.models),
    }


def _check_rows(restricted: pd.DataFrame, release: pd.DataFrame, codebook: Codebook) -> None:
    """The release's rows are the restricted rows in the same order, with the same items."""
    company = [f[COMPANY].astype("string").reset_index(drop=True) for f in (restricted, release)]
    if not company[0].equals(company[1]):
        raise ValueError("the release must hold the restricted rows in the same order")
    items = codebook.items
    if not np.array_equal(
        release[items].to_numpy(dtype=float), restricted[items].to_numpy(dtype=float), True
    ):
        raise ValueError("the release's items differ from the restricted items")


def _code(before: pd.Series, after: pd.Series, variable: Background, public: bool) -> Coded:
    """The variable's `Coded`, checked: the restricted values are levels, and the release shows
    each one as expected or SUPPRESSED: <NA> only where the respondent gave none."""
    name, levels = variable.name, variable.levels
    shown = variable.public_levels if public else levels
    codes = pd.Categorical(before, categories=levels).codes.astype(np.int64)
    odd = (codes == NONE) & before.notna().to_numpy()
    if odd.any():
        raise ValueError(f"restricted {name!r}: values {sorted(set(before[odd]))} are not levels")
    to_shown = [shown.index(variable.coarser.get(v, v) if public else v) for v in levels]
    expected = np.append(to_shown, NONE)[codes]  # NONE indexes the appended NONE
    released = pd.Categorical(after, categories=[*shown, SUPPRESSED]).codes.astype(np.int64)
    released[released == len(shown)] = WITHHELD
    unknown = (released == NONE) & after.notna().to_numpy()
    wrong = unknown | ((released != expected) & (released != WITHHELD))
    if wrong.any():
        file = "public use file" if public else "scientific use file"
        pairs = zip(before[wrong].astype(str), after[wrong].astype(str), strict=True)
        raise ValueError(
            f"{file} {name!r}: values (restricted -> release) {sorted(set(pairs))[:5]} are "
            f"neither the expected level nor {SUPPRESSED!r}"
        )
    recoded = np.array([shown[j] != v for j, v in zip(to_shown, levels, strict=True)])
    return Coded(codes, expected, released, levels, shown, recoded)


def _suppression(coded: dict[str, Coded], codebook: Codebook, records: int) -> dict:
    quasi = [n for n, v in codebook.background.items() if v.quasi_identifier]
    suppressed = {name: int((coded[name].after == WITHHELD).sum()) for name in quasi}
    total = sum(suppressed.values())
    given = sum(int((coded[name].before != NONE).sum()) for name in quasi)
    changed, recoded = np.zeros(records, dtype=bool), 0
    for c in coded.values():
        withheld = c.after == WITHHELD
        coarser = (c.before != NONE) & c.recoded[c.before] & ~withheld
        changed |= withheld | coarser
        recoded += int(coarser.sum())
    return {
        "records": records,
        "records_changed": int(changed.sum()),
        "values_suppressed": suppressed,
        "values_suppressed_total": total,
        "share_suppressed": total / given if given else None,
        "values_recoded": recoded,
    }


def _group_means(scores: pd.DataFrame, coded: dict[str, Coded], k: int) -> dict:
    """Mean score per background level and scale, in the release's groups against the same
    groups of the restricted data; only groups of at least k restricted scores."""
    tables = [_group_table(scores, c).assign(variable=name) for name, c in coded.items()]
    table = (
        pd.concat(tables, ignore_index=True)
        if tables
        else pd.DataFrame(columns=["variable", "n_restricted", "n_release", "z"])
    )
    table = table[table["n_restricted"] >= k]
    lost = table["n_release"] < k
    compared = table[~lost]
    by_variable = {
        name: {
            "groups_compared": int((compared["variable"] == name).sum()),
            "groups_lost": int(lost[table["variable"] == name].sum()),
            "max_abs_z": _rounded(_max(compared.loc[compared["variable"] == name, "z"].abs())),
        }
        for name in coded
    }
    return {
        "groups_compared": len(compared),
        "groups_lost": int(lost.sum()),
        "max_abs_z": _rounded(_max(compared["z"].abs())),
        "mean_abs_z": _rounded(_mean(compared["z"].abs())),
        "by_variable": by_variable,
    }


def _group_table(scores: pd.DataFrame, coded: Coded) -> pd.DataFrame:
    """Per release level and scale: n, mean and sd of the scores in the restricted group, n and
    mean in the release group (a suppressed value is in none), and z."""
    x, groups = scores.to_numpy(dtype=float), len(coded.shown)
    r = _group_stats(x, coded.expected, groups)
    s = _group_stats(x, np.where(coded.after == WITHHELD, NONE, coded.after), groups)
    table = pd.DataFrame(
        {
            "level": np.repeat(coded.shown, x.shape[1]),
            "scale": np.tile(scores.columns, groups),
            "n_restricted": r[0].ravel(),
            "n_release": s[0].ravel(),
            "mean_restricted": r[1].ravel(),
            "mean_release": s[1].ravel(),
            "sd_restricted": r[2].ravel(),
        }
    )
    se = table["sd_restricted"] / np.sqrt(table["n_restricted"])
    diff = table["mean_release"] - table["mean_restricted"]
    table["z"] = (diff / se).where(table["sd_restricted"] >= NOISE, 0.0)
    return table


def _group_stats(x: np.ndarray, codes: np.ndarray, groups: int):
    """(n, mean, sd), each (groups, columns): per group (`codes`, -1 for none) the non-missing
    values of each column of `x`. Two passes, so that equal values have sd 0 (not ~1e-8)."""
    columns = x.shape[1]
    row, column = np.nonzero((codes[:, None] >= 0) & ~np.isnan(x))
    key = codes[row] * columns + column
    size = groups * columns
    n = np.bincount(key, minlength=size)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.bincount(key, x[row, column], minlength=size) / n
        squares = np.bincount(key, (x[row, column] - mean[key]) ** 2, minlength=size)
        sd = np.sqrt(squares / (n - 1))
    return tuple(a.reshape(groups, columns) for a in (n, mean, sd))


def _models(
    scores: pd.DataFrame, company: np.ndarray, coded: dict[str, Coded], spec: Models
) -> dict:
    """The pipeline's per-wave models (`wave_models`' REML fits: `<outcome>/empty` and
    `<outcome>/full`) on both sides, complete cases for the controls on both: a suppressed
    control is missing, as a researcher's software treats it. (The pipeline's `model_frame`
    keeps such rows at an `unknown` level instead.) The release's coefficients are compared with
    the restricted ones of the same term; when the release's design differs (its controls at the
    coarser levels of the public use file, or a level left without rows), only the culture terms
    keep their meaning and are compared."""
    summary = {
        "reason": None,
        "models_compared": 0,
        "coefficients_compared": 0,
        "max_abs_z": None,
        "mean_abs_z": None,
        "complete_cases": {},
        "not_estimable": [],
        "notes": [],
        "worst": [],
    }
    if not (spec.outcomes and spec.culture):
        reason = "no models: the codebook's models lack outcome or culture scales"
        return summary | {"reason": reason}
    if not spec.controls:
        reason = (
            "not fitted: the models have no background controls, and disclosure control changes "
            "only background variables, so the release's models are the restricted ones"
        )
        return summary | {"reason": reason}
    frames = {
        side: scores.assign(
            **{COMPANY: company},
            **{name: _control(coded[name], side) for name in spec.controls},
        )
        for side in ("restricted", "release")
    }
    culture = {f"{c}_{part}" for c in spec.culture for part in ("within", "between")}
    tables = []
    for outcome in spec.outcomes:
        fits = {side: _fit(frame, outcome, spec) for side, frame in frames.items()}
        summary["complete_cases"][outcome] = {side: n for side, (n, _) in fits.items()}
        for model in (f"{outcome}/empty", f"{outcome}/full"):
            found = {side: models[model] for side, (_, models) in fits.items()}
            reasons = {side: f for side, f in found.items() if isinstance(f, str)}
            summary["not_estimable"] += [
                {"model": model, "side": side, "reason": reason} for side, reason in reasons.items()
            ]
            if reasons:
                continue
            before, after = found["restricted"], found["release"]
            terms = list(before.index)
            if list(after.index) != terms:
                terms = [t for t in terms if t in culture and t in after.index]
                summary["notes"].append(
                    f"{model}: the release's controls make another design; compared the culture "
                    "terms only"
                )
            table = before.loc[terms].add_suffix("_restricted")
            table["estimate_release"] = after.loc[terms, "estimate"]
            table["z"] = (table["estimate_release"] - table["estimate_restricted"]) / table[
                "std_error_restricted"
            ]
            tables.append(table.reset_index().assign(model=model))
    if not tables:
        return summary
    table = pd.concat(tables, ignore_index=True)
    return summary | {
        "models_compared": len(tables),
        "coefficients_compared": len(table),
        "max_abs_z": _max(table["z"].abs()),
        "mean_abs_z": _mean(table["z"].abs()),
        "worst": [
            {
                "model": row.model,
                "term": row.term,
                "estimate_restricted": float(row.estimate_restricted),
                "std_error_restricted": float(row.std_error_restricted),
                "estimate_release": float(row.estimate_release),
                "z": float(row.z),
            }
            for row in _worst(table).itertuples()
        ],
    }


def _control(coded: Coded, side: str) -> pd.Categorical:
    """A control as the model sees it on `side`: a categorical of that file's levels, reference
    first; missing where not given or suppressed (build_design keeps complete cases)."""
    if side == "restricted":
        return pd.Categorical.from_codes(coded.before, coded.levels)
    return pd.Categorical.from_codes(np.maximum(coded.after, NONE), coded.shown)


def _fit(frame: pd.DataFrame, outcome: str, spec: Models) -> tuple[int, dict]:
    """(rows used, per model its estimates and SEs by term, or why it is not estimable)."""
    design = build_design(frame, outcome, spec.culture, spec.controls)
    models = (f"{outcome}/empty", f"{outcome}/full")
    if not len(design.y):
        return 0, dict.fromkeys(models, "not estimable: no complete cases")
    found = {}
    for model, part in zip(models, (design.empty(), design), strict=True):
        try:
            result = fit_model(model, outcome, part)
        except (ValueError, RuntimeError, np.linalg.LinAlgError) as error:
            found[model] = f"not estimable: {error}"
            continue
        if result.guarded.blocking:
            found[model] = "blocked: " + "; ".join(map(str, result.guarded.problems))
            continue
        fit = result.fit
        found[model] = pd.DataFrame(
            {"estimate": fit.fe, "std_error": fit.se}, index=pd.Index(fit.names, name="term")
        )
    return len(design.y), found


def _worst(table: pd.DataFrame) -> pd.DataFrame:
    """The WORST rows of largest |z|, first in table order on ties; none with z = 0."""
    shifted = table[table["z"] != 0]
    return shifted.loc[shifted["z"].abs().sort_values(ascending=False, kind="stable").index][:WORST]


def _rounded(z: float | None) -> float | None:
    """A group's z to 2 decimals: the release's group mean and a precise z would give the mean of
    the group's withheld members back, which may be one person."""
    return None if z is None else round(z, 2)


def _number(value) -> float | None:
    """A float for JSON, which has no NaN: None instead."""
    return float(value) if np.isfinite(value) else None


def _max(values: pd.Series) -> float | None:
    return _number(values.max()) if len(values) else None


def _mean(values: pd.Series) -> float | None:
    return _number(values.mean()) if len(values) else None
