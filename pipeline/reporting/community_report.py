"""The content of the learning-community reports (`reports/community.qmd`), in plain Dutch.

A learning community is a group of companies that meet to compare results. Its report is laid
out from the wave's stored table `community_numbers` (columns `community_id, table, row,
statistic, value`, computed elsewhere): `community_contexts` turns it into one template context
per community and the template only lays the strings out. Nothing is computed here but the
order of the rows and the choice of the two scales with the largest spread, so every number has
an id, `community_numbers[wave](community,table,row,statistic).value`, that `scan trace`
follows back to the raw files. The disclosure rules the report lays out (k is the codebook's
`anonymisation.k`):

- A company counts on a scale only with at least k scores on it; a community result (pooled
  mean, mean of the companies' means, their spread, the other companies' mean, the previous
  mean and the change) is shown only when at least MIN_COMPANIES companies count on the scale.
  Fewer: the table stores NaN and the cell says there were too few companies; only the number
  of companies that count stays visible.
- No company is named or singled out and no number of one company appears: the spread of the
  companies' means is shown as their standard deviation only (a percentile, minimum, maximum or
  rank of five companies would be one company's mean).
- The aggregate of all communities (community_id ALL) gets no report of its own; its pooled mean
  is an extra comparison column of every community's report. A community without rows gets no
  report.
- Change is the community's mean against its mean as reported in the previous wave; membership
  may differ between the two waves, which the report says.
"""

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pandas as pd

from pipeline.ingest.communities import ALL
from pipeline.instrument.codebook import Codebook
from pipeline.lineage.fingerprint import report_version
from pipeline.reporting.communities import MEMBERS_ROW, MIN_COMPANIES
from pipeline.reporting.company_report import number, signed
from pipeline.reporting.render import REPORTS_DIR, Rendered, render_reports
from pipeline.reporting.wave_report import escape, number_id, pipe_table, yaml_string

NUMBERS_ASSET = "community_numbers"  # the stored table this report lays out
MEMBERS, SCALES, TRAJECTORIES = "members", "scales", "trajectories"  # its tables
TOP = 2  # scales named where the companies differ most
HIDDEN = "te weinig bedrijven"
ABSENT = "–"
NO_CULTURE = (
    "Dit rapport toont geen leercultuur, geen verandering daarvan en geen verschillen tussen de "
    "bedrijven, omdat de vragenlijst van deze scan geen dimensies van de leercultuur meet."
)
NO_OUTCOMES = (
    "Dit rapport toont geen opbrengsten van leren, omdat de vragenlijst van deze scan die niet "
    "meet."
)


def community_contexts(
    numbers: pd.DataFrame,
    wave: str,
    codebook: Codebook,
    names: Mapping[str, str],
    partners: pd.DataFrame,
    previous_wave: str | None,
) -> dict[str, dict]:
    """A report context per community with rows in `numbers` (the wave's `community_numbers`,
    as stored: the blank row of `members` may be NaN), except ALL, whose means are the
    comparison column "Alle leergemeenschappen" when present. `names` titles each community
    (its id where missing); `partners` (community_id, kind, partner) lists its partners;
    `previous_wave` is the wave the change compares with (None: no earlier wave)."""
    values = _values(numbers)
    culture, outcomes = _scales(codebook, "culture"), _scales(codebook, "outcome")
    overall = values.get(ALL)
    contexts = {}
    for community in sorted(c for c in values if c != ALL):
        own = values[community]
        name = names.get(community, f"Leergemeenschap {community}")
        version = report_version(
            [
                numbers[numbers["community_id"].astype(str).isin([community, ALL])],
                partners[partners["community_id"].astype(str) == community],
                pd.DataFrame({"name": [name]}),
            ],
            [w for w in codebook.waves if w in (wave, previous_wave)],
        )
        contexts[community] = {
            "title": yaml_string(name),
            "wave": wave,
            "wave_label": codebook.waves[wave].label,
            "reading_guide": reading_guide(
                own, overall is not None, _partners(partners, community, codebook), codebook
            ),
            "culture_note": "" if culture else NO_CULTURE,
            "with_all": overall is not None,
            **position_section(own, overall, culture, codebook, "Dimensie", "position"),
            **change_section(own, culture, wave, previous_wave, codebook, "Dimensie", "change"),
            **spread_section(own, culture, codebook),
            "outcomes_note": "" if outcomes else NO_OUTCOMES,
            **position_section(own, overall, outcomes, codebook, "Opbrengst", "outcomes_position"),
            **change_section(
                own, outcomes, wave, previous_wave, codebook, "Opbrengst", "outcomes_change"
            ),
            **trajectories_section(own, codebook),
            **number_ids_section(community, own, overall is not None, wave, codebook),
            "data_version": version.digest,
            "data_waves": escape(version.waves_listed("en")),
        }
    return contexts


