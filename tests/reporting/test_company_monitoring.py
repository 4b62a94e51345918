"""The company reports' section on monitoring learning outcomes (issue #19.4): a company with a
development trajectory sees its participants' and colleagues' mean per outcome and wave, only
where both groups reach k, never a group's size, and no detail that could tell which company it
is; nothing can be subtracted down to a group under k."""

import io
import itertools
import re
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import yaml

from assets.definitions import REPORT_ASSETS
from assets.reports import REPORTS, company_monitoring_numbers, company_reports, wave_report
from pipeline.instrument.codebook import SUPPRESSED, Codebook, load_codebook
from pipeline.reporting.company_report import (
    COLLEAGUES,
    MONITORING_COLUMNS,
    PARTICIPANTS,
    company_contexts,
    first_wave,
    monitoring_numbers,
    participation_withheld,
    render_company_reports,
    report_numbers,
)
from pipeline.reporting.render import REPORTS_DIR, fill_template, render_report
from pipeline.reporting.wave_report import number_id

CODEBOOK_PATH = Path(__file__).resolve().parents[2] / "data" / "raw" / "codebook.yaml"
CODEBOOK = load_codebook(CODEBOOK_PATH)
K = CODEBOOK.anonymisation.k
OUTCOMES = [n for n, s in CODEBOOK.scales.items() if s.level == "outcome"]
SL, EM = OUTCOMES  # the demo's two outcome scales
T0, T1, T2 = "2019-T0", "2021-T1", "2022-T2"
TEMPLATE = REPORTS_DIR / "company.qmd"
HEADING = "## Monitoring leeropbrengsten"

# Means of groups that must never reach a report: c_a's K-1 participants in T1, and the EM mean
# of c_a's participants in T2, where one of the K has no EM score.
SMALL_T1 = 1.23
SMALL_EM_T2 = 1.37


def scores(wave: str, groups: list[tuple[str, str, int, float]], no_em: int = 0) -> pd.DataFrame:
    """A wave's scale_scores: per group (company, person prefix, n, mean) n persons
    `<prefix>1..n` whose scores on every scale average `mean` (pairs at mean -/+ 0.25, an odd
    one at mean); the first `no_em` persons of the first group have no EM score."""
    rows = []
    for company, prefix, n, mean in groups:
        deltas = [(-0.25 if i % 2 == 0 else 0.25) for i in range(n - n % 2)] + [0.0] * (n % 2)
        rows += [(company, f"{prefix}{i + 1}", mean + d) for i, d in enumerate(deltas)]
    frame = pd.DataFrame(rows, columns=["company_id", "person_id", "score"])
    frame.insert(2, "wave", wave)
    for name, scale in CODEBOOK.scales.items():
        frame[name] = frame["score"]
        frame[f"{name}_n_valid"] = len(scale.items)
    if no_em:
        frame.loc[frame.index[:no_em], EM] = np.nan
    return frame.drop(columns="score")


# c_a: a trajectory from before T1; participants p_a1.. and colleagues q_a1.. in every wave, but
# only K-1 participants in T1. c_b: no trajectory. c_small: a trajectory, but under k in T2.
WAVES = {
    T0: scores(T0, [("c_a", "p_a", K, 4.1), ("c_a", "q_a", K + 1, 3.0), ("c_b", "q_b", 8, 3.5)]),
    T1: scores(
        T1, [("c_a", "p_a", K - 1, SMALL_T1), ("c_a", "q_a", K + 2, 3.1), ("c_b", "q_b", 8, 3.6)]
    ),
    T2: scores(
        T2,
        [
            ("c_a", "p_a", K, SMALL_EM_T2),
            ("c_a", "q_a", K, 3.2),
            ("c_b", "q_b", 8, 3.7),
            ("c_small", "p_s", K - 1, 4.0),
        ],
        no_em=1,
    ),
}
# The register under the shareable pseudonyms, as trajectory_companies holds it.
TRAJECTORIES = pd.DataFrame(
    {
        "company_id": ["c_a", "c_small"],
        "trajectory_id": ["T07", "T08"],
        "type": ["werkplekleren", "leerlijn"],
        "start": pd.to_datetime(["2020-06-15", "2020-06-15"]),
        "end": pd.to_datetime(["2021-12-31", None]),
        "target_group": ["productie", "alle medewerkers"],
    }
)
PERSONS = pd.DataFrame({"person_id": [f"p_a{i + 1}" for i in range(K)] + ["p_s1", "p_s2"]})
EXACT_DETAILS = ("2020-06-15", "2020", "2021-12-31", "T07", "productie")


