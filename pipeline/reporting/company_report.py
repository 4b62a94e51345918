"""The content of the company feedback reports (`reports/company.qmd`), in plain Dutch.

`report_numbers` computes every number of one wave's company reports from its shareable data, as
a table the pipeline stores (`company_report_numbers`); `company_contexts` turns that table into
one template context per company, and the template only lays the strings, numbers and figures
out. The disclosure rules (k is the codebook's `anonymisation.k`):

- A company gets a report only with at least k respondents in the wave.
- A company mean (with its 95% t interval) is shown only when at least k respondents have a score
  on that scale; otherwise the cell says there were too few answers. The interval is clipped to
  the range of the scale's response scale (`scale_bounds`), as stored and as the report says:
  a mean of answers on a scale cannot lie outside it.
- The benchmark of a scale is the mean of the other companies' means, counting only companies
  with at least k scores (suppressed companies never enter it), and is shown only when there are
  at least 5 such companies. Strengths and points for improvement rest on these gaps, and a
  dimension is named one only when the benchmark lies outside the company's 95% interval
  (`ScaleResult.clear`): a gap inside the interval is within the company mean's uncertainty.
- Change since the previous wave is shown only when the company has at least 10 scores on that
  scale in both waves (the `n` of `company_scores`).
- Management (the codebook's `management`: a background variable and its management value)
  against staff (any other value of that variable; a missing or suppressed value counts in
  neither) is shown only as the difference of the two group means, only when both groups have
  at least k scores on the scale; a single group's mean or size never appears. Without a
  `management` declaration the section is left out.
  With the company mean and the difference shown, the group means can at most be solved for when
  every respondent is in a group, and then both rest on at least k respondents.
- Monitoring of learning outcomes (`monitoring_numbers`, stored as `company_monitoring_numbers`),
  for a company with a development trajectory: the types of its trajectories and the first wave
  each counts in (never a date, target group or trajectory id), and per outcome scale and wave
  up to the report's the mean of the participants and of their colleagues (every other
  respondent of the company), shown only for a wave where both groups have at least k scores on
  the scale; a group's size never appears. The two groups make up the company, so with its
  published mean neither can be solved for a smaller group. Without a trajectory register in
  the codebook the section is left out.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Collection, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from pipeline.instrument.codebook import SUPPRESSED, Codebook
from pipeline.lineage.fingerprint import ReportVersion, report_version
from pipeline.psychometrics.aggregation import company_table
from pipeline.reporting.render import REPORTS_DIR, Rendered, render_reports
from pipeline.reporting.wave_report import number_id

if TYPE_CHECKING:
    from pipeline.reporting.figures import FigureFile

BENCHMARK_MIN_COMPANIES = 5
CHANGE_MIN_N = 10
TOP = 2
MIN_RADAR_DIMENSIONS = 3
CHART_NAMES = ("Uw bedrijf", "Andere bedrijven", "Gemiddelde score")
DECIMAL = ","  # the decimal separator of the report's language (`lang: nl`), tables and figures
NUMBERS_ASSET = "company_report_numbers"  # the stored table of report_numbers
MONITORING_ASSET = "company_monitoring_numbers"  # the stored table of monitoring_numbers
PARTICIPANTS, COLLEAGUES = "participants", "colleagues"  # the groups of monitoring_numbers
GROUP_LABELS = {PARTICIPANTS: "Deelnemers", COLLEAGUES: "Collega's"}
MONITORING_COLUMNS = ("company_id", "scale", "wave", "group", "mean", "trajectory_type")
CHUNK = 100  # companies rendered per pandoc process
# What a report says instead of the sections a codebook without culture or outcome scales lacks.
NO_CULTURE = (
    "Dit rapport toont geen leercultuur, geen vergelijking met andere bedrijven, geen sterke "
    "punten en verbeterpunten en geen verandering sinds de vorige meting, omdat de vragenlijst "
    "van deze scan geen dimensies van de leercultuur meet."
)
NO_OUTCOMES = (
    "Dit rapport toont geen opbrengsten van leren, omdat de vragenlijst van deze scan die niet "
    "meet."
)


@dataclass(frozen=True)
class ScaleResult:
    """One scale for one company; None where the disclosure rules hide a value."""

    label: str
    mean: float | None
    ci: tuple[float, float] | None
    benchmark: float | None

    @property
    def gap(self) -> float | None:
        if self.mean is None or self.benchmark is None:
            return None
        return self.mean - self.benchmark

    @property
    def clear(self) -> bool:
        """Whether the gap is larger than its uncertainty: the benchmark lies outside the
        company's 95% interval (strictly), so the company mean differs from it at the 5% level
        (a one-sample t test against the benchmark, taken as fixed). False without a gap or an
        interval."""
        if self.gap is None or self.ci is None:
            return False
        return self.benchmark < self.ci[0] or self.benchmark > self.ci[1]


NUMBER_COLUMNS = (
    "company_id",
    "scale",
    "n_respondents",
    "mean",
    "ci_low",
    "ci_high",
    "benchmark",
    "benchmark_companies",
    "gap",
    "previous_wave",
    "previous_mean",
    "change",
    "management_staff_gap",
)


def report_numbers(
    wave: str,
    scale_scores: pd.DataFrame,
    responses: pd.DataFrame,
    company_scores: Mapping[str, pd.DataFrame],
    codebook: Codebook,
) -> pd.DataFrame:
    """Every number the company reports show: one row per company with at least k respondents
    and scale (culture, then outcome, in codebook order), blank where the disclosure rules hide
    it. The reports only lay these rows out, so each number has an id (`company_report_numbers
    [wave](company,scale).column`) and `scan trace` follows it back to the raw files.

    `scale_scores` and `responses` are this wave's shareable tables, row for row (the scores
    are computed from the responses in their order; the management role comes from the
    responses);
    `company_scores` maps wave names to their company_scores tables, this wave and earlier ones.
    `benchmark_companies` counts the other companies the benchmark could average over.
    """
    if len(responses) != len(scale_scores):
        raise ValueError(
            f"{len(scale_scores)} scored rows but {len(responses)} responses: the scale scores "
            "are computed row by row from the responses and must align with them"
        )
    k = codebook.anonymisation.k
    sizes = scale_scores.groupby("company_id").size()
    companies = reported_companies(scale_scores, k)
    culture, outcomes = _scales(codebook, "culture"), _scales(codebook, "outcome")
    previous = previous_wave(wave, company_scores, codebook)
    gaps = management_gaps(scale_scores, roles(responses, codebook), culture, k)
    parts = {}
    for scale in [*culture, *outcomes]:
        table = company_table(
            scale_scores, scale, "company_id", k, bounds=scale_bounds(codebook, scale)
        ).set_index("company_id")
        part = scale_numbers(table, companies)
        if scale in culture:
            part["management_staff_gap"] = gaps[scale]
            if previous:
                before = company_scores[previous]
                part[["previous_mean", "change"]] = changes(
                    table, before[before["scale"] == scale], companies
                )
        parts[scale] = part
    if not parts:  # no culture or outcome scales: nothing to report to companies
        return pd.DataFrame(columns=list(NUMBER_COLUMNS))
    frame = pd.concat(parts, names=["scale", "company_id"]).swaplevel()
    frame = frame.reindex(pd.MultiIndex.from_product([companies, list(parts)]))
    frame = frame.reset_index(names=["company_id", "scale"])
    frame["n_respondents"] = sizes.reindex(frame["company_id"]).to_numpy()
    frame["previous_wave"] = previous or ""
    floats = [c for c in NUMBER_COLUMNS[3:] if c not in ("benchmark_companies", "previous_wave")]
    return frame.reindex(columns=list(NUMBER_COLUMNS)).astype({c: float for c in floats})


def scale_bounds(codebook: Codebook, scale: str) -> tuple[int, int]:
    """The lowest and highest score of `scale`: the range of its items' response scale, which
    the 95% intervals are clipped to."""
    response = codebook.scales[scale].response_scale
    return response.min, response.max


def reported_companies(scale_scores: pd.DataFrame, k: int) -> pd.Index:
    """The companies of a wave's `scale_scores` with at least k respondents, sorted: those that
    get a report (when the codebook has culture or outcome scales to report on)."""
    sizes = scale_scores.groupby("company_id").size()
    return pd.Index(sorted(sizes.index[sizes >= k]), dtype=object)


def scale_numbers(table: pd.DataFrame, companies: pd.Index) -> pd.DataFrame:
    """One scale for `companies` (`table`: its `company_table` indexed by company, NaN means
    where suppressed): the mean and interval, and the benchmark, the mean of the other
    companies' means, where there are at least BENCHMARK_MIN_COMPANIES of them."""
    rows = table.reindex(companies)
    means = table["mean"].dropna()
    others = len(means) - rows["mean"].notna().astype(int)
    benchmark = (means.sum() - rows["mean"].fillna(0.0)) / others
    numbers = rows[["mean", "ci_low", "ci_high"]].copy()
    numbers["benchmark"] = benchmark.where(others >= BENCHMARK_MIN_COMPANIES)
    numbers["benchmark_companies"] = others
    numbers["gap"] = numbers["mean"] - numbers["benchmark"]
    return numbers


