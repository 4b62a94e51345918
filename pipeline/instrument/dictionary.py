"""The data dictionary of the shareable zone: every table of the output contract, every column.

`dictionary.yaml` holds the contract as data (the tables, their fixed columns, types and
descriptions); the codebook adds its own columns (background variables, items, scales) with
their labels, English labels where it gives them, answer scales, levels and missing codes. From
the two come `data/processed/README.md`, `datapackage.json` (a Frictionless data package,
validated by the `frictionless` library), the field metadata of the parquet files and the
column descriptions of the assets in Dagster's UI, so they all say the same.

A column a table holds that the dictionary does not describe is an error, not a blank line:
the dictionary describes exactly what is on disk.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from pipeline.instrument.codebook import SUPPRESSED, Background, Codebook, ResponseScale, Scale
from pipeline.lineage.settings import ALL_WAVES

CONTRACT = Path(__file__).with_name("dictionary.yaml")
PER_WAVE = "per_wave"  # the contract's per-wave tables; the cross-wave ones are ALL_WAVES
SUPPRESSED_TEXT = f"`{SUPPRESSED}`: withheld for privacy (disclosure control)"


@dataclass(frozen=True)
class Field:
    """One column: its Frictionless type, what it holds, and the values it may take."""

    name: str
    type: str
    description: str
    constraints: dict = field(default_factory=dict)

    def frictionless(self) -> dict:
        spec = {"name": self.name, "type": self.type, "description": self.description}
        return {**spec, "constraints": self.constraints} if self.constraints else spec


@dataclass(frozen=True)
class Table:
    """One file of the contract: where (`folder`: `per_wave` or `all_waves`), one row per what."""

    folder: str
    file: str
    row: str
    description: str


@cache
def contract() -> dict:
    return yaml.safe_load(CONTRACT.read_text(encoding="utf-8"))


def tables() -> list[Table]:
    """Every table of the contract, per-wave ones first."""
    return [
        Table(folder, file, spec["row"], spec["description"])
        for folder in (PER_WAVE, ALL_WAVES)
        for file, spec in contract()[folder].items()
    ]


def table_of(folder: str, file: str) -> Table | None:
    return next((t for t in tables() if (t.folder, t.file) == (folder, file)), None)


def fields(table: Table, columns: list[str], codebook: Codebook) -> list[Field]:
    """The fields of `columns` (a stored file's, in order). Raises ValueError naming the table
    and the column when the dictionary does not describe one."""
    described = _described(table, codebook)
    missing = [c for c in columns if c not in described]
    if missing:
        raise ValueError(
            f"{table.file} ({table.folder}): the data dictionary describes no column "
            f"{', '.join(map(repr, missing))} (pipeline/instrument/dictionary.yaml)"
        )
    return [described[c] for c in columns]


def _described(table: Table, codebook: Codebook) -> dict[str, Field]:
    spec = contract()[table.folder][table.file]
    shared = contract()["shared"]
    out: dict[str, Field] = {}
    for name, entry in spec["columns"].items():
        if name == "<background>":
            public = spec.get("levels") == "public"
            out |= {b.name: _background(b, public) for b in codebook.background.values()}
        elif name == "<items>":
            out |= {i: _item(i, codebook) for i in codebook.items}
        elif name == "<scales>":
            for scale in codebook.scales.values():
                out |= {f.name: f for f in _scale(scale)}
        else:
            kind, description = entry if entry is not None else shared[name]
            out[name] = Field(name, kind, description)
    return out


def _english(label: str, english: str | None) -> str:
    return label if english is None or english == label else f"{label} ({english})"


def _answers(scale: ResponseScale) -> str:
    labels = "; ".join(f"{code} = {label}" for code, label in scale.labels.items())
    return f"answer scale {scale.min} to {scale.max}" + (f" ({labels})" if labels else "")


def _background(variable: Background, public: bool) -> Field:
    levels = variable.public_levels if public else variable.levels
    derived = (
        f"a number cut into bands, {', '.join(levels)}"
        if variable.is_number
        else f"levels {', '.join(levels)}"
    )
    if public and variable.coarser:
        derived += " (the codebook's coarser levels)"
    elif variable.generalise:
        derived += " (generalised)"
    description = (
        f"Background: {_english(variable.label, variable.label_en)}. {derived}. "
        f"Empty: not given; {SUPPRESSED_TEXT}."
    )
    return Field(variable.name, "string", description, {"enum": [*levels, SUPPRESSED]})


def _missing_codes(codebook: Codebook) -> str:
    codes = "; ".join(f"{c} = {label}" for c, label in codebook.missing_codes.items())
    return f"Empty: no answer{f', or a missing code ({codes})' if codes else ''}."


def _item(item: str, codebook: Codebook) -> Field:
    scale = codebook.scale_of(item)
    answers = codebook.response_scale_of(item)
    wording = codebook.item_label(item)
    english = codebook.item_text_en.get(item)
    parts = [f"Item: {wording}" + (f" (English: {english})" if english else "")]
    if scale is not None:
        keyed = "reverse-keyed" if item in scale.reverse else "keyed"
        label = _english(scale.label, scale.label_en)
        parts.append(f"{keyed} item of scale {scale.name} ({label})")
    parts.append(f"the answer as given, {_answers(answers)}. {_missing_codes(codebook)}")
    constraints = {"minimum": answers.min, "maximum": answers.max}
    return Field(item, "number", "; ".join(parts), constraints)


def _scale(scale: Scale) -> list[Field]:
    reverse = (
        f", the reverse-keyed ({', '.join(scale.reverse)}) as "
        f"{scale.response_scale.min + scale.response_scale.max} minus the answer"
        if scale.reverse
        else ""
    )
    score = Field(
        scale.name,
        "number",
        f"Scale ({scale.level}): {_english(scale.label, scale.label_en)}. The mean of the valid "
        f"answers to its {len(scale.items)} items ({', '.join(scale.items)}){reverse}, when at "
        f"least {scale.min_valid:g} of them are answered; on the {_answers(scale.response_scale)}."
        " Empty: too few answers.",
        {"minimum": scale.response_scale.min, "maximum": scale.response_scale.max},
    )
    valid = Field(
        f"{scale.name}_n_valid",
        "integer",
        f"The answers to scale {scale.name}'s items that count (not missing, not a missing code).",
        {"minimum": 0, "maximum": len(scale.items)},
    )
    return [score, valid]


def stored_columns(path: Path) -> list[str]:
    """The columns of a stored table, without reading its rows."""
    if path.suffix == ".parquet":
        return pq.read_schema(path).names
    return list(pd.read_csv(path, nrows=0).columns)


def with_field_metadata(frame: pd.DataFrame, described: list[Field]) -> pa.Table:
    """`frame` as an Arrow table whose fields carry their descriptions (parquet field metadata:
    `description`, and the Frictionless field as JSON under `frictionless`)."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    by_name = {f.name: f for f in described}
    schema = pa.schema(
        [
            column.with_metadata(
                {
                    "description": by_name[column.name].description,
                    "frictionless": json.dumps(by_name[column.name].frictionless()),
                }
            )
            for column in table.schema
        ],
        metadata=table.schema.metadata,
    )
    return table.cast(schema)


def data_package(processed: Path, codebook: Codebook) -> dict:
    """The Frictionless data package (as a descriptor) of the contract's tables on disk under
    `processed`: per-wave folders in codebook order, then all_waves; paths relative to it."""
    folders = [(w, PER_WAVE) for w in codebook.waves] + [(ALL_WAVES, ALL_WAVES)]
    resources = []
    for folder, kind in folders:
        for table in (t for t in tables() if t.folder == kind):
            path = processed / folder / table.file
            if not path.exists():
                continue
            described = fields(table, stored_columns(path), codebook)
            resources.append(
                {
                    "name": re.sub(r"[^a-z0-9._-]+", "-", f"{folder}-{path.stem}".lower()),
                    "path": f"{folder}/{table.file}",
                    "format": path.suffix[1:],
                    "title": f"{folder}/{table.file}",
                    "description": f"{table.description} One row per {table.row}.",
                    "schema": {
                        "fields": [f.frictionless() for f in described],
                        "missingValues": ["", "nan"],  # a parquet NaN reads as nan
                    },
                }
            )
    return {
        "name": re.sub(r"[^a-z0-9._-]+", "-", codebook.instrument.lower()),
        "title": f"{codebook.instrument} {codebook.version}: shareable data",
        "description": "The shareable zone of the learning-culture scan pipeline: release "
        "files, scale scores and the results of every wave and across the waves.",
        "resources": resources,
    }


def readme(package: dict) -> str:
    """data/processed/README.md: the data package as a document, file by file."""
    lines = [
        f"# {package['title']}",
        "",
        "Generated by the pipeline from the codebook and the output contract "
        "(`pipeline/instrument/dictionary.yaml`); do not edit. The same descriptions are in "
        "`datapackage.json` (a Frictionless data package) and in each parquet file's field "
        "metadata.",
        "",
        "Every `.parquet` release file has a `.sav` beside it (`responses.sav`, "
        "`public_responses.sav`, `scale_scores.sav`, `all_waves/responses_long.sav`), with "
        "variable and value labels, measurement levels and the missing codes as SPSS "
        f"user-missing values; a value withheld for privacy is `{SUPPRESSED}` in parquet and "
        "CSV and a labelled user-missing code in `.sav`.",
        "",
    ]
    groups: dict[str, list[dict]] = {}
    for resource in package["resources"]:
        folder, file = resource["path"].split("/", 1)
        groups.setdefault(file if folder == ALL_WAVES else f"<wave>/{file}", []).append(resource)
    for title, resources in groups.items():
        waves = [r["path"].split("/")[0] for r in resources]
        lines += [f"## `{'all_waves/' + title if waves == [ALL_WAVES] else title}`", ""]
        if waves != [ALL_WAVES]:
            lines += [f"Waves: {', '.join(waves)}.", ""]
        columns = {f["name"]: f for r in resources for f in r["schema"]["fields"]}
        lines += [resources[0]["description"], "", "| column | type | description |"]
        lines.append("|---|---|---|")
        for f in columns.values():
            text = f["description"].replace("|", "\\|")
            lines.append(f"| `{f['name']}` | {f['type']} | {text} |")
        lines.append("")
    return "\n".join(lines)
