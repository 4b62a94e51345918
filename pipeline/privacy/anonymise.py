"""The privacy boundary: from validated (identified) rows to pseudonymised and shareable ones.

`pseudonymised`: the restricted zone's analysis file. Only what the output contract allows
(pseudonyms, wave, generalised background, item codes); direct identifiers, free text and
platform metadata stay behind. A person's pseudonym is that of their company and linkage code,
after the panel linkage (`linkage.py`) has corrected a mistyped code to the code it links to.

Two release files are made from it (disclosure.py protects them):
- the scientific use file (`scientific_use`), for researchers under a data-use agreement: the
  panel stays linkable by `person_id`, so a person's records are protected over all waves;
- the public use file (`public_use`), made from the scientific one: no `person_id`, the
  codebook's `coarser` levels, and its own (stronger) scenario on top. It starts from the
  scientific file's suppressions, so holding both files tells nothing the scientific one does
  not: its rows can be matched to the scientific file's by their answers.

`reported`: what the reports aggregate, the pseudonymised background with one more guard. A
report's figure over a background group, minus the same figure from a release file's shown
members of the group, would give the members the file withholds: per published group, those
number 0 or at least k, or the reports leave them out too.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyreadstat

from pipeline.instrument.codebook import Codebook, Release
from pipeline.lineage.files import fix_sav_timestamp
from pipeline.privacy.disclosure import (
    SUPPRESSED,
    DisclosureReport,
    Risk,
    Scenario,
    background_labels,
    l_diversity,
    measure_risk,
    protect_panel,
)
from pipeline.privacy.linkage import link_panel
from pipeline.privacy.pseudonyms import PseudonymKey, pseudonymise
from pipeline.validate.quality import normalised

COMPANY_PREFIX = "c"  # of a company's pseudonym, `c_<hex>`: `scan deliver` makes it again
KEYS = ["person_id", "company_id", "wave"]
WITHHELD_CODE = -8.0  # in .sav: a value withheld for privacy (user-missing)
WITHHELD_LABEL = "withheld for privacy"
# SPSS's reserved words, which no variable may be named: such a column (a scale, say)
# is written as `<name>_` in .sav, its label unchanged
SPSS_RESERVED = {"all", "and", "by", "eq", "ge", "gt", "le", "lt", "ne", "not", "or", "to", "with"}


def pseudonymised(
    validated: dict[str, pd.DataFrame], codebook: Codebook, key: PseudonymKey
) -> dict[str, pd.DataFrame]:
    """The pseudonymised responses of every wave in `validated`, nothing suppressed; the panel
    linkage sees all of them."""
    rows = every_wave(validated)
    items = rows[codebook.items]
    responses = pd.concat(
        [
            pd.DataFrame(
                {
                    "person_id": pseudonymise(link_panel(rows, codebook).person, key, "p"),
                    "company_id": pseudonymise(rows[codebook.company_id], key, COMPANY_PREFIX),
                    "wave": rows["wave"].astype("string"),
                }
            ),
            background_labels(rows, codebook),
            items.mask(items.isin(list(codebook.missing_codes))),
        ],
        axis=1,
    )
    return {
        str(wave): frame.reset_index(drop=True)
        for wave, frame in responses.groupby("wave", sort=True)
    }


def scenario(release: Release, codebook: Codebook) -> Scenario:
    return Scenario(release.k, release.m, codebook.anonymisation.suppression_order)


def scientific_use(
    pseudonymised_waves: dict[str, pd.DataFrame], wave: str, codebook: Codebook
) -> tuple[pd.DataFrame, DisclosureReport, list[dict]]:
    """The scientific use file of `wave`, its disclosure report and the risk after each step
    (generalised, then suppressed); every wave's records are protected together."""
    rows = every_wave(pseudonymised_waves)
    protection = scenario(codebook.anonymisation.scientific_use, codebook)
    background, reports = protect_panel(
        rows[list(codebook.background)],
        rows["company_id"],
        rows["person_id"],
        rows["wave"],
        protection,
        [wave],
    )
    mine = (rows["wave"] == wave).to_numpy()
    release = pd.concat(
        [rows.loc[mine, KEYS], background[mine], rows.loc[mine, codebook.items]], axis=1
    )
    quasi, items = list(protection.quasi), list(codebook.items)
    report = replace(reports[wave], l_diversity=l_diversity(release, quasi, items))
    steps = [_step("generalised", report.risk_before), _step("suppressed", report.risk_after)]
    return release.reset_index(drop=True), report, steps


