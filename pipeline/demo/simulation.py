"""The simulated world of the demo scan: a panel of companies and their employees with a planted
multilevel structure, the instrument's measurement model, and each wave's responses with the
data-quality problems and identifiers planted in them, all drawn from one seed (`Simulation`).
The wave layouts live here too: what a break-off leaves answered depends on the question order.

When the codebook declares a trajectory register (registers.trajectories) and the scan has two
waves or more, some companies run a development trajectory with a known effect on the latents
(`Simulation._plant_trajectories`); otherwise there are no trajectories and no effects.
When it declares a community register (registers.communities), some companies present from the
first wave form learning communities with a known level and growth on the latents
(`Simulation._plant_communities`), drawn from a random stream of their own: every other draw is
the same with or without them.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np
from scipy.special import ndtr

from pipeline.instrument.codebook import Codebook

PROBLEMS = (
    "duplicate",
    "preview",
    "test",
    "incomplete",
    "speeder",
    "straightliner",
    "out_of_range",
    "unknown_company",
    "outside_window",
)

TEST_COMPANY = "TEST"
SECONDS_PER_ITEM_SPEEDER = 2
XLSX_COMPANY_HEADER = "bedrijf"
COMPANY_NUMBERS = 150  # company codes C001..C150, or three per company in a larger scan
COMPANY_IPS = 245  # companies' office IPs in 198.51.100.0/24; beyond that, 2001:db8:c0::/48
WIDE_CODES_AFTER = 4000  # linkage codes in use before random letters replace name prefixes
TRAJECTORY_TYPES = ("werkplekleren", "leiderschapsprogramma", "leerlijn")  # codebook lists none
TARGET_GROUPS = ("alle medewerkers", "productie", "werkvoorbereiding")
TRAJECTORY_DAYS = (365, 540)  # length of a trajectory that has ended
RUNNING_SHARE = 1 / 3  # of the trajectories still running: no end date
COMMUNITY_STREAM = 0x1C0  # the communities' random stream: np.random.default_rng([seed, this])
MIN_REPORTED_MEMBERS = 5  # member companies with k respondents a community needs to be reported
RELIABLE_RESPONDENTS = 2  # a large community's member expects at least this times k respondents


@dataclass(frozen=True)
class Params:
    """Generator parameters; all of them are recorded in truth.json."""

    companies: int = 40
    late_joiners: int = 4  # join at the second wave
    size_median: float = 22.0  # employees, log-normal, clipped to size_range
    size_sigma: float = 0.75
    size_range: tuple[int, int] = (5, 60)
    small_companies: int = 2  # the smallest drawn are made the smallest size: under k most waves
    leave_rate: float = 0.17  # share of employees gone by the next wave, replaced by new hires
    response_rate: float = 0.70  # mean; each company draws its own, Beta(20 rate, 20 (1 - rate))
    latent_company_share: float = 0.11  # of each culture latent; observed ICC(1) is about .10
    latent_trait_share: float = 0.55  # stable person part; the rest is occasion noise
    culture_correlation: float = 0.60  # between culture latents, at both levels
    culture_to_individual: float = 0.35  # standardised effect of mean culture on individual scales
    culture_to_outcome: float = 0.35  # on outcome scales, within and between companies alike
    individual_to_outcome: float = 0.25
    wave_effect: float = 0.15  # SD per wave, on culture and outcome latents
    # Development trajectories (only when the codebook declares registers.trajectories), one per
    # company; the effects are latent SDs added from the first wave on or after the start.
    trajectory_share: float = 0.4  # of the companies present from the first wave
    trajectory_culture_effect: float = 0.30  # every culture latent of every employee
    trajectory_outcome_effect: float = 0.10  # every outcome latent of every employee
    participant_outcome_effect: float = 0.30  # extra on the outcome latents of participants
    participant_share: float = 0.35  # of a trajectory company's employees, drawn at hire
    # Learning communities (only when the codebook declares registers.communities), of companies
    # present from the first wave; the effects are latent SDs of every employee of a company that
    # is a member in any wave, whatever the wave it joined or left (w: the wave's index).
    community_sizes: tuple[int, ...] = (10, 7, 6, 3)  # under MIN_REPORTED_MEMBERS: not reported
    community_culture_level: float = 0.20  # every culture latent, in every wave
    community_culture_growth: float = 0.15  # every culture latent, times w
    community_outcome_growth: float = 0.10  # every outcome latent, times w
    loading_range: tuple[float, float] = (0.68, 0.78)
    agreement: float = 0.65  # category shares ~ Binomial(k - 1, agreement): skewed to agree
    dont_know_rate: float = 0.016  # highest missing code (9, weet niet/n.v.t.)
    dont_know_scales: tuple[str, ...] = ("EN",)  # scales where people more often do not know
    dont_know_scale_rate: float = 0.06
    unanswered_rate: float = 0.01  # lowest missing code (-99, seen but unanswered)
    duplicate_rate: float = 0.02
    previews: int = 3
    tests: int = 2
    incomplete_rate: float = 0.04
    speeder_rate: float = 0.02
    straightliner_rate: float = 0.02
    out_of_range_rate: float = 0.01
    unknown_company_rate: float = 0.01
    outside_window_rate: float = 0.01
    prize_draw_rate: float = 0.10  # fills in name and/or e-mail
    comment_rate: float = 0.15
    identifying_comment_rate: float = 0.03
    code_variant_rate: float = 0.05  # resp_code typed in another case or with spaces
    code_typo_rate: float = 0.03  # real typos, in repeat responses


# --- invented names ------------------------------------------------------------------------

MALE = (
    "Jan", "Pieter", "Kees", "Henk", "Johan", "Mark", "Dennis", "Erik", "Bas", "Tim", "Ruud",
    "Sander", "Martijn", "Jeroen", "Niels", "Thijs", "Daan", "Joost", "Wim", "Gerrit", "Bram",
    "Luuk", "Stijn", "Rik", "Koen", "Daniël", "Raphaël", "René", "André", "Noël", "Jürgen",
    "Mehmet", "Tomasz", "Piotr", "Sjoerd", "Frank",
)  # fmt: skip
FEMALE = (
    "Anna", "Sanne", "Lotte", "Eva", "Inge", "Marieke", "Fleur", "Linda", "Esther", "Zoë",
    "Chloë", "Loïs", "Noëlle", "Iris", "Anouk", "Petra", "Femke", "Agnieszka",
)  # fmt: skip
SURNAMES = (
    "de Vries", "Jansen", "van Dijk", "Bakker", "Visser", "Smit", "Meijer", "de Boer", "Mulder",
    "de Groot", "Bos", "Vos", "Peters", "Hendriks", "van Leeuwen", "Dekker", "Brouwer", "de Wit",
    "Dijkstra", "Smits", "de Graaf", "van der Meer", "van der Linden", "Kok", "Jacobs", "de Haan",
    "Vermeulen", "van den Berg", "van der Heijden", "Schouten", "van Beek", "Willems", "van Vliet",
    "Hoekstra", "Maas", "Verhoeven", "Koster", "van Dam", "Prins", "Blom", "Huisman", "Kuipers",
    "Postma", "Kramer", "Wouters", "Nowak", "Özdemir", "Kowalski", "Brüggemann", "Geboers",
)  # fmt: skip
MOTHERS = (
    "Maria", "Johanna", "Cornelia", "Anna", "Wilhelmina", "Elisabeth", "Hendrika", "Geertruida",
    "Margaretha", "Catharina", "Petronella", "Adriana", "Ingrid", "Monique", "Ria", "Truus",
    "Els", "Greet", "Tineke", "Joke", "Yvonne", "Diana", "Sandra", "Bożena",
)  # fmt: skip
BIRTHPLACES = (
    "Enschede", "Hengelo", "Almelo", "Deventer", "Zwolle", "Apeldoorn", "Arnhem", "Nijmegen",
    "Eindhoven", "Tilburg", "Utrecht", "Amsterdam", "Rotterdam", "Groningen", "Leeuwarden", "Oss",
    "Helmond", "Venlo", "Doetinchem", "Oldenzaal", "Breda", "Assen", "Emmen", "Kraków", "Izmir",
)  # fmt: skip
SECTORS = {
    "metaal": ("Metaaltechniek", "Metaalbewerking", "Plaatwerk", "Staalbouw"),
    "elektrotechniek": ("Elektrotechniek", "Elektro", "Besturingstechniek"),
    "installatietechniek": ("Installatietechniek", "Installaties", "Klimaattechniek"),
    "machinebouw": ("Machinebouw", "Machinefabriek", "Constructie"),
    "kunststof": ("Kunststoffen", "Kunststoftechniek", "Composieten"),
}
LEGAL_FORMS = ("B.V.", "B.V.", "B.V.", "& Zn. B.V.", "Groep B.V.")
EMAIL_DOMAINS = ("example.com", "example.nl", "voorbeeld.nl")
LANGUAGES = {"NL": 0.90, "EN": 0.04, "PL": 0.04, "DE": 0.02}
FEMALE_VALUES = {"vrouw"}  # a background value that makes the invented first name female

COMMUNITY_NAMES = (
    "Leerkring Slim Produceren", "Leergemeenschap Lassen en Verbinden",
    "Leernetwerk Installatietechniek Oost", "Leerkring Vakmanschap Hunzedal",
    "Leergemeenschap Kunststof en Composiet", "Leernetwerk Onderhoud en Storingen",
)  # fmt: skip
# Partner institutions per kind, invented: {place} and {trade} filled in by `_partner_name`.
PARTNER_NAMES = {
    "mbo": "ROC {place}",
    "hbo": "Hogeschool {place}",
    "branche": "Brancheplatform {trade} {place}",
    "opleidingsfonds": "Opleidingsfonds {trade}",
}
PARTNER_PLACES = ("Oostwaard", "Hunzedal", "Vechtzoom", "Kanaalstreek", "Dinkelmond", "Reggeland")
PARTNER_TRADES = ("Maakindustrie", "Plaat en Profiel", "Installatievak", "Verbindingstechniek")

# Plausible shares per background value; a variable not listed here, or listed with another
# number of values, is drawn uniformly. `department` is company-specific (a few per company).
BACKGROUND_WEIGHTS = {
    "age_band": (0.10, 0.24, 0.24, 0.25, 0.17),
    "tenure_band": (0.10, 0.17, 0.22, 0.21, 0.30),
    "education": (0.12, 0.25, 0.40, 0.18, 0.05),
    "function_group": (0.46, 0.25, 0.14, 0.11, 0.04),
    "department": (0.45, 0.15, 0.12, 0.12, 0.08, 0.08),
    "leader": (0.85, 0.15),
    "contract": (0.80, 0.13, 0.04, 0.03),
    "gender": (0.86, 0.12, 0.02),
    "trajectory": (0.70, 0.30),  # replaced by who takes part when it is the participation variable
}
COMPANY_SPECIFIC = {"department"}

COMMENTS = (
    "Goed initiatief, ik ben benieuwd naar de uitkomsten.",
    "Meer tijd voor opleiding zou fijn zijn.\nNu gaat de productie altijd voor.",
    'Wat wordt bedoeld met "leerdoelen"? Die vraag vond ik lastig.',
    "De cursus hydrauliek was erg goed; graag een vervolg.",
    "Te veel vragen, maar oké.",
    "Ik mis vragen over veiligheid (VCA).",
    "Coördinatie tussen de afdelingen kan beter, vooral bij storingen.",
    "Ideeën van de werkvloer worden vaak niet opgepakt.",
    "Sommige vragen zijn niet van toepassing op uitzendkrachten.",
    'Mijn leidinggevende is net nieuw, dus "weet niet" bij die vragen.',
    "Graag de resultaten per afdeling terugkoppelen, niet alleen voor het hele bedrijf.",
    "Naïeve vraag misschien, maar krijgen we de uitslag te zien?",
    "Ik werk in ploegendienst, trainingen zijn altijd overdag.\nDat is lastig.\nE-learning?",
    "Prima enquête!",
    "Wij hebben geen stagiairs, dus die vraag is n.v.t.",
    "Sinds de nieuwe lasrobot leren we veel van de leverancier, die komt één keer per maand.",
    "Privé maakt avondcursussen lastig, ik zou liever onder werktijd leren.",
    "Financiële ruimte voor opleiding is er wel, tijd niet.",
)
# {name} and {email} are the respondent's, {colleague} another employee's name.
IDENTIFYING_COMMENTS = (
    "Bel me gerust, {name}, {email}",
    "Voor vragen kunt u mailen naar {email}",
    "Ik heb veel geleerd van {colleague}, die verdient een compliment!",
    "Groeten,\n{name}",
    'Ik wil graag meedoen aan het vervolg.\n"{name}" ({email})',
    "{colleague} en ik willen graag de cursus PLC-programmeren volgen, mail naar {email}.",
)

# --- export layouts --------------------------------------------------------------------------

# Qualtrics metadata: header, canonical column, question text (CSV row 2), ImportId (row 3).
QUALTRICS_META = (
    ("StartDate", "start_date", "Start Date", "startDate"),
    ("EndDate", "end_date", "End Date", "endDate"),
    ("Status", "status", "Response Type", "status"),
    ("IPAddress", "ip_address", "IP Address", "ipAddress"),
    ("Progress", "progress", "Progress", "progress"),
    ("Duration (in seconds)", "duration_s", "Duration (in seconds)", "duration"),
    ("Finished", "finished", "Finished", "finished"),
    ("RecordedDate", "recorded_date", "Recorded Date", "recordedDate"),
    ("ResponseId", "response_id", "Response ID", "_recordId"),
    ("LocationLatitude", "location_latitude", "Location Latitude", "locationLatitude"),
    ("LocationLongitude", "location_longitude", "Location Longitude", "locationLongitude"),
    ("DistributionChannel", "distribution_channel", "Distribution Channel", "distributionChannel"),
    ("UserLanguage", "lang", "User Language", "userLanguage"),
)
CONTACT = {
    "name": "Naam (optioneel, voor de verloting)",
    "email": "E-mailadres (optioneel, voor de verloting)",
    "comments": "Heeft u nog opmerkingen of suggesties?",
}


@dataclass(frozen=True)
class Layout:
    """How one wave's export looks: format, metadata columns, order, company column."""

    ext: str
    meta: tuple[str, ...]  # Qualtrics metadata headers, in order
    background_first: bool  # asked before the items (matters for break-offs)
    company_header: str | None  # None: the codebook's company column