def changes(now: pd.DataFrame, before: pd.DataFrame, companies: pd.Index) -> np.ndarray:
    """Per company the previous wave's mean and the change since, NaN unless both waves hold
    at least CHANGE_MIN_N scores (`now`: this wave's company_table indexed by company,
    `before`: the previous wave's company_scores rows of the scale)."""
    now = now.reindex(companies)
    before = before.set_index("company_id").reindex(companies)
    enough = (_n(now) >= CHANGE_MIN_N) & (_n(before) >= CHANGE_MIN_N)
    previous_mean = before["mean"].where(enough)
    return np.column_stack([previous_mean, now["mean"].where(enough) - previous_mean])


def _n(table: pd.DataFrame) -> pd.Series:
    """A company_table's n, 0 where suppressed or absent."""
    return table["n"].where(table["suppressed"].eq(False)).fillna(0)


def roles(responses: pd.DataFrame, codebook: Codebook) -> np.ndarray:
    """Per response "management", "staff" or "" (role unknown, suppressed, or no `management`
    in the codebook)."""
    if codebook.management is None:
        return np.full(len(responses), "", dtype=object)
    values = responses[codebook.management.variable].astype("string")
    role = np.where(values.eq(codebook.management.value).fillna(False), "management", "staff")
    return np.where(values.isna(), "", role)