def public_use(
    scientific: pd.DataFrame, codebook: Codebook
) -> tuple[pd.DataFrame, DisclosureReport, list[dict]]:
    """The public use file made from a wave's scientific use file: no person_id, the coarser
    levels, then local suppression on the public scenario, each record on its own. Returns it,
    its report (its `suppressed`: every value it withholds, the scientific file's too) and the
    risk after each step (the scientific file unlinked, coarser, suppressed)."""
    protection = scenario(codebook.anonymisation.public_use, codebook)
    unlinked = pd.Series(pd.NA, index=scientific.index, dtype="string")
    company, wave = scientific["company_id"], scientific["wave"].astype("string")
    label = str(wave.iloc[0]) if len(wave) else ""
    coarse = scientific[list(codebook.background)].copy()
    for name, variable in codebook.background.items():
        coarse[name] = coarse[name].replace(variable.coarser).astype("string")
    steps = [
        _step(
            "scientific use file",
            measure_risk(scientific, company, unlinked, wave, protection).get(label),
        )
    ]
    background, reports = protect_panel(coarse, company, unlinked, wave, protection, [label])
    release = pd.concat(
        [scientific[["company_id", "wave"]], background, scientific[codebook.items]], axis=1
    )
    quasi = list(protection.quasi)
    withheld = background[quasi].eq(SUPPRESSED).sum()
    report = replace(
        reports[label],
        suppressed={n: int(withheld[n]) for n in quasi},
        l_diversity=l_diversity(release, quasi, list(codebook.items)),
    )
    steps += [_step("coarser", report.risk_before), _step("suppressed", report.risk_after)]
    return release, report, steps


def _step(name: str, risk: Risk | None) -> dict:
    return {"step": name, **(vars(risk) if risk is not None else {})}