def render_community_reports(
    numbers: pd.DataFrame,
    wave: str,
    codebook: Codebook,
    out_dir: Path,
    names: Mapping[str, str],
    partners: pd.DataFrame,
    previous_wave: str | None,
) -> dict[str, Rendered]:
    """Every community's report written to `out_dir/<community_id>.{html,pdf}` (the arguments
    as `community_contexts` takes them), in one pandoc process."""
    contexts = community_contexts(numbers, wave, codebook, names, partners, previous_wave)
    return render_reports(REPORTS_DIR / "community.qmd", contexts, out_dir)


# --- the stored numbers -------------------------------------------------------------------------


def _values(numbers: pd.DataFrame) -> dict[str, pd.Series]:
    """Per community, its values indexed by (table, row, statistic); a blank row is ""."""
    frame = numbers.assign(
        community_id=numbers["community_id"].astype(str),
        row=numbers["row"].astype(str),
        value=numbers["value"].astype(float),
    )
    return {
        community: rows.set_index(["table", "row", "statistic"])["value"]
        for community, rows in frame.groupby("community_id", sort=True)
    }


def _stat(values: pd.Series | None, table: str, row: str, statistic: str) -> float | None:
    """One stored number; None where it is NaN (hidden) or absent."""
    value = None if values is None else values.get((table, row, statistic))
    return None if value is None or pd.isna(value) else float(value)


def _scales(codebook: Codebook, level: str) -> list[str]:
    return [name for name, scale in codebook.scales.items() if scale.level == level]


def _label(codebook: Codebook, scale: str) -> str:
    return escape(codebook.scales[scale].label)


def _number(value: float | None, absent: str = ABSENT) -> str:
    return absent if value is None else number(value)


def _count(value: float | None) -> str:
    return ABSENT if value is None else str(int(value))


# --- sections -----------------------------------------------------------------------------------


def reading_guide(
    own: pd.Series, with_all: bool, partners: list[tuple[str, list[str]]], codebook: Codebook
) -> str:
    """Who is in the community, its partners by kind, and how to read the numbers."""
    k = codebook.anonymisation.k
    members = _count(_stat(own, MEMBERS, MEMBERS_ROW, "companies"))
    reported = _count(_stat(own, MEMBERS, MEMBERS_ROW, "companies_reported"))
    paragraphs = [
        f"In deze meting zijn {members} bedrijven lid van de leergemeenschap. Van {reported} "
        f"daarvan vulden minstens {k} medewerkers de vragenlijst in; alleen die bedrijven tellen "
        f"mee in de getallen van dit rapport."
    ]
    if partners:
        lines = [f"- **{kind}**: {', '.join(names)}" for kind, names in partners]
        paragraphs.append("De leergemeenschap werkt samen met:\n\n" + "\n".join(lines))
    else:
        paragraphs.append("Voor deze leergemeenschap zijn geen partners geregistreerd.")
    scales = [*_scales(codebook, "culture"), *_scales(codebook, "outcome")]
    if scales:
        paragraphs.append(_score_range(codebook, scales[0]))
    bullets = [
        f"""\
- **Regel.** Een resultaat van de leergemeenschap tonen we alleen als minstens
  {MIN_COMPANIES} bedrijven meetellen, elk met minstens {k} medewerkers met een score op dat
  onderdeel. Zijn het er minder, dan staat er "{HIDDEN}" en tonen we geen getal.""",
        """\
- **Geen bedrijven apart.** We noemen geen bedrijf en tonen geen getal van één bedrijf. Hoe de
  bedrijven onderling verschillen, tonen we alleen als spreiding.""",
        """\
- **Leergemeenschap (alle medewerkers samen).** Het gemiddelde over alle medewerkers van de
  meetellende bedrijven samen. Een groot bedrijf weegt daarin zwaarder dan een klein bedrijf.""",
        """\
- **Gemiddelde van de bedrijven.** Eerst het gemiddelde per bedrijf, daarna het gemiddelde van
  die bedrijfsgemiddelden. Zo telt elk bedrijf even zwaar.""",
        """\
- **Andere bedrijven.** Alle medewerkers samen van de meetellende bedrijven in deze meting die
  niet in deze leergemeenschap zitten.""",
    ]
    if with_all:
        bullets.append("""\
- **Alle leergemeenschappen.** Alle medewerkers samen van de meetellende bedrijven van alle
  leergemeenschappen, deze leergemeenschap inbegrepen.""")
    return "\n\n".join(paragraphs) + "\n\n" + "\n".join(bullets)


def _score_range(codebook: Codebook, scale: str) -> str:
    response = codebook.scales[scale].response_scale
    low, high = (
        f"{code} ({response.labels[code]})" if code in response.labels else str(code)
        for code in (response.min, response.max)
    )
    return (
        f"De scores lopen van {escape(low)} tot {escape(high)}: hoe hoger de score, hoe sterker "
        "dat punt."
    )