def with_trajectories(tmp_path: Path, change) -> Codebook:
    """The demo codebook with its `registers.trajectories` changed by `change(raw)`."""
    raw = yaml.safe_load(CODEBOOK_PATH.read_text(encoding="utf-8"))
    change(raw["registers"])
    path = tmp_path / "codebook.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return load_codebook(path)


def without_register(tmp_path):
    return with_trajectories(tmp_path, lambda registers: registers.pop("trajectories"))


def participation_unknown(tmp_path):
    def change(registers):
        registers["trajectories"].pop("participation")
        registers["trajectories"].pop("participants")

    return with_trajectories(tmp_path, change)


def numbers(wave=T2, codebook=CODEBOOK, trajectories=TRAJECTORIES, waves=None):
    waves = (
        {w: WAVES[w] for w in list(WAVES)[: list(WAVES).index(wave) + 1]}
        if waves is None
        else waves
    )
    return monitoring_numbers(wave, waves, trajectories, PERSONS, codebook)


def report_rows(wave: str, codebook=CODEBOOK) -> pd.DataFrame:
    """company_report_numbers of `wave`, no respondent's management role known."""
    frame = WAVES[wave]
    responses = frame[["person_id", "company_id", "wave"]].assign(
        **{CODEBOOK.management.variable: pd.array([pd.NA] * len(frame), dtype="string")}
    )
    return report_numbers(wave, frame, responses, {}, codebook)


def contexts(tmp_path, wave=T2, codebook=CODEBOOK, monitoring=None) -> dict[str, dict]:
    monitoring = numbers(wave, codebook) if monitoring is None else monitoring
    return company_contexts(
        report_rows(wave, codebook), wave, codebook, tmp_path, monitoring=monitoring
    )


def section(document: str) -> str:
    """The monitoring section of a filled report, up to the next heading."""
    start = document.index(HEADING)
    return document[start : document.index("\n## ", start + 1)]


def means(frame: pd.DataFrame) -> pd.Series:
    shown = frame[frame["scale"].fillna("") != ""]
    return shown.set_index(["company_id", "scale", "wave", "group"])["mean"]


def test_means_are_stored_only_where_both_groups_have_k_scores():
    table = numbers()
    assert list(table.columns) == list(MONITORING_COLUMNS)
    assert set(table["company_id"]) == {"c_a"}  # c_b has no trajectory, c_small no report
    own = table[table["scale"] == ""]
    assert own[["wave", "trajectory_type"]].values.tolist() == [[T1, "werkplekleren"]]
    shown = means(table)
    expected = {
        ("c_a", SL, T0, PARTICIPANTS): 4.1,
        ("c_a", SL, T0, COLLEAGUES): 3.0,
        ("c_a", EM, T0, PARTICIPANTS): 4.1,
        ("c_a", EM, T0, COLLEAGUES): 3.0,
        ("c_a", SL, T2, PARTICIPANTS): SMALL_EM_T2,
        ("c_a", SL, T2, COLLEAGUES): 3.2,
    }
    assert sorted(shown.index) == sorted(expected)  # no T1 (K-1 participants), no EM in T2
    for key, value in expected.items():
        assert shown[key] == pytest.approx(value, abs=1e-12)
    # rows in codebook order: the trajectory row, then per scale the waves, participants first
    assert table["scale"].tolist()[:3] == ["", SL, SL]
    assert table["group"].tolist()[1:3] == [PARTICIPANTS, COLLEAGUES]


