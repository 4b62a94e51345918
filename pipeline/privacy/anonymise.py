"""The privacy boundary: from validated (identified) rows to shareable responses.

Keeps only what the output contract allows (pseudonyms, wave, generalised and suppressed
background, item codes); direct identifiers, free text and platform metadata stay behind. A
person's pseudonym is that of their company and linkage code, after the panel linkage
(`linkage.py`) has corrected a mistyped code to the code it links to.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyreadstat

from pipeline.instrument.codebook import Codebook
from pipeline.lineage.files import fix_sav_timestamp
from pipeline.privacy.disclosure import DisclosureReport, background_labels, protect_panel
from pipeline.privacy.linkage import link_panel
from pipeline.privacy.pseudonyms import PseudonymKey, pseudonymise
from pipeline.validate.quality import normalised

COMPANY_PREFIX = "c"  # of a company's pseudonym, `c_<hex>`: `scan deliver` makes it again


def anonymise(
    validated: dict[str, pd.DataFrame], wave: str, codebook: Codebook, key: PseudonymKey
) -> tuple[pd.DataFrame, DisclosureReport]:
    """The shareable responses of `wave`; disclosure control sees the validated rows of every
    wave in `validated`, so that a panel member's records are protected together."""
    rows = every_wave(validated)
    company = pseudonymise(rows[codebook.company_id], key, COMPANY_PREFIX)
    person = pseudonymise(link_panel(rows, codebook).person, key, "p")
    labels = background_labels(rows, codebook)
    background, reports = protect_panel(
        labels, company, person, rows["wave"].astype("string"), codebook, [wave]
    )
    mine = (rows["wave"] == wave).to_numpy()
    items = rows.loc[mine, codebook.items]
    responses = pd.concat(
        [
            pd.DataFrame(
                {
                    "person_id": person[mine],
                    "company_id": company[mine],
                    "wave": rows.loc[mine, "wave"].astype("string"),
                }
            ),
            background[mine],
            items.mask(items.isin(list(codebook.missing_codes))),
        ],
        axis=1,
    )
    return responses.reset_index(drop=True), reports[wave]


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


def shareable_columns(codebook: Codebook) -> list[str]:
    """The columns of the shareable responses, in order (DESIGN.md, output contract)."""
    return ["person_id", "company_id", "wave", *codebook.background, *codebook.items]


def write_sav(responses: pd.DataFrame, codebook: Codebook, path) -> None:
    """responses.sav with the codebook's variable and value labels.

    Background values (generalised labels) are stored as codes 1..m in the codebook's order,
    with the labels as SPSS value labels, as SPSS users expect.
    """
    frame = responses.copy()
    value_labels: dict[str, dict] = {}
    for name, variable in codebook.background.items():
        codes = {label: i + 1 for i, label in enumerate(variable.levels)}
        frame[name] = frame[name].map(codes).astype("float64")
        value_labels[name] = {code: label for label, code in codes.items()}
    for item in codebook.items:
        value_labels[item] = {
            float(c): lab for c, lab in codebook.response_scale_of(item).labels.items()
        }
    labels = {
        "person_id": "Pseudoniem respondent (HMAC)",
        "company_id": "Pseudoniem bedrijf (HMAC)",
        "wave": "Meting",
        **{name: b.label for name, b in codebook.background.items()},
        **{item: codebook.item_label(item) for item in codebook.items},
    }
    frame["person_id"] = frame["person_id"].fillna("").astype(str)
    frame["company_id"] = frame["company_id"].fillna("").astype(str)
    frame["wave"] = frame["wave"].astype(str)
    pyreadstat.write_sav(
        frame,
        str(path),
        column_labels=[labels[c] for c in frame.columns],
        variable_value_labels=value_labels,
    )
    fix_sav_timestamp(Path(path))