LAYOUTS = (
    Layout(
        "sav",
        ("StartDate", "EndDate", "Status", "IPAddress", "Progress", "Duration (in seconds)",
         "Finished", "ResponseId", "UserLanguage"),
        background_first=True,
        company_header=None,
    ),
    Layout("csv", tuple(m[0] for m in QUALTRICS_META), background_first=False, company_header=None),
    Layout(
        "xlsx",
        tuple(m[0] for m in QUALTRICS_META if not m[0].startswith("Location")),
        background_first=False,
        company_header=XLSX_COMPANY_HEADER,
    ),
)  # fmt: skip


# --- the simulated world ---------------------------------------------------------------------


@dataclass
class Person:
    uid: str
    company: Company
    trait: np.ndarray  # stable part of every scale's latent
    background: dict[str, int]
    name: str
    email: str
    resp_code: str
    lang: str
    ip: str
    location: tuple[float, float]
    waves_answered: int = 0
    participant: bool = False  # takes part in the company's trajectory (drawn at hire)


@dataclass(frozen=True)
class Trajectory:
    """A company's development trajectory, as the trajectory register lists it."""

    trajectory_id: str
    type: str
    start: dt.date
    end: dt.date | None  # None: still running
    target_group: str


@dataclass(frozen=True)
class Membership:
    """A company's membership of a community, as the community register lists it."""

    company: Company
    joined: int  # index of the first wave it is a member in
    left: int | None = None  # index of the first wave it is no longer a member in; None: still