def _partners(
    partners: pd.DataFrame, community: str, codebook: Codebook
) -> list[tuple[str, list[str]]]:
    """The community's partners as (kind, partners) pairs: kinds in the codebook's order, then
    any other kind alphabetically; partners alphabetically, escaped."""
    own = partners[partners["community_id"].astype(str) == community]
    kinds = {
        str(kind): sorted(escape(str(p)) for p in rows["partner"])
        for kind, rows in own.groupby(own["kind"].astype(str))
    }
    known = list(codebook.communities.partner_kinds) if codebook.communities else []
    order = [k for k in known if k in kinds] + sorted(k for k in kinds if k not in known)
    return [(escape(kind) if kind else "overig", kinds[kind]) for kind in order]


def position_section(
    own: pd.Series,
    overall: pd.Series | None,
    scales: Sequence[str],
    codebook: Codebook,
    first: str,
    key: str,
) -> dict[str, str]:
    """`<key>_note` and `<key>_table`: per scale the number of companies that count, the pooled
    mean, the mean of the companies' means, the other companies' mean and, with an ALL
    aggregate, the mean of all communities."""
    columns = [
        (first, "l"),
        ("Bedrijven", "r"),
        ("Leergemeenschap", "r"),
        ("Gemiddelde van de bedrijven", "r"),
        ("Andere bedrijven", "r"),
    ]
    if overall is not None:
        columns.append(("Alle leergemeenschappen", "r"))
    rows = []
    for scale in scales:
        mean = _stat(own, SCALES, scale, "mean")
        row = [
            _label(codebook, scale),
            _count(_stat(own, SCALES, scale, "companies")),
            _number(mean, HIDDEN),
            _number(_stat(own, SCALES, scale, "companies_mean")),
            _number(_stat(own, SCALES, scale, "outside_mean")),
        ]
        if overall is not None:
            row.append(_number(_stat(overall, SCALES, scale, "mean"), HIDDEN))
        rows.append(row)
    note = (
        "De kolom Bedrijven telt de bedrijven van de leergemeenschap die op dat onderdeel "
        f"meetellen (minstens {codebook.anonymisation.k} medewerkers met een score)."
    )
    if any(cell in (HIDDEN, ABSENT) for row in rows for cell in row[2:]):
        note += (
            f' Waar "{HIDDEN}" of een streepje staat, waren er minder dan {MIN_COMPANIES} '
            "bedrijven met genoeg antwoorden om een getal te tonen."
        )
    return {f"{key}_note": note, f"{key}_table": pipe_table(columns, rows)}


def change_section(
    own: pd.Series,
    scales: Sequence[str],
    wave: str,
    previous: str | None,
    codebook: Codebook,
    first: str,
    key: str,
) -> dict[str, str]:
    """`<key>_note` and `<key>_table`: per scale with a change, the previous mean, the mean and
    the change; otherwise why there is none. Membership may differ between the waves."""
    if previous is None:
        note = (
            "Dit is de eerste meting van de leergemeenschap; er is nog geen eerdere meting om mee "
            "te vergelijken."
        )
        return {f"{key}_note": note, f"{key}_table": ""}
    before, now = codebook.waves[previous].label, codebook.waves[wave].label
    rows, hidden = [], []
    for scale in scales:
        change = _stat(own, SCALES, scale, "change")
        if change is None:
            hidden.append(_label(codebook, scale))
            continue
        rows.append(
            [
                _label(codebook, scale),
                number(_stat(own, SCALES, scale, "previous_mean")),
                number(_stat(own, SCALES, scale, "mean")),
                signed(change),
            ]
        )
    rule = (
        f"Een verandering tonen we alleen als de leergemeenschap in deze meting én in de vorige "
        f"meting ({before}) een resultaat had, dus telkens minstens {MIN_COMPANIES} bedrijven "
        "met genoeg antwoorden."
    )
    members = (
        "Let op: welke bedrijven meetellen, kan per meting verschillen. Bedrijven kunnen zijn "
        "toegetreden of vertrokken, of hadden in een van beide metingen te weinig antwoorden. "
        "Een verandering kan dus ook komen doordat andere bedrijven meetellen."
    )
    if not rows:
        note = f"Er is geen verandering te tonen. {rule}"
        return {f"{key}_note": note, f"{key}_table": ""}
    note = f"Vergeleken met de vorige meting ({before}). {members}"
    if hidden:
        note += f" Niet getoond voor {', '.join(hidden)}. {rule}"
    columns = [(first, "l"), (f"Meting {before}", "r"), (f"Meting {now}", "r")]
    table = pipe_table([*columns, ("Verandering", "r")], rows)
    return {f"{key}_note": note, f"{key}_table": table}


