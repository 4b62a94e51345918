"""The demo's ground truth and registers: every raw row's planted problems, identifiers and
linkage-code errors (raw/_demo_truth/rows.csv), the parameters, planted effects and per-wave
counts (truth.json), the simulated companies (company_register.csv), and, when the codebook
declares them, the trajectory register and its participants list with the trajectories' expected
effect on the observed scale scores, and the community register and its partners list with the
communities' expected level and growth on them.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
from numpy.polynomial.hermite_e import hermegauss

from pipeline.demo.simulation import (
    MIN_REPORTED_MEMBERS,
    PROBLEMS,
    Community,
    Company,
    Row,
    Simulation,
)
from pipeline.lineage.fingerprint import sha256_file

QC_RULE = (
    "A row survives quality control when it has none of the problems; a row with any of them is "
    "quarantined with all its reasons. An unfinished response (Progress < 100) is a problem only "
    "when no scale has its minimum share of valid items."
)
PROBLEM_DEFINITIONS = {
    "duplicate": "an earlier submission of a person who later submitted a complete one",
    "preview": "Status = 1 (survey preview)",
    "test": "company code TEST or resp_code 'test' (any case, spaces)",
    "incomplete": "Progress < 100 and no scale has its minimum share (min_valid) of valid items",
    "speeder": "duration below 2 seconds per item, or below a third of the wave's median duration",
    "straightliner": "every item answered with the same code (reverse-keyed items included)",
    "out_of_range": "an item code that is neither in the response scale nor a missing code",
    "unknown_company": "a company code that is neither in the register nor the test code",
    "outside_window": "StartDate before the wave's start or after its end (dates, inclusive)",
}
QUADRATURE_NODES = 40  # Gauss-Hermite nodes for an expectation over a normal latent
EXPECTED_EFFECT_METHOD = (
    "Per culture and outcome scale, the expected change of the observed scale score (mean of the "
    "valid items, reverse-keyed recoded) of a trajectory company's employees in the waves on or "
    "after its start: f(eta + effect) - f(eta) averaged over eta, where f is the expected score "
    "given the scale's latent eta (the mean over its items of E[code | eta] under the generator's "
    "ordinal-probit measurement model; missing codes do not depend on eta) and eta is normal "
    "with the scale's mean latent over the waves on or after some start and its latent SD "
    "without trajectories (latent_without_trajectory); by Gauss-Hermite quadrature, 40 nodes. "
    "after_start: culture E[f(eta + culture effect) - f(eta)]; outcome p E[f(eta + outcome "
    "effect + participant effect) - f(eta)] + (1 - p) E[f(eta + outcome effect) - f(eta)], p the "
    "participant share. participant_after_start: participants' change beyond their colleagues': "
    "culture 0, outcome E[f(eta + outcome effect + participant effect) - f(eta + outcome "
    "effect)]. Averaging the latent mean over the waves approximates the mix of waves."
)

COMMUNITY_EFFECT_METHOD = (
    "Per culture and outcome scale and wave w (its index, 0 for the first), the expected "
    "difference of the observed scale score (mean of the valid items, reverse-keyed recoded) "
    "between the employees of a company that is a member of a community in any wave and those of "
    "a company that is in none, holding the rest (trajectories) fixed: E[f(eta + d_w) - f(eta)], "
    "f the expected score given the scale's latent eta (as for the trajectories' "
    "expected_observed_effect), eta normal with the scale's latent mean and SD in wave w without "
    "communities or trajectories (latent_without_community), d_w the planted latent difference: "
    "culture level + culture growth w, outcome growth w; by Gauss-Hermite quadrature, 40 nodes. "
    "expected_observed_level: the culture scales' difference in the first wave. "
    "expected_observed_growth: the least-squares slope of the difference on the wave index "
    "(for three waves, half the last wave's difference minus the first's); none with one wave."
)


def _write_csv_table(path: Path, header: list[str], rows: list[list]) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def write_register(sim: Simulation, path: Path) -> None:
    rows = [
        [c.code, c.name, c.sector, c.size, sim.waves[c.joined].name]
        for c in sorted(sim.companies, key=lambda c: c.code)
    ]
    header = ["company_code", "company_name", "sector", "employees", "joined_wave"]
    _write_csv_table(path, header, rows)


def write_trajectory_register(sim: Simulation, raw: Path) -> tuple[str, ...]:
    """The trajectory register and its participants list, named and laid out as the codebook's
    registers.trajectories declares them (pipeline/ingest/trajectories.py reads them): one row
    per trajectory, by company; one row per participant ever employed, with the true linkage
    code. Header only when no trajectory was planted; nothing when none is declared. The demo
    writes CSV only. Returns the files written, relative to raw/."""
    spec, codebook = sim.codebook.trajectories, sim.codebook
    if spec is None:
        return ()
    planted = sorted((c for c in sim.companies if c.trajectory), key=lambda c: c.code)
    register = [
        [
            c.code,
            c.trajectory.trajectory_id,
            c.trajectory.type,
            c.trajectory.start.isoformat(),
            c.trajectory.end.isoformat() if c.trajectory.end else "",
            c.trajectory.target_group,
        ]
        for c in planted
    ]
    header = [codebook.company_id, "trajectory_id", "type", "start", "end", "target_group"]
    files = [(spec.file, header, register)]
    if spec.participants:
        people = sorted(sim.participants, key=lambda p: (p.company.code, p.uid))
        rows = [[p.company.code, p.resp_code, p.company.trajectory.trajectory_id] for p in people]
        header = [codebook.company_id, codebook.respondent_id, "trajectory_id"]
        files.append((spec.participants, header, rows))
    for name, header, rows in files:
        if Path(name).suffix.lower() != ".csv":
            raise ValueError(f"the demo writes its trajectory register as CSV, not {name}")
        _write_csv_table(raw / name, header, rows)
    return tuple(name for name, _, _ in files)


def write_community_register(sim: Simulation, raw: Path) -> tuple[str, ...]:
    """The community register and its partners list, named and laid out as the codebook's
    registers.communities declares them (pipeline/ingest/communities.py reads them): one row per
    membership, with the names of the first wave the company is a member in and of the first
    it no longer is (empty while it is); one row per partner. Header only when no community was
    planted; nothing when none is declared. The demo writes CSV only. Returns the files written,
    relative to raw/."""
    spec, codebook = sim.codebook.communities, sim.codebook
    if spec is None:
        return ()
    members = [
        [
            community.community_id,
            community.name,
            m.company.code,
            sim.waves[m.joined].name,
            sim.waves[m.left].name if m.left is not None else "",
        ]
        for community in sim.communities
        for m in community.members
    ]
    header = ["community_id", "community", codebook.company_id, "joined", "left"]
    files = [(spec.file, header, members)]
    if spec.partners:
        rows = [[c.community_id, *partner] for c in sim.communities for partner in c.partners]
        files.append((spec.partners, ["community_id", "kind", "partner"], rows))
    for name, header, rows in files:
        if Path(name).suffix.lower() != ".csv":
            raise ValueError(f"the demo writes its community register as CSV, not {name}")
        _write_csv_table(raw / name, header, rows)
    return tuple(name for name, _, _ in files)


def _rounded(value):
    """Floats to 4 decimals, recursively, so truth.json does not depend on float noise."""
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_rounded(v) for v in value]
    return value


def _effects(sim: Simulation) -> dict:
    p = sim.params
    return {
        "icc1_target_observed_culture_scales": 0.10,
        "latent_company_share_culture": p.latent_company_share,
        "culture_correlation_latent": p.culture_correlation,
        "culture_to_individual": p.culture_to_individual,
        "culture_to_outcome_within_and_between": p.culture_to_outcome,
        "individual_to_outcome": p.individual_to_outcome,
        "wave_shift_sd": {w.name: p.wave_effect * i for i, w in enumerate(sim.waves)},
        "wave_shift_applies_to": ["culture", "outcome"],
        "item_loadings": dict(
            zip(sim.instrument.items, sim.instrument.loadings.tolist(), strict=True)
        ),
    }


def _after_start_waves(sim: Simulation) -> list[int]:
    """The waves on or after some company's trajectory start."""
    return [w for w in range(len(sim.waves)) if any(sim.after_start(c, w) for c in sim.companies)]