def test_waves_after_the_reports_wave_are_not_shown():
    table = numbers(T1)
    assert set(table.loc[table["scale"] != "", "wave"]) == {T0}  # T1 hidden, T2 not yet
    assert set(numbers(T0).loc[lambda t: t["scale"] != "", "wave"]) == {T0}


def test_no_exact_detail_of_the_trajectory_is_stored_or_reported(tmp_path):
    table = numbers()
    stored = table.to_csv(index=False)
    document = fill_template(TEMPLATE, contexts(tmp_path)["c_a"])
    for detail in EXACT_DETAILS:
        assert detail not in stored, detail
        assert detail not in section(document), detail
    assert "werkplekleren (vanaf meting T1)" in section(document)


def test_the_section_shows_both_groups_with_the_rule_and_never_a_count(tmp_path):
    context = contexts(tmp_path)["c_a"]
    text = section(fill_template(TEMPLATE, context))
    assert f"| {CODEBOOK.scales[SL].label} | T0 | 4,10 | 3,00 |" in text
    assert f"| {CODEBOOK.scales[SL].label} | T2 (na start) | 1,37 | 3,20 |" in text
    assert f"minstens {K} mensen" in text and "Hoeveel mensen in elke groep" in text
    assert "1,23" not in text and "1,2" not in text  # the K-1 participants of T1
    assert text.count("|") == context["monitoring_table"].count("|")  # one table only
    assert len(context["monitoring_table"].splitlines()) == 2 + 3  # header, rule, 3 rows
    for label in (CODEBOOK.scales[s].label for s in OUTCOMES):  # a label may hold a number
        text = text.replace(label, "")
    numbers_in_text = re.findall(r"(?<![\w,])\d+(?![\w,])", text)
    assert set(numbers_in_text) <= {str(K)}, numbers_in_text  # no group size, only k


def test_each_shown_number_has_an_id_that_finds_its_stored_row(tmp_path):
    table = numbers()
    document = fill_template(TEMPLATE, contexts(tmp_path)["c_a"])
    ids = re.findall(r"`(company_monitoring_numbers\[[^`]+)`", document)
    assert len(ids) == len(means(table)) == 6
    stored = pd.read_csv(io.StringIO(table.to_csv(index=False)), dtype=str)
    for found in ids:
        row = found[found.index("(") + 1 : found.index(")")].split(",")
        hits = stored[(stored.iloc[:, :4] == row).all(axis=1)]  # as `scan trace` finds it
        assert len(hits) == 1 and found.endswith(").mean")
    key = ["c_a", SL, T0, PARTICIPANTS]
    assert number_id("company_monitoring_numbers", T2, key, "mean") in ids


def test_the_stored_csv_gives_the_same_report(tmp_path):
    """The asset stores a CSV (blank cells read back as NaN); the report is the same."""
    table = numbers()
    path = tmp_path / "company_monitoring_numbers.csv"
    table.to_csv(path, index=False)
    read = pd.read_csv(path)
    assert read["scale"].isna().sum() == 1  # the trajectory row
    direct = contexts(tmp_path / "a", monitoring=table)["c_a"]
    stored = contexts(tmp_path / "b", monitoring=read)["c_a"]
    for key in ("monitoring_note", "monitoring_table", "monitoring_ids_table"):
        assert direct[key] == stored[key] and direct[key]


def test_a_group_is_never_shown_without_the_other(tmp_path):
    """Even a table that holds one group's row of a wave (not one monitoring_numbers makes)
    shows neither group of that wave."""
    table = numbers()
    alone = table[~((table["wave"] == T2) & (table["group"] == COLLEAGUES))]
    context = contexts(tmp_path, monitoring=alone)["c_a"]
    assert "T2" not in context["monitoring_table"] and "1,37" not in context["monitoring_table"]
    assert "T0" in context["monitoring_table"]
    assert f"{T2},participants" not in context["monitoring_ids_table"]