def spread_section(own: pd.Series, scales: Sequence[str], codebook: Codebook) -> dict[str, str]:
    """`spread_note` and `spread_table`: per culture scale with a result, the standard deviation
    and the middle half (25th to 75th percentile) of the companies' means, largest spread first,
    naming the TOP scales where the companies differ most."""
    shown = [s for s in scales if _stat(own, SCALES, s, "companies_sd") is not None]
    shown.sort(key=lambda s: -_stat(own, SCALES, s, "companies_sd"))  # stable: codebook order
    if not shown:
        note = (
            f"Op geen enkele dimensie telden minstens {MIN_COMPANIES} bedrijven mee, dus we tonen "
            "hier niet hoe de bedrijven verschillen."
        )
        return {"spread_note": note, "spread_table": ""}
    most = [
        f"**{_label(codebook, s)}** (spreiding {number(_stat(own, SCALES, s, 'companies_sd'))})"
        for s in shown[:TOP]
    ]
    named = " en ".join(most)
    verb = "verschillen de bedrijven het meest" if len(most) > 1 else "verschillen de bedrijven"
    note = (
        f"Op {named} {verb} van elkaar. De spreiding is de standaarddeviatie van de "
        "bedrijfsgemiddelden: hoe groter, hoe meer de bedrijven uiteenlopen. Welk bedrijf waar "
        "staat, tonen we niet."
    )
    if len(shown) < len(scales):
        note += f" Dimensies met {HIDDEN} staan niet in de tabel."
    rows = [
        [
            _label(codebook, s),
            _count(_stat(own, SCALES, s, "companies")),
            number(_stat(own, SCALES, s, "companies_sd")),
        ]
        for s in shown
    ]
    columns = [("Dimensie", "l"), ("Bedrijven", "r"), ("Spreiding", "r")]
    return {"spread_note": note, "spread_table": pipe_table(columns, rows)}


def trajectories_section(own: pd.Series, codebook: Codebook) -> dict[str, str]:
    """`trajectories_table`: per trajectory type (the codebook's order, then others
    alphabetically) the member companies running one; empty without trajectory rows."""
    types = [row for table, row, _ in own.index if table == TRAJECTORIES]
    known = list(codebook.trajectories.types) if codebook.trajectories else []
    order = [t for t in known if t in types] + sorted({t for t in types if t not in known})
    rows = [[escape(t), _count(_stat(own, TRAJECTORIES, t, "companies"))] for t in order]
    return {"trajectories_table": pipe_table([("Type traject", "l"), ("Bedrijven", "r")], rows)}


def number_ids_section(
    community: str, own: pd.Series, with_all: bool, wave: str, codebook: Codebook
) -> dict[str, str]:
    """`number_ids_table`: per part of the report the id of its numbers in `community_numbers`
    (`<statistic>` for the statistic), and `number_id_example`: the id of one number shown."""

    def pattern(key: str, table: str, row: str, statistic: str = "<statistic>") -> str:
        return f"`{number_id(NUMBERS_ASSET, wave, [key, table, row, statistic], 'value')}`"

    scales = [*_scales(codebook, "culture"), *_scales(codebook, "outcome")]
    rows = [["Leden", pattern(community, MEMBERS, MEMBERS_ROW)]]
    for scale in scales:
        rows.append([_label(codebook, scale), pattern(community, SCALES, scale)])
    if any(table == TRAJECTORIES for table, _, _ in own.index):
        rows.append(["Ontwikkeltrajecten", pattern(community, TRAJECTORIES, "<type>", "companies")])
    if with_all:
        rows.append(["Alle leergemeenschappen", pattern(ALL, SCALES, "<onderdeel>", "mean")])
    return {
        "number_ids_table": pipe_table([("Onderdeel", "l"), ("Id van de getallen", "l")], rows),
        "number_id_example": _example(community, own, scales, codebook, pattern),
    }


def _example(
    community: str,
    own: pd.Series,
    scales: Sequence[str],
    codebook: Codebook,
    pattern: Callable[[str, str, str, str], str],
) -> str:
    """A sentence with the id of one number the report shows: the community's mean on the first
    scale with one, else its number of member companies."""
    means = [s for s in scales if _stat(own, SCALES, s, "mean") is not None]
    if not means:
        members = _count(_stat(own, MEMBERS, MEMBERS_ROW, "companies"))
        members_id = pattern(community, MEMBERS, MEMBERS_ROW, "companies")
        return f"Zo is {members_id} het aantal leden ({members})."
    scale = means[0]
    return (
        f"Zo is {pattern(community, SCALES, scale, 'mean')} het id van de score van de "
        f"leergemeenschap op {_label(codebook, scale)} "
        f"({number(_stat(own, SCALES, scale, 'mean'))})."
    )
