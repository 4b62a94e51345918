"""The community register and its partners list (restricted zone), read and validated like an
export.

The register (the codebook's `registers.communities.file`, CSV or Excel) has one row per
membership: `community_id`, `community` (its name), the company's code (in the column named as
the codebook's company identifier), `joined` (the first wave the company is a member in) and
`left` (the first wave it no longer is; empty while it is). The partners list (`partners`) has
one row per partner institution: `community_id`, `kind` and `partner` (its name).

Every problem raises a RegisterError naming the file, the line (CSV, header counted) or row
(Excel), the column and what was expected, never a company code. The rules:

- every column present, no cell of the required ones empty (`left` may be);
- `joined` and `left` are waves of the codebook, and `left` comes after `joined`;
- a community has one name, and its id is not ALL (the aggregate of all communities);
- the company is in the company register (when the codebook declares one);
- a company's memberships of one community do not overlap, nor, when the codebook's
  `exclusive` holds (the default), its memberships of two communities;
- a partner's community is in the register, and its kind is one the codebook lists (when it
  lists any).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from pipeline.ingest.register_files import (
    FIRST,
    RegisterError,
    first,
    place,
    read_cells,
    require_columns,
    require_filled,
)
from pipeline.instrument.codebook import Codebook, CommunityRegister

ALL = "all"  # the community id of all communities together, in the numbers the reports show
DECLARED = "registers.communities"


def _spec(codebook: Codebook) -> CommunityRegister:
    if codebook.communities is None:
        raise RegisterError("the codebook declares no community register")
    return codebook.communities


def read_communities(
    path: Path, codebook: Codebook, companies: set[str] | None = None
) -> pd.DataFrame:
    """The register as a table (community_id, community, company, joined, left, `_source_row`),
    validated; `companies` the company register's codes, if there is one."""
    spec = _spec(codebook)
    frame, word = read_cells(path, "community register", DECLARED)
    company = codebook.company_id
    columns = ["community_id", "community", company, "joined", "left"]
    require_columns(frame, columns, path, "community register")
    require_filled(frame, columns[:-1], path, word)
    order = {name: i for i, name in enumerate(codebook.waves)}
    for column in ("joined", "left"):
        unknown = frame[column].ne("") & ~frame[column].isin(list(order))
        if unknown.any():
            index = first(unknown)
            raise RegisterError(
                f"{place(path, word, index)}: {column} {frame[column].iat[index]!r} is not a "
                f"wave of the codebook ({', '.join(order)})"
            )
    joined = frame["joined"].map(order)
    left = frame["left"].map(order).fillna(len(order)).astype(int)
    early = left <= joined
    if early.any():
        raise RegisterError(f"{place(path, word, first(early))}: left is not after joined")
    reserved = frame["community_id"].eq(ALL)
    if reserved.any():
        raise RegisterError(
            f"{place(path, word, first(reserved))}: community_id {ALL!r} is reserved for all "
            "communities together"
        )
    names = frame.groupby("community_id")["community"].transform("first")
    renamed = frame["community"].ne(names)
    if renamed.any():
        raise RegisterError(
            f"{place(path, word, first(renamed))}: community differs from the name the "
            "community's first row gives"
        )
    if companies is not None:
        outside = ~frame[company].isin(companies)
        if outside.any():
            raise RegisterError(
                f"{place(path, word, first(outside))}: its company is not in the company "
                "register (registers.companies)"
            )
    table = pd.DataFrame(
        {
            "community_id": frame["community_id"],
            "community": frame["community"],
            "company": frame[company],
            "joined": frame["joined"],
            "left": frame["left"],
            "_source_row": range(FIRST, FIRST + len(frame)),
        }
    )
    spans = table.assign(_from=joined, _to=left)
    _no_overlap(spans, ["company", "community_id"], path, word, "within one community")
    if spec.exclusive:
        _no_overlap(spans, ["company"], path, word, "in two communities (the codebook's exclusive)")
    return table


def _no_overlap(spans: pd.DataFrame, keys: list[str], path: Path, word: str, what: str) -> None:
    """A company's memberships grouped by `keys` follow each other in time."""
    for _, group in spans.groupby(keys, sort=False):
        ordered = group.sort_values(["_from", "_source_row"])
        later = ordered["_from"].iloc[1:].to_numpy() < ordered["_to"].iloc[:-1].to_numpy()
        if later.any():
            k = int(later.argmax())
            rows = ordered["_source_row"].iloc[[k, k + 1]].tolist()
            raise RegisterError(
                f"{path} {word}s {rows[0]} and {rows[1]}: a company is a member twice at the "
                f"same time {what}"
            )


def read_partners(path: Path, codebook: Codebook, register: pd.DataFrame) -> pd.DataFrame:
    """The partners list as a table (community_id, kind, partner, `_source_row`), validated
    against the `register` that `read_communities` returned."""
    kinds = _spec(codebook).partner_kinds
    frame, word = read_cells(path, "partners list", DECLARED)
    columns = ["community_id", "kind", "partner"]
    require_columns(frame, columns, path, "partners list")
    require_filled(frame, columns, path, word)
    unknown = ~frame["community_id"].isin(set(register["community_id"]))
    if unknown.any():
        index = first(unknown)
        raise RegisterError(
            f"{place(path, word, index)}: community_id {frame['community_id'].iat[index]!r} is "
            "not in the community register"
        )
    if kinds:
        other = ~frame["kind"].isin(kinds)
        if other.any():
            index = first(other)
            raise RegisterError(
                f"{place(path, word, index)}: kind {frame['kind'].iat[index]!r} is not one of "
                f"the codebook's registers.communities.partner_kinds ({', '.join(kinds)})"
            )
    return frame[columns].assign(_source_row=range(FIRST, FIRST + len(frame)))


def members_in(register: pd.DataFrame, wave: str, waves: Sequence[str]) -> pd.DataFrame:
    """The rows of a register (or its pseudonymised copy) whose membership covers `wave`:
    joined at or before it and not left by it (`waves` the codebook's waves in order)."""
    order = {name: i for i, name in enumerate(waves)}
    at = order[wave]
    joined = register["joined"].map(order)
    left = register["left"].map(order).fillna(len(order))  # "" (still a member) maps to NaN
    return register[(joined <= at) & (left > at)]
