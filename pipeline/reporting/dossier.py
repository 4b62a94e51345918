"""The validation dossier: one English report across all waves for the instrument's authors, on
the scan's first aim (a validated instrument): factor structure and fit, reliability,
invariance over the waves and over the codebook's groups with the non-invariant parameters,
validity evidence, item statistics, and what changed since the last wave.

Every number is a cell of a table an asset stored (the waves' `cfa_fit`, `cfa_loadings`,
`reliability`, `item_statistics`, `validity_scales`, `validity_pairs` and `group_invariance`,
and the cross-wave `measurement_invariance` and `longitudinal_invariance`); the dossier computes
none, so each has an id (`asset[partition](row).column`, as in the wave report) that `scan
trace` follows to the raw files. "What changed" sets the last two waves' numbers side by side
and flags a change by rule, without computing a difference.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pandas as pd

from pipeline.instrument.codebook import Codebook
from pipeline.lineage.fingerprint import ReportVersion, report_version
from pipeline.lineage.settings import ALL_WAVES
from pipeline.reporting.wave_report import (
    cfa_method,
    count,
    escape,
    interval,
    invariance_rows,
    invariance_section,
    num,
    number_id,
    pipe_table,
    provenance_table,
    scalar_verdict,
    yaml_string,
)

# A change worth a reader's look between the last two waves (flagged, not computed).
LOADING_CHANGE = 0.10
ALPHA_CHANGE = 0.05
HTMT_LIMIT = 0.85  # Henseler, Ringle and Sarstedt (2015): above it, two scales may not differ
# The tables the dossier shows and where their numbers are stored: (section, asset, the
# DossierInputs field, how many leading columns identify a row, the column of the example id).
SOURCES = (
    ("Fit", "cfa_fit", "cfa_fit", 1, "cfi"),
    ("Loadings", "cfa_loadings", "cfa_loadings", 2, "std_loading"),
    ("Reliability", "reliability", "reliability", 1, "alpha"),
    ("Item statistics", "item_statistics", "item_statistics", 2, "mean"),
    ("Composite reliability and AVE", "validity_scales", "validity_scales", 1, "cr"),
    ("HTMT and associations", "validity_pairs", "validity_pairs", 2, "htmt"),
    ("Invariance over groups", "group_invariance", "group_invariance", 2, "cfi"),
)


@dataclass(frozen=True)
class DossierInputs:
    """Per wave (in order) the stored tables, and the cross-wave invariance tables: the waves
    as groups (`invariance`) and the panel in wide format (`panel_invariance`)."""

    waves: list[str]
    cfa_fit: dict[str, pd.DataFrame]
    cfa_loadings: dict[str, pd.DataFrame]
    reliability: dict[str, pd.DataFrame]
    item_statistics: dict[str, pd.DataFrame]
    validity_scales: dict[str, pd.DataFrame]
    validity_pairs: dict[str, pd.DataFrame]
    group_invariance: dict[str, pd.DataFrame]
    invariance: pd.DataFrame
    panel_invariance: pd.DataFrame
    provenance: dict


def _fit_columns(fit: pd.DataFrame) -> tuple[str, str, str, str]:
    if (fit["estimator"] == "MLR").any():
        return "chisq_scaled", "cfi_robust", "tli_robust", "rmsea_robust"
    return "chisq", "cfi", "tli", "rmsea"


def fit_table(inputs: DossierInputs) -> str:
    rows = []
    for wave in inputs.waves:
        fit = inputs.cfa_fit[wave]
        chisq, cfi, tli, rmsea = _fit_columns(fit)
        r = fit.iloc[0]
        rows.append(
            [escape(wave), count(r["n"]), num(r[chisq]), count(r["df"])]
            + [num(r[cfi], 3), num(r[tli], 3), num(r[rmsea], 3), num(r["srmr"], 3)]
        )
    columns = [("Wave", "l"), ("n", "r"), ("χ²", "r"), ("df", "r")]
    columns += [("CFI", "r"), ("TLI", "r"), ("RMSEA", "r"), ("SRMR", "r")]
    return pipe_table(columns, rows)


def _by_wave(tables: dict[str, pd.DataFrame], waves, keys: list[str], value: str):
    """One column per wave of `value`, rows by `keys` in the first wave's order."""
    frames = [tables[w].set_index(keys)[value].rename(w) for w in waves if not tables[w].empty]
    return pd.concat(frames, axis=1) if frames else pd.DataFrame()


def loadings_table(inputs: DossierInputs) -> str:
    wide = _by_wave(inputs.cfa_loadings, inputs.waves, ["factor", "item"], "std_loading")
    rows = [
        [escape(factor), escape(item), *[num(v, 3) for v in values]]
        for (factor, item), values in wide.iterrows()
    ]
    return pipe_table([("Factor", "l"), ("Item", "l"), *[(escape(w), "r") for w in wide]], rows)