def management_gaps(
    scale_scores: pd.DataFrame, role: np.ndarray, scales: Sequence[str], k: int
) -> pd.DataFrame:
    """Per company (rows) and scale (columns): management minus staff mean, NaN unless both
    groups have at least k scores (`role`: per row of `scale_scores`, see `roles`)."""

    def group(value: str) -> tuple[pd.DataFrame, pd.DataFrame]:
        rows = scale_scores[role == value].groupby("company_id")[list(scales)]
        return rows.mean(), rows.count()

    (management, n_management), (staff, n_staff) = group("management"), group("staff")
    gap = management.sub(staff).reindex(columns=list(scales))
    n_management, n_staff = n_management.reindex_like(gap), n_staff.reindex_like(gap)
    return gap.where(n_management.fillna(0).ge(k) & n_staff.fillna(0).ge(k))


def monitoring_numbers(
    wave: str,
    scores_by_wave: Mapping[str, pd.DataFrame],
    trajectories: pd.DataFrame,
    participants: pd.DataFrame,
    codebook: Codebook,
    withheld: Mapping[str, Sequence[set]] | None = None,
) -> pd.DataFrame:
    """The numbers of the reports' section on monitoring learning outcomes, for the companies
    that get a report in `wave` (at least k respondents, and culture or outcome scales to
    report on) and run a development trajectory. Two kinds of rows (`MONITORING_COLUMNS`):

    - a trajectory row per company and trajectory type: `scale` and `group` blank, `wave` the
      first wave the trajectory counts in (the first wave whose start is on or after the
      trajectory's; blank when no wave is), `trajectory_type` its type, `mean` blank;
    - a number row per company, outcome scale, wave (in codebook order, up to and including
      `wave`) and group (PARTICIPANTS, COLLEAGUES): `mean` the group's mean score, only for a
      wave where both groups have at least k scores on the scale, so both rows or neither.
      Hidden waves have no rows: a blank mean would only say that a group was small.
      `withheld` (per wave, per release file, `participation_withheld`): the persons whose
      taking part a release file does not tell; where a company's scores on the scale hold
      fewer than k of them (but some), both means are left out, or the means minus the file
      would tell who of those takes part.

    `scores_by_wave`: every wave's scale_scores (this one and earlier ones); `trajectories`:
    `trajectory_companies` (company_id, type, start, ...); `participants`: `trajectory_persons`
    (person_id), read only when the codebook knows who takes part. A participant is a person of
    `participants`, a colleague every other respondent of the company, so the two groups make
    up the company and neither is a remainder that the company mean could give away. Nothing
    without a trajectory register. `company_monitoring_numbers[wave](company,scale,wave shown,
    group).mean` identifies each number."""
    spec, k = codebook.trajectories, codebook.anonymisation.k
    culture, outcomes = _scales(codebook, "culture"), _scales(codebook, "outcome")
    if spec is None or trajectories.empty or not (culture or outcomes):
        return _monitoring_frame([])
    companies = reported_companies(scores_by_wave[wave], k)
    own = trajectories[trajectories["company_id"].isin(companies)]
    if own.empty:
        return _monitoring_frame([])
    rows = _trajectory_rows(own, codebook)
    if spec.knows_participants:
        order = list(codebook.waves)
        shown = [w for w in order[: order.index(wave) + 1] if w in scores_by_wave]
        taking_part = set(participants["person_id"].dropna())
        for w in shown:
            scores = scores_by_wave[w]
            scores = scores[scores["company_id"].isin(set(own["company_id"]))]
            rows += _group_means(
                scores,
                taking_part,
                [s for s in outcomes if s in scores],
                w,
                k,
                (withheld or {}).get(w, ()),
            )
    frame = _monitoring_frame(rows)
    scale_order = {s: i for i, s in enumerate(["", *outcomes])}
    wave_order = {w: i for i, w in enumerate(["", *codebook.waves])}
    keys = pd.DataFrame(
        {
            "company": frame["company_id"],
            "scale": frame["scale"].map(scale_order),
            "wave": frame["wave"].map(wave_order),
            "group": frame["group"].map({"": 0, PARTICIPANTS: 1, COLLEAGUES: 2}),
            "type": frame["trajectory_type"],
        }
    )
    ordered = keys.sort_values(list(keys.columns), kind="stable").index
    return frame.loc[ordered].reset_index(drop=True)


def participation_withheld(
    scientific_waves: dict[str, pd.DataFrame],
    public_waves: dict[str, pd.DataFrame],
    codebook: Codebook,
) -> dict[str, tuple[set[str], set[str]]]:
    """Per wave, the person_ids whose taking part in a trajectory the holder of each release
    file cannot tell (scientific, public): the reports' participants' and colleagues' means,
    minus the same means over the persons a file shows, would tell it for them when they are
    fewer than k. Empty when taking part is not a survey answer (`participation`).

    The scientific use file's holder links the waves: a person whose answer is the
    participation value in some wave takes part, one without it whose answer is withheld in
    some wave is unknown. The public use file has no person_id; its rows are the scientific
    file's, in order, and its holder cannot tell a row whose answer it withholds."""
    spec = codebook.trajectories
    if spec is None or spec.participation is None:
        return {wave: (set(), set()) for wave in scientific_waves}
    name, value = spec.participation.variable, spec.participation.value
    rows = pd.concat([scientific_waves[w] for w in sorted(scientific_waves)], ignore_index=True)
    answer = rows[name].astype("string")
    person = rows["person_id"].fillna("")  # one group of records without a person: none links
    taking_part = answer.eq(value).fillna(False).groupby(person).transform("any")
    hidden = answer.eq(SUPPRESSED).fillna(False).groupby(person).transform("any")
    unknown = set(rows.loc[hidden & ~taking_part, "person_id"])
    withheld = {}
    for wave, scientific in scientific_waves.items():
        public = public_waves[wave][name].astype("string").eq(SUPPRESSED).fillna(False)
        persons = scientific["person_id"]
        withheld[wave] = (
            set(persons[persons.isin(unknown)]),
            set(persons[public.to_numpy()]),
        )
    return withheld