def _latent_moments(sim: Simulation, waves: list[int]) -> dict[int, tuple[float, float]]:
    """Per culture and outcome scale (by index) the mean of its latent over `waves` and its SD,
    without trajectories, as `Simulation._latent` makes them. A culture latent: mean
    wave_effect w, variance 1. An outcome latent: mean c E[culture_z] + i E[individual mean] +
    wave_effect w, variance 1 - i^2 (1 - b^2) (1 - 1/n) for n individual scales (1 with one:
    the mean of several individual scales varies less than one of them)."""
    p, level = sim.params, sim.instrument.level
    culture, individual = level["culture"], level["individual"]
    # one mean over the waves on or after some start: an approximation of their mix
    shift = p.wave_effect * float(np.mean(waves))
    n = len(culture)
    culture_z = shift / np.sqrt((1 + (n - 1) * p.culture_correlation) / n) if culture else 0.0
    b = p.culture_to_individual
    i = p.individual_to_outcome if individual else 0.0
    outcome_mean = p.culture_to_outcome * culture_z + i * b * culture_z + shift
    outcome_var = 1 - i**2 * (1 - b**2) * (1 - 1 / len(individual)) if individual else 1.0
    moments = dict.fromkeys(culture, (shift, 1.0))
    return moments | dict.fromkeys(level["outcome"], (outcome_mean, float(np.sqrt(outcome_var))))