def reliability_table(inputs: DossierInputs) -> str:
    alpha = _by_wave(inputs.reliability, inputs.waves, ["scale"], "alpha")
    omega = _by_wave(inputs.reliability, inputs.waves, ["scale"], "omega_total")
    rows = [
        [
            escape(scale),
            *[
                f"{num(a, 3)} / {num(o, 3)}"
                for a, o in zip(alpha.loc[scale], omega.loc[scale], strict=True)
            ],
        ]
        for scale in alpha.index
    ]
    return pipe_table([("Scale", "l"), *[(escape(w), "r") for w in alpha]], rows)


def validity_table(inputs: DossierInputs) -> str:
    rows = []
    for wave in inputs.waves:
        for r in inputs.validity_scales[wave].itertuples():
            ok = {True: "yes", False: "no"}.get(r.fornell_larcker_ok, "–")
            rows.append(
                [escape(wave), escape(r.scale), num(r.cr, 3), num(r.ave, 3), num(r.sqrt_ave, 3)]
                + [
                    num(r.max_r, 3),
                    escape(r.max_r_with if isinstance(r.max_r_with, str) else ""),
                    ok,
                ]
            )
    columns = [("Wave", "l"), ("Scale", "l"), ("CR", "r"), ("AVE", "r"), ("√AVE", "r")]
    columns += [("Largest r", "r"), ("with", "l"), ("Fornell-Larcker", "l")]
    return pipe_table(columns, rows)


def htmt_table(inputs: DossierInputs, wave: str) -> str:
    """The pairs of the wave whose HTMT reaches HTMT_LIMIT, or "" when none does."""
    pairs = inputs.validity_pairs[wave]
    high = pairs[pairs["htmt"] >= HTMT_LIMIT]
    rows = [[escape(r.scale_a), escape(r.scale_b), num(r.htmt, 3)] for r in high.itertuples()]
    return pipe_table([("Scale", "l"), ("Scale", "l"), ("HTMT", "r")], rows)


def association_table(inputs: DossierInputs, wave: str) -> str:
    pairs = inputs.validity_pairs[wave]
    between = pairs[pairs["kind"] == "culture-outcome"]
    rows = [
        [escape(r.scale_a), escape(r.scale_b), count(r.n), num(r.r, 3)]
        + [interval(r.r_lo, r.r_hi, 3)]
        for r in between.itertuples()
    ]
    columns = [("Culture scale", "l"), ("Outcome scale", "l"), ("n", "r"), ("r", "r")]
    return pipe_table([*columns, ("95% CI", "r")], rows)


def item_table(inputs: DossierInputs, wave: str) -> str:
    items = inputs.item_statistics[wave]
    rows = [
        [escape(r.scale), escape(r.item), count(r.n), num(r.mean), num(r.sd)]
        + [num(r.r_drop, 3), num(r.alpha_if_dropped, 3)]
        for r in items.itertuples()
    ]
    columns = [("Scale", "l"), ("Item", "l"), ("n", "r"), ("Mean", "r"), ("SD", "r")]
    return pipe_table([*columns, ("r drop", "r"), ("α if dropped", "r")], rows)


def group_table(inputs: DossierInputs) -> str:
    rows = []
    for wave in inputs.waves:
        for r in inputs.group_invariance[wave].fillna({"free": "", "variable": ""}).itertuples():
            if not r.variable:
                continue
            decision = r.decision + (f" (free: {r.free})" if r.free else "")
            rows.append(
                [escape(wave), escape(r.variable), escape(r.model), escape(r.groups)]
                + [escape(decision)]
            )
    columns = [("Wave", "l"), ("Variable", "l"), ("Level", "l"), ("Groups (n)", "l")]
    return pipe_table([*columns, ("Decision", "l")], rows)


def panel_section(panel: pd.DataFrame, k: int) -> dict:
    """The panel's invariance over the waves scale by scale, and a sentence on where scalar
    invariance holds; without a fitted scale, the reasons."""
    if panel["chisq"].isna().all():
        reasons = "; ".join(escape(r) for r in panel["decision"].dropna().unique())
        return {"panel_table": "", "panel_status": f"The panel model was not fitted ({reasons})."}
    columns, rows = invariance_rows(panel, k, ("scale",))
    verdicts: dict[str, list[str]] = {}
    words = {
        "holds": "holds for",
        "partial": "holds partially (the freed parameters in the table) for",
        "untested": "could not be tested (the reason in the table) for",
        "rejected": "is not supported for",
    }
    for scale, levels in panel.groupby("scale", sort=False):
        verdicts.setdefault(words[scalar_verdict(levels)], []).append(escape(scale))
    parts = [f"{verdict} {', '.join(scales)}" for verdict, scales in verdicts.items()]
    status = f"Scalar invariance over the waves in the panel {'; '.join(parts)}."
    return {"panel_table": pipe_table(columns, rows), "panel_status": status}