def test_a_company_without_a_trajectory_gets_one_sentence(tmp_path):
    context = contexts(tmp_path)["c_b"]
    assert context["monitoring_table"] == "" and context["monitoring_ids_table"] == ""
    text = section(fill_template(TEMPLATE, context))
    assert "geen ontwikkeltraject geregistreerd" in text
    assert "3,70" not in text


def test_without_a_register_there_is_no_section(tmp_path):
    codebook = without_register(tmp_path)
    table = numbers(codebook=codebook)
    assert table.empty and list(table.columns) == list(MONITORING_COLUMNS)
    for company, context in contexts(tmp_path, codebook=codebook).items():
        document = fill_template(TEMPLATE, context)
        assert HEADING not in document and "company_monitoring_numbers" not in document, company
    # without a register, trajectory_companies has only the column company_id and no rows
    bare = numbers(codebook=codebook, trajectories=pd.DataFrame(columns=["company_id"]))
    assert bare.empty


def test_when_participation_is_unknown_only_the_trajectory_is_shown(tmp_path):
    codebook = participation_unknown(tmp_path)
    table = numbers(codebook=codebook)
    assert table["scale"].tolist() == [""] and table["mean"].isna().all()
    context = contexts(tmp_path, codebook=codebook)["c_a"]
    text = section(fill_template(TEMPLATE, context))
    assert "werkplekleren (vanaf meting T1)" in text
    assert "Wie aan het traject deelneemt, is voor deze scan niet bekend" in text
    assert context["monitoring_table"] == "" and "4,10" not in text


def test_a_company_whose_groups_never_both_reach_k_is_told_so(tmp_path):
    waves = {T0: scores(T0, [("c_a", "p_a", K - 1, 4.4), ("c_a", "q_a", 12, 3.0)])}
    table = numbers(T0, waves=waves)
    assert (table["scale"] == "").all()
    context = contexts(tmp_path, T0, monitoring=table)["c_a"]
    text = section(fill_template(TEMPLATE, context))
    assert "In geen enkele meting hadden beide groepen genoeg mensen" in text
    assert "Al deze metingen vallen vóór de start" in text  # T0 is before the T1 start
    assert "4,40" not in text and "3,00" not in text


def test_the_first_wave_a_trajectory_counts_in():
    assert first_wave(pd.Timestamp("2021-03-01"), CODEBOOK) == T1  # on the wave's start
    assert first_wave(pd.Timestamp("2021-03-02"), CODEBOOK) == T2
    assert first_wave(pd.Timestamp("2018-01-01"), CODEBOOK) == T0
    assert first_wave(pd.Timestamp("2023-01-01"), CODEBOOK) == ""
    later = TRAJECTORIES.assign(start=pd.Timestamp("2023-01-01"), type="leerlijn")
    table = numbers(trajectories=later)
    assert table.loc[table["scale"] == "", "wave"].tolist() == [""]


def test_two_trajectories_are_both_named_with_their_first_wave(tmp_path):
    two = pd.concat(
        [
            TRAJECTORIES,
            TRAJECTORIES.iloc[:1].assign(type="leerlijn", start=pd.Timestamp("2021-05-01")),
        ]
    )
    table = numbers(trajectories=two)
    own = table[table["scale"] == ""]
    assert own[["wave", "trajectory_type"]].values.tolist() == [
        [T1, "werkplekleren"],
        [T2, "leerlijn"],
    ]
    text = section(fill_template(TEMPLATE, contexts(tmp_path, monitoring=table)["c_a"]))
    assert "werkplekleren (vanaf meting T1); leerlijn (vanaf meting T2)" in text
    assert "T2 (na start)" in text and "T0 (na start)" not in text  # from the earliest start