@dataclass(frozen=True)
class Community:
    """A learning community, as the community register and its partners list give it."""

    community_id: str
    name: str
    members: tuple[Membership, ...]
    partners: tuple[tuple[str, str], ...]  # (kind, name)


@dataclass
class Company:
    code: str
    name: str
    sector: str
    joined: int  # index of the wave it joined
    size: int
    effect: np.ndarray  # company part of each culture latent
    departments: tuple[int, ...]
    response_rate: float
    ip: str
    location: tuple[float, float]
    staff: list[Person] = field(default_factory=list)
    launch: int = 0  # day of the current wave's window when the company sends the link
    trajectory: Trajectory | None = None
    community: str | None = None  # the id of the community it is a member of in any wave


@dataclass
class Row:
    """One raw export row, in canonical terms, with what was planted in it."""

    person: Person | None
    company_true: str
    company_code: str
    resp_code: str
    start: dt.datetime
    duration: int
    items: np.ndarray  # float codes, NaN = not answered
    background: dict[str, float]
    ip: str
    location: tuple[float, float]
    lang: str
    status: int = 0
    progress: int = 100
    channel: str = "anonymous"
    name: str = ""
    email: str = ""
    comments: str = ""
    response_id: str = ""
    planned: set[str] = field(default_factory=set)
    identifiers: list[str] = field(default_factory=list)

    @property
    def end(self) -> dt.datetime:
        return self.start + dt.timedelta(seconds=self.duration)


