"""Stage 6: multilevel models of the learning outcomes, per wave (two-level) and across the waves
(three-level), with a blocking check that no fit with an unresolved problem is published."""

import dagster as dg
import pandas as pd

from assets.partitions import waves
from assets.resources import ALL_WAVES, ScanConfig
from assets.versions import shareable, source_version
from pipeline.instrument.codebook import Codebook
from pipeline.models.communities import community_frame, community_models
from pipeline.models.multilevel import (
    NotEstimable,
    coefficients_table,
    fit_table,
    longitudinal_models,
    model_frame,
    wave_models,
)
from pipeline.models.trajectories import exposure_frame, trajectory_models

MODELS_CODE_VERSION = source_version(
    "pipeline.models.multilevel",
    "pipeline.models.nested_lmm",
    "pipeline.models.mixed_fit",
    "pipeline.models.trajectories",
    "pipeline.models.communities",
    __name__,
)


def _frame(scores: pd.DataFrame, responses: pd.DataFrame, codebook: Codebook) -> pd.DataFrame:
    controls = {name: codebook.background[name].levels for name in codebook.models.controls}
    return model_frame(scores, responses, controls)


def _outputs(results, coefficients: str, fits: str):
    table, fit = coefficients_table(results), fit_table(results)
    blocked = fit.loc[fit["blocking"], "model"].tolist()
    skipped = dg.MetadataValue.json(
        {r.model: r.reason for r in results if isinstance(r, NotEstimable)}
    )
    yield dg.Output(
        table, coefficients, metadata={"dagster/row_count": len(table), "not_estimable": skipped}
    )
    yield dg.Output(
        fit, fits, metadata={"models": len(fit), "blocked": blocked, "not_estimable": skipped}
    )


def _outs(prefix: str, where: str) -> dict[str, dg.AssetOut]:
    return {
        f"{prefix}multilevel": dg.AssetOut(
            io_manager_key="shareable_io",
            kinds={"csv"},
            metadata={"file": "multilevel.csv"},
            description=f"Fixed effects of the multilevel models {where}: estimate, SE, t-based "
            "CI and p with the between-within df, and the OLS cluster-robust sensitivity.",
        ),
        f"{prefix}multilevel_fit": dg.AssetOut(
            io_manager_key="shareable_io",
            kinds={"csv"},
            metadata={"file": "multilevel_fit.csv"},
            description=f"Fit of the multilevel models {where}: n, groups, logLik, AIC, BIC, "
            "variance components, ICC, Nakagawa R2, engine, problems and notes.",
        ),
    }


@dg.multi_asset(
    partitions_def=waves,
    group_name="models",
    code_version=shareable(MODELS_CODE_VERSION),
    outs=_outs("", "of the wave (outcome on culture within and between companies)"),
)
def multilevel_models(
    scan: ScanConfig, scale_scores: pd.DataFrame, reported_responses: pd.DataFrame
):
    """Per outcome: the empty model and the full two-level model (REML), with the ML
    likelihood-ratio test between them."""
    codebook = scan.codebook()
    models = codebook.models
    frame = _frame(scale_scores, reported_responses, codebook)
    results = wave_models(frame, models.outcomes, models.culture, models.controls)
    yield from _outputs(results, "multilevel", "multilevel_fit")


@dg.multi_asset(
    group_name=ALL_WAVES,
    code_version=shareable(MODELS_CODE_VERSION),
    outs=_outs("longitudinal_", "across the waves (company / person / wave)"),
)
def longitudinal_multilevel_models(
    scan: ScanConfig,
    scale_scores: dict[str, pd.DataFrame],
    reported_responses: dict[str, pd.DataFrame],
):
    """Per outcome, all waves: wave + culture within and between + controls, random intercepts
    for company and person within company, and a company wave slope where the data carry it.
    With one wave (or two, for the slope) `notes` of the fit table says what is not estimable."""
    codebook = scan.codebook()
    models = codebook.models
    frame = pd.concat(
        [_frame(scale_scores[w], reported_responses[w], codebook) for w in sorted(scale_scores)],
        ignore_index=True,
    )
    order = [w for w in codebook.waves if w in scale_scores]
    results = longitudinal_models(
        frame, models.outcomes, models.culture, models.controls, wave_order=order
    )
    yield from _outputs(results, "longitudinal_multilevel", "longitudinal_multilevel_fit")