def _monitoring_frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=list(MONITORING_COLUMNS))
    texts = [c for c in MONITORING_COLUMNS if c != "mean"]
    return frame.astype({"mean": float, **{c: object for c in texts}})


def first_wave(start, codebook: Codebook) -> str:
    """The first wave, in codebook order, whose start is on or after `start` (as the trajectory
    models place a trajectory); "" when none is."""
    for name, wave in codebook.waves.items():
        if wave.start is not None and pd.Timestamp(wave.start) >= pd.Timestamp(start):
            return name
    return ""


def _trajectory_rows(trajectories: pd.DataFrame, codebook: Codebook) -> list[dict]:
    """One row per company and type, with the first wave its earliest trajectory of that type
    counts in; no date, target group or trajectory id leaves this function."""
    rows = {}
    for r in trajectories.sort_values(["company_id", "start"], kind="stable").itertuples():
        key = (r.company_id, str(r.type))
        if key not in rows:
            rows[key] = {
                "company_id": r.company_id,
                "scale": "",
                "wave": first_wave(r.start, codebook),
                "group": "",
                "mean": np.nan,
                "trajectory_type": str(r.type),
            }
    return list(rows.values())


def _group_means(
    scores: pd.DataFrame,
    taking_part: set,
    scales: Sequence[str],
    wave: str,
    k: int,
    withheld: Sequence[set] = (),
) -> list[dict]:
    """Per company and scale of one wave's `scores`, the participants' and the colleagues'
    mean score, where both groups have at least k scores and the scores of each set of
    `withheld` persons number 0 or at least k; nothing for the other pairs."""
    if scores.empty or not scales:
        return []
    group = np.where(scores["person_id"].isin(taking_part), PARTICIPANTS, COLLEAGUES)
    long = (
        scores[["company_id", "person_id", *scales]]
        .assign(group=group)
        .melt(id_vars=["company_id", "person_id", "group"], var_name="scale", value_name="score")
        .dropna(subset=["score"])
    )
    stats = long.groupby(["company_id", "scale", "group"])["score"].agg(["mean", "count"])
    counts = stats["count"].unstack("group").reindex(columns=[PARTICIPANTS, COLLEAGUES])
    published = counts.fillna(0).ge(k).all(axis=1)
    for persons in withheld:
        hidden = long[long["person_id"].isin(persons)].groupby(["company_id", "scale"]).size()
        hidden = hidden.reindex(counts.index, fill_value=0)
        published &= hidden.eq(0) | hidden.ge(k)
    both = counts.index[published]
    return [
        {
            "company_id": company,
            "scale": scale,
            "wave": wave,
            "group": name,
            "mean": float(stats.loc[(company, scale, name), "mean"]),
            "trajectory_type": "",
        }
        for company, scale in both
        for name in (PARTICIPANTS, COLLEAGUES)
    ]


def company_contexts(
    numbers: pd.DataFrame,
    wave: str,
    codebook: Codebook,
    figures_dir: Path,
    names: Mapping[str, str] | None = None,
    monitoring: pd.DataFrame | None = None,
) -> dict[str, dict]:
    """A report context per company of `numbers` (rows of the `report_numbers` of `wave`),
    titled by its pseudonym, or by its name in `names` (the restricted copies `scan deliver`
    makes). Figures are written to `figures_dir` as `<company>_<wave>_<kind>.svg`.
    `monitoring` holds the rows of the wave's `monitoring_numbers` (as stored: blanks may be
    NaN); without it the section on monitoring learning outcomes is left out."""
    k = codebook.anonymisation.k
    culture, outcomes = _scales(codebook, "culture"), _scales(codebook, "outcome")
    by_company = dict(iter(monitoring.groupby("company_id"))) if monitoring is not None else {}
    contexts = {}
    for company, rows in numbers.groupby("company_id", sort=True):
        own = by_company.get(company)
        version = company_version(rows, own, wave, codebook)
        rows = rows.set_index("scale")
        results = {s: _result(rows.loc[s], codebook.scales[s].label) for s in rows.index}
        dimensions = [results[s] for s in culture]
        previous = rows["previous_wave"].iloc[0]
        previous = "" if pd.isna(previous) else previous  # blank in the first wave's CSV
        n = int(rows["n_respondents"].iloc[0])
        contexts[company] = {
            "company_name": (names or {}).get(company, company),
            "wave": wave,
            "wave_label": codebook.waves[wave].label,
            "n_respondents": n,
            "k": k,
            "reading_guide": reading_guide(
                int(rows["n_respondents"].iloc[0]), k, codebook, [*culture, *outcomes]
            ),
            "culture_note": "" if culture else NO_CULTURE,
            "benchmark_note": benchmark_note(results.values(), rows["benchmark_companies"]),
            "dimensions_table": scale_table(dimensions, "Dimensie"),
            **profile_figures(company, wave, dimensions, codebook, culture, figures_dir),
            "strengths_text": strengths_text(dimensions),
            "previous_wave": previous,
            **change_section(rows.loc[culture], wave, previous, codebook),
            **management_staff_section(rows.loc[culture], codebook, k),
            "outcomes_note": "" if outcomes else NO_OUTCOMES,
            "outcomes_table": scale_table([results[s] for s in outcomes], "Opbrengst"),
            **monitoring_section(company, own, wave, codebook, monitoring is not None),
            "number_ids_table": number_ids_table(company, wave, rows.index, codebook),
            "data_version": version.digest,
            "data_waves": escape(version.waves_listed("en")),
        }
    return contexts