def _normal_expectation(g, mean: float, sd: float) -> float:
    """E[g(eta)] for eta ~ N(mean, sd^2): Gauss-Hermite quadrature (probabilists' weights)."""
    nodes, weights = hermegauss(QUADRATURE_NODES)
    return float(weights @ g(mean + sd * nodes) / np.sqrt(2 * np.pi))


def _score_change(sim: Simulation, k: int, moments: tuple[float, float], a: float, b: float):
    """E[f(eta + b) - f(eta + a)] for scale k, f its expected score given the latent."""
    f = sim.instrument.expected_score
    return _normal_expectation(lambda eta: f(k, eta + b) - f(k, eta + a), *moments)


def _expected_observed_effect(sim: Simulation, moments: dict) -> dict:
    """Per culture and outcome scale: after_start and participant_after_start (see
    EXPECTED_EFFECT_METHOD), in scale-score units."""
    p, scales = sim.params, sim.instrument.scales
    culture_effect, outcome = p.trajectory_culture_effect, p.trajectory_outcome_effect
    participant = outcome + p.participant_outcome_effect
    effects = {}
    for k, m in moments.items():
        if scales[k].level == "culture":
            after, extra = _score_change(sim, k, m, 0.0, culture_effect), 0.0
        else:
            colleague = _score_change(sim, k, m, 0.0, outcome)
            taking_part = _score_change(sim, k, m, 0.0, participant)
            after = p.participant_share * taking_part + (1 - p.participant_share) * colleague
            extra = _score_change(sim, k, m, outcome, participant)
        effects[scales[k].name] = {"after_start": after, "participant_after_start": extra}
    return effects


def trajectory_truth(sim: Simulation) -> dict:
    """The planted trajectories, their latent effects and the effects expected on the observed
    scale scores (none when no trajectory was planted)."""
    p = sim.params
    planted = [c for c in sim.companies if c.trajectory]
    first = [next(w for w in range(len(sim.waves)) if sim.after_start(c, w)) for c in planted]
    waves = _after_start_waves(sim)
    moments = _latent_moments(sim, waves) if waves else {}
    scales = sim.instrument.scales
    return {
        "declared": sim.codebook.trajectories is not None,
        "companies_with_trajectory": len(planted),
        "companies_after_start_from_wave": {
            wave.name: first.count(w) for w, wave in enumerate(sim.waves)
        },
        "participants_ever_employed": len(sim.participants),
        "participant_share": p.participant_share,
        "latent_effect_sd": {
            "culture_all_employees": p.trajectory_culture_effect,
            "outcome_all_employees": p.trajectory_outcome_effect,
            "outcome_participants_extra": p.participant_outcome_effect,
        },
        "effect_timing": "from the first wave whose start is on or after the trajectory's "
        "start, lasting after its end; added to the latents after the structural equations, so "
        "the culture effect does not pass on to the individual or outcome scales",
        "latent_without_trajectory": {
            scales[k].name: {"mean": m, "sd": sd} for k, (m, sd) in moments.items()
        },
        "expected_observed_effect": _expected_observed_effect(sim, moments),
        "expected_observed_effect_method": EXPECTED_EFFECT_METHOD,
    }