class _Instrument:
    """The codebook's items with the measurement model drawn once for all waves."""

    def __init__(self, codebook: Codebook, params: Params, rng: np.random.Generator):
        self.items = codebook.items
        self.scales = list(codebook.scales.values())
        names = list(codebook.scales)
        self.scale_index = np.array([names.index(codebook.scale_of(i).name) for i in self.items])
        self.level = {
            level: [k for k, s in enumerate(self.scales) if s.level == level]
            for level in ("culture", "individual", "outcome")
        }
        scale_of = [codebook.scale_of(i) for i in self.items]
        self.low = np.array([s.response_scale.min for s in scale_of], dtype=float)
        self.high = np.array([s.response_scale.max for s in scale_of], dtype=float)
        self.reverse = np.array([i in s.reverse for i, s in zip(self.items, scale_of, strict=True)])
        self.thresholds = [
            _thresholds(s.response_scale.max - s.response_scale.min + 1, params.agreement)
            for s in scale_of
        ]
        self.loadings = rng.uniform(*params.loading_range, size=len(self.items))
        self.intercepts = rng.normal(0.0, 0.2, size=len(self.items))
        self.dont_know = max(codebook.missing_codes)
        self.unanswered = min(codebook.missing_codes)
        heavy = [s.name in params.dont_know_scales for s in scale_of]
        self.dont_know_rate = np.where(heavy, params.dont_know_scale_rate, params.dont_know_rate)

    def answers(self, latent: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Item codes: loading x latent + noise, cut into categories, reverse-keyed flipped."""
        lam = self.loadings
        noise = rng.standard_normal(len(self.items))
        y = lam * latent[self.scale_index] + np.sqrt(1 - lam**2) * noise + self.intercepts
        cuts = [np.searchsorted(t, v) for t, v in zip(self.thresholds, y, strict=True)]
        codes = self.low + np.array(cuts)
        return np.where(self.reverse, self.low + self.high - codes, codes)

    def expected_score(self, k: int, latent: np.ndarray) -> np.ndarray:
        """The expected score of scale k given its latent, per latent value: the mean over its
        items of E[code | latent] = low + sum_j P(y > cut_j), y as `answers` draws it. The
        scoring recodes reverse-keyed items back, and missing codes (equally likely for every
        item of a scale, whatever the latent) drop out of the mean."""
        latent = np.asarray(latent, dtype=float)
        items = np.flatnonzero(self.scale_index == k)
        total = np.zeros(latent.shape)
        for i in items:
            lam, cuts = self.loadings[i], self.thresholds[i]
            z = (lam * latent[..., None] + self.intercepts[i] - cuts) / np.sqrt(1 - lam**2)
            total += self.low[i] + ndtr(z).sum(axis=-1)
        return total / len(items)

    def random_answers(self, rng: np.random.Generator) -> np.ndarray:
        return rng.integers(self.low.astype(int), self.high.astype(int) + 1).astype(float)

    def valid(self, items: np.ndarray) -> np.ndarray:
        """Codes inside the item's response scale (NaN and missing codes are not)."""
        return (items >= self.low) & (items <= self.high) & (items == np.round(items))

    def scorable(self, items: np.ndarray) -> bool:
        """At least one scale has its minimum share of valid items."""
        valid = self.valid(items)
        return any(
            valid[self.scale_index == k].mean() >= s.min_valid for k, s in enumerate(self.scales)
        )


def _thresholds(categories: int, agreement: float) -> np.ndarray:
    """Normal cut points that give category shares ~ Binomial(categories - 1, agreement)."""
    n = categories - 1
    shares = [math.comb(n, k) * agreement**k * (1 - agreement) ** (n - k) for k in range(n + 1)]
    return np.array([NormalDist().inv_cdf(p) for p in np.cumsum(shares)[:-1]])


def _correlated(rng: np.random.Generator, n: int, rho: float, variance: float) -> np.ndarray:
    """n normal deviates with common correlation rho and the given variance."""
    common = rng.standard_normal()
    unique = rng.standard_normal(n)
    return np.sqrt(variance) * (np.sqrt(rho) * common + np.sqrt(1 - rho) * unique)


class Simulation:
    def __init__(self, codebook: Codebook, params: Params, seed: int):
        self.codebook = codebook
        self.params = params
        self.waves = sorted(codebook.waves.values(), key=lambda w: w.start)
        setup, *per_wave = np.random.SeedSequence(seed).spawn(1 + len(self.waves))
        self.rng = np.random.default_rng(setup)
        self.wave_rngs = [np.random.default_rng(s) for s in per_wave]
        self.instrument = _Instrument(codebook, params, self.rng)
        self.companies = self._companies()
        self._plant_trajectories()
        self.communities = self._plant_communities(seed)
        self.participation = _participation_codes(codebook)
        self.register = {c.code for c in self.companies}
        self.codes_in_use: set[str] = set()
        self.response_ids: set[str] = set()
        self.people = 0
        self.participants: list[Person] = []  # ever employed, in the order hired

    # -- companies and people

    def _companies(self) -> list[Company]:
        p, rng = self.params, self.rng
        pool = max(COMPANY_NUMBERS, 3 * p.companies)
        numbers = np.sort(rng.choice(np.arange(1, pool + 1), size=p.companies, replace=False))
        late = p.late_joiners if len(self.waves) > 1 else 0
        names: set[str] = set()
        companies = []
        for i, number in enumerate(numbers):
            sector = str(rng.choice(list(SECTORS)))
            name = self._company_name(sector, names)
            size = np.exp(rng.normal(np.log(p.size_median), p.size_sigma))
            culture = self.instrument.level["culture"]
            companies.append(
                Company(
                    code=f"C{number:03d}",
                    name=name,
                    sector=sector,
                    joined=int(i >= p.companies - late),
                    size=int(np.clip(round(size), *p.size_range)),
                    effect=_correlated(
                        rng, len(culture), p.culture_correlation, p.latent_company_share
                    ),
                    departments=self._departments(),
                    response_rate=float(rng.beta(20 * p.response_rate, 20 * (1 - p.response_rate))),
                    ip=_company_ip(i),
                    location=(rng.uniform(51.6, 53.2), rng.uniform(4.6, 7.0)),
                )
            )
        for company in sorted(companies, key=lambda c: c.size)[: p.small_companies]:
            company.size = p.size_range[0]
        return companies

    def _plant_trajectories(self) -> None:
        """One trajectory each for `trajectory_share` of the companies present from the first
        wave, their starts spread over the gaps between the waves (before the second wave, the
        third, ..., the last, the second again, ...), a third still running.

        Only when the codebook declares registers.trajectories and the scan has two waves or
        more: otherwise no company has a trajectory, and nobody a trajectory effect."""
        spec = self.codebook.trajectories
        if spec is None or len(self.waves) < 2:
            return
        p, rng = self.params, self.rng
        eligible = [c for c in self.companies if c.joined == 0]
        n = round(p.trajectory_share * len(eligible))
        chosen = sorted(int(i) for i in rng.choice(len(eligible), size=n, replace=False))
        for k, i in enumerate(chosen):
            start = self._start_before(1 + k % (len(self.waves) - 1))
            end = None
            if rng.random() >= RUNNING_SHARE:
                low, high = TRAJECTORY_DAYS
                end = start + dt.timedelta(days=int(rng.integers(low, high + 1)))
            eligible[i].trajectory = Trajectory(
                trajectory_id=f"T{k + 1:02d}",
                type=str(rng.choice(spec.types or TRAJECTORY_TYPES)),
                start=start,
                end=end,
                target_group=str(rng.choice(TARGET_GROUPS)),
            )

    def _start_before(self, w: int) -> dt.date:
        """A day strictly between the end of wave w - 1 and the start of wave w (uniformly), or
        wave w's first day when there is none between."""
        before, wave = self.waves[w - 1], self.waves[w]
        gap = (wave.start - before.end).days
        if gap < 2:
            return wave.start
        return before.end + dt.timedelta(days=int(self.rng.integers(1, gap)))

    def after_start(self, company: Company, w: int) -> bool:
        """Wave w starts on or after the start of the company's trajectory (which goes on
        counting after its end: what was learned stays learned)."""
        trajectory = company.trajectory
        return trajectory is not None and trajectory.start <= self.waves[w].start

    def _plant_communities(self, seed: int) -> list[Community]:
        """The learning communities, of `community_sizes` companies each (exclusive), when the
        codebook declares registers.communities. Most members join at the first wave, the last
        large community's at the second; one member of the first large one leaves at the third.

        Drawn from their own random stream (COMMUNITY_STREAM), so that every other draw of the
        simulation is the same with or without them: only the members' latents shift."""
        if self.codebook.communities is None:
            return []
        rng = np.random.default_rng([seed, COMMUNITY_STREAM])
        groups = self._community_members(rng)
        large = [i for i in sorted(groups) if len(groups[i]) >= MIN_REPORTED_MEMBERS] or [None]
        late = 1 if len(self.waves) > 1 else 0  # the second wave, when there is one
        left = 2 if len(self.waves) > 2 else None  # the third
        communities = []
        for i, members in sorted(groups.items()):
            joined = late if i == large[-1] else 0
            leaver = members[int(rng.integers(len(members)))] if i == large[0] else None
            memberships = tuple(
                Membership(c, joined, left if c is leaver else None)
                for c in sorted(members, key=lambda c: c.code)
            )
            community_id = f"LG{i + 1:02d}"
            for company in members:
                company.community = community_id
            communities.append(
                Community(community_id, _community_name(i), memberships, self._partners(rng))
            )
        return communities

    def _community_members(self, rng: np.random.Generator) -> dict[int, list[Company]]:
        """The member companies per community (by its index in `community_sizes`), all present
        from the first wave: the large ones' (MIN_REPORTED_MEMBERS or more) among the companies
        that reliably have k respondents in every wave (in a scan with too few of them, then
        those that expect the most), the small ones' among the rest. None when the scan has too
        few companies present from the first wave.

        Stratified by trajectory (`_stratum`), so that the trajectory and community effects do
        not confound: in every community, and every run of them, the shares of companies
        without one and with one starting before each wave are about those among the companies
        present from the first wave (the trajectories' own population: the companies joining
        later run none, and they hardly enter the trajectories' before-after comparison), as
        far as the reliable companies of each stratum go."""
        sizes = self.params.community_sizes
        first = [c for c in self.companies if c.joined == 0]
        if sum(sizes) > len(first):
            return {}
        shuffled = [first[int(j)] for j in rng.permutation(len(first))]
        # the reliable in random order (a stable sort keeps it), then the most respondents
        ranked = sorted(
            shuffled, key=lambda c: -min(c.size * c.response_rate, self._reliable_floor())
        )
        large = sum(n for n in sizes if n >= MIN_REPORTED_MEMBERS)
        ranked = ranked[: max(large, sum(map(self.reliable, first)))]
        quotas = _quotas([self._stratum(c) for c in first], sum(sizes))
        groups: dict[int, list[Company]] = {}
        taken: set[str] = set()
        # the large communities first, so that the small ones leave them enough
        for i in sorted(range(len(sizes)), key=lambda i: sizes[i] < MIN_REPORTED_MEMBERS):
            pool = ranked if sizes[i] >= MIN_REPORTED_MEMBERS else shuffled
            strata = quotas[len(taken) : len(taken) + sizes[i]]
            groups[i] = _stratified([c for c in pool if c.code not in taken], strata, self._stratum)
            taken |= {c.code for c in groups[i]}
        return groups

    def _stratum(self, company: Company) -> int | None:
        """The index of the first wave on or after the company's trajectory start (None: none).
        When it starts matters too: the members' growth shifts its before-after comparison."""
        return next((w for w in range(len(self.waves)) if self.after_start(company, w)), None)

    def reliable(self, company: Company) -> bool:
        """It expects RELIABLE_RESPONDENTS times k respondents a wave (k: the anonymisation's),
        enough that staff turnover and quality control rarely take a wave below k."""
        return company.size * company.response_rate >= self._reliable_floor()

    def _reliable_floor(self) -> float:
        return RELIABLE_RESPONDENTS * self.codebook.anonymisation.k

    def _partners(self, rng: np.random.Generator) -> tuple[tuple[str, str], ...]:
        """One to three partner institutions, each of another of the codebook's partner kinds."""
        kinds = self.codebook.communities.partner_kinds or tuple(PARTNER_NAMES)
        n = min(len(kinds), int(rng.integers(1, 4)))
        chosen = sorted(int(i) for i in rng.choice(len(kinds), size=n, replace=False))
        return tuple((kinds[i], _partner_name(kinds[i], rng)) for i in chosen)

    def _company_name(self, sector: str, taken: set[str]) -> str:
        while True:
            surname = str(self.rng.choice(SURNAMES))
            trade = self.rng.choice(SECTORS[sector])
            name = f"{surname[0].upper()}{surname[1:]} {trade} {self.rng.choice(LEGAL_FORMS)}"
            if name not in taken:
                taken.add(name)
                return name

    def _departments(self) -> tuple[int, ...]:
        variable = next((v for v in self.codebook.background if v in COMPANY_SPECIFIC), None)
        if variable is None:
            return ()
        weights = _weights(variable, len(self.codebook.background[variable].values))
        n = int(self.rng.integers(2, len(weights) + 1))
        chosen = self.rng.choice(len(weights), size=n, replace=False, p=weights)
        return tuple(sorted(int(c) + 1 for c in chosen))

    def _hire(self, company: Company, rng: np.random.Generator) -> Person:
        self.people += 1
        p = self.params
        trait = np.zeros(len(self.instrument.scales))
        culture = self.instrument.level["culture"]
        trait[culture] = _correlated(rng, len(culture), p.culture_correlation, p.latent_trait_share)
        others = [k for k in range(len(trait)) if k not in culture]
        trait[others] = rng.normal(0, np.sqrt(p.latent_trait_share), size=len(others))
        background = self._background(company, rng)
        female = any(
            self.codebook.background[v].codes[c] in FEMALE_VALUES for v, c in background.items()
        )
        name = f"{rng.choice(FEMALE if female else MALE)} {rng.choice(SURNAMES)}"
        at_office = rng.random() < 0.6
        person = Person(
            uid=f"P{self.people:04d}",
            company=company,
            trait=trait,
            background=background,
            name=name,
            email=_email(name, rng),
            resp_code=self._resp_code(rng),
            lang=str(rng.choice(list(LANGUAGES), p=list(LANGUAGES.values()))),
            ip=company.ip if at_office else _personal_ip(rng),
            location=company.location if at_office else _nearby(company.location, rng),
        )
        if company.trajectory is not None and rng.random() < p.participant_share:
            person.participant = True
            self.participants.append(person)
        return person

    def _background(self, company: Company, rng: np.random.Generator) -> dict[str, int]:
        codes = {}
        for name, variable in self.codebook.background.items():
            weights = _weights(name, len(variable.values))
            if name in COMPANY_SPECIFIC and company.departments:
                allowed = np.zeros_like(weights)
                allowed[[d - 1 for d in company.departments]] = 1
                weights = weights * allowed / (weights * allowed).sum()
            codes[name] = int(rng.choice(len(weights), p=weights)) + 1
        return codes

    def _resp_code(self, rng: np.random.Generator) -> str:
        """Two letters of the mother's first name, birth day, two letters of the birthplace.

        The invented names allow 15,624 codes; a scan larger than the demo (beyond
        WIDE_CODES_AFTER people) draws the letters at random instead, in the same format."""
        while True:
            if len(self.codes_in_use) >= WIDE_CODES_AFTER:
                mother, place = (
                    "".join(chr(ord("A") + int(c)) for c in rng.integers(0, 26, size=2))
                    for _ in range(2)
                )
            else:
                mother, place = rng.choice(MOTHERS), rng.choice(BIRTHPLACES)
            code = f"{mother[:2].upper()}{rng.integers(1, 32):02d}{place[:2].upper()}"
            if code not in self.codes_in_use:
                self.codes_in_use.add(code)
                return code

    def _update_panel(self, w: int, rng: np.random.Generator) -> list[Company]:
        """Leavers go, new hires come; companies joining in this wave get their staff."""
        low, high = self.params.size_range
        days = (self.waves[w].end - self.waves[w].start).days
        for company in self.companies:
            company.launch = int(rng.integers(0, days // 4 + 1))
            if company.joined == w:
                company.staff = [self._hire(company, rng) for _ in range(company.size)]
            elif company.joined < w:
                stay = rng.random(len(company.staff)) >= self.params.leave_rate
                leavers = len(stay) - int(stay.sum())
                company.staff = [p for p, s in zip(company.staff, stay, strict=True) if s]
                target = np.clip(len(company.staff) + rng.poisson(leavers), low, high)
                while len(company.staff) < target:
                    company.staff.append(self._hire(company, rng))
        return [c for c in self.companies if c.joined <= w]

    # -- one response

    def _latent(self, person: Person, w: int, rng: np.random.Generator) -> np.ndarray:
        """Culture = company + person + occasion + wave; individual and outcomes depend on it."""
        p, level = self.params, self.instrument.level
        culture, individual, outcome = level["culture"], level["individual"], level["outcome"]
        occasion_share = 1 - p.latent_trait_share
        latent = person.trait.copy()
        latent[culture] += person.company.effect + p.wave_effect * w
        latent[culture] += _correlated(
            rng,
            len(culture),
            p.culture_correlation,
            1 - p.latent_trait_share - p.latent_company_share,
        )
        others = individual + outcome
        latent[others] += rng.normal(0, np.sqrt(occasion_share), size=len(others))
        culture_sd = np.sqrt((1 + (len(culture) - 1) * p.culture_correlation) / len(culture))
        culture_z = latent[culture].mean() / culture_sd if culture else 0.0
        b = p.culture_to_individual
        latent[individual] = b * culture_z + np.sqrt(1 - b**2) * latent[individual]
        individual_mean = latent[individual].mean() if individual else 0.0
        c = p.culture_to_outcome
        i = p.individual_to_outcome if individual else 0.0
        explained = c**2 + i**2 + 2 * c * i * b
        latent[outcome] = (
            c * culture_z
            + i * individual_mean
            + p.wave_effect * w
            + np.sqrt(1 - explained) * latent[outcome]
        )
        # The trajectory's and the community's effects come last: they pass neither from culture
        # to the individual and outcome scales nor from the individual scales to the outcomes.
        if self.after_start(person.company, w):
            latent[culture] += p.trajectory_culture_effect
            latent[outcome] += p.trajectory_outcome_effect
            if person.participant:
                latent[outcome] += p.participant_outcome_effect
        if person.company.community is not None:
            latent[culture] += p.community_culture_level + p.community_culture_growth * w
            latent[outcome] += p.community_outcome_growth * w
        return latent

    def _answers(self, person: Person, w: int, rng: np.random.Generator) -> np.ndarray:
        inst = self.instrument
        items = inst.answers(self._latent(person, w, rng), rng)
        items[rng.random(len(items)) < inst.dont_know_rate] = inst.dont_know
        items[rng.random(len(items)) < self.params.unanswered_rate] = inst.unanswered
        return items

    def _typed_code(self, person: Person, rng: np.random.Generator) -> str:
        code = person.resp_code
        if person.waves_answered and rng.random() < self.params.code_typo_rate:
            return _typo(code, rng)
        if rng.random() < self.params.code_variant_rate:
            return _variant(code, rng)
        return code

    def _asked_background(self, person: Person, w: int) -> dict[str, int]:
        """The background codes a person gives in wave w: as drawn at hire, but the codebook's
        participation variable (when it declares one) says its participation value for a
        participant in the waves on or after the company's trajectory start, the first other
        value otherwise."""
        codes = dict(person.background)
        if self.participation is not None:
            variable, takes_part, other = self.participation
            now = person.participant and self.after_start(person.company, w)
            codes[variable] = takes_part if now else other
        return codes

    def _respond(self, person: Person, w: int, rng: np.random.Generator) -> Row:
        background = {
            k: float(
                self.instrument.unanswered if rng.random() < self.params.unanswered_rate else v
            )
            for k, v in self._asked_background(person, w).items()
        }
        return Row(
            person=person,
            company_true=person.company.code,
            company_code=person.company.code,
            resp_code=self._typed_code(person, rng),
            start=self._start(person.company, w, rng),
            duration=_duration(rng),
            items=self._answers(person, w, rng),
            background=background,
            ip=person.ip,
            location=person.location,
            lang=person.lang,
        )

    def _start(self, company: Company, w: int, rng: np.random.Generator) -> dt.datetime:
        """Most answers come in the first weeks after the company's launch day."""
        wave = self.waves[w]
        day = min((wave.end - wave.start).days, company.launch + int(rng.exponential(6)))
        return _at_time(wave.start + dt.timedelta(days=day), rng)

    # -- a wave

    def wave(self, w: int) -> list[Row]:
        rng = self.wave_rngs[w]
        companies = self._update_panel(w, rng)
        respondents = [p for c in companies for p in c.staff if rng.random() < c.response_rate]
        rows = [self._respond(person, w, rng) for person in respondents]
        rows += self._plant_problems(rows, w, layout(w), companies, rng)
        self._plant_identifiers(rows, rng)
        for person in respondents:
            person.waves_answered += 1
        for row in rows:
            row.response_id = self._response_id(rng)
        return sorted(rows, key=lambda r: (r.end, r.response_id))

    def _plant_problems(
        self, rows: list[Row], w: int, layout: Layout, companies: list[Company], rng
    ) -> list[Row]:
        """Turn some respondents' rows into problem rows; return the extra rows added."""
        p, n = self.params, len(rows)
        wave_start = dt.datetime.combine(self.waves[w].start, dt.time())
        order = [int(i) for i in rng.permutation(n)]
        late = [i for i in order if rows[i].start >= wave_start + dt.timedelta(days=2)]
        duplicates = late[: round(p.duplicate_rate * n)]
        rest = [i for i in order if i not in duplicates]
        plans: list[tuple[float, Callable[[Row], None]]] = [
            (p.incomplete_rate, lambda r: self._break_off(r, layout, rng)),
            (p.speeder_rate, lambda r: self._speed(r, rng)),
            (p.straightliner_rate, lambda r: self._straightline(r, rng)),
            (p.unknown_company_rate, lambda r: self._mistype_company(r, rng)),
            (p.outside_window_rate, lambda r: self._move_outside(r, w, rng)),
        ]
        for rate, plant in plans:
            chosen, rest = rest[: round(rate * n)], rest[round(rate * n) :]
            for i in chosen:
                plant(rows[i])
        extra = [self._earlier_submission(rows[i], w, layout, rng) for i in duplicates]
        extra += [self._preview(companies, w, rng) for _ in range(p.previews)]
        extra += [self._test(companies, w, rng) for _ in range(p.tests)]
        self._out_of_range(rows, rng)
        return extra

    def _break_off(self, row: Row, layout: Layout, rng: np.random.Generator) -> None:
        n_items, n_background = len(row.items), len(row.background)
        cut = int(rng.integers(0, n_items))
        row.items[cut:] = np.nan
        answered = cut + (n_background if layout.background_first else 0)
        if not layout.background_first:
            row.background = dict.fromkeys(row.background, np.nan)
        row.progress = 100 * answered // (n_items + n_background + len(CONTACT))
        row.duration = int(row.duration * rng.uniform(0.3, 1.2)) + 150
        row.planned.add("incomplete")

    def _speed(self, row: Row, rng: np.random.Generator) -> None:
        row.duration = int(rng.integers(15, SECONDS_PER_ITEM_SPEEDER * len(row.items)))
        row.items = self.instrument.random_answers(rng)
        row.planned.add("speeder")

    def _straightline(self, row: Row, rng: np.random.Generator) -> None:
        """The same code everywhere, mostly an agreeing one."""
        low, high = int(self.instrument.low.max()), int(self.instrument.high.min())
        row.items = np.full(len(row.items), float(rng.integers((low + high + 1) // 2, high + 1)))
        row.duration = max(150, row.duration // 2)
        row.planned.add("straightliner")

    def _mistype_company(self, row: Row, rng: np.random.Generator) -> None:
        code = row.company_code
        candidates = [
            code.replace("0", "O", 1),
            code.replace("1", "l", 1),
            code[0] + code[1:][::-1],
            code[:-1] + str((int(code[-1]) + 1) % 10),
            "C999",
        ]
        known = self.register | {TEST_COMPANY}
        options = [c for c in candidates if c != code and c not in known] or [f"{code}X"]
        row.company_code = str(rng.choice(options))
        row.planned.add("unknown_company")

    def _move_outside(self, row: Row, w: int, rng: np.random.Generator) -> None:
        wave = self.waves[w]
        if rng.random() < 0.5:
            day = wave.start - dt.timedelta(days=int(rng.integers(2, 15)))
        else:
            day = wave.end + dt.timedelta(days=int(rng.integers(1, 21)))
        row.start = _at_time(day, rng)
        row.planned.add("outside_window")

    def _earlier_submission(self, later: Row, w: int, layout: Layout, rng) -> Row:
        """The same person submitted before: complete or broken off, hours to a day earlier."""
        earlier = self._respond(later.person, w, rng)
        earlier.resp_code = later.resp_code
        if rng.random() < 0.5:
            self._break_off(earlier, layout, rng)
        earlier.duration = min(earlier.duration, 3600)
        gap = dt.timedelta(minutes=int(rng.integers(10, 36 * 60)))
        earlier.start = later.start - gap - dt.timedelta(seconds=earlier.duration)
        earlier.planned.add("duplicate")
        return earlier

    def _researcher_row(self, company: Company, day: dt.date, rng) -> Row:
        inst = self.instrument
        return Row(
            person=None,
            company_true=company.code,
            company_code=company.code,
            resp_code="",
            start=_at_time(day, rng),
            duration=int(rng.integers(20, 400)),
            items=inst.random_answers(rng),
            background={
                k: float(rng.integers(1, len(v.values) + 1))
                for k, v in self.codebook.background.items()
            },
            ip=f"192.0.2.{int(rng.integers(10, 20))}",
            location=(52.2393, 6.8566),
            lang="NL",
        )

    def _preview(self, companies: list[Company], w: int, rng) -> Row:
        company = companies[int(rng.integers(len(companies)))]
        day = self.waves[w].start + dt.timedelta(days=int(rng.integers(0, 7)))
        row = self._researcher_row(company, day, rng)
        row.status, row.channel = 1, "preview"
        return row

    def _test(self, companies: list[Company], w: int, rng) -> Row:
        """A consortium member tries the live link, on launch day or the day before."""
        company = companies[int(rng.integers(len(companies)))]
        day = self.waves[w].start - dt.timedelta(days=int(rng.integers(0, 2)))
        row = self._researcher_row(company, day, rng)
        if rng.random() < 0.5:
            row.company_code, row.company_true = TEST_COMPANY, ""
        else:
            row.resp_code = str(rng.choice(["test", "TEST", " Test"]))
        return row

    def _out_of_range(self, rows: list[Row], rng: np.random.Generator) -> None:
        inst = self.instrument
        low, high = int(inst.low.min()), int(inst.high.max())
        bad = sorted({low - 1, high + 1, high + 2, 11 * high} - set(self.codebook.missing_codes))
        eligible = [r for r in rows if r.person and not r.planned & {"straightliner"}]
        k = round(self.params.out_of_range_rate * len(rows))
        for i in rng.choice(len(eligible), size=k, replace=False):
            row = eligible[int(i)]
            answered = np.flatnonzero(~np.isnan(row.items))
            if answered.size:
                cells = rng.choice(answered, size=min(answered.size, int(rng.integers(1, 3))))
                row.items[cells] = rng.choice(bad, size=cells.size)

    def _plant_identifiers(self, rows: list[Row], rng: np.random.Generator) -> None:
        """Prize-draw contact details, comments (some naming people), and every row's IP."""
        p = self.params
        for row in rows:
            if row.person and row.progress == 100:
                if rng.random() < p.prize_draw_rate:
                    self._prize_draw(row, rng)
                draw = rng.random()
                if draw < p.identifying_comment_rate:
                    self._identifying_comment(row, rng)
                elif draw < p.comment_rate:
                    row.comments = str(rng.choice(COMMENTS))
            row.identifiers.append(row.ip)

    def _prize_draw(self, row: Row, rng: np.random.Generator) -> None:
        kind = rng.choice(["both", "both", "both", "email", "name"])
        if kind != "email":
            row.name = row.person.name
            row.identifiers.append(row.name)
        if kind != "name":
            row.email = row.person.email
            row.identifiers.append(row.email)

    def _identifying_comment(self, row: Row, rng: np.random.Generator) -> None:
        template = str(rng.choice(IDENTIFYING_COMMENTS))
        staff = [s for s in row.person.company.staff if s is not row.person]
        colleague = staff[int(rng.integers(len(staff)))].name if staff else row.person.name
        values = {"name": row.person.name, "email": row.person.email, "colleague": colleague}
        row.comments = template.format(**values)
        row.identifiers += [v for k, v in values.items() if "{" + k + "}" in template]

    def _response_id(self, rng: np.random.Generator) -> str:
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
        while True:
            rid = "R_" + "".join(alphabet[i] for i in rng.integers(0, len(alphabet), 15))
            if rid not in self.response_ids:
                self.response_ids.add(rid)
                return rid

    # -- what was planted, as a validation would see it

    def problems(self, row: Row, w: int, median_duration: float) -> list[str]:
        wave, items = self.waves[w], row.items
        answered = items[~np.isnan(items)]
        missing = np.isin(items, list(self.codebook.missing_codes))
        out_of_range = ~np.isnan(items) & ~missing & ~self.instrument.valid(items)
        is_test = row.company_code == TEST_COMPANY or row.resp_code.strip().lower() == "test"
        found = {
            "duplicate": "duplicate" in row.planned,
            "preview": row.status == 1,
            "test": is_test,
            "incomplete": row.progress < 100 and not self.instrument.scorable(items),
            "speeder": row.duration
            < max(SECONDS_PER_ITEM_SPEEDER * len(items), median_duration / 3),
            "straightliner": answered.size == items.size and len(set(answered)) == 1,
            "out_of_range": bool(out_of_range.any()),
            "unknown_company": not is_test and row.company_code not in self.register,
            "outside_window": not wave.start <= row.start.date() <= wave.end,
        }
        problems = [name for name in PROBLEMS if found[name]]
        if not row.planned - {"incomplete"} <= set(problems):
            raise AssertionError(f"planted {row.planned} but the rules find {problems}")
        return problems


def _participation_codes(codebook: Codebook) -> tuple[str, int, int] | None:
    """(variable, the code of the participation value, the code of the first other value) of
    the codebook's registers.trajectories.participation, or None when it declares none (or the
    variable has no other value: then it is drawn like any background variable)."""
    spec = codebook.trajectories
    if spec is None or spec.participation is None:
        return None
    variable = codebook.background[spec.participation.variable]
    value = spec.participation.value
    levels = {code: variable.generalise.get(label, label) for code, label in variable.codes.items()}
    takes_part = [code for code, level in levels.items() if level == value]
    other = [code for code, level in levels.items() if level != value]
    if not takes_part or not other:
        return None
    return variable.name, takes_part[0], other[0]


def _quotas(strata: list, n: int) -> list:
    """n labels of `strata` (one per company) in an order whose every stretch has about each
    label's share among the companies: the label furthest behind its share comes next."""
    shares = {label: strata.count(label) / len(strata) for label in dict.fromkeys(strata)}
    counts = dict.fromkeys(shares, 0)
    labels = []
    for m in range(1, n + 1):
        label = max(shares, key=lambda s: shares[s] * m - counts[s])
        counts[label] += 1
        labels.append(label)
    return labels


def _stratified(pool: list[Company], labels: list, stratum: Callable) -> list[Company]:
    """One company per label: the pool's first (in its order) of that stratum, or when the pool
    has none left of it, the pool's first."""
    left, chosen = list(pool), []
    for label in labels:
        i = next((i for i, c in enumerate(left) if stratum(c) == label), 0)
        chosen.append(left.pop(i))
    return chosen


def _community_name(i: int) -> str:
    """The i-th community's name, numbered once COMMUNITY_NAMES run out."""
    name = COMMUNITY_NAMES[i % len(COMMUNITY_NAMES)]
    return name if i < len(COMMUNITY_NAMES) else f"{name} {i // len(COMMUNITY_NAMES) + 1}"


def _partner_name(kind: str, rng: np.random.Generator) -> str:
    """An invented institution of that kind (a kind PARTNER_NAMES lacks: the kind and a place)."""
    template = PARTNER_NAMES.get(kind, kind.capitalize() + " {place}")
    return template.format(place=rng.choice(PARTNER_PLACES), trade=rng.choice(PARTNER_TRADES))


def layout(w: int) -> Layout:
    """Wave formats take turns: .sav, Qualtrics CSV, Excel."""
    return LAYOUTS[w % len(LAYOUTS)]


def _weights(variable: str, n: int) -> np.ndarray:
    weights = np.array(BACKGROUND_WEIGHTS.get(variable, ()), dtype=float)
    if weights.size != n:
        weights = np.ones(n)
    return weights / weights.sum()


def _ascii(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return re.sub(r"[^a-z]", "", decomposed.encode("ascii", "ignore").decode().lower())


def _email(name: str, rng: np.random.Generator) -> str:
    first, last = name.split(" ", 1)
    first, last = _ascii(first), _ascii(last)
    local = rng.choice([f"{first}.{last}", f"{first[0]}.{last}", f"{first}{last}"])
    return f"{local}@{rng.choice(EMAIL_DOMAINS)}"


def _company_ip(i: int) -> str:
    """The office IP of the i-th company: documentation ranges only (RFC 5737, RFC 3849)."""
    if i < COMPANY_IPS:
        return f"198.51.100.{i + 10}"
    return f"2001:db8:c0::{i:x}"


def _personal_ip(rng: np.random.Generator) -> str:
    """Home or mobile connections: documentation ranges only (RFC 5737, RFC 3849)."""
    if rng.random() < 0.3:
        return f"203.0.113.{int(rng.integers(1, 255))}"
    groups = rng.integers(0, 65536, size=3)
    return "2001:db8:{:x}:{:x}::{:x}".format(*(int(g) for g in groups))


def _nearby(location: tuple[float, float], rng: np.random.Generator) -> tuple[float, float]:
    return (location[0] + rng.uniform(-0.15, 0.15), location[1] + rng.uniform(-0.15, 0.15))


def _at_time(day: dt.date, rng: np.random.Generator) -> dt.datetime:
    """A moment on that day, mostly in working hours."""
    hour = int(np.clip(rng.normal(11.5, 3.0), 6, 22))
    seconds = int(rng.integers(0, 3600))
    return dt.datetime.combine(day, dt.time(hour, seconds // 60, seconds % 60))


def _duration(rng: np.random.Generator) -> int:
    """Seconds; log-normal around 8 minutes, a few left the browser open for hours."""
    if rng.random() < 0.03:
        return int(rng.integers(3600, 20000))
    return int(np.clip(np.exp(rng.normal(np.log(480), 0.4)), 200, 3000))


def _variant(code: str, rng: np.random.Generator) -> str:
    """The same code typed in another case or with spaces around it."""
    return str(rng.choice([code.lower(), f" {code}", f"{code} ", code.capitalize()]))


def _typo(code: str, rng: np.random.Generator) -> str:
    """A real typo: a wrong digit or letter, or two neighbours swapped."""
    chars = list(code)
    while "".join(chars).strip().upper() == code.upper():
        i = int(rng.integers(len(chars)))
        if rng.random() < 0.3 and i + 1 < len(chars):
            chars[i], chars[i + 1] = chars[i + 1], chars[i]
        elif chars[i].isdigit():
            chars[i] = str((int(chars[i]) + int(rng.choice([1, 9]))) % 10)
        else:
            chars[i] = chr(ord("A") + int(rng.integers(26)))
    return "".join(chars)
