"""The codebook: one YAML file that defines the instrument.

Nothing about items, scales or columns is hard-coded anywhere else; every stage asks the
`Codebook`. `load_codebook` validates the file completely and fails with a `CodebookError` that
names the file and the offending key, so a steward can fix it without reading code.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipeline.lineage.settings import ALL_WAVES

LEVELS = ("culture", "individual", "outcome")
COLUMN_TYPES = ("string", "number", "datetime")
# The quality rules' reason codes, in the order they are reported (pipeline/validate/quality.py).
QUALITY_RULES = (
    "unreadable_value",
    "preview",
    "test",
    "unknown_company",
    "outside_window",
    "out_of_range",
    "incomplete",
    "speeder",
    "straightliner",
    "duplicate",
)
# The rules that guard the data contract itself: always applied, they cannot be switched off.
CONTRACT_RULES = ("unreadable_value", "out_of_range")
CFA_ESTIMATORS = ("ML", "MLR")
CFA_MISSING = ("fiml", "listwise")
MAX_EDITS = (0, 1)  # of `linkage.max_edits`: the rule is tested for one edit (tests/privacy)
# The roles a platform metadata column can play for the quality rules, and the type it must have.
PLATFORM_ROLES = {
    "started": "datetime",  # when the response began: outside_window; the duplicate order
    "ended": "datetime",  # when it was submitted: the duplicate order
    "duration": "number",  # seconds: speeder
    "percent_complete": "number",  # 0..100: incomplete; the duplicate order
    "completed": "number",  # 1 = completed: the completion expectation
    "preview": "number",  # non-zero = a preview run of the survey: preview
}


RESERVED_WAVE_NAMES = {ALL_WAVES}  # a wave's outputs go to <zone>/<wave>/
# a background value withheld for privacy in a release file; no value of the codebook may be it
SUPPRESSED = "[suppressed]"


class CodebookError(ValueError):
    """A malformed codebook; the message names the file and the key."""


@dataclass(frozen=True)
class ResponseScale:
    name: str
    min: int
    max: int
    labels: dict[int, str]


@dataclass(frozen=True)
class Scale:
    name: str
    label: str
    level: str
    response_scale: ResponseScale
    items: tuple[str, ...]
    reverse: tuple[str, ...]
    min_valid: float
    label_en: str | None = None  # an English label, where the codebook gives one

    @property
    def english(self) -> str:
        """The label English reports show: `label_en`, else the instrument's own."""
        return self.label_en or self.label


@dataclass(frozen=True)
class Background:
    """A background variable: coded (`codes`: export code -> value) or a number cut into `bands`.

    Either way the shareable zone holds its `levels`: the values (or band labels) after
    `generalise`, never the raw number.
    """

    name: str
    label: str
    codes: dict[int, str]  # empty for a number
    quasi_identifier: bool
    generalise: dict[str, str] = field(default_factory=dict)  # value -> coarser value
    coarser: dict[str, str] = field(default_factory=dict)  # level -> its public use file level
    bands: tuple[float, ...] = ()  # cut points of a number: [a, b) per band
    min: float | None = None  # the valid range of a number
    max: float | None = None
    label_en: str | None = None  # an English label, where the codebook gives one

    @property
    def english(self) -> str:
        """The label English reports show: `label_en`, else the instrument's own."""
        return self.label_en or self.label

    @property
    def is_number(self) -> bool:
        return bool(self.bands)

    @property
    def values(self) -> tuple[str, ...]:
        """The values before generalisation: the code labels, or the band labels of a number."""
        return band_labels(self.bands) if self.is_number else tuple(self.codes.values())

    @property
    def levels(self) -> tuple[str, ...]:
        """The values after generalisation, in codebook order: what the shareable data hold."""
        return tuple(dict.fromkeys(self.generalise.get(v, v) for v in self.values))

    @property
    def public_levels(self) -> tuple[str, ...]:
        """The levels after `coarser`: what the public use file holds."""
        return tuple(dict.fromkeys(self.coarser.get(v, v) for v in self.levels))


def band_labels(cuts: tuple[float, ...]) -> tuple[str, ...]:
    """Labels of the bands cut at `cuts`: (25, 35) -> "<25", "25-34", "35+" for whole numbers,
    "<2.5", "2.5-<3.5", "3.5+" otherwise."""
    whole = all(float(c).is_integer() for c in cuts)
    text = [f"{c:g}" for c in cuts]
    inner = [
        f"{a}-{int(b) - 1}" if whole else f"{a}-<{b_text}"
        for a, b, b_text in zip(text, cuts[1:], text[1:], strict=False)
    ]
    return (f"<{text[0]}", *inner, f"{text[-1]}+")


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    aliases: tuple[str, ...]


@dataclass(frozen=True)
class Wave:
    name: str
    label: str
    start: dt.date | None = None  # the fieldwork window, when the codebook gives one
    end: dt.date | None = None