def reported(
    pseudonymised_wave: pd.DataFrame,
    scientific: pd.DataFrame,
    public: pd.DataFrame,
    codebook: Codebook,
    k: int,
) -> pd.DataFrame:
    """The pseudonymised responses of a wave for the reports (module docstring). The reports
    publish figures per level of a background variable over the wave, and per company for
    management and staff (the codebook's `management`) where both reach k. Per such group and
    release file, the
    members the file withholds (SUPPRESSED; in the public file at its coarser levels) number 0
    or at least k; if not, they are left out (<NA>) here too, until that holds for both files.
    The release files' rows are those of `pseudonymised_wave`."""
    frame = pseudonymised_wave.copy()
    management = codebook.management
    for name, variable in codebook.background.items():
        kept = frame[name].copy()
        left_out = -1
        while kept.isna().sum() != left_out:
            left_out = kept.isna().sum()
            groupings = [([kept], True), ([kept.replace(variable.coarser)], True)]
            if management is not None and management.variable == name:
                role = kept.eq(management.value).map({True: "management", False: "staff"})
                company = frame["company_id"]
                size = role.groupby([company, role]).transform("size")
                both = size.lt(k).groupby(company).transform("sum").eq(0) & role.notna()
                both &= role.groupby(company).transform("nunique").eq(2)
                groupings += [([company, role], both)] * 2
            releases = [scientific, public] * (len(groupings) // 2)
            for release, (keys, published) in zip(releases, groupings, strict=True):
                withheld = kept.notna() & release[name].eq(SUPPRESSED).fillna(False) & published
                count = withheld.groupby(keys).transform("sum")
                kept = kept.mask(withheld & (count > 0) & (count < k))
        frame[name] = kept
    return frame


def trajectory_exposure(
    validated: dict[str, pd.DataFrame],
    register: pd.DataFrame,
    listed: pd.DataFrame,
    codebook: Codebook,
    key: PseudonymKey,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The trajectory register and who takes part, under the pseudonyms `anonymise` gives
    (`register` and `listed` as pipeline/ingest/trajectories.py reads them): the register with
    `company_id` for its company code, and the `person_id`s of the persons taking part (none
    when the codebook says of no way to know who does: `TrajectoryRegister.knows_participants`).

    A person takes part when a row of theirs holds the codebook's participation value, or when
    the participants list names their company and one of their linkage codes (a code the panel
    linkage corrected counts too: the person is the linked one)."""
    trajectories = register.drop(columns=["company", "_source_row"], errors="ignore")
    trajectories.insert(0, "company_id", pseudonymise(register["company"], key, COMPANY_PREFIX))
    spec = codebook.trajectories
    persons = pd.DataFrame({"person_id": pd.Series(dtype="string")})
    if spec is None or not spec.knows_participants:
        return trajectories, persons
    rows = every_wave(validated)
    person = link_panel(rows, codebook).person
    taking_part = pd.Series(False, index=rows.index)
    if spec.participation is not None:
        answers = background_labels(rows, codebook)[spec.participation.variable]
        taking_part |= answers.eq(spec.participation.value).fillna(False)
    if spec.participants and not listed.empty:
        named = set(zip(normalised(listed["company"]), normalised(listed["person"]), strict=True))
        pairs = zip(
            normalised(rows[codebook.company_id]),
            normalised(rows[codebook.respondent_id]),
            strict=True,
        )
        taking_part |= pd.Series([pair in named for pair in pairs], index=rows.index)
    keys = person[taking_part].dropna().drop_duplicates()
    persons = pd.DataFrame({"person_id": pseudonymise(keys, key, "p").sort_values()})
    return trajectories, persons.reset_index(drop=True)


def community_members(register: pd.DataFrame, key: PseudonymKey) -> pd.DataFrame:
    """The community register (as pipeline/ingest/communities.py reads it) under the company
    pseudonyms `anonymise` gives: community_id, community, company_id, joined, left."""
    members = register.drop(columns=["company", "_source_row"], errors="ignore")
    members.insert(2, "company_id", pseudonymise(register["company"], key, COMPANY_PREFIX))
    return members


def every_wave(validated: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The validated rows of every wave, in wave order."""
    return pd.concat([validated[w] for w in sorted(validated)], ignore_index=True)


def cell_texts(frame: pd.DataFrame) -> set[str]:
    """Every distinct non-missing cell of `frame` as text, as `frame.astype("string")` writes it.

    A float column is first cut down to its distinct values, bit for bit (so -0.0 stays apart
    from 0.0): writing every cell of every item as text was most of the check's time.
    """
    texts: set[str] = set()
    for _, column in frame.items():
        values = column.dropna()
        if values.dtype == "float64":
            bits = np.unique(values.to_numpy().view(np.int64))
            values = pd.Series(bits.view(np.float64))
        texts.update(values.astype("string"))
    return texts


def shareable_columns(codebook: Codebook, public: bool = False) -> list[str]:
    """The columns of a release file, in order (DESIGN.md, output contract); the public use
    file has no person_id."""
    keys = KEYS[1:] if public else KEYS
    return [*keys, *codebook.background, *codebook.items]


def pooled_long(
    releases: dict[str, pd.DataFrame], scores: dict[str, pd.DataFrame], codebook: Codebook
) -> pd.DataFrame:
    """Every wave's scientific use file with its scale scores beside it (`scores` follow the
    release row for row), the waves in codebook order: keys, background, scores, items."""
    waves = []
    for wave in (w for w in codebook.waves if w in releases):
        release, score = releases[wave], scores[wave]
        if not release[KEYS].equals(score[KEYS]):
            raise ValueError(f"wave {wave}: the scale scores do not follow the release file")
        waves.append(pd.concat([release, score.drop(columns=KEYS)], axis=1))
    table = pd.concat(waves, ignore_index=True)
    named = {*KEYS, *codebook.background, *codebook.items}
    scored = [c for c in table.columns if c not in named]
    return table[[*KEYS, *codebook.background, *scored, *codebook.items]]


def write_sav(
    table: pd.DataFrame,
    codebook: Codebook,
    path,
    file_label: str,
    missing_codes: pd.DataFrame | None = None,
) -> None:
    """A release table (responses, scale scores, the pooled long file) as .sav, with the
    codebook's variable and value labels, measurement levels and a file label.

    Background values (generalised labels; the public use file's coarser ones) are stored as
    codes 1..m in the codebook's order, with the labels as SPSS value labels, as SPSS users
    expect. A value withheld for privacy is WITHHELD_CODE, labelled and declared user-missing,
    so that it stays apart from a value the respondent did not give (system-missing). An item's
    missing code (`missing_codes`: the validated rows' items, row for row; the shareable tables
    hold them as empty) is put back, labelled and declared user-missing, as SPSS allows up to
    three per variable. Items are ordinal, scale scores and counts scale, the rest nominal. A
    column named as an SPSS reserved word (SPSS_RESERVED) gets a trailing underscore.
    """
    frame = table.copy()
    if missing_codes is not None and len(missing_codes) != len(frame):
        raise ValueError(
            f"{path}: {len(missing_codes)} validated rows for {len(frame)} rows of the table; "
            "the missing codes must follow the table row for row"
        )
    public = "person_id" not in frame
    value_labels: dict[str, dict] = {}
    missing: dict[str, list] = {}
    measure: dict[str, str] = {}
    labels = {
        "person_id": "Pseudoniem respondent (HMAC)",
        "company_id": "Pseudoniem bedrijf (HMAC)",
        "wave": "Meting",
    }
    for name in (n for n in codebook.background if n in frame):
        variable = codebook.background[name]
        levels = variable.public_levels if public else variable.levels
        codes = {label: float(i + 1) for i, label in enumerate(levels)}
        codes[SUPPRESSED] = WITHHELD_CODE
        frame[name] = frame[name].map(codes).astype("float64")
        value_labels[name] = {code: label for label, code in codes.items()}
        value_labels[name][WITHHELD_CODE] = WITHHELD_LABEL
        missing[name] = [WITHHELD_CODE]
        measure[name] = "ordinal" if variable.is_number else "nominal"
        labels[name] = variable.label
    user_missing = [float(c) for c in codebook.missing_codes][:3]
    for item in (i for i in codebook.items if i in frame):
        answers = codebook.response_scale_of(item).labels
        value_labels[item] = {float(c): label for c, label in answers.items()}
        if missing_codes is not None and user_missing:
            given = missing_codes[item].reset_index(drop=True)
            put_back = given.isin(user_missing) & frame[item].isna().to_numpy()
            frame[item] = frame[item].mask(put_back.to_numpy(), given.to_numpy())
            value_labels[item] |= {c: codebook.missing_codes[int(c)] for c in user_missing}
            missing[item] = user_missing
        measure[item] = "ordinal"
        labels[item] = codebook.item_label(item)
    for scale in codebook.scales.values():
        if scale.name in frame:
            measure[scale.name] = measure[f"{scale.name}_n_valid"] = "scale"
            labels[scale.name] = f"{scale.label} (schaalscore)"
            labels[f"{scale.name}_n_valid"] = f"{scale.label}: geldige antwoorden"
    for key in KEYS:
        if key in frame:
            frame[key] = frame[key].fillna("").astype(str)
            measure[key] = "nominal"
    names = {c: f"{c}_" for c in frame.columns if c.casefold() in SPSS_RESERVED}
    pyreadstat.write_sav(
        frame.rename(columns=names),
        str(path),
        file_label=file_label,
        column_labels=[labels[c] for c in frame.columns],
        variable_value_labels={names.get(c, c): v for c, v in value_labels.items()},
        missing_ranges={names.get(c, c): v for c, v in missing.items()},
        variable_measure={names.get(c, c): v for c, v in measure.items()},
    )
    fix_sav_timestamp(Path(path))
