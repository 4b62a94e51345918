"""The wave report's context: one wave's tables turned into what `reports/wave.qmd` lays out.

Every number comes from an asset's table; this module only selects, suppresses and formats:
markdown pipe tables (captions live in the template), plain numbers and figures. The rules:

- Nothing resting on fewer than k respondents (`codebook.anonymisation.k`) is printed:
  statistics go through `format_stat`, group counts through `suppress_counts`, and companies
  flagged `suppressed` (or with n < k) are left out of the company distribution.
- No company is named; data-derived text is escaped so markdown cannot interpret it.
- Means and differences have 2 decimals, alpha, omega, ICC, rwg, loadings and fit indices 3,
  percentages 1, counts none.
"""

import dataclasses
import math
import string
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.instrument.codebook import Codebook
from pipeline.lineage.fingerprint import report_version
from pipeline.lineage.settings import ALL_WAVES
from pipeline.models.multilevel import COEFFICIENT_COLUMNS, FIT_COLUMNS, UNKNOWN, WAVE
from pipeline.models.trajectories import AFTER_START, EFFECTS, PARTICIPANT_AFTER_START
from pipeline.privacy.suppression import SUPPRESSED, fixed, format_stat, shown, suppress_counts
from pipeline.psychometrics.invariance import MIN_GROUPS
from pipeline.validate.quality import TOTALS, published_quality_summary