@dataclass(frozen=True)
class Quality:
    """Thresholds of the validation stage; each has a default and can be set in `quality:`.
    `skip` lists rules switched off explicitly."""

    test_company_codes: tuple[str, ...] = ()
    test_respondent_codes: tuple[str, ...] = ()
    min_seconds_per_item: float = 2.0
    min_share_of_median_duration: float = 1 / 3
    straightline_min_share: float = 0.8
    straightline_min_items: float = 5  # with fewer items, one answer throughout is no signal
    min_completion_rate: float = 0.8
    max_item_missing_share: float = 0.25
    skip: tuple[str, ...] = ()


@dataclass(frozen=True)
class Management:
    """The management role of the company reports: respondents whose `variable` holds `value`
    (after generalisation) are management, those with another value staff."""

    variable: str
    value: str


@dataclass(frozen=True)
class Participation:
    """A person takes part in their company's trajectory when the survey's background `variable`
    holds `value`."""

    variable: str
    value: str


@dataclass(frozen=True)
class TrajectoryRegister:
    """The development trajectories per company (restricted zone, a file under raw/; its format
    in `pipeline/ingest/trajectories.py`): the types allowed (any when none are listed), and
    how a person's participation is known: from a survey background variable, from a
    participants list keyed by linkage code, or both."""

    file: str
    types: tuple[str, ...] = ()
    participation: Participation | None = None
    participants: str | None = None

    @property
    def knows_participants(self) -> bool:
        return self.participation is not None or self.participants is not None


@dataclass(frozen=True)
class CommunityRegister:
    """The learning communities (restricted zone, files under raw/; their format in
    `pipeline/ingest/communities.py`): the member companies per community with the wave each
    joined and left, the partner institutions, the partner kinds allowed (any when none are
    listed), and whether a company may belong to two communities at once."""

    file: str
    partners: str | None = None
    partner_kinds: tuple[str, ...] = ()
    exclusive: bool = True


@dataclass(frozen=True)
class Release:
    """The protection of one release file: within each company, every combination of `m`
    quasi-identifiers (None: all of them at once) is shared by at least `k` records."""

    k: int
    m: int | None


@dataclass(frozen=True)
class Anonymisation:
    """Disclosure control: `k` is the smallest group any report or count shows; the release
    files get their own k and m; local suppression blanks in `suppression_order` (least
    important first)."""

    k: int
    suppression_order: tuple[str, ...]
    scientific_use: Release = Release(5, 3)
    public_use: Release = Release(5, 3)


@dataclass(frozen=True)
class Models:
    """The multilevel models: each outcome scale on the culture scales (split within and between
    companies) and the background controls."""

    outcomes: tuple[str, ...]
    culture: tuple[str, ...]
    controls: tuple[str, ...]


@dataclass(frozen=True)
class Cfa:
    """How the measurement model and its invariance are estimated: `estimator` ML or MLR
    (robust: sandwich SEs, scaled chi-square, robust CFI/TLI/RMSEA), `missing` "fiml" (every
    answer counts, lavaan's missing = "ml") or "listwise" (complete rows only)."""

    estimator: str = "MLR"
    missing: str = "fiml"
    groups: tuple[str, ...] = ()  # background variables to test invariance across, per wave


@dataclass(frozen=True)
class Linkage:
    """Panel linkage within company (pipeline/privacy/linkage.py): a linkage code with no exact
    match in another wave is linked to a code at most `max_edits` edits (optimal string alignment)
    away, when that candidate is unique and no background variable in `consistent` contradicts."""

    max_edits: int = 1
    consistent: tuple[str, ...] = ()
    min_agreeing: int = 0  # of `consistent`, answered alike on both sides: the evidence needed