def company_version(
    rows: pd.DataFrame, monitoring: pd.DataFrame | None, wave: str, codebook: Codebook
) -> ReportVersion:
    """A company report's data version: a hash over its rows of the wave's numbers and
    monitoring numbers, and the waves they hold (this one, the previous one it compares with,
    and the waves of the monitoring means), in codebook order."""
    held = {wave, *(w for w in rows["previous_wave"].dropna() if w)}
    frames = [rows]
    if monitoring is not None:
        held |= set(monitoring.loc[monitoring["mean"].notna(), "wave"])
        frames.append(monitoring)
    return report_version(frames, [w for w in codebook.waves if w in held])


def _result(row: pd.Series, label: str) -> ScaleResult:
    def value(column):
        return None if pd.isna(row[column]) else float(row[column])

    low, high = value("ci_low"), value("ci_high")
    ci = (low, high) if value("mean") is not None and low is not None and high is not None else None
    return ScaleResult(label=label, mean=value("mean"), ci=ci, benchmark=value("benchmark"))


def render_company_reports(
    numbers: pd.DataFrame,
    wave: str,
    codebook: Codebook,
    out_dir: Path,
    workers: int,
    names: Mapping[str, str] | None = None,
    monitoring: pd.DataFrame | None = None,
) -> dict[str, Rendered]:
    """Every company's report written to `out_dir/<company>.{html,pdf}` from the wave's
    `report_numbers` and `monitoring_numbers` (titled as `company_contexts` does with `names`;
    without `monitoring`, no monitoring section), the companies shared out over `workers`
    processes (figures and rendering are CPU-bound, and each report depends only on its
    numbers, so the files are the same however the companies are shared out)."""
    companies = sorted(numbers["company_id"].unique())
    shares = [companies[i::workers] for i in range(workers) if companies[i::workers]]
    data = (wave, codebook, out_dir, names)
    rendered: dict[str, Rendered] = {}
    if len(shares) <= 1:
        rendered |= _render_share(numbers, monitoring, *data)
    else:
        with ProcessPoolExecutor(len(shares), mp_context=get_context("spawn")) as pool:
            parts = [
                pool.submit(
                    _render_share,
                    numbers[numbers["company_id"].isin(share)],
                    _of(monitoring, share),
                    *data,
                )
                for share in shares
            ]
            for part in parts:
                rendered |= part.result()
    return dict(sorted(rendered.items()))


def _of(monitoring: pd.DataFrame | None, companies: Sequence[str]) -> pd.DataFrame | None:
    """The monitoring rows of `companies` (None stays None: no section)."""
    return None if monitoring is None else monitoring[monitoring["company_id"].isin(companies)]


def _render_share(numbers, monitoring, wave, codebook, out_dir, names):
    """The share's reports, CHUNK companies at a time (one pandoc process each, and their
    figures on disk only until rendered)."""
    companies = sorted(numbers["company_id"].unique())
    rendered = {}
    for start in range(0, len(companies), CHUNK):
        part = companies[start : start + CHUNK]
        chunk = numbers[numbers["company_id"].isin(part)]
        with tempfile.TemporaryDirectory(prefix="figures-") as figures:
            contexts = company_contexts(
                chunk, wave, codebook, Path(figures), names, _of(monitoring, part)
            )
            rendered |= render_reports(REPORTS_DIR / "company.qmd", contexts, out_dir)
    return rendered


def _scales(codebook: Codebook, level: str) -> list[str]:
    return [name for name, scale in codebook.scales.items() if scale.level == level]


def previous_wave(wave: str, available: Collection[str], codebook: Codebook) -> str | None:
    """The last wave before `wave`, in codebook order, that is among `available` (wave names,
    or a mapping by wave name)."""
    order = list(codebook.waves)
    earlier = [w for w in order[: order.index(wave)] if w in available]
    return earlier[-1] if earlier else None


def number(x: float) -> str:
    """Two decimals with a decimal comma (`DECIMAL`), as Dutch readers expect."""
    return f"{x:.2f}".replace(".", DECIMAL)


def signed(x: float) -> str:
    return ("+" if x >= 0 else "-") + number(abs(x))