NOT_REPORTED = "not reported"
NUMBER_WORDS = ("none", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
ABSENT = "–"
PANDOC_COLUMNS = 72  # pandoc's --columns default, which decides how it sizes a table
# ASCII punctuation that pandoc markdown could read inline; the rest of it is left as it is.
_ESCAPED = set(string.punctuation) - set(",;:/?%=")

REASON_TEXT = {
    "unreadable_value": "a value could not be read",
    "preview": "survey preview",
    "test": "test response",
    "unknown_company": "company not in the register",
    "outside_window": "outside the fieldwork window",
    "out_of_range": "answer code out of range",
    "incomplete": "incomplete: no scale scorable",
    "speeder": "answered too fast",
    "straightliner": "straight-lining",
    "duplicate": "earlier submission of the same person",
}


@dataclass(frozen=True)
class WaveInputs:
    """One wave's shareable tables (README, output contract) and what the caller knows besides.

    `numbers` is the wave's `report_numbers`, `previous_wave` None for the first wave,
    `invariance` the cross-wave table (not estimable with one wave), `provenance` a JSON-like
    dict, `waves` the waves the tables hold (this one and, in the cross-wave tables, every
    wave), `trajectory_effects` and `trajectory_fit` the cross-wave tables of the trajectory
    models (pipeline/models/trajectories.py; without rows when there are no models),
    `longitudinal` and `longitudinal_fit` those of the multilevel models over all waves.
    """

    wave: str
    quality_summary: pd.DataFrame
    numbers: pd.DataFrame
    reliability: pd.DataFrame
    item_statistics: pd.DataFrame
    cfa_fit: pd.DataFrame
    cfa_loadings: pd.DataFrame
    aggregation: pd.DataFrame
    company_scores: pd.DataFrame
    multilevel: pd.DataFrame
    multilevel_fit: pd.DataFrame
    previous_wave: str | None
    invariance: pd.DataFrame
    companies_reported: int
    companies_without_report: int
    provenance: dict
    waves: tuple[str, ...]  # the waves of the scan, in codebook order: cross-wave tables hold all
    trajectory_effects: pd.DataFrame = dataclasses.field(
        default_factory=lambda: pd.DataFrame(columns=list(COEFFICIENT_COLUMNS))
    )
    trajectory_fit: pd.DataFrame = dataclasses.field(
        default_factory=lambda: pd.DataFrame(columns=list(FIT_COLUMNS))
    )
    longitudinal: pd.DataFrame = dataclasses.field(
        default_factory=lambda: pd.DataFrame(columns=list(COEFFICIENT_COLUMNS))
    )
    longitudinal_fit: pd.DataFrame = dataclasses.field(
        default_factory=lambda: pd.DataFrame(columns=list(FIT_COLUMNS))
    )


def wave_context(inputs: WaveInputs, codebook: Codebook, figures_dir: Path) -> dict:
    """Everything `reports/wave.qmd` needs; figures are written under `figures_dir`."""
    k = codebook.anonymisation.k
    wave = codebook.waves.get(inputs.wave)
    return {
        "title": yaml_string(f"Learning-culture scan: wave report {inputs.wave}"),
        "subtitle": yaml_string(f"Wave {wave.label if wave else inputs.wave}, for researchers"),
        "k": k,
        **response_section(inputs, k),
        "sample_table": sample_table(numbers_of(inputs.numbers, "sample"), codebook),
        "descriptives_table": descriptives_table(
            numbers_of(inputs.numbers, "descriptives"), codebook
        ),
        "reliability_table": reliability_table(inputs.reliability, codebook),
        "reliability_notes": reliability_notes(inputs.reliability, codebook),
        "item_table": item_table(inputs.item_statistics, k),
        "cfa_table": cfa_table(inputs.cfa_fit, k),
        "cfa_method": escape(cfa_method(inputs.cfa_fit)),
        "loadings_table": loadings_table(inputs.cfa_loadings),
        "cfa_note": " ".join(
            f"{escape(note)}." for note in inputs.cfa_fit.get("note", pd.Series()).dropna() if note
        ),
        **invariance_section(inputs.invariance, k),
        **aggregation_section(inputs, codebook, figures_dir),
        **models_section(inputs, codebook, figures_dir),
        **trajectory_section(inputs.trajectory_effects, inputs.trajectory_fit, codebook),
        "company_reports_note": company_reports_note(codebook),
        **change_section(numbers_of(inputs.numbers, "change"), inputs.previous_wave, codebook),
        **version_section(inputs),
        "provenance_table": provenance_table(inputs.provenance),
        "number_ids_table": number_ids_table(inputs),
    }


# --- markdown and numbers -----------------------------------------------------------------------


def escape(text) -> str:
    """Data text as literal markdown: punctuation backslash-escaped, newlines as spaces."""
    flat = " ".join(str(text).split())
    return "".join(f"\\{c}" if c in _ESCAPED else c for c in flat)


def yaml_string(text: str) -> str:
    """Escaped markdown in a double-quoted YAML scalar, for the front matter."""
    return '"' + escape(text).replace("\\", "\\\\") + '"'


def pipe_table(columns: Sequence[tuple[str, str]], rows: Sequence[Sequence[str]]) -> str:
    """A pipe table; `columns` are (header, "l" or "r"). Cells must already be markdown.

    Pandoc gives a table whose lines fit in 72 characters its natural column widths; a wider
    one fills the page, its columns sized in proportion to the dashes of the rule. So the rule
    is short when the table fits and follows the cells' widths when it does not.
    """
    if not rows:
        return ""
    lines = ["| " + " | ".join(cells) + " |" for cells in [[h for h, _ in columns], *rows]]
    if max(len(line) for line in lines) <= PANDOC_COLUMNS:
        widths = [3] * len(columns)
    else:
        widths = [_rule_width(h, a, [row[i] for row in rows]) for i, (h, a) in enumerate(columns)]
    rule = [
        f"{'-' * w}:" if a == "r" else f":{'-' * w}"
        for w, (_, a) in zip(widths, columns, strict=True)
    ]
    lines.insert(1, "|" + "|".join(rule) + "|")
    return "\n".join(lines)


def _rule_width(header: str, align: str, cells: list[str]) -> int:
    """Dashes for a column: numbers (right-aligned) must not wrap, text may (capped at 30)."""
    widest = max(len(header), *(len(c) for c in cells))
    return widest + 6 if align == "r" else min(widest, 30) + 3


def num(value, digits: int = 2) -> str:
    if value is None or pd.isna(value) or not math.isfinite(float(value)):
        return ABSENT
    return fixed(float(value), digits)


def count(value) -> str:
    return ABSENT if value is None or pd.isna(value) else f"{int(value)}"


def count_cell(value) -> str:
    """A count that `suppress_counts` may have hidden: "suppressed", or the count."""
    return SUPPRESSED if value == SUPPRESSED else count(value)


def p_value(p) -> str:
    if p is None or pd.isna(p):
        return ABSENT
    return "< .001" if p < 0.001 else f"{p:.3f}"


def interval(low, high, digits: int = 2) -> str:
    if pd.isna(low) or pd.isna(high):
        return ABSENT
    return f"[{num(low, digits)}, {num(high, digits)}]"


def n_cell(n, k: int) -> str:
    """A number of respondents, or "n < k" below the reporting minimum."""
    return count(n) if shown(n, k) else f"n < {k}"


def _stat_row(values: Sequence, n, k: int, digits: Sequence[int]) -> list[str]:
    """Several statistics that rest on the same n, each suppressed when n < k."""
    return [format_stat(v, n, k, d) for v, d in zip(values, digits, strict=True)]


def _scale_name(codebook: Codebook, scale: str) -> str:
    known = codebook.scales.get(scale)
    return f"{escape(scale)} ({escape(known.english)})" if known else escape(scale)


def term_words(term: str, codebook: Codebook) -> str:
    """A model term in words, with the codebook's English labels: a culture scale within or
    between companies, a background variable's level against its first; other terms as named."""
    if term == WAVE:
        return "Wave (change per wave)"
    scale, _, part = str(term).rpartition("_")
    if scale in codebook.scales and part in ("within", "between"):
        where = "within company" if part == "within" else "between companies"
        return f"{codebook.scales[scale].english} ({scale}), {where}"
    name, bracket, level = str(term).partition("[")
    if bracket and name in codebook.background and level.endswith("]"):
        level = level[:-1]
        shown = NOT_REPORTED if level == UNKNOWN else level
        return f"{codebook.background[name].english}: {shown}"
    return str(term)


def _term_cell(term: str, codebook: Codebook) -> str:
    """The term in words, then as the model tables name it (the id of its numbers)."""
    words = term_words(term, codebook)
    return escape(words) if words == term else f"{escape(words)} ({escape(term)})"


# --- sections -----------------------------------------------------------------------------------


# --- the numbers computed for the report, stored by the wave_report_numbers asset ---------------

NUMBERS_ASSET = "wave_report_numbers"


def report_numbers(
    responses: pd.DataFrame,
    scale_scores: pd.DataFrame,
    previous_scores: pd.DataFrame | None,
    company_scores: pd.DataFrame,
    codebook: Codebook,
) -> pd.DataFrame:
    """The numbers of the report's tables that no other asset stores, one per row (`table,
    row, statistic, value`; blank where a disclosure rule hides it): the totals, the sample,
    the scale descriptives, the distribution of company means and the change since the previous
    wave (`previous_scores`, None in the first wave). The report only lays them out, and
    `wave_report_numbers[wave](table,row,statistic).value` identifies each one."""
    k = codebook.anonymisation.k
    parts = {
        "totals": pd.DataFrame(
            {"n": [len(responses), responses["company_id"].nunique()]},
            index=["respondents", "companies"],
        ),
        "sample": sample_numbers(responses, codebook),
        "descriptives": descriptives_numbers(scale_scores, codebook),
        "companies": company_numbers(company_scores, k),
        "change": change_numbers(scale_scores, previous_scores, codebook),
    }
    rows = [
        (table, row, statistic, value)
        for table, frame in parts.items()
        for row, values in frame.iterrows()
        for statistic, value in values.items()
    ]
    numbers = pd.DataFrame(rows, columns=["table", "row", "statistic", "value"])
    return numbers.astype({"value": float})


def numbers_of(numbers: pd.DataFrame, table: str) -> pd.DataFrame:
    """One table of `report_numbers` in its shape again: a row per row key, in stored order."""
    part = numbers[numbers["table"] == table]
    rows, statistics = list(dict.fromkeys(part["row"])), list(dict.fromkeys(part["statistic"]))
    return part.pivot(index="row", columns="statistic", values="value").loc[rows, statistics]


def sample_numbers(responses: pd.DataFrame, codebook: Codebook) -> pd.DataFrame:
    """Respondents per level of each background variable (row `variable/level`) and their % of
    all, both blank where `suppress_counts` hides the count."""
    k, total = codebook.anonymisation.k, len(responses)
    rows = {}
    for name, variable in codebook.background.items():
        if name not in responses.columns:
            continue
        published = suppress_counts(background_counts(responses[name], variable.levels), k)
        for level, n in published.items():
            hidden = n == SUPPRESSED
            rows[f"{name}/{level}"] = {
                "n": np.nan if hidden else n,
                "percent": np.nan if hidden else 100 * n / total,
            }
    return pd.DataFrame.from_dict(rows, orient="index", columns=["n", "percent"])


def descriptives_numbers(scale_scores: pd.DataFrame, codebook: Codebook) -> pd.DataFrame:
    """n, mean and SD of each scale score, blank under k respondents."""
    k = codebook.anonymisation.k
    rows = {}
    for name in codebook.scales:
        if name not in scale_scores.columns:
            continue
        scores = scale_scores[name].dropna()
        visible = shown(len(scores), k)
        rows[name] = [len(scores), scores.mean(), scores.std()] if visible else [np.nan] * 3
    return pd.DataFrame.from_dict(rows, orient="index", columns=["n", "mean", "sd"])


def company_numbers(company_scores: pd.DataFrame, k: int) -> pd.DataFrame:
    """Per scale, how many company means are shown and not, and the lowest, median and highest
    shown one. A company is shown when it is not flagged `suppressed` and its n is at least k;
    none is named."""
    rows = {}
    for scale, means in _visible_company_means(company_scores, k).items():
        total = int((company_scores["scale"] == scale).sum())
        rows[scale] = [len(means), total - len(means), means.min(), means.median(), means.max()]
    columns = ["shown", "not_shown", "lowest", "median", "highest"]
    return pd.DataFrame.from_dict(rows, orient="index", columns=columns)


def _visible_company_means(company_scores: pd.DataFrame, k: int) -> dict[str, pd.Series]:
    means = {}
    for scale, group in company_scores.groupby("scale", sort=False):
        visible = ~group["suppressed"].map(_is_true) & group["n"].map(lambda n: shown(n, k))
        means[scale] = group.loc[visible, "mean"].dropna()
    return means


def change_numbers(
    scale_scores: pd.DataFrame, previous_scores: pd.DataFrame | None, codebook: Codebook
) -> pd.DataFrame:
    """Per scale: previous and current n and mean, and the difference with its Welch 95%
    interval; blank unless both waves have at least k scores. The waves are treated as
    independent samples: persons who answered both times are not paired."""
    columns = ["n_before", "mean_before", "n_now", "mean_now", "difference", "ci_low", "ci_high"]
    if previous_scores is None:
        return pd.DataFrame(columns=columns)
    k = codebook.anonymisation.k
    rows = {}
    for name in codebook.scales:
        if name not in scale_scores.columns or name not in previous_scores.columns:
            continue
        now, before = scale_scores[name].dropna(), previous_scores[name].dropna()
        rows[name] = [np.nan] * len(columns)
        if shown(len(now), k) and shown(len(before), k):
            diff, low, high = welch_difference(now, before)
            rows[name] = [len(before), before.mean(), len(now), now.mean(), diff, low, high]
    return pd.DataFrame.from_dict(rows, orient="index", columns=columns)


def response_section(inputs: WaveInputs, k: int) -> dict:
    """Totals of the validation stage and the quarantine by reason (counts of rows, no data),
    under the small-cell rule of quality_summary.csv (`published_quality_summary`: a count of 1
    to k-1 rows, and what would give it away, reads "suppressed"), as stored or applied here."""
    published = published_quality_summary(inputs.quality_summary, k, suppress_counts, SUPPRESSED)
    table = published.set_index("reason")
    summary = table["rows"]
    reasons = table.drop(index=[r for r in TOTALS if r in table.index])
    applied = reasons["rule_status"].fillna("").eq("applied")
    rows = [
        [escape(r), escape(REASON_TEXT.get(r, "")), count_cell(n)]
        for r, n in reasons.loc[applied, "rows"].items()
        if n != 0
    ]
    not_applied = [
        [escape(r), escape(REASON_TEXT.get(r, "")), escape(why)]
        for r, why in reasons.loc[~applied, "rule_status"].items()
    ]
    return {
        "n_raw": count_cell(summary.get("raw_rows")),
        "n_validated": count_cell(summary.get("validated")),
        "n_quarantined": count_cell(summary.get("quarantined")),
        "few_quarantined": summary.get("quarantined") == SUPPRESSED,
        "n_companies": count(numbers_of(inputs.numbers, "totals").loc["companies", "n"]),
        "companies_reported": inputs.companies_reported,
        "companies_without_report": inputs.companies_without_report,
        "quarantine_table": pipe_table(
            [("Reason", "l"), ("Description", "l"), ("Rows", "r")], rows
        ),
        "rules_not_applied_table": pipe_table(
            [("Rule", "l"), ("Description", "l"), ("Why not applied", "l")], not_applied
        ),
    }


def background_counts(values: pd.Series, levels: Sequence[str]) -> pd.Series:
    """Respondents per level in codebook order, then everyone else as "not reported"."""
    counts = values.value_counts().reindex(list(levels), fill_value=0).astype(int)
    missing = len(values) - int(counts.sum())
    return pd.concat([counts, pd.Series({NOT_REPORTED: missing})])


def sample_table(sample: pd.DataFrame, codebook: Codebook) -> str:
    """Counts per level of each background variable, suppressed per variable; % of all."""
    rows, named = [], set()
    for key, r in sample.iterrows():
        name, level = key.split("/", 1)
        label = (
            "" if name in named else f"{escape(codebook.background[name].english)} ({escape(name)})"
        )
        named.add(name)
        hidden = pd.isna(r["n"])
        rows.append(
            [label, escape(level)]
            + ([SUPPRESSED] * 2 if hidden else [count(r["n"]), num(r["percent"], 1)])
        )
    return pipe_table([("Variable", "l"), ("Level", "l"), ("n", "r"), ("%", "r")], rows)


def descriptives_table(descriptives: pd.DataFrame, codebook: Codebook) -> str:
    k = codebook.anonymisation.k
    rows = [
        [_scale_name(codebook, name), escape(codebook.scales[name].level), n_cell(r["n"], k)]
        + _stat_row([r["mean"], r["sd"]], r["n"], k, [2, 2])
        for name, r in descriptives.iterrows()
    ]
    return pipe_table(
        [("Scale", "l"), ("Level", "l"), ("n", "r"), ("Mean", "r"), ("SD", "r")], rows
    )


def reliability_table(reliability: pd.DataFrame, codebook: Codebook) -> str:
    k = codebook.anonymisation.k
    rows = []
    for r in reliability.itertuples():
        ci = interval(r.alpha_ci_low, r.alpha_ci_high, 3) if shown(r.n, k) else f"n < {k}"
        stat = _stat_row([r.alpha, r.alpha_std, r.omega_total, r.mean_r], r.n, k, [3] * 4)
        rows.append(
            [_scale_name(codebook, r.scale), n_cell(r.n, k), count(r.k), stat[0], ci, *stat[1:]]
        )
    columns = [("Scale", "l"), ("n", "r"), ("Items", "r"), ("α", "r"), ("α 95% CI", "r")]
    columns += [("Std. α", "r"), ("ω total", "r"), ("Mean r", "r")]
    return pipe_table(columns, rows)


def reliability_notes(reliability: pd.DataFrame, codebook: Codebook) -> str:
    """Why a statistic is blank ("–") for a scale, one sentence per scale with too few items."""
    notes = reliability.dropna(subset=["note"])
    return " ".join(
        f"{_scale_name(codebook, r.scale)}: {escape(r.note)}." for r in notes.itertuples() if r.note
    )


def item_table(item_statistics: pd.DataFrame, k: int) -> str:
    rows = [
        [escape(r.scale), escape(r.item), "yes" if _is_true(r.reversed) else "no", n_cell(r.n, k)]
        + _stat_row([r.mean, r.sd, r.r_drop, r.alpha_if_dropped], r.n, k, [2, 2, 3, 3])
        for r in item_statistics.itertuples()
    ]
    columns = [("Scale", "l"), ("Item", "l"), ("Reversed", "l"), ("n", "r"), ("Mean", "r")]
    columns += [("SD", "r"), ("r drop", "r"), ("α if dropped", "r")]
    return pipe_table(columns, rows)


def _robust(fit: pd.DataFrame) -> bool:
    return bool((fit["estimator"] == "MLR").any())


def cfa_method(fit: pd.DataFrame) -> str:
    """How the fit table was estimated, in words, from its estimator and missing columns."""
    row = fit.iloc[0]
    rows = (
        "full-information ML: every respondent with an answer counts"
        if row["missing"] == "fiml"
        else "complete rows only"
    )
    if row["estimator"] == "MLR":
        return f"MLR, {rows}; Yuan-Bentler scaled χ², robust CFI, TLI and RMSEA"
    return f"ML, {rows}"


def cfa_table(cfa_fit: pd.DataFrame, k: int) -> str:
    """The fit of the measurement model: the scaled chi-square and robust indices under MLR."""
    robust = _robust(cfa_fit)
    chisq, cfi, tli, rmsea = (
        ("chisq_scaled", "cfi_robust", "tli_robust", "rmsea_robust")
        if robust
        else ("chisq", "cfi", "tli", "rmsea")
    )
    rows = [
        [escape(r["model"]), n_cell(r["n"], k), *_stat_row([r[chisq]], r["n"], k, [2])]
        + [count(r["df"])]
        + _stat_row([r[cfi], r[tli], r[rmsea], r["srmr"]], r["n"], k, [3] * 4)
        for _, r in cfa_fit.iterrows()
    ]
    columns = [("Model", "l"), ("n", "r"), ("χ² scaled" if robust else "χ²", "r"), ("df", "r")]
    columns += [("CFI", "r"), ("TLI", "r"), ("RMSEA", "r"), ("SRMR", "r")]
    return pipe_table(columns, rows)


def loadings_table(cfa_loadings: pd.DataFrame) -> str:
    """Standardised loadings per factor: the number of items and their range."""
    rows = [
        [escape(factor), count(len(group)), num(group.min(), 3), num(group.max(), 3)]
        for factor, group in cfa_loadings.groupby("factor", sort=False)["std_loading"]
    ]
    return pipe_table([("Factor", "l"), ("Items", "r"), ("Lowest", "r"), ("Highest", "r")], rows)


def in_words(n: int) -> str:
    return NUMBER_WORDS[n] if 0 <= n < len(NUMBER_WORDS) else str(n)


def _level_scales(codebook: Codebook, level: str) -> list[str]:
    return [name for name, scale in codebook.scales.items() if scale.level == level]


def company_reports_note(codebook: Codebook) -> str:
    """Why no company gets a report, when the codebook has nothing to report to companies."""
    if _level_scales(codebook, "culture") or _level_scales(codebook, "outcome"):
        return ""
    return (
        "none of them receives a company report, because the codebook has no culture or "
        "outcome scales to report on."
    )


def invariance_section(invariance: pd.DataFrame, k: int) -> dict:
    """The invariance steps across the waves and what they allow (means need scalar); with
    fewer than MIN_GROUPS waves (the table has no fit), a sentence that says so."""
    if invariance["chisq"].isna().all():
        groups = invariance["groups"].dropna()
        waves = [g for g in groups.iloc[0].split("; ") if g] if len(groups) else []
        status = (
            f"Measurement invariance across the waves needs at least {in_words(MIN_GROUPS)} "
            f"waves; this study has {in_words(len(waves))} so far, so it is not tested yet."
        )
        return {
            "invariance_table": "",
            "invariance_groups": "",
            "invariance_method": "",
            "invariance_status": status,
        }
    columns, rows = invariance_rows(invariance, k)
    verdict = scalar_verdict(invariance)
    if verdict == "holds":
        status = "Scalar invariance holds across the waves: wave means can be compared."
    elif verdict == "partial":
        status = (
            "Scalar invariance holds partially across the waves: the items whose parameters "
            "were freed differ between the waves, so compare wave means of their scales with care."
        )
    else:
        status = (
            "Scalar invariance is not supported across the waves: compare wave means with care."
        )
    return {
        "invariance_table": pipe_table(columns, rows),
        "invariance_groups": "; ".join(escape(g) for g in invariance["groups"].unique()),
        "invariance_method": escape(cfa_method(invariance)),
        "invariance_status": status,
    }


def scalar_verdict(levels: pd.DataFrame) -> str:
    """Where an invariance table's levels end: "holds" (scalar, every parameter equal),
    "partial" (scalar holds with parameters freed, at its own level or the metric one),
    "untested" (nothing was fitted) or "rejected"."""
    if levels["chisq"].isna().all():
        return "untested"
    final = levels.fillna({"free": ""}).set_index("model")
    for model in ("scalar (partial)", "scalar"):
        if model in final.index and final.at[model, "decision"] in ("holds", "holds partially"):
            return "partial" if final.at[model, "free"] else "holds"
    return "rejected"


def invariance_rows(invariance: pd.DataFrame, k: int, lead: tuple[str, ...] = ()):
    """The columns and rows of an invariance table (the scaled chi-square and robust indices
    under MLR), the columns `lead` first; a statistic on fewer than k rows is suppressed."""
    robust = _robust(invariance)
    chisq, cfi, rmsea = (
        ("chisq_scaled", "cfi_robust", "rmsea_robust") if robust else ("chisq", "cfi", "rmsea")
    )
    rows = [
        [*(escape(r[c]) for c in lead), escape(r["model"]), *_stat_row([r[chisq]], r["n"], k, [2])]
        + [count(r["df"])]
        + _stat_row([r[cfi], r[rmsea], r["delta_cfi"], r["delta_rmsea"]], r["n"], k, [3] * 4)
        + [escape(r["decision"] + (f" (free: {r['free']})" if r["free"] else ""))]
        for _, r in invariance.fillna({"free": ""}).iterrows()
    ]
    columns = [*((c.capitalize(), "l") for c in lead), ("Model", "l")]
    columns += [("χ² scaled" if robust else "χ²", "r"), ("df", "r")]
    columns += [("CFI", "r"), ("RMSEA", "r"), ("ΔCFI", "r"), ("ΔRMSEA", "r"), ("Decision", "l")]
    return columns, rows


def aggregation_section(inputs: WaveInputs, codebook: Codebook, figures_dir: Path) -> dict:
    """ICC and rwg(j) per culture scale and the distribution of company means; without culture
    scales, a sentence that says why there are none."""
    if not _level_scales(codebook, "culture"):
        note = (
            "The codebook has no culture scales, so nothing is aggregated to companies: there "
            "are no ICCs, no agreement indices and no company means."
        )
        empty = {"aggregation_table": "", "company_table": "", "company_figures": []}
        return {"aggregation_note": note, **empty}
    return {
        "aggregation_note": "",
        "aggregation_table": aggregation_table(inputs.aggregation, codebook),
        **company_section(
            numbers_of(inputs.numbers, "companies"), inputs.company_scores, codebook, figures_dir
        ),
    }


def aggregation_table(aggregation: pd.DataFrame, codebook: Codebook) -> str:
    rows = [
        [_scale_name(codebook, r.scale), num(r.icc1, 3), num(r.icc2, 3)]
        + [num(r.mean_group_size, 1), num(r.rwg_mean, 3)]
        for r in aggregation.itertuples()
    ]
    columns = [("Scale", "l"), ("ICC(1)", "r"), ("ICC(2)", "r"), ("Mean group size", "r")]
    return pipe_table([*columns, ("Mean rwg(j)", "r")], rows)


def company_section(
    companies: pd.DataFrame, company_scores: pd.DataFrame, codebook: Codebook, figures_dir: Path
) -> dict:
    """The distribution of company means per scale (`companies`: `company_numbers`) and a
    figure of each, over the same companies."""
    # not at the top: docs/developer.md#start-up-time
    from pipeline.reporting.figures import distribution_plot

    k = codebook.anonymisation.k
    rows = [
        [_scale_name(codebook, scale), count(r["shown"]), count(r["not_shown"])]
        + ([num(r["lowest"]), num(r["median"]), num(r["highest"])] if r["shown"] else [ABSENT] * 3)
        for scale, r in companies.iterrows()
    ]
    figures = []
    for scale, means in _visible_company_means(company_scores, k).items():
        if len(means):
            path = figures_dir / f"company_means_{_file_part(scale)}.png"
            figure = distribution_plot(means.tolist(), f"company mean of {scale}", path)
            caption = f"Distribution of company means: {_scale_name(codebook, scale)}"
            figures.append({"figure": figure, "caption": caption})
    columns = [("Scale", "l"), ("Companies shown", "r"), (f"Not shown (n < {k})", "r")]
    columns += [("Lowest mean", "r"), ("Median", "r"), ("Highest mean", "r")]
    return {"company_table": pipe_table(columns, rows), "company_figures": figures}


def _file_part(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in str(name))


def models_section(inputs: WaveInputs, codebook: Codebook, figures_dir: Path) -> dict:
    """The multilevel results of the wave and of all waves, or a sentence on why there are
    none: the models explain an outcome scale by the culture scales, and the codebook's models
    may lack either."""
    models = codebook.models
    kinds = [("outcome", models.outcomes), ("culture", models.culture)]
    missing = [kind for kind, names in kinds if not names]
    if not missing:
        return {
            "multilevel_note": "",
            **multilevel_section(inputs.multilevel, inputs.multilevel_fit, codebook, figures_dir),
            **longitudinal_section(inputs.longitudinal, inputs.longitudinal_fit, codebook),
        }
    note = (
        "There are no multilevel models: they explain an outcome scale by the culture scales, "
        f"and the codebook's models have no {' and no '.join(missing)} scale."
    )
    empty = {"multilevel_fit_table": "", "multilevel_table": "", "coefficient_figures": []}
    empty |= {"longitudinal_fit_table": "", "longitudinal_table": ""}
    return {"multilevel_note": note, **empty}


def _published(fit: pd.DataFrame, k: int) -> set:
    """The models whose numbers are shown: without a blocking problem, on at least k rows (a
    model that is not estimable has no rows)."""
    return {r.model for r in fit.itertuples() if not _is_true(r.blocking) and shown(r.n_obs, k)}


def multilevel_section(
    multilevel: pd.DataFrame, multilevel_fit: pd.DataFrame, codebook: Codebook, figures_dir: Path
) -> dict:
    """Fit per model, fixed effects of the published full models and their coefficient plots.

    A model with `blocking` set publishes nothing but the reason; so does one under k rows.
    """
    # not at the top: docs/developer.md#start-up-time
    from pipeline.reporting.figures import coefficient_plot

    published = _published(multilevel_fit, codebook.anonymisation.k)
    full = [m for m in multilevel_fit["model"] if str(m).endswith("/full") and m in published]
    terms = multilevel[multilevel["model"].isin(full)]
    figures = []
    for model in full:
        table = terms[terms["model"] == model]
        table = table[(table["term"] != "Intercept") & table["estimate"].notna()]
        if table.empty:
            continue
        path = figures_dir / f"coefficients_{_file_part(model)}.png"
        words = table["term"].map(lambda t: term_words(t, codebook))
        plotted = table[["estimate", "ci_low", "ci_high"]].assign(term=words)
        figure = coefficient_plot(plotted[["term", "estimate", "ci_low", "ci_high"]], path)
        caption = f"Fixed effects of {escape(model)} with 95% confidence intervals"
        figures.append({"figure": figure, "caption": caption})
    return {
        "multilevel_fit_table": _fit_table(multilevel_fit, published),
        "multilevel_table": _terms_table(terms, codebook),
        "coefficient_figures": figures,
    }


def longitudinal_section(terms: pd.DataFrame, fit: pd.DataFrame, codebook: Codebook) -> dict:
    """The models over all waves (`longitudinal_multilevel` and `_fit`: per outcome, wave and
    culture within and between companies, persons within companies): fit and notes per model,
    the fixed effects of those published; a model not estimable (one wave) says why."""
    k = codebook.anonymisation.k
    published = _published(fit, k)
    rows = []
    for r in fit.itertuples():
        notes = escape(r.notes) if pd.notna(r.notes) and r.notes else ""
        if r.model not in published:
            if pd.notna(r.n_obs):  # else not estimable, and the notes say why
                problems = r.problems if pd.notna(r.problems) and r.problems else f"n < {k}"
                notes = f"not published: {escape(problems)}"
            rows.append([escape(r.model), *[ABSENT] * 6, notes])
            continue
        rows.append(
            [escape(r.model), count(r.n_obs), count(r.n_persons), count(r.n_groups)]
            + [num(r.icc, 3), num(r.r2_marginal, 3), num(r.r2_conditional, 3), notes]
        )
    columns = [("Model", "l"), ("n", "r"), ("Persons", "r"), ("Companies", "r"), ("ICC", "r")]
    columns += [("R² marg.", "r"), ("R² cond.", "r"), ("Notes", "l")]
    shown_terms = terms[terms["model"].isin(published)]
    return {
        "longitudinal_fit_table": pipe_table(columns, rows) if rows else "",
        "longitudinal_table": _terms_table(shown_terms, codebook) if len(shown_terms) else "",
    }


def _is_true(value) -> bool:
    return str(value).strip().lower() in ("true", "1", "1.0")


def _fit_table(multilevel_fit: pd.DataFrame, published: set) -> str:
    """Fit per model; a Status column says why a model is not published, when one is not."""
    rows = []
    for r in multilevel_fit.itertuples():
        if r.model not in published:
            problems = escape(r.problems) if pd.notna(r.problems) and r.problems else "blocked"
            rows.append([escape(r.model), *[ABSENT] * 7, f"not published: {problems}"])
            continue
        lr = f"{num(r.lr_chisq)} ({count(r.lr_df)})" if pd.notna(r.lr_chisq) else ABSENT
        rows.append(
            [escape(r.model), count(r.n_obs), count(r.n_groups), num(r.icc, 3)]
            + [num(r.r2_marginal, 3), num(r.r2_conditional, 3), lr, p_value(r.lr_p), ""]
        )
    columns = [("Model", "l"), ("n", "r"), ("Companies", "r"), ("ICC", "r"), ("R² marg.", "r")]
    columns += [("R² cond.", "r"), ("LR χ² (df)", "r"), ("LR p", "r"), ("Status", "l")]
    if len(published) == len(multilevel_fit):
        columns, rows = columns[:-1], [row[:-1] for row in rows]
    return pipe_table(columns, rows)


def _terms_table(terms: pd.DataFrame, codebook: Codebook) -> str:
    rows = [
        [escape(r.model), _term_cell(r.term, codebook), num(r.estimate, 3), num(r.std_error, 3)]
        + [num(r.df, 0), interval(r.ci_low, r.ci_high, 3), p_value(r.p_value)]
        for r in terms.itertuples()
    ]
    columns = [("Model", "l"), ("Term", "l"), ("Estimate", "r"), ("SE", "r"), ("df", "r")]
    return pipe_table([*columns, ("95% CI", "r"), ("p", "r")], rows)


# The effects of the trajectory models the report shows: (term, model suffix, its name in the
# table, what its models are called in the notes); the template's caption maps names to terms and
# says what each compares. Words, not the terms, so that a narrow column can wrap them.
TRAJECTORY_EFFECTS = (
    (AFTER_START, "/trajectory", "after start", "difference-in-differences models"),
    (
        PARTICIPANT_AFTER_START,
        "/participants",
        "participant after start",
        "participant models",
    ),
)
TRAJECTORY_DESIGN = (
    "Both effects come from multilevel models over all waves (REML, an intercept per company "
    "and per person within company, a fixed effect per wave). `after_start` (model "
    "*scale*/trajectory) is a difference-in-differences: how much the scores of a company's "
    "employees changed in the waves after its trajectory started, beyond the change over the "
    "same waves in the companies without a trajectory. `participant_after_start` (model "
    "*scale*/participants, the companies with a trajectory only) is how much more the "
    "participants' scores changed after the start than those of their colleagues in the same "
    "companies. A wave counts as after the start from its first fieldwork day on or after the "
    "start of the company's first trajectory, and a trajectory's effect is taken to last after "
    "its end. Trajectories of every type are pooled into one effect. With starts staggered over "
    "the waves this is the two-way fixed-effects estimate, unbiased only when the effect is the "
    "same whichever wave a trajectory starts in (Goodman-Bacon, 2021)."
)


def trajectory_section(effects: pd.DataFrame, fit: pd.DataFrame, codebook: Codebook) -> dict:
    """The effects of development trajectories (`effects`, `fit`: trajectory_effects and
    trajectory_fit): per scale, culture then outcome in codebook order, the
    difference-in-differences and the participants-vs-colleagues effect with estimate, SE, df,
    CI, p and n, or why a model shows none (not estimable, blocked, n < k); the models' notes
    and the design in words. Without a register, or without models, one sentence says why."""
    empty = {"trajectory_table": "", "trajectory_notes": "", "trajectory_design": ""}
    if codebook.trajectories is None:
        note = (
            "No trajectory register is declared, so the effect of development trajectories is "
            "not estimated. To estimate it, declare the register of the companies' trajectories "
            "in the codebook (registers.trajectories)."
        )
        return {"trajectory_note": note, **empty}
    fit = fit.assign(model=fit["model"].fillna("").astype(str))
    unnamed = fit[fit["model"] == ""]
    if fit.empty or not unnamed.empty:
        reasons = [escape(r) for r in unnamed["notes"].dropna() if str(r)]
        why = f": {'; '.join(reasons)}" if reasons else ""
        note = f"There are no trajectory models{why}."
        if fit.empty:
            note = (
                "There are no trajectory models: they explain the culture and outcome scales of "
                "the codebook's models, and it names none."
            )
        return {"trajectory_note": note, **empty}
    k = codebook.anonymisation.k
    columns, rows = trajectory_rows(effects, fit, codebook, k)
    notes = trajectory_notes(fit, codebook)
    if not codebook.trajectories.knows_participants:
        notes += (
            " Who takes part in a trajectory is not known (the register declares neither a "
            "participation variable nor a participants list), so participants are not compared "
            "with their colleagues."
        )
    return {
        "trajectory_note": "",
        "trajectory_table": pipe_table(columns, rows),
        "trajectory_notes": notes.strip(),
        "trajectory_design": TRAJECTORY_DESIGN,
    }


def _scale_order(codebook: Codebook, scales) -> list[str]:
    """`scales` with the culture scales first, then the outcome scales, then any other, each in
    codebook order (a scale the codebook does not know last)."""
    names = list(codebook.scales)
    rank = {"culture": 0, "outcome": 1}

    def key(scale):
        known = codebook.scales.get(scale)
        level = rank.get(known.level, 2) if known else 3
        return level, names.index(scale) if known else len(names), str(scale)

    return sorted(dict.fromkeys(scales), key=key)


def trajectory_rows(effects: pd.DataFrame, fit: pd.DataFrame, codebook: Codebook, k: int):
    """The columns and rows of the trajectory table; a Status column only when some model shows
    no numbers (not estimable, blocked, or under k rows)."""
    by_model = fit.set_index("model")
    rows, named = [], set()
    for scale in _scale_order(codebook, fit["outcome"].dropna()):
        for term, suffix, label, _ in TRAJECTORY_EFFECTS:
            model = f"{scale}{suffix}"
            if model not in by_model.index:
                continue
            r = by_model.loc[model]
            name = "" if scale in named else _scale_name(codebook, scale)
            named.add(scale)
            status = _trajectory_status(r, k)
            found = effects[(effects["model"] == model) & (effects["term"] == term)]
            if status or found.empty or pd.isna(found["estimate"].iloc[0]):
                status = status or "not published: no estimate"
                rows.append([name, label, *[ABSENT] * 6, status])
                continue
            e = found.iloc[0]
            rows.append(
                [name, label, num(e.estimate, 3), num(e.std_error, 3)]
                + [num(e.df, 0), interval(e.ci_low, e.ci_high, 3), p_value(e.p_value)]
                + [count(r["n_obs"]), ""]
            )
    columns = [("Scale", "l"), ("Effect", "l"), ("Estimate", "r")]
    columns += [("SE", "r"), ("df", "r"), ("95% CI", "r"), ("p", "r"), ("n", "r")]
    columns += [("Status", "l")]
    if all(not row[-1] for row in rows):
        columns, rows = columns[:-1], [row[:-1] for row in rows]
    return columns, rows


def _trajectory_status(r: pd.Series, k: int) -> str:
    """Why a trajectory model shows no numbers, or "" when it shows them."""
    if pd.isna(r["n_obs"]):
        return escape(r["notes"]) if pd.notna(r["notes"]) and r["notes"] else "not estimable"
    if _is_true(r["blocking"]):
        problems = r["problems"]
        return (
            f"not published: {escape(problems) if pd.notna(problems) and problems else 'blocked'}"
        )
    if not shown(r["n_obs"], k):
        return f"not published: n < {k}"
    return ""


def trajectory_notes(fit: pd.DataFrame, codebook: Codebook) -> str:
    """The fitted models' notes (companies with and without a trajectory, participants and
    colleagues), each said once with the scales it holds for when they differ between scales.
    A model that is not estimable has its reason in the table instead."""
    fitted = fit[fit["n_obs"].notna() & fit["notes"].notna()].set_index("outcome", drop=False)
    fitted = fitted.loc[_scale_order(codebook, fitted.index)]
    sentences = []
    for term, suffix, _, models_name in TRAJECTORY_EFFECTS:
        models = fitted[fitted["model"].str.endswith(suffix)]
        said = {}
        for r in models.itertuples():
            if str(r.notes):
                said.setdefault(str(r.notes), []).append(str(r.outcome))
        if not said:
            continue
        parts = [
            escape(note) if len(said) == 1 else f"{escape(note)} ({', '.join(map(escape, scales))})"
            for note, scales in said.items()
        ]
        lead = f"{models_name.capitalize()} (`{term}`)"
        sentences.append(f"{lead}: {'; '.join(parts)}.")
    return " ".join(sentences)


def welch_difference(current: pd.Series, previous: pd.Series) -> tuple[float, float, float]:
    """Difference of means (current - previous) with its Welch 95% interval."""
    # not at the top: docs/developer.md#start-up-time
    from scipy import stats

    a, b = current.to_numpy(float), previous.to_numpy(float)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    diff = a.mean() - b.mean()
    if va + vb == 0:  # no variation in either wave: the difference is exact
        return diff, diff, diff
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = stats.t.ppf(0.975, df) * math.sqrt(va + vb)
    return diff, diff - half, diff + half


def change_section(change: pd.DataFrame, previous_wave: str | None, codebook: Codebook) -> dict:
    """Per scale: previous and current mean with the Welch interval of the difference
    (`change`: `change_numbers`), "n < k" where either wave has fewer scores."""
    if previous_wave is None:
        return {"previous_wave": "", "change_table": ""}
    k = codebook.anonymisation.k
    rows = []
    for name, r in change.iterrows():
        label = _scale_name(codebook, name)
        if pd.isna(r["n_now"]):
            rows.append([label, *[f"n < {k}"] * 6])
            continue
        rows.append(
            [label, count(r["n_before"]), num(r["mean_before"]), count(r["n_now"])]
            + [num(r["mean_now"]), num(r["difference"]), interval(r["ci_low"], r["ci_high"])]
        )
    columns = [("Scale", "l"), ("n before", "r"), ("Mean before", "r"), ("n now", "r")]
    columns += [("Mean now", "r"), ("Difference", "r"), ("95% CI (Welch)", "r")]
    return {"previous_wave": escape(previous_wave), "change_table": pipe_table(columns, rows)}


# The report's tables and where their numbers are stored: (section, asset, the WaveInputs field
# holding its table, how many leading columns identify a row, the column of the example id).
SOURCES = (
    ("Response and data quality", "quality_summary", "quality_summary", 2, "rows"),
    ("Reliability", "reliability", "reliability", 1, "alpha"),
    ("Item statistics", "item_statistics", "item_statistics", 2, "r_drop"),
    ("CFA fit", "cfa_fit", "cfa_fit", 1, "cfi"),
    ("CFA loadings", "cfa_loadings", "cfa_loadings", 2, "std_loading"),
    ("Measurement invariance", "measurement_invariance", "invariance", 1, "cfi"),
    ("Company aggregation", "aggregation", "aggregation", 1, "icc1"),
    ("Multilevel models", "multilevel", "multilevel", 2, "estimate"),
    ("Multilevel model fit", "multilevel_fit", "multilevel_fit", 1, "loglik"),
    ("Longitudinal models", "longitudinal_multilevel", "longitudinal", 2, "estimate"),
    ("Longitudinal model fit", "longitudinal_multilevel_fit", "longitudinal_fit", 1, "n_obs"),
    ("Development trajectories", "trajectory_effects", "trajectory_effects", 2, "estimate"),
    ("Development trajectory model fit", "trajectory_fit", "trajectory_fit", 1, "n_obs"),
)
# The tables of report_numbers: (section, table).
NUMBER_TABLES = (
    ("Totals", "totals"),
    ("Sample", "sample"),
    ("Scale descriptives", "descriptives"),
    ("Company means", "companies"),
    ("Change since the previous wave", "change"),
)
CROSS_WAVE = {
    "measurement_invariance",
    "longitudinal_multilevel",
    "longitudinal_multilevel_fit",
    "trajectory_effects",
    "trajectory_fit",
}


def number_id(asset: str, partition: str, row: Sequence[object], column: str) -> str:
    """The id of one number: `asset[partition](row key).column`, the row key being the values of
    the table's leading columns, comma-separated; `scan trace <id>` follows it to the raw files."""
    return f"{asset}[{partition}]({','.join(str(v) for v in row)}).{column}"


def number_ids_table(inputs: WaveInputs) -> str:
    """Per table, how its numbers are identified, with one example id from the stored table."""
    rows = []
    for section, asset, field, keys, column in SOURCES:
        frame = getattr(inputs, field)
        # none in a table that only says why it is empty; the example is a number it shows
        numbers = frame[frame[column].notna() & frame[column].ne(SUPPRESSED)]
        if asset == "trajectory_effects":  # the example is an effect the report shows
            numbers = numbers[numbers["term"].isin(EFFECTS)]
        if numbers.empty:
            continue
        partition = ALL_WAVES if asset in CROSS_WAVE else inputs.wave
        pattern = number_id(asset, partition, [f"<{c}>" for c in frame.columns[:keys]], "<column>")
        example = number_id(asset, partition, numbers.iloc[0, :keys].tolist(), column)
        rows.append([escape(section), f"`{pattern}`", f"`{example}`"])
    for section, table in NUMBER_TABLES:
        part = inputs.numbers[inputs.numbers["table"] == table]
        if part.empty:
            continue
        pattern = number_id(NUMBERS_ASSET, inputs.wave, [table, "<row>", "<statistic>"], "value")
        example = number_id(NUMBERS_ASSET, inputs.wave, part.iloc[0, :3].tolist(), "value")
        rows.append([escape(section), f"`{pattern}`", f"`{example}`"])
    return pipe_table([("Table", "l"), ("Id of a number", "l"), ("Example", "l")], rows)


def version_section(inputs: WaveInputs) -> dict:
    """The report's data version: a hash over every table it is made from, and the waves."""
    values = (getattr(inputs, field.name) for field in dataclasses.fields(inputs))
    frames = [value for value in values if isinstance(value, pd.DataFrame)]
    version = report_version(frames, inputs.waves)
    return {"data_version": version.digest, "data_waves": escape(version.waves_listed("and"))}


def provenance_table(provenance: dict) -> str:
    """The caller's provenance record flattened to (item, value) rows; nested keys joined by /."""
    rows = [[escape(key), escape(value)] for key, value in _flatten(provenance, "")]
    return pipe_table([("Item", "l"), ("Value", "l")], rows)


def _flatten(value, prefix: str) -> list[tuple[str, object]]:
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list | tuple):
        items = ((str(i + 1), v) for i, v in enumerate(value))
    else:
        return [(prefix, value)]
    rows = []
    for key, inner in items:
        rows += _flatten(inner, f"{prefix} / {key}" if prefix else str(key))
    return rows