@dataclass(frozen=True)
class Codebook:
    path: Path
    instrument: str
    version: str
    respondent_id: str
    company_id: str
    direct_identifiers: tuple[str, ...]
    free_text: tuple[str, ...]
    missing_codes: dict[int, str]
    columns: dict[str, Column]
    waves: dict[str, Wave]
    response_scales: dict[str, ResponseScale]
    scales: dict[str, Scale]
    item_text: dict[str, str]
    background: dict[str, Background]
    item_text_en: dict[str, str] = field(default_factory=dict)  # English wording, where given
    platform: dict[str, str] = field(default_factory=dict)  # role -> column (PLATFORM_ROLES)
    company_register: str | None = None  # under raw/: the companies taking part
    # the register's columns with each company's name and contact (`scan deliver`), if declared
    register_name: str | None = None
    register_contact: str | None = None
    trajectories: TrajectoryRegister | None = None
    communities: CommunityRegister | None = None
    management: Management | None = None
    quality: Quality = field(default_factory=Quality)
    anonymisation: Anonymisation = field(default_factory=lambda: Anonymisation(5, ()))
    models: Models = field(default_factory=lambda: Models((), (), ()))
    cfa: Cfa = field(default_factory=Cfa)
    linkage: Linkage | None = None  # None: linkage codes link only when exactly the same
    unscaled: dict[str, ResponseScale] = field(default_factory=dict)  # items in no scale
    _scale_of: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def identifying(self) -> list[str]:
        """Every column that must stay in the restricted zone: identifiers and free text."""
        return [self.respondent_id, self.company_id, *self.direct_identifiers, *self.free_text]

    @property
    def items(self) -> list[str]:
        """All items: those of the scales in scale order, then the items in no scale."""
        return [*self._scale_of, *self.unscaled]

    def scale_of(self, item: str) -> Scale | None:
        """The scale of an item; None for an item in no scale."""
        name = self._scale_of.get(item)
        return None if name is None else self.scales[name]

    def response_scale_of(self, item: str) -> ResponseScale:
        scale = self.scale_of(item)
        return self.unscaled[item] if scale is None else scale.response_scale

    def item_label(self, item: str) -> str:
        """The item's wording, or its name when the codebook gives none."""
        return self.item_text.get(item, item)

    @property
    def column_order(self) -> list[str]:
        """The canonical columns of a response, in a fixed order."""
        return [*self.columns, *self.background, *self.items]

    def column_type(self, name: str) -> str:
        """'string', 'number' or 'datetime'; items and background variables are numbers."""
        return self.columns[name].type if name in self.columns else "number"

    def refused_wave(self, name: str) -> str:
        """Why a wave folder cannot be processed ("" when it can): its name is reserved, or the
        codebook does not declare it (so no fieldwork window, and no place among the waves)."""
        if name in RESERVED_WAVE_NAMES:
            return (
                f"wave folder {name!r}: the name is reserved for the cross-wave results; rename it"
            )
        if name not in self.waves:
            return (
                f"wave folder {name!r} is not declared under the codebook's waves "
                f"({', '.join(self.waves)}): declare it there, or move the folder out of raw/"
            )
        return ""

    @property
    def aliases(self) -> dict[str, str]:
        """Every name an export may use for a column, mapped to its canonical name."""
        mapping = {name: name for name in self.column_order}
        for column in self.columns.values():
            mapping.update({alias: column.name for alias in column.aliases})
        return mapping


def load_codebook(path: str | Path) -> Codebook:
    path = Path(path)
    if not path.is_file():
        raise CodebookError(f"{path}: codebook not found")
    return _parse(path, path.read_text(encoding="utf-8"))


@functools.lru_cache(maxsize=8)
def _parse(path: Path, text: str) -> Codebook:
    """The codebook of `text`, parsed once per content (a run reads it in every asset; the
    Codebook is frozen, so sharing it is safe)."""
    try:
        raw = yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as exc:
        raise CodebookError(f"{path}: not valid YAML: {exc}") from exc
    return _Parser(path).parse(raw)


class _StrictLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys silently; a codebook must not."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False):
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            line = key_node.start_mark.line + 1
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (line {line})", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


SECTIONS = (
    "instrument",
    "version",
    "identifiers",
    "free_text",
    "missing_codes",
    "columns",
    "platform",
    "waves",
    "registers",
    "quality",
    "response_scales",
    "scales",
    "items",
    "item_text",
    "item_text_en",
    "background",
    "management",
    "anonymisation",
    "models",
    "cfa",
    "linkage",
)