# --- privacy: nothing can be subtracted down to a group under k -------------------------------


def group_sizes(frame: pd.DataFrame, company: str, scale: str) -> tuple[int, int]:
    own = frame[(frame["company_id"] == company) & frame[scale].notna()]
    taking_part = own["person_id"].isin(set(PERSONS["person_id"]))
    return int(taking_part.sum()), int((~taking_part).sum())


def test_subtracting_from_the_company_mean_isolates_no_group_under_k():
    """The published company mean of a wave (company_report_numbers `mean`, over every
    respondent with a score) is the size-weighted mean of the two groups' means: the groups make
    up the company, so the subtraction gives back a group of at least k, never a smaller one."""
    table = numbers()
    shown = means(table)
    checked = 0
    for (company, scale, wave), pair in shown.groupby(level=[0, 1, 2]):
        assert len(pair) == 2  # both groups, or neither
        n_part, n_coll = group_sizes(WAVES[wave], company, scale)
        assert n_part >= K and n_coll >= K
        company_mean = report_rows(wave).set_index(["company_id", "scale"]).loc[(company, scale)]
        participants = pair.xs(PARTICIPANTS, level="group").iloc[0]
        colleagues = pair.xs(COLLEAGUES, level="group").iloc[0]
        total = n_part + n_coll
        assert company_mean["mean"] * total == pytest.approx(
            n_part * participants + n_coll * colleagues, rel=1e-12
        )
        # what is left of the company once the participants are taken out is the colleagues
        rest = (company_mean["mean"] * total - n_part * participants) / (total - n_part)
        assert rest == pytest.approx(colleagues, rel=1e-12)
        checked += 1
    assert checked == 3
    # the wave with K-1 participants shows neither group, on either scale
    assert group_sizes(WAVES[T1], "c_a", SL) == (K - 1, K + 2)
    assert not [key for key in shown.index if key[2] == T1]
    # EM in T2: K participants, one without an EM score, so K-1 scores: hidden for both groups
    assert group_sizes(WAVES[T2], "c_a", EM) == (K - 1, K)
    assert not [key for key in shown.index if key[1:3] == (EM, T2)]
    # and no count is stored
    assert not {"n", "count", "n_participants", "n_colleagues"} & set(table.columns)


def test_the_rule_holds_for_every_company_of_a_random_scan():
    """Many companies of random sizes and participation: a (company, scale, wave) is shown
    exactly when both groups have at least k scores, for both groups."""
    rng = np.random.default_rng(19)
    groups = {w: [] for w in WAVES}
    taking_part, register = [], []
    for c in range(30):
        company = f"c_{c:02d}"
        if c % 3:
            register.append(company)
        for w in WAVES:
            n_part, n_coll = (int(x) for x in rng.integers(0, 2 * K, 2))
            groups[w] += [(company, f"p{c}_", n_part, 3.0), (company, f"q{c}_", n_coll, 3.5)]
        taking_part += [f"p{c}_{i + 1}" for i in range(2 * K)]
    waves = {
        w: scores(w, [g for g in gs if g[2]]).assign(
            **{EM: lambda f: f[EM].where(rng.random(len(f)) > 0.2)}
        )
        for w, gs in groups.items()
    }
    persons = pd.DataFrame({"person_id": taking_part})
    trajectories = pd.DataFrame(
        {"company_id": register, "type": "leerlijn", "start": pd.Timestamp("2020-01-01")}
    )
    table = monitoring_numbers(T2, waves, trajectories, persons, CODEBOOK)
    shown = means(table)
    sizes = waves[T2].groupby("company_id").size()
    reported = set(sizes.index[sizes >= K]) & set(register)
    assert set(table["company_id"]) == reported
    expected = set()
    for w, frame in waves.items():
        for company in reported:
            for scale in OUTCOMES:
                own = frame[(frame["company_id"] == company) & frame[scale].notna()]
                part = own["person_id"].isin(set(taking_part))
                if part.sum() >= K and (~part).sum() >= K:
                    expected |= {(company, scale, w, PARTICIPANTS), (company, scale, w, COLLEAGUES)}
                    mean = own.loc[part, scale].mean()
                    assert shown[(company, scale, w, PARTICIPANTS)] == pytest.approx(mean)
    assert set(shown.index) == expected and len(expected) > 10
    assert len(expected) < 2 * len(reported) * len(OUTCOMES) * len(WAVES)  # some are hidden