@dg.multi_asset(
    group_name=ALL_WAVES,
    code_version=shareable(MODELS_CODE_VERSION),
    outs={
        "trajectory_effects": dg.AssetOut(
            io_manager_key="shareable_io",
            kinds={"csv"},
            metadata={"file": "trajectory_effects.csv"},
            description="Fixed effects of the trajectory models per culture and outcome scale "
            "(difference-in-differences `after_start`, participants vs colleagues "
            "`participant_after_start`), with the between-within df, as multilevel.csv.",
        ),
        "trajectory_fit": dg.AssetOut(
            io_manager_key="shareable_io",
            kinds={"csv"},
            metadata={"file": "trajectory_fit.csv"},
            description="Fit of the trajectory models, as multilevel_fit.csv; `notes` counts "
            "the companies with and without a trajectory and the participants.",
        ),
    },
)
def trajectory_effects(
    scan: ScanConfig,
    scale_scores: dict[str, pd.DataFrame],
    trajectory_companies: pd.DataFrame,
    trajectory_persons: pd.DataFrame,
):
    """Per culture and outcome scale, all waves: the difference-in-differences of the companies
    with a trajectory against those without, and their participants against their colleagues
    (pipeline/models/trajectories.py)."""
    codebook = scan.codebook()
    spec = codebook.trajectories
    scales = [*codebook.models.culture, *codebook.models.outcomes]
    starts = {name: wave.start for name, wave in codebook.waves.items()}
    undated = [name for name in scale_scores if starts[name] is None]
    if spec is None:
        reason = "no trajectory register declared (the codebook's registers.trajectories)"
        results = [NotEstimable("", "", f"not estimable: {reason}")]
    elif undated:
        reason = f"the codebook gives wave {undated[0]} no start date to place a trajectory's start"
        results = [NotEstimable("", "", f"not estimable: {reason}")]
    else:
        participants = trajectory_persons["person_id"] if spec.knows_participants else None
        frame = exposure_frame(
            pd.concat([scale_scores[w] for w in sorted(scale_scores)], ignore_index=True),
            trajectory_companies,
            None if participants is None else frozenset(participants),
            {name: pd.Timestamp(start) for name, start in starts.items() if start},
        )
        results = trajectory_models(frame, scales, list(codebook.waves))
    yield from _outputs(results, "trajectory_effects", "trajectory_fit")


@dg.multi_asset(
    group_name=ALL_WAVES,
    code_version=shareable(MODELS_CODE_VERSION),
    outs={
        "community_effects": dg.AssetOut(
            io_manager_key="shareable_io",
            kinds={"csv"},
            metadata={"file": "community_effects.csv"},
            description="Fixed effects of the community models per culture and outcome scale "
            "(`community`: member companies' difference, `community_growth`: their change per "
            "wave beyond the others'), with the between-within df, as multilevel.csv.",
        ),
        "community_fit": dg.AssetOut(
            io_manager_key="shareable_io",
            kinds={"csv"},
            metadata={"file": "community_fit.csv"},
            description="Fit of the community models, as multilevel_fit.csv; `notes` counts "
            "the member companies and communities.",
        ),
    },
)
def community_effects(
    scan: ScanConfig, scale_scores: dict[str, pd.DataFrame], community_members: pd.DataFrame
):
    """Per culture and outcome scale, all waves: learning-community membership as a
    company-level predictor of the score and its growth (pipeline/models/communities.py)."""
    codebook = scan.codebook()
    scales = [*codebook.models.culture, *codebook.models.outcomes]
    if codebook.communities is None:
        reason = "no community register declared (the codebook's registers.communities)"
        results = [NotEstimable("", "", f"not estimable: {reason}")]
    else:
        frame = community_frame(
            pd.concat([scale_scores[w] for w in sorted(scale_scores)], ignore_index=True),
            community_members,
            list(codebook.waves),
        )
        communities = community_members["community_id"].nunique()
        results = community_models(frame, scales, list(codebook.waves), communities)
    yield from _outputs(results, "community_effects", "community_fit")


def _guard(fits: pd.DataFrame) -> dg.AssetCheckResult:
    blocked = fits[fits["blocking"]]
    return dg.AssetCheckResult(
        passed=blocked.empty,
        metadata={
            "blocked": dg.MetadataValue.json(
                dict(zip(blocked["model"], blocked["problems"], strict=True))
            ),
            "notes": dg.MetadataValue.json(
                {
                    m: n
                    for m, n in zip(fits["model"].fillna(""), fits["notes"].fillna(""), strict=True)
                    if n
                }
            ),
        },
    )


@dg.asset_check(asset="multilevel_fit", partitions_def=waves, blocking=True)
def models_converged(multilevel_fit: pd.DataFrame) -> dg.AssetCheckResult:
    """Every model converged without a zero or non-finite fixed effect, after refits with other
    optimisers and starts (statsmodels #10239); a model that did not publishes no numbers."""
    return _guard(multilevel_fit)


@dg.asset_check(asset="trajectory_fit", blocking=True)
def trajectory_models_converged(trajectory_fit: pd.DataFrame) -> dg.AssetCheckResult:
    """As `models_converged`, for the trajectory models."""
    return _guard(trajectory_fit)


@dg.asset_check(asset="longitudinal_multilevel_fit", blocking=True)
def longitudinal_models_converged(longitudinal_multilevel_fit: pd.DataFrame) -> dg.AssetCheckResult:
    """As `models_converged`, for the models across the waves."""
    return _guard(longitudinal_multilevel_fit)


@dg.asset_check(asset="community_fit", blocking=True)
def community_models_converged(community_fit: pd.DataFrame) -> dg.AssetCheckResult:
    """As `models_converged`, for the community models."""
    return _guard(community_fit)