def escape(text: str) -> str:
    """Codebook text as literal markdown (labels go into tables and sentences)."""
    return re.sub(r"([\\`*_\[\]{}<>#|])", r"\\\1", text)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    align = ["|:--", *["|--:"] * (len(header) - 1)]
    lines = ["| " + " | ".join(header) + " |", "".join(align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def scale_table(results: Sequence[ScaleResult], first: str) -> str:
    """Company mean, interval, benchmark and difference per scale; hidden cells say why."""
    rows = []
    for r in results:
        mean = number(r.mean) if r.mean is not None else "te weinig antwoorden"
        ci = f"{number(r.ci[0])} tot {number(r.ci[1])}" if r.ci else "–"
        benchmark = number(r.benchmark) if r.benchmark is not None else "–"
        gap = signed(r.gap) if r.gap is not None else "–"
        rows.append([escape(r.label), mean, ci, benchmark, gap])
    return _table([first, "Uw bedrijf", "95%-interval", "Andere bedrijven", "Verschil"], rows)


def reading_guide(n: int, k: int, codebook: Codebook, scales: Sequence[str]) -> str:
    """How to read the report; the first of the reported `scales` gives the range of scores."""
    scale = codebook.scales[scales[0]].response_scale
    low, high = (
        f"{code} ({scale.labels[code]})" if code in scale.labels else str(code)
        for code in (scale.min, scale.max)
    )
    culture = any(codebook.scales[s].level == "culture" for s in scales)
    bullets = [
        """\
- **Gemiddelde en interval.** Bij elk gemiddelde staat een 95%-interval: de werkelijke
  waarde ligt vrijwel zeker tussen die twee getallen. Hoe minder mensen antwoordden, hoe
  breder het interval. Verschillen die kleiner zijn dan die marge zeggen weinig. Een interval
  loopt nooit buiten de schaal: waar de berekening een grens onder de laagste of boven de
  hoogste mogelijke score geeft, tonen we die laagste of hoogste score.""",
        f"""\
- **Andere bedrijven.** De vergelijking is het gemiddelde van de gemiddelden van de andere
  deelnemende bedrijven in deze meting. We tonen die alleen als er minstens
  {BENCHMARK_MIN_COMPANIES} andere bedrijven zijn met genoeg antwoorden.""",
        f"""\
- **Privacy.** Elk getal, elke figuur en elke zin in dit rapport rust op minstens {k}
  medewerkers. Waar minder mensen antwoordden, tonen we niets. Losse antwoorden tonen we nooit.""",
    ]
    if culture:  # change and the management-staff gap are shown for the culture scales
        bullets.append(f"""\
- **Verandering.** Een verandering sinds de vorige meting tonen we alleen als uw bedrijf in
  beide metingen minstens {CHANGE_MIN_N} antwoorden op dat onderdeel had.""")
    if culture and codebook.management is not None:
        bullets.append(f"""\
- **Leidinggevenden en medewerkers.** Dit verschil tonen we alleen als beide groepen minstens
  {k} mensen tellen, en dan alleen het verschil: nooit het gemiddelde van één groep.""")
    return f"""\
{n} medewerkers van uw bedrijf vulden de vragenlijst in. De scores lopen van {low} tot
{high}: hoe hoger de score, hoe sterker dat punt van de leercultuur in uw bedrijf.

""" + "\n".join(bullets)


def benchmark_note(results: Sequence[ScaleResult], counts: pd.Series) -> str:
    """Which companies the benchmark averages over (`counts`: other companies per scale), or
    why it is missing."""
    if all(r.benchmark is None for r in results):
        return (
            f"Er is geen vergelijking met andere bedrijven: daarvoor zijn minstens "
            f"{BENCHMARK_MIN_COMPANIES} andere bedrijven met genoeg antwoorden nodig, en die "
            f"zijn er in deze meting niet."
        )
    shown = [int(c) for c in counts if c >= BENCHMARK_MIN_COMPANIES]
    spread = f"{min(shown)}" if min(shown) == max(shown) else f"{min(shown)} tot {max(shown)}"
    note = f"De kolom 'Andere bedrijven' is het gemiddelde van {spread} andere bedrijven."
    if any(r.benchmark is None for r in results):
        note += (
            f" Waar een streepje staat, waren er minder dan {BENCHMARK_MIN_COMPANIES} andere "
            f"bedrijven met genoeg antwoorden."
        )
    return note


def profile_figures(
    company: str,
    wave: str,
    results: Sequence[ScaleResult],
    codebook: Codebook,
    culture: Sequence[str],
    figures_dir: Path,
) -> dict[str, FigureFile | None]:
    """Radar chart and its bar-chart alternative of the dimensions with both numbers shown."""
    # not at the top: docs/developer.md#start-up-time
    from pipeline.reporting import figures

    shown = [r for r in results if r.gap is not None]
    if len(shown) < MIN_RADAR_DIMENSIONS:
        return {"radar": None, "bars": None}
    scale = codebook.scales[culture[0]].response_scale
    args = (
        [r.label for r in shown],
        [r.mean for r in shown],
        [r.benchmark for r in shown],
    )
    stem = figures_dir / re.sub(r"[^A-Za-z0-9_-]", "_", f"{company}_{wave}")
    limits = (scale.min, scale.max)
    radar = figures.radar_chart(
        *args, Path(f"{stem}_radar.svg"), limits, CHART_NAMES[:2], decimal=DECIMAL
    )
    bars = figures.bar_chart_alternative(
        *args, Path(f"{stem}_bars.svg"), limits, CHART_NAMES, decimal=DECIMAL
    )
    alt = profile_alt(shown, scale.min, scale.max)
    return {
        "radar": figures.FigureFile(radar.path, f"Webdiagram. {alt}"),
        "bars": figures.FigureFile(bars.path, f"Staafdiagram. {alt}"),
    }


def profile_alt(shown: Sequence[ScaleResult], low: int, high: int) -> str:
    """Dutch alt text carrying every number of the chart."""
    pairs = "; ".join(
        f"{r.label}: uw bedrijf {number(r.mean)}, andere bedrijven {number(r.benchmark)}"
        for r in shown
    )
    return (
        f"Scores op {len(shown)} dimensies van de leercultuur (schaal {low} tot {high}). {pairs}."
    )


STRENGTHS_RULE = (
    "We noemen een dimensie alleen een sterk punt of een verbeterpunt als het verschil met "
    "andere bedrijven groter is dan de onzekerheid: het gemiddelde van andere bedrijven ligt dan "
    "buiten het 95%-interval van uw bedrijf. Een kleiner verschil kan toeval zijn."
)


def strengths_text(results: Sequence[ScaleResult]) -> str:
    """The largest positive and negative gaps to the benchmark that are larger than their
    uncertainty (`ScaleResult.clear`), as sentences, after the rule that picks them."""
    gaps = [r for r in results if r.gap is not None]
    if not gaps:
        return (
            "Sterke punten en verbeterpunten bepalen we door uw bedrijf met andere bedrijven te "
            "vergelijken. Die vergelijking is er in deze meting niet, zie hierboven."
        )
    ranked = sorted((r for r in gaps if r.clear), key=lambda r: r.gap, reverse=True)
    strengths = [r for r in ranked if r.gap > 0][:TOP]
    weaknesses = [r for r in reversed(ranked) if r.gap < 0][:TOP]
    lines = [STRENGTHS_RULE, "", "**Sterke punten** (het meest boven andere bedrijven):", ""]
    lines += [_gap_sentence(r) for r in strengths] or [
        "- Op geen enkele dimensie scoort uw bedrijf duidelijk hoger dan andere bedrijven."
    ]
    lines += ["", "**Verbeterpunten** (het meest onder andere bedrijven):", ""]
    lines += [_gap_sentence(r) for r in weaknesses] or [
        "- Op geen enkele dimensie scoort uw bedrijf duidelijk lager dan andere bedrijven."
    ]
    return "\n".join(lines)


def _gap_sentence(r: ScaleResult) -> str:
    direction = "hoger" if r.gap > 0 else "lager"
    return (
        f"- **{escape(r.label)}**: uw bedrijf scoort {number(r.mean)} (95%-interval "
        f"{number(r.ci[0])} tot {number(r.ci[1])}), dat is {number(abs(r.gap))} {direction} "
        f"dan andere bedrijven ({number(r.benchmark)})."
    )


def change_section(
    rows: pd.DataFrame, wave: str, previous: str, codebook: Codebook
) -> dict[str, str]:
    """Change per dimension (`rows`: report_numbers by scale) where both waves hold at least
    CHANGE_MIN_N scores."""
    if not previous:
        note = "Dit is de eerste meting; er is nog geen eerdere meting om mee te vergelijken."
        return {"change_note": note, "change_table": ""}
    shown = rows[rows["change"].notna()]
    table_rows = [
        [
            escape(codebook.scales[s].label),
            number(r.previous_mean),
            number(r.mean),
            signed(r.change),
        ]
        for s, r in zip(shown.index, shown.itertuples(), strict=True)
    ]
    hidden = [escape(codebook.scales[s].label) for s in rows.index[rows["change"].isna()]]
    before_label, now_label = codebook.waves[previous].label, codebook.waves[wave].label
    note = (
        f"Vergeleken met de vorige meting ({before_label}). Kleine veranderingen kunnen toeval "
        f"zijn; kijk vooral naar grotere verschuivingen."
    )
    if hidden:
        note += (
            f" Niet getoond voor {', '.join(hidden)}: een verandering tonen we alleen als uw "
            f"bedrijf in beide metingen minstens {CHANGE_MIN_N} antwoorden had."
        )
    header = ["Dimensie", f"Meting {before_label}", f"Meting {now_label}", "Verandering"]
    return {"change_note": note, "change_table": _table(header, table_rows) if table_rows else ""}


def management_staff_section(rows: pd.DataFrame, codebook: Codebook, k: int) -> dict[str, str]:
    """Only the difference management - staff, and only where both groups reach k (`rows`:
    report_numbers by scale); nothing without a `management` role in the codebook."""
    if codebook.management is None:
        return {"management_staff_note": "", "management_staff_table": ""}
    gaps = rows["management_staff_gap"]
    shown = [[escape(codebook.scales[s].label), signed(g)] for s, g in gaps.items() if pd.notna(g)]
    hidden = [escape(codebook.scales[s].label) for s, g in gaps.items() if pd.isna(g)]
    rule = (
        f"We tonen dit verschil alleen als er minstens {k} leidinggevenden én {k} medewerkers "
        f"een score hebben. Wie niet als leidinggevende of medewerker bekend is, telt in geen van "
        f"beide groepen mee."
    )
    if not shown:
        note = f"Het verschil tussen leidinggevenden en medewerkers wordt niet getoond. {rule}"
        return {"management_staff_note": note, "management_staff_table": ""}
    note = (
        "Het verschil is de gemiddelde score van leidinggevenden min die van medewerkers: een "
        "plus betekent dat leidinggevenden dat punt positiever zien."
    )
    if hidden:
        note += f" Niet getoond voor {', '.join(hidden)}. {rule}"
    table = _table(["Dimensie", "Verschil leidinggevenden - medewerkers"], shown)
    return {"management_staff_note": note, "management_staff_table": table}


def _text(value) -> str:
    """A stored text cell: "" where the CSV left it blank (NaN)."""
    return "" if value is None or pd.isna(value) else str(value)


def monitoring_section(
    company: str, rows: pd.DataFrame | None, wave: str, codebook: Codebook, given: bool
) -> dict[str, str]:
    """The section on monitoring learning outcomes (`rows`: the company's rows of
    `monitoring_numbers`, None when it has none; `given`: whether the caller passed the table).
    Left out without the table or without a trajectory register; one sentence for a company
    without a trajectory; otherwise its trajectories (type and first wave, nothing more
    precise), and the participants' and colleagues' means per outcome and wave shown, with the
    rule, or why there are none."""
    empty = {"monitoring_note": "", "monitoring_table": "", "monitoring_ids_table": ""}
    spec, k = codebook.trajectories, codebook.anonymisation.k
    if not given or spec is None:
        return empty
    rows = rows if rows is not None else pd.DataFrame(columns=list(MONITORING_COLUMNS))
    kinds = rows.assign(scale=rows["scale"].map(_text), group=rows["group"].map(_text))
    own = kinds[kinds["scale"] == ""]
    if own.empty:
        note = (
            "Voor uw bedrijf is geen ontwikkeltraject geregistreerd. Daarom volgen we hier geen "
            "leeropbrengsten van deelnemers aan een traject."
        )
        return {**empty, "monitoring_note": note}
    starts = [_text(w) for w in own["wave"]]
    order = list(codebook.waves)
    first = min((w for w in starts if w), key=order.index, default="")
    paragraphs = [_trajectory_sentence(own, codebook)]
    outcomes = _scales(codebook, "outcome")
    if not spec.knows_participants:
        paragraphs.append(
            "Wie aan het traject deelneemt, is voor deze scan niet bekend. Daarom vergelijken "
            "we de opbrengsten van deelnemers niet met die van hun collega's."
        )
        return {**empty, "monitoring_note": "\n\n".join(paragraphs)}
    if not outcomes:
        paragraphs.append(
            "De vragenlijst van deze scan meet geen opbrengsten van leren. Daarom vergelijken we "
            "geen deelnemers met hun collega's."
        )
        return {**empty, "monitoring_note": "\n\n".join(paragraphs)}
    numbers = kinds[kinds["scale"] != ""]
    means = numbers.pivot_table(
        index=["scale", "wave"], columns="group", values="mean", aggfunc="first"
    ).reindex(columns=[PARTICIPANTS, COLLEAGUES])
    means = means.dropna(how="any")  # never one group without the other
    rule = (
        f"We tonen een meting alleen als zowel de deelnemers als de collega's minstens {k} "
        "mensen met een score op dat onderdeel tellen; anders tonen we van die meting geen van "
        "beide groepen. Hoeveel mensen in elke groep zitten, tonen we nooit."
    )
    explain = (
        "Hier vergelijken we per opbrengst van leren de gemiddelde score van de deelnemers aan "
        "het traject met die van hun collega's (de andere medewerkers van uw bedrijf die de "
        f"vragenlijst invulden), per meting tot en met deze meting ({codebook.waves[wave].label})."
    )
    if first and order.index(first) <= order.index(wave):
        explain += (
            f" Metingen vanaf {codebook.waves[first].label} vallen na de start van het traject; "
            "eerdere metingen laten zien hoe het daarvoor was."
        )
    else:
        explain += " Al deze metingen vallen vóór de start van het traject."
    if means.empty:
        paragraphs += [
            f"{explain} In geen enkele meting hadden beide groepen genoeg mensen met een score, "
            "dus we tonen hier geen scores.",
            rule,
        ]
        return {**empty, "monitoring_note": "\n\n".join(paragraphs)}
    paragraphs += [explain, rule]
    table_rows, ids = [], []
    for scale in outcomes:
        for w in order:
            if (scale, w) not in means.index:
                continue
            label = escape(codebook.scales[scale].label)
            when = codebook.waves[w].label + (
                " (na start)" if first and order.index(w) >= order.index(first) else ""
            )
            values = means.loc[(scale, w)]
            table_rows.append(
                [label, when, number(values[PARTICIPANTS]), number(values[COLLEAGUES])]
            )
            for group in (PARTICIPANTS, COLLEAGUES):
                key = [company, scale, w, group]
                ids.append(
                    [
                        f"{label}, meting {codebook.waves[w].label}, {GROUP_LABELS[group].lower()}",
                        f"`{number_id(MONITORING_ASSET, wave, key, 'mean')}`",
                    ]
                )
    header = ["Opbrengst", "Meting", GROUP_LABELS[PARTICIPANTS], GROUP_LABELS[COLLEAGUES]]
    return {
        "monitoring_note": "\n\n".join(paragraphs),
        "monitoring_table": _table(header, table_rows),
        "monitoring_ids_table": _table(["Onderdeel", "Id van het getal"], ids),
    }


def _trajectory_sentence(own: pd.DataFrame, codebook: Codebook) -> str:
    """Which trajectories the company runs (`own`: its trajectory rows) and from which wave on
    each counts."""

    def counted(row) -> str:
        w = _text(row["wave"])
        return f"vanaf meting {codebook.waves[w].label}" if w else "vanaf een volgende meting"

    parts = [f"{escape(_text(r['trajectory_type']))} ({counted(r)})" for _, r in own.iterrows()]
    if len(parts) == 1:
        return (
            f"Uw bedrijf volgt een ontwikkeltraject van het type {parts[0]}. Het traject telt mee "
            "vanaf de eerste meting na de start."
        )
    return (
        f"Uw bedrijf volgt ontwikkeltrajecten van deze types: {'; '.join(parts)}. Een traject "
        "telt mee vanaf de eerste meting na de start."
    )


def number_ids_table(company: str, wave: str, scales: Sequence[str], codebook: Codebook) -> str:
    """Per scale, the id of its numbers in the stored table `company_report_numbers`, which
    `scan trace <id>` follows back to the raw files."""
    rows = [
        [
            escape(codebook.scales[s].label),
            f"`{number_id(NUMBERS_ASSET, wave, [company, s], '<kolom>')}`",
        ]
        for s in scales
    ]
    return _table(["Onderdeel", "Id van de getallen"], rows)