# --- rendering ----------------------------------------------------------------------------------


def test_the_rendered_report_shows_the_section_and_its_ids(tmp_path):
    context = contexts(tmp_path / "figures")["c_a"]
    rendered = render_report(
        TEMPLATE, context, tmp_path / "out", "c_a", formats=("html",), engine="pandoc"
    )
    html = rendered.files[0].path.read_text(encoding="utf-8")
    assert "Monitoring leeropbrengsten" in html
    assert "1,37" in html and "3,20" in html and "1,23" not in html
    assert f"company_monitoring_numbers[{T2}](c_a,{SL},{T0},participants).mean" in html


def test_render_workers_pass_each_company_its_own_monitoring_rows(tmp_path):
    table = numbers()
    rows = report_rows(T2)
    one = render_company_reports(rows, T2, CODEBOOK, tmp_path / "one", 1, monitoring=table)
    two = render_company_reports(rows, T2, CODEBOOK, tmp_path / "two", 2, monitoring=table)
    assert sorted(one) == sorted(two) == ["c_a", "c_b"]
    for company in one:
        assert one[company].files[0].sha256 == two[company].files[0].sha256
    a = (tmp_path / "one" / "c_a.html").read_text(encoding="utf-8")
    b = (tmp_path / "one" / "c_b.html").read_text(encoding="utf-8")
    assert "1,37" in a and "Monitoring leeropbrengsten" in b and "1,37" not in b
    assert "geen ontwikkeltraject geregistreerd" in b
    plain = render_company_reports(rows, T2, CODEBOOK, tmp_path / "plain", 1)
    assert "Monitoring leeropbrengsten" not in (tmp_path / "plain" / "c_a.html").read_text()
    assert plain["c_a"].files[0].sha256 != one["c_a"].files[0].sha256


# --- the assets -------------------------------------------------------------------------------


def test_the_assets_are_wired_as_the_reports_read_them():
    """company_monitoring_numbers: per wave, shareable, every wave's scores and release files
    and the restricted trajectory assets; the company reports read it, the wave report the
    trajectory models."""
    asset = company_monitoring_numbers
    key = asset.key
    assert asset in REPORT_ASSETS and asset.group_names_by_key[key] == REPORTS
    assert asset.metadata_by_key[key]["file"] == "company_monitoring_numbers.csv"
    assert asset.partitions_def is not None and asset.partitions_def.name == "waves"
    every_wave = ["scale_scores", "anonymised_responses", "public_responses"]
    for parent in every_wave:
        assert asset.get_partition_mapping(dg.AssetKey(parent)) == dg.AllPartitionMapping()
    parents = {k.to_user_string() for k in asset.keys_by_input_name.values()}
    assert {*every_wave, "trajectory_companies", "trajectory_persons"} <= parents
    assert key in set(company_reports.keys_by_input_name.values())
    wave_inputs = {k.to_user_string() for k in wave_report.keys_by_input_name.values()}
    assert {"trajectory_effects", "trajectory_fit"} <= wave_inputs