class _Parser:
    def __init__(self, path: Path):
        self.path = path

    def fail(self, key: str, message: str) -> CodebookError:
        return CodebookError(f"{self.path}: {key}: {message}")

    def get(self, mapping: Any, key: str, where: str, kind: type | tuple[type, ...] = object):
        if not isinstance(mapping, dict):
            raise self.fail(where, "expected a mapping")
        if key not in mapping:
            raise self.fail(f"{where}.{key}" if where else key, "required key is missing")
        value = mapping[key]
        if not isinstance(value, kind):
            expected = (
                kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            )
            raise self.fail(f"{where}.{key}" if where else key, f"expected {expected}")
        return value

    def names(self, value: Any, where: str) -> tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(where, "expected a list of names")
        duplicated = sorted({v for v in value if value.count(v) > 1})
        if duplicated:
            raise self.fail(where, f"duplicate names: {', '.join(duplicated)}")
        return tuple(value)

    def optional(self, raw: dict, key: str, kind: type, default: Any) -> Any:
        """An optional section: `default` when absent, else it must be a `kind`."""
        if key not in raw:
            return default
        return self.get(raw, key, "", kind)

    def parse(self, raw: Any) -> Codebook:
        if not isinstance(raw, dict):
            raise self.fail("(top level)", "expected a mapping of codebook sections")
        raw = {key: value for key, value in raw.items() if value is not None}  # `models:` alone
        unknown = [key for key in raw if key not in SECTIONS]
        if unknown:
            raise self.fail(
                str(unknown[0]), f"unknown section (known: {', '.join(sorted(SECTIONS))})"
            )
        response_scales = {
            name: self.response_scale(name, spec)
            for name, spec in self.get(raw, "response_scales", "", dict).items()
        }
        missing_codes = self.missing_codes(self.optional(raw, "missing_codes", dict, {}))
        for rs in response_scales.values():
            inside = [c for c in missing_codes if rs.min <= c <= rs.max]
            if inside:
                raise self.fail(
                    f"missing_codes.{inside[0]}",
                    f"lies inside response scale {rs.name} ({rs.min}..{rs.max})",
                )
        scales = {
            name: self.scale(name, spec, response_scales)
            for name, spec in self.get(raw, "scales", "", dict).items()
        }
        scale_of: dict[str, str] = {}
        for scale in scales.values():
            for item in scale.items:
                if item in scale_of:
                    raise self.fail(
                        f"scales.{scale.name}.items",
                        f"item {item!r} is already in scale {scale_of[item]}",
                    )
                scale_of[item] = scale.name
        unscaled = {
            name: self.unscaled_item(name, spec, response_scales)
            for name, spec in self.optional(raw, "items", dict, {}).items()
        }
        for item in unscaled:
            if item in scale_of:
                raise self.fail(f"items.{item}", f"is already an item of scale {scale_of[item]}")
        item_text, item_text_en = (
            self.wording(self.optional(raw, section, dict, {}), section, [*scale_of, *unscaled])
            for section in ("item_text", "item_text_en")
        )

        background = {
            name: self.background(name, spec)
            for name, spec in self.optional(raw, "background", dict, {}).items()
        }
        columns = {
            name: self.column(name, spec)
            for name, spec in self.optional(raw, "columns", dict, {}).items()
        }
        identifiers = self.get(raw, "identifiers", "", dict)
        respondent = self.get(identifiers, "respondent", "identifiers", str)
        company = self.get(identifiers, "company", "identifiers", str)
        direct = self.names(identifiers.get("direct", []), "identifiers.direct")
        free_text = self.names(self.optional(raw, "free_text", list, []), "free_text")
        for key, name in [
            ("identifiers.respondent", respondent),
            ("identifiers.company", company),
            *[("identifiers.direct", n) for n in direct],
            *[("free_text", n) for n in free_text],
        ]:
            if name in background or name in scale_of or name in unscaled:
                raise self.fail(key, f"{name!r} is an item or background variable")
            # identifiers and free text are string columns, declared or not
            columns.setdefault(name, Column(name, "string", ()))
            if columns[name].type != "string":
                raise self.fail(f"columns.{name}.type", "identifiers and free text are strings")
        self.check_unique_names([*scale_of, *unscaled], scale_of, background, columns, scales)

        waves = {
            str(name): self.wave(str(name), spec)
            for name, spec in self.get(raw, "waves", "", dict).items()
        }
        if not waves:
            raise self.fail("waves", "declare at least one wave")
        for name in set(waves) & RESERVED_WAVE_NAMES:
            raise self.fail(f"waves.{name}", "the name is reserved for the cross-wave results")
        return Codebook(
            path=self.path,
            instrument=str(self.get(raw, "instrument", "", str)),
            version=str(self.optional(raw, "version", (str, int, float), "1")),
            respondent_id=respondent,
            company_id=company,
            direct_identifiers=direct,
            free_text=free_text,
            missing_codes=missing_codes,
            columns=columns,
            waves=waves,
            response_scales=response_scales,
            scales=scales,
            item_text=item_text,
            item_text_en=item_text_en,
            background=background,
            platform=self.platform(self.optional(raw, "platform", dict, {}), columns),
            **self.registers(self.optional(raw, "registers", dict, {}), background),
            management=self.management(raw.get("management"), background),
            quality=self.quality(self.optional(raw, "quality", dict, {})),
            cfa=self.cfa(self.optional(raw, "cfa", dict, {}), background),
            anonymisation=self.anonymisation(raw.get("anonymisation", {}), background),
            models=self.models(raw.get("models", {}), scales, background),
            linkage=self.linkage(raw["linkage"], background) if "linkage" in raw else None,
            unscaled=unscaled,
            _scale_of=scale_of,
        )

    def unscaled_item(
        self, name: str, spec: Any, response_scales: dict[str, ResponseScale]
    ) -> ResponseScale:
        where = f"items.{name}"
        rs_name = self.get(spec, "response_scale", where, str)
        if rs_name not in response_scales:
            raise self.fail(f"{where}.response_scale", f"unknown response scale {rs_name!r}")
        return response_scales[rs_name]

    def platform(self, raw: dict, columns: dict[str, Column]) -> dict[str, str]:
        """Which declared column plays which role for the quality rules."""
        for role, name in raw.items():
            where = f"platform.{role}"
            if role not in PLATFORM_ROLES:
                raise self.fail(where, f"unknown role (known: {', '.join(PLATFORM_ROLES)})")
            if name not in columns:
                raise self.fail(where, f"{name!r} is not declared under columns")
            if columns[name].type != PLATFORM_ROLES[role]:
                raise self.fail(
                    where, f"{name!r} must be a {PLATFORM_ROLES[role]} column for this role"
                )
        return {str(role): str(name) for role, name in raw.items()}

    def registers(self, raw: dict, background: dict[str, Background]) -> dict[str, Any]:
        """`companies: <file>`, or `companies: {file, name, contact}` naming the register's
        columns with each company's name and contact person (for `scan deliver`); and
        `trajectories: {file, types, participation, participants}`; `communities: {file,
        partners, partner_kinds, exclusive}`."""
        known = ("companies", "trajectories", "communities")
        unknown = [key for key in raw if key not in known]
        if unknown:
            raise self.fail(
                f"registers.{unknown[0]}", f"unknown register (known: {', '.join(known)})"
            )
        found: dict[str, Any] = {}
        if "trajectories" in raw:
            found["trajectories"] = self.trajectories(raw["trajectories"], background)
        if "communities" in raw:
            found["communities"] = self.communities(raw["communities"])
        if "companies" not in raw:
            return found
        spec = self.get(raw, "companies", "registers", (str, dict))
        if isinstance(spec, str):
            return found | {"company_register": spec}
        where = "registers.companies"
        extra = [key for key in spec if key not in ("file", "name", "contact")]
        if extra:
            raise self.fail(f"{where}.{extra[0]}", "unknown key (known: file, name, contact)")
        columns = {
            key: self.get(spec, key, where, str) for key in ("name", "contact") if key in spec
        }
        return found | {
            "company_register": str(self.get(spec, "file", where, str)),
            "register_name": columns.get("name"),
            "register_contact": columns.get("contact"),
        }

    def trajectories(self, raw: Any, background: dict[str, Background]) -> TrajectoryRegister:
        where = "registers.trajectories"
        known = ("file", "types", "participation", "participants")
        if not isinstance(raw, dict):
            raise self.fail(where, "expected a mapping")
        extra = [key for key in raw if key not in known]
        if extra:
            raise self.fail(f"{where}.{extra[0]}", f"unknown key (known: {', '.join(known)})")
        participation = None
        if "participation" in raw:
            spec = self.get(raw, "participation", where, dict)
            variable = self.get(spec, "variable", f"{where}.participation", str)
            if variable not in background:
                raise self.fail(
                    f"{where}.participation.variable", f"{variable!r} is not a background variable"
                )
            value = str(self.get(spec, "value", f"{where}.participation", (str, int)))
            levels = background[variable].levels
            if value not in levels:
                raise self.fail(
                    f"{where}.participation.value",
                    f"{value!r} is not a value of {variable} ({', '.join(levels)})",
                )
            participation = Participation(variable, value)
        participants = raw.get("participants")
        if participants is not None and not isinstance(participants, str):
            raise self.fail(f"{where}.participants", "expected a file name")
        return TrajectoryRegister(
            file=str(self.get(raw, "file", where, str)),
            types=self.names(raw.get("types", []), f"{where}.types"),
            participation=participation,
            participants=participants,
        )

    def communities(self, raw: Any) -> CommunityRegister:
        where = "registers.communities"
        known = ("file", "partners", "partner_kinds", "exclusive")
        if not isinstance(raw, dict):
            raise self.fail(where, "expected a mapping")
        extra = [key for key in raw if key not in known]
        if extra:
            raise self.fail(f"{where}.{extra[0]}", f"unknown key (known: {', '.join(known)})")
        partners = raw.get("partners")
        if partners is not None and not isinstance(partners, str):
            raise self.fail(f"{where}.partners", "expected a file name")
        exclusive = raw.get("exclusive", True)
        if not isinstance(exclusive, bool):
            raise self.fail(f"{where}.exclusive", "expected true or false")
        return CommunityRegister(
            file=str(self.get(raw, "file", where, str)),
            partners=partners,
            partner_kinds=self.names(raw.get("partner_kinds", []), f"{where}.partner_kinds"),
            exclusive=exclusive,
        )

    def management(self, raw: Any, background: dict[str, Background]) -> Management | None:
        if raw is None:
            return None
        variable = self.get(raw, "variable", "management", str)
        if variable not in background:
            raise self.fail("management.variable", f"{variable!r} is not a background variable")
        value = str(self.get(raw, "value", "management", (str, int)))
        levels = background[variable].levels
        if value not in levels:
            raise self.fail(
                "management.value", f"{value!r} is not a value of {variable} ({', '.join(levels)})"
            )
        return Management(variable, value)

    def quality(self, raw: Any) -> Quality:
        if not isinstance(raw, dict):
            raise self.fail("quality", "expected a mapping")
        defaults = Quality()
        values: dict[str, Any] = {}
        for key, value in raw.items():
            if not hasattr(defaults, str(key)):
                raise self.fail(f"quality.{key}", "unknown setting")
            default = getattr(defaults, key)
            if isinstance(default, tuple):
                values[key] = tuple(str(v) for v in self.names(value, f"quality.{key}"))
            elif isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
                values[key] = float(value)
            else:
                raise self.fail(f"quality.{key}", "expected a number >= 0")
        unknown = [rule for rule in values.get("skip", ()) if rule not in QUALITY_RULES]
        if unknown:
            raise self.fail(
                "quality.skip", f"{unknown[0]!r} is not a rule ({', '.join(QUALITY_RULES)})"
            )
        guarding = [rule for rule in values.get("skip", ()) if rule in CONTRACT_RULES]
        if guarding:
            raise self.fail(
                "quality.skip", f"{guarding[0]} guards the data contract: always applied"
            )
        return Quality(**values)

    def cfa(self, raw: dict, background: dict[str, Background]) -> Cfa:
        choices = {"estimator": CFA_ESTIMATORS, "missing": CFA_MISSING}
        unknown = set(raw) - {*choices, "groups"}
        if unknown:
            raise self.fail(f"cfa.{sorted(unknown)[0]}", "unknown setting")
        for key, allowed in choices.items():
            if key in raw and raw[key] not in allowed:
                raise self.fail(f"cfa.{key}", f"expected one of {', '.join(allowed)}")
        groups = self.names(raw.get("groups", []), "cfa.groups")
        wrong = [name for name in groups if name not in background]
        if wrong:
            raise self.fail("cfa.groups", f"{', '.join(wrong)}: not a background variable")
        return Cfa(**{key: raw[key] for key in choices if key in raw}, groups=tuple(groups))

    def linkage(self, raw: Any, background: dict[str, Background]) -> Linkage:
        if not isinstance(raw, dict):
            raise self.fail("linkage", "expected a mapping with max_edits and consistent")
        unknown = set(raw) - {"max_edits", "consistent", "min_agreeing"}
        if unknown:
            raise self.fail(
                f"linkage.{sorted(unknown)[0]}",
                "unknown setting (known: max_edits, consistent, min_agreeing)",
            )
        max_edits = raw.get("max_edits", Linkage.max_edits)
        if isinstance(max_edits, bool) or max_edits not in MAX_EDITS:
            raise self.fail(
                "linkage.max_edits",
                "expected 0 (exact codes only) or 1 (one wrong, missing or extra character, or "
                "two neighbours swapped): more edits link different persons' codes of a few "
                "characters",
            )
        consistent = self.names(raw.get("consistent", []), "linkage.consistent")
        wrong = [name for name in consistent if name not in background]
        if wrong:
            raise self.fail("linkage.consistent", f"{', '.join(wrong)}: not a background variable")
        agreeing = raw.get("min_agreeing", min(1, len(consistent)))
        if (
            isinstance(agreeing, bool)
            or not isinstance(agreeing, int)
            or not 0 <= agreeing <= len(consistent)
        ):
            raise self.fail(
                "linkage.min_agreeing",
                f"expected a whole number from 0 to the {len(consistent)} consistent variables",
            )
        return Linkage(int(max_edits), consistent, agreeing)

    def anonymisation(self, raw: Any, background: dict[str, Background]) -> Anonymisation:
        if not isinstance(raw, dict):
            raise self.fail("anonymisation", "expected a mapping")
        k = self.at_least_two(raw.get("k", 5), "anonymisation.k")
        quasi = [name for name, b in background.items() if b.quasi_identifier]
        order = self.names(raw.get("suppression_order", quasi), "anonymisation.suppression_order")
        unknown = [name for name in order if name not in quasi]
        if unknown:
            raise self.fail(
                "anonymisation.suppression_order",
                f"{', '.join(unknown)}: not a quasi-identifying background variable",
            )
        left_out = [name for name in quasi if name not in order]
        if left_out:
            raise self.fail(
                "anonymisation.suppression_order",
                f"quasi-identifiers missing: {', '.join(left_out)}",
            )
        releases = {
            name: self.release(raw.get(name, {}), f"anonymisation.{name}", k, m)
            for name, m in (("scientific_use", 2), ("public_use", 3))
        }
        return Anonymisation(k, order, **releases)

    def release(self, raw: Any, where: str, k: int, m: int) -> Release:
        """A release file's k (default: the codebook's k) and m (a number, or `all`)."""
        if not isinstance(raw, dict):
            raise self.fail(where, "expected a mapping with k and m")
        unknown = sorted(set(raw) - {"k", "m"})
        if unknown:
            raise self.fail(where, f"unknown keys: {', '.join(map(str, unknown))} (expected k, m)")
        m = raw.get("m", m)
        if m != "all":
            m = self.at_least_one(m, f"{where}.m", "or all")
        return Release(self.at_least_two(raw.get("k", k), f"{where}.k"), None if m == "all" else m)

    def at_least_two(self, value: Any, where: str) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or value < 2:
            raise self.fail(where, "expected a whole number >= 2")
        return value

    def at_least_one(self, value: Any, where: str, alternative: str) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise self.fail(where, f"expected a whole number >= 1 {alternative}")
        return value

    def models(
        self, raw: Any, scales: dict[str, Scale], background: dict[str, Background]
    ) -> Models:
        """By default every outcome scale on every culture scale, without controls."""
        if not isinstance(raw, dict):
            raise self.fail("models", "expected a mapping")
        unknown = set(raw) - {"outcomes", "culture", "controls"}
        if unknown:
            raise self.fail(f"models.{sorted(unknown)[0]}", "unknown setting")
        chosen = {}
        for key, level in (("outcomes", "outcome"), ("culture", "culture")):
            default = [name for name, scale in scales.items() if scale.level == level]
            chosen[key] = self.names(raw.get(key, default), f"models.{key}")
            wrong = [n for n in chosen[key] if n not in scales or scales[n].level != level]
            if wrong:
                raise self.fail(
                    f"models.{key}", f"{', '.join(wrong)}: not a scale of level {level}"
                )
        controls = self.names(raw.get("controls", []), "models.controls")
        wrong = [name for name in controls if name not in background]
        if wrong:
            raise self.fail("models.controls", f"{', '.join(wrong)}: not a background variable")
        return Models(chosen["outcomes"], chosen["culture"], controls)

    def missing_codes(self, raw: dict) -> dict[int, str]:
        for code in raw:
            if not isinstance(code, int) or isinstance(code, bool):
                raise self.fail(f"missing_codes.{code}", "missing codes are integers")
        return {int(code): str(label) for code, label in raw.items()}

    def response_scale(self, name: str, spec: Any) -> ResponseScale:
        where = f"response_scales.{name}"
        low = self.get(spec, "min", where, int)
        high = self.get(spec, "max", where, int)
        if low >= high:
            raise self.fail(where, f"min ({low}) must be below max ({high})")
        labels = spec.get("labels", {})
        if not isinstance(labels, dict):
            raise self.fail(f"{where}.labels", "expected a mapping of code: label")
        outside = [c for c in labels if not isinstance(c, int) or not low <= c <= high]
        if outside:
            raise self.fail(f"{where}.labels", f"code {outside[0]!r} is outside {low}..{high}")
        return ResponseScale(name, low, high, {int(c): str(v) for c, v in labels.items()})

    def scale(self, name: str, spec: Any, response_scales: dict[str, ResponseScale]) -> Scale:
        where = f"scales.{name}"
        if not isinstance(spec, dict):
            raise self.fail(where, "expected a mapping")
        if "response_scale" not in spec:
            raise self.fail(f"{where}.response_scale", "missing response scale")
        rs_name = spec["response_scale"]
        if rs_name not in response_scales:
            known = ", ".join(response_scales) or "none"
            raise self.fail(
                f"{where}.response_scale",
                f"unknown response scale {rs_name!r} (declared: {known})",
            )
        level = spec.get("level", "individual")
        if level not in LEVELS:
            raise self.fail(f"{where}.level", f"{level!r} is not one of {', '.join(LEVELS)}")
        items = self.names(self.get(spec, "items", where, list), f"{where}.items")
        if not items:
            raise self.fail(f"{where}.items", "a scale needs at least one item")
        reverse = self.names(spec.get("reverse", []), f"{where}.reverse")
        for item in reverse:
            if item not in items:
                raise self.fail(
                    f"{where}.reverse",
                    f"reverse item {item!r} is not an item of scale {name} "
                    f"(items: {', '.join(items)})",
                )
        min_valid = spec.get("min_valid", 0.5)
        if isinstance(min_valid, bool) or not isinstance(min_valid, int | float):
            raise self.fail(f"{where}.min_valid", "expected a share in (0, 1]")
        if not 0 < min_valid <= 1:
            raise self.fail(f"{where}.min_valid", f"{min_valid} is not a share in (0, 1]")
        return Scale(
            name=name,
            label=str(spec.get("label", name)),
            level=level,
            response_scale=response_scales[rs_name],
            items=items,
            reverse=reverse,
            min_valid=float(min_valid),
            label_en=self.label_en(spec, where),
        )

    def background(self, name: str, spec: Any) -> Background:
        where = f"background.{name}"
        if not isinstance(spec, dict):
            raise self.fail(where, "expected a mapping")
        kind = spec.get("type", "codes")
        if kind == "number":
            codes: dict[int, str] = {}
            bands = self.bands(spec, where)
            values = band_labels(bands)
        elif kind == "codes":
            bands = ()
            codes = self.codes(self.get(spec, "values", where, (list, dict)), f"{where}.values")
            values = tuple(codes.values())
        else:
            raise self.fail(f"{where}.type", f"{kind!r} is not one of codes, number")
        generalise = spec.get("generalise", {})
        if not isinstance(generalise, dict):
            raise self.fail(f"{where}.generalise", "expected a mapping of value: coarser value")
        unknown = [str(v) for v in generalise if str(v) not in values]
        if unknown:
            raise self.fail(f"{where}.generalise", f"unknown values: {', '.join(unknown)}")
        levels = tuple(dict.fromkeys(str(generalise.get(v, v)) for v in values))
        coarser = spec.get("coarser", {})
        if not isinstance(coarser, dict):
            raise self.fail(f"{where}.coarser", "expected a mapping of level: coarser level")
        unknown = [str(v) for v in coarser if str(v) not in levels]
        if unknown:
            raise self.fail(
                f"{where}.coarser",
                f"unknown levels: {', '.join(unknown)} (expected values after generalise: "
                f"{', '.join(levels)})",
            )
        if SUPPRESSED in {*values, *levels, *map(str, coarser.values())}:
            raise self.fail(where, f"{SUPPRESSED!r} is reserved for values withheld for privacy")
        low, high = (spec.get(bound) for bound in ("min", "max"))
        for bound, value in (("min", low), ("max", high)):
            if value is not None and (kind != "number" or not _is_number(value)):
                raise self.fail(f"{where}.{bound}", "a range is for numbers (type: number)")
        return Background(
            name=name,
            label=str(spec.get("label", name)),
            codes=codes,
            quasi_identifier=bool(spec.get("quasi_identifier", False)),
            generalise={str(k): str(v) for k, v in generalise.items()},
            coarser={str(k): str(v) for k, v in coarser.items()},
            bands=bands,
            min=None if low is None else float(low),
            max=None if high is None else float(high),
            label_en=self.label_en(spec, where),
        )

    def label_en(self, spec: dict, where: str) -> str | None:
        label = spec.get("label_en")
        if label is not None and (not isinstance(label, str) or not label.strip()):
            raise self.fail(f"{where}.label_en", "expected an English label")
        return label

    def wording(self, raw: dict, section: str, items: list[str]) -> dict[str, str]:
        """`item_text` or `item_text_en`: item -> wording, in item order."""
        for item, text in raw.items():
            if item not in items:
                raise self.fail(f"{section}.{item}", "unknown item (not in a scale or items)")
            if not isinstance(text, str) or not text.strip():
                raise self.fail(f"{section}.{item}", "expected the item's wording")
        return {item: raw[item] for item in items if item in raw}

    def codes(self, raw: list | dict, where: str) -> dict[int, str]:
        """`values` as a list of labels (codes 1..n), a list of whole numbers (the codes
        themselves) or a mapping code: label."""
        if isinstance(raw, dict):
            wrong = [c for c in raw if isinstance(c, bool) or not isinstance(c, int)]
            if wrong:
                raise self.fail(where, f"code {wrong[0]!r} is not a whole number")
            codes = {int(c): str(label) for c, label in raw.items()}
        elif raw and all(isinstance(v, int) and not isinstance(v, bool) for v in raw):
            codes = {int(v): str(v) for v in raw}
        else:
            codes = {i + 1: str(v) for i, v in enumerate(raw)}
        if not codes:
            raise self.fail(where, "needs at least one value")
        self.names(list(codes.values()), where)  # labels are unique
        if len(codes) < len(raw):
            raise self.fail(where, "duplicate codes")
        return codes

    def bands(self, spec: dict, where: str) -> tuple[float, ...]:
        cuts = self.get(spec, "bands", where, list)
        if not cuts or not all(_is_number(c) for c in cuts):
            raise self.fail(f"{where}.bands", "expected a list of cut points (numbers)")
        if any(a >= b for a, b in zip(cuts, cuts[1:], strict=False)):
            raise self.fail(f"{where}.bands", "cut points must increase")
        return tuple(float(c) for c in cuts)

    def column(self, name: str, spec: Any) -> Column:
        where = f"columns.{name}"
        kind = self.get(spec, "type", where, str)
        if kind not in COLUMN_TYPES:
            raise self.fail(f"{where}.type", f"{kind!r} is not one of {', '.join(COLUMN_TYPES)}")
        aliases = self.names(spec.get("aliases", []), f"{where}.aliases")
        return Column(name, kind, aliases)

    def wave(self, name: str, spec: Any) -> Wave:
        where = f"waves.{name}"
        if spec is None or isinstance(spec, str | int | float):  # the short form: a label
            return Wave(name, name if spec is None else str(spec))
        if not isinstance(spec, dict):
            raise self.fail(where, "expected a label or a mapping with label, start and end")
        if ("start" in spec) != ("end" in spec):
            raise self.fail(where, "give both start and end of the fieldwork window, or neither")
        if "start" not in spec:
            return Wave(name, str(spec.get("label", name)))
        start = self.get(spec, "start", where, dt.date)
        end = self.get(spec, "end", where, dt.date)
        if start > end:
            raise self.fail(where, f"start {start} is after end {end}")
        return Wave(name, str(spec.get("label", name)), start, end)

    def check_unique_names(self, items, scale_of, background, columns, scales) -> None:
        """Items, background variables, columns, aliases and scales share one namespace."""
        owner: dict[str, str] = {}
        entries = [
            *[
                (item, f"scales.{scale_of[item]}.items" if item in scale_of else f"items.{item}")
                for item in items
            ],
            *[(name, f"background.{name}") for name in background],
            *[(name, f"columns.{name}") for name in columns],
            *[
                (alias, f"columns.{c.name}.aliases")
                for c in columns.values()
                for alias in c.aliases
            ],
            *[(name, f"scales.{name}") for name in scales],
        ]
        for name, key in entries:
            if name in owner:
                raise self.fail(key, f"duplicate name {name!r}, also used at {owner[name]}")
            owner[name] = key


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