def _community_difference(sim: Simulation, w: int, moments: dict) -> dict[str, float]:
    """Per culture and outcome scale, the expected observed member-minus-nonmember difference in
    wave w (see COMMUNITY_EFFECT_METHOD), given the latents' moments in that wave."""
    p, scales = sim.params, sim.instrument.scales
    culture = p.community_culture_level + p.community_culture_growth * w
    shift = {"culture": culture, "outcome": p.community_outcome_growth * w}
    return {
        scales[k].name: _score_change(sim, k, m, 0.0, shift[scales[k].level])
        for k, m in moments.items()
    }


def _slope(values: list[float]) -> float:
    """The least-squares slope of values on their index."""
    return float(np.polyfit(np.arange(len(values)), values, 1)[0])


def _expected_community_effect(sim: Simulation) -> dict:
    """The latents' moments per wave and the expected observed differences, level and growth
    (see COMMUNITY_EFFECT_METHOD); empty when no community was planted."""
    scales, waves = sim.instrument.scales, sim.waves
    planted = range(len(waves)) if sim.communities else range(0)
    moments = {waves[w].name: _latent_moments(sim, [w]) for w in planted}
    differences = {
        wave: _community_difference(sim, w, m) for w, (wave, m) in enumerate(moments.items())
    }
    first = next(iter(differences.values()), {})
    growth = {}
    if len(differences) > 1:
        growth = {name: _slope([d[name] for d in differences.values()]) for name in first}
    return {
        "latent_without_community": {
            wave: {scales[k].name: {"mean": m, "sd": sd} for k, (m, sd) in wave_moments.items()}
            for wave, wave_moments in moments.items()
        },
        "expected_observed_difference": differences,
        "expected_observed_level": {
            name: d for name, d in first.items() if sim.codebook.scales[name].level == "culture"
        },
        "expected_observed_growth": growth,
    }


def _members_in(community: Community, w: int) -> list[Company]:
    """The companies that are members of the community in wave w, as the register says."""
    return [
        m.company for m in community.members if m.joined <= w and (m.left is None or w < m.left)
    ]


def _community(sim: Simulation, community: Community) -> dict:
    """A community's members and per wave its member count and whether it is reportable by
    design: at least MIN_REPORTED_MEMBERS members in that wave that reliably have k
    respondents (`Simulation.reliable`)."""
    reportable = [
        wave.name
        for w, wave in enumerate(sim.waves)
        if sum(map(sim.reliable, _members_in(community, w))) >= MIN_REPORTED_MEMBERS
    ]
    companies = [m.company for m in community.members]
    return {
        "name": community.name,
        "size": len(companies),
        "companies": [c.code for c in companies],
        "with_trajectory": sum(c.trajectory is not None for c in companies),
        "partners": len(community.partners),
        "members_per_wave": {
            wave.name: len(_members_in(community, w)) for w, wave in enumerate(sim.waves)
        },
        "reportable_by_design": bool(reportable),
        "reportable_waves": reportable,
    }


def _trajectory_share(companies: list[Company]) -> float:
    return sum(c.trajectory is not None for c in companies) / len(companies) if companies else 0.0