def releases(hidden_scientific: set[str], hidden_public: dict[str, set[str]]):
    """The waves' release files as the intruder holds them: the participation answer "ja" for
    participants, "nee" for colleagues; withheld (SUPPRESSED) for the persons of
    `hidden_scientific` in every wave of the scientific file, and in the public file of a wave
    for those of `hidden_public[wave]`. The public file is the scientific one without
    person_id, row for row."""
    variable = CODEBOOK.trajectories.participation.variable
    scientific, public = {}, {}
    for wave, frame in WAVES.items():
        answer = frame["person_id"].isin(set(PERSONS["person_id"])).map({True: "ja", False: "nee"})
        release = frame[["person_id", "company_id", "wave"]].assign(**{variable: answer})
        scientific[wave] = release.assign(
            **{variable: answer.mask(frame["person_id"].isin(hidden_scientific), SUPPRESSED)}
        )
        public[wave] = release.drop(columns="person_id").assign(
            **{
                variable: answer.mask(
                    frame["person_id"].isin(hidden_public.get(wave, set())), SUPPRESSED
                )
            }  # fmt: skip
        )
    return scientific, public


def subtraction_attack(table: pd.DataFrame, release: pd.DataFrame, wave: str, scale: str):
    """The sets of persons whose answer `release` withholds that, added to the participants it
    shows, give c_a's published participants' mean on `scale` in `wave`: the intruder's
    candidates for who of them takes part. None when that mean is not published. The intruder
    knows every score (the items are in the file)."""
    key = ("c_a", scale, wave, PARTICIPANTS)
    shown = means(table)
    if key not in shown.index:
        return None
    scores = WAVES[wave].set_index("person_id")[scale].dropna()
    answers = release.set_index("person_id")[CODEBOOK.trajectories.participation.variable]
    answers = answers.reindex(scores.index)
    taking_part = list(scores.index[answers.eq("ja").fillna(False)])
    unknown = scores.index[answers.eq(SUPPRESSED).fillna(False)]
    return [
        set(subset)
        for size in range(len(unknown) + 1)
        for subset in itertools.combinations(unknown, size)
        if abs(scores[taking_part + list(subset)].mean() - shown[key]) < 1e-9
    ]


def test_means_a_release_file_would_give_back_for_fewer_than_k_withheld_are_left_out():
    """An intruder with a release file whose participation answer is withheld for fewer than
    k of a company's respondents takes the shown participants out of the published
    participants' mean and finds who of the withheld takes part; with 0 or at least k
    withheld, the means stay."""
    one = {"p_a1"}
    scientific, public = releases(one, {})
    unguarded = monitoring_numbers(T2, WAVES, TRAJECTORIES, PERSONS, CODEBOOK)
    # the attack works on the unguarded numbers: p_a1 is found taking part in T0
    assert subtraction_attack(unguarded, scientific[T0], T0, SL) == [one]
    withheld = participation_withheld(scientific, public, CODEBOOK)
    assert withheld[T0] == (one, set())
    guarded = monitoring_numbers(T2, WAVES, TRAJECTORIES, PERSONS, CODEBOOK, withheld)
    assert subtraction_attack(guarded, scientific[T0], T0, SL) is None
    assert not [key for key in means(guarded).index if key[0] == "c_a"]  # p_a1 in T0 and T2
    # the public file withholds two answers in T0 only: T0 goes, T2 stays
    scientific, public = releases(set(), {T0: {"p_a1", "q_a1"}})
    withheld = participation_withheld(scientific, public, CODEBOOK)
    assert withheld[T0] == (set(), {"p_a1", "q_a1"}) and withheld[T2] == (set(), set())
    guarded = means(monitoring_numbers(T2, WAVES, TRAJECTORIES, PERSONS, CODEBOOK, withheld))
    assert {key[2] for key in guarded.index} == {T2}
    # k withheld in every wave: the means stay (what they leave is the rule's residual risk)
    scientific, public = releases(set(PERSONS["person_id"][:K]), {})
    withheld = participation_withheld(scientific, public, CODEBOOK)
    kept = monitoring_numbers(T2, WAVES, TRAJECTORIES, PERSONS, CODEBOOK, withheld)
    assert means(kept).equals(means(unguarded))