def changes_table(inputs: DossierInputs) -> str:
    """The last two waves side by side: the fit, each scale's alpha and each item's loading
    where it moved by more than the rule; "" with fewer than two waves."""
    if len(inputs.waves) < 2:
        return ""
    before, now = inputs.waves[-2:]
    rows = []
    fits = {w: inputs.cfa_fit[w] for w in (before, now)}
    for label, column in zip(("χ²", "CFI", "TLI", "RMSEA"), _fit_columns(fits[now]), strict=True):
        values = [fits[w].iloc[0][column] for w in (before, now)]
        rows.append([f"Fit: {label}", *[num(v, 3) for v in values], ""])
    alpha = _by_wave(inputs.reliability, [before, now], ["scale"], "alpha")
    for scale, (a, b) in alpha.iterrows():
        flag = "changed" if abs(b - a) > ALPHA_CHANGE else ""
        rows.append([f"α {escape(scale)}", num(a, 3), num(b, 3), flag])
    loadings = _by_wave(inputs.cfa_loadings, [before, now], ["factor", "item"], "std_loading")
    for (factor, item), (a, b) in loadings.iterrows():
        if abs(b - a) > LOADING_CHANGE:
            rows.append(
                [f"Loading {escape(item)} on {escape(factor)}", num(a, 3), num(b, 3), "changed"]
            )
    columns = [("Statistic", "l"), (escape(before), "r"), (escape(now), "r"), ("Flag", "l")]
    return pipe_table(columns, rows)


def number_ids_table(inputs: DossierInputs) -> str:
    rows = []
    last = inputs.waves[-1]
    for section, asset, field, keys, column in SOURCES:
        frame = getattr(inputs, field)[last]
        if column not in frame or frame[column].notna().sum() == 0:
            continue
        numbers = frame[frame[column].notna()]
        pattern = number_id(asset, "<wave>", [f"<{c}>" for c in frame.columns[:keys]], "<column>")
        example = number_id(asset, last, numbers.iloc[0, :keys].tolist(), column)
        rows.append([escape(section), f"`{pattern}`", f"`{example}`"])
    if inputs.invariance["chisq"].notna().any():
        example = number_id("measurement_invariance", ALL_WAVES, ["configural"], "cfi")
        pattern = number_id("measurement_invariance", ALL_WAVES, ["<model>"], "<column>")
        rows.append(["Invariance over the waves", f"`{pattern}`", f"`{example}`"])
    fitted = inputs.panel_invariance[inputs.panel_invariance["chisq"].notna()]
    if not fitted.empty:
        first = fitted.iloc[0]
        example = number_id(
            "longitudinal_invariance", ALL_WAVES, [first["scale"], first["model"]], "cfi"
        )
        pattern = number_id(
            "longitudinal_invariance", ALL_WAVES, ["<scale>", "<model>"], "<column>"
        )
        rows.append(["Invariance in the panel", f"`{pattern}`", f"`{example}`"])
    return pipe_table([("Table", "l"), ("Id of a number", "l"), ("Example", "l")], rows)


def dossier_version(inputs: DossierInputs) -> ReportVersion:
    """A hash over every table of the dossier (per wave in order, then the cross-wave ones)."""
    frames = []
    for field in dataclasses.fields(inputs):
        value = getattr(inputs, field.name)
        if isinstance(value, dict) and field.name != "provenance":
            frames += [value[wave] for wave in inputs.waves]
        elif isinstance(value, pd.DataFrame):
            frames.append(value)
    return report_version(frames, inputs.waves)


def dossier_context(inputs: DossierInputs, codebook: Codebook) -> dict:
    """Everything the template `reports/dossier.qmd` shows, as markdown strings."""
    last = inputs.waves[-1]
    k = codebook.anonymisation.k
    return {
        "title": yaml_string(f"Validation dossier: {codebook.instrument}"),
        "subtitle": yaml_string(f"Version {codebook.version}; waves {', '.join(inputs.waves)}"),
        "waves": escape(", ".join(inputs.waves)),
        "data_version": dossier_version(inputs).digest,
        "last_wave": escape(last),
        "k": k,
        "fit_table": fit_table(inputs),
        "fit_method": escape(cfa_method(inputs.cfa_fit[last])),
        "loadings_table": loadings_table(inputs),
        "reliability_table": reliability_table(inputs),
        **invariance_section(inputs.invariance, k),
        **panel_section(inputs.panel_invariance, k),
        "group_table": group_table(inputs),
        "validity_table": validity_table(inputs),
        "htmt_table": htmt_table(inputs, last),
        "htmt_limit": num(HTMT_LIMIT),
        "association_table": association_table(inputs, last),
        "item_table": item_table(inputs, last),
        "changes_table": changes_table(inputs),
        "previous_wave": escape(inputs.waves[-2]) if len(inputs.waves) > 1 else "",
        "alpha_change": num(ALPHA_CHANGE),
        "loading_change": num(LOADING_CHANGE),
        "number_ids_table": number_ids_table(inputs),
        "provenance_table": provenance_table(inputs.provenance),
    }