def community_truth(sim: Simulation) -> dict:
    """The planted learning communities, their latent level and growth, and the differences
    expected on the observed scale scores (none when no community was planted)."""
    p = sim.params
    members = [c for c in sim.companies if c.community is not None]
    return {
        "declared": sim.codebook.communities is not None,
        "communities": {c.community_id: _community(sim, c) for c in sim.communities},
        "member_companies": len(members),
        "trajectory_share": {
            "members": _trajectory_share(members),
            "companies_from_first_wave": _trajectory_share(
                [c for c in sim.companies if c.joined == 0]
            ),
            "all_companies": _trajectory_share(sim.companies),
        },
        "latent_effect_sd": {
            "culture_level": p.community_culture_level,
            "culture_growth_per_wave": p.community_culture_growth,
            "outcome_growth_per_wave": p.community_outcome_growth,
        },
        "effect_timing": "every employee of a company that is a member of a community in any "
        "wave, in every wave, whatever the wave it joined or left: level + growth times the "
        "wave's index; added to the latents after the structural equations, so the culture "
        "effect does not pass on to the individual or outcome scales",
        **_expected_community_effect(sim),
        "expected_observed_method": COMMUNITY_EFFECT_METHOD,
    }


def _wave_truth(table: list[dict]) -> dict:
    counts = {name: sum(name in r["problems"] for r in table) for name in PROBLEMS}
    return {
        "raw_rows": len(table),
        "expected_after_qc": sum(not r["problems"] for r in table),
        "unfinished_but_scorable": sum(r["unfinished"] and not r["problems"] for r in table),
        "rows_per_problem": counts,
        "rows_with_contact_or_identifying_comment": sum(len(r["identifiers"]) > 1 for r in table),
        "distinct_persons": len({r["person_uid"] for r in table if r["person_uid"]}),
        "resp_code_typed_differently": sum(r["code_variant"] for r in table),
        "resp_code_typos": sum(r["code_typo"] for r in table),
    }


def _code_errors(row: Row) -> tuple[bool, bool]:
    """(typed differently but the same after trimming and upper-casing, a real typo)."""
    if row.person is None:
        return False, False
    true, typed = row.person.resp_code, row.resp_code.strip().upper()
    return row.resp_code != true and typed == true, typed != true


def truth_rows(sim: Simulation, w: int, rows: list[Row], source: str, lines: list[int]):
    table = []
    median_duration = float(np.median([row.duration for row in rows]))
    for row, line in zip(rows, lines, strict=True):
        problems = sim.problems(row, w, median_duration)
        variant, typo = _code_errors(row)
        table.append(
            {
                "wave": sim.waves[w].name,
                "source_file": source,
                "source_row": line,
                "response_id": row.response_id,
                "person_uid": row.person.uid if row.person else "",
                "company_code_true": row.company_true,
                "problems": problems,
                "identifiers": list(dict.fromkeys(row.identifiers)),
                "unfinished": row.progress < 100,
                "code_variant": variant,
                "code_typo": typo,
            }
        )
    return table


def write_truth(sim: Simulation, seed: int, table: list[dict], folder: Path) -> dict:
    """rows.csv and truth.json; returns the per-wave truth."""
    folder.mkdir(exist_ok=True)
    header = ["wave", "source_file", "source_row", "response_id", "person_uid",
              "company_code_true", "code_variant", "code_typo", "problems",
              "planted_identifiers"]  # fmt: skip
    rows = [
        [
            *(r[k] for k in header[:-4]),
            int(r["code_variant"]),
            int(r["code_typo"]),
            ";".join(r["problems"]),
            ";".join(r["identifiers"]),
        ]
        for r in table
    ]
    _write_csv_table(folder / "rows.csv", header, rows)
    waves = {}
    for wave in sim.waves:
        in_wave = [r for r in table if r["wave"] == wave.name]
        source = in_wave[0]["source_file"]
        waves[wave.name] = {
            "source_file": source,
            "source_sha256": sha256_file(folder.parent / source),
            **_wave_truth(in_wave),
        }
    truth = {
        "seed": seed,
        "generator": "pipeline.demo.write_demo",
        "instrument": {"name": sim.codebook.instrument, "version": sim.codebook.version},
        "parameters": asdict(sim.params),
        "effects": _effects(sim),
        "qc_rule": QC_RULE,
        "problem_definitions": PROBLEM_DEFINITIONS,
        "companies": {"total": len(sim.companies), "persons_ever_employed": sim.people},
        "waves": waves,
        "trajectories": trajectory_truth(sim),
        "communities": community_truth(sim),
    }
    text = json.dumps(_rounded(truth), sort_keys=True, indent=2, ensure_ascii=False)
    (folder / "truth.json").write_text(text + "\n", encoding="utf-8")
    return waves
