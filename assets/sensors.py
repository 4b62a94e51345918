"""The sensor that notices a new wave folder or a changed export (by sha256, not mtime)."""

import json

import dagster as dg

from assets.ingest import raw_responses, wave_fingerprint, wave_inputs
from assets.partitions import waves
from assets.privacy import privacy_boundary
from assets.resources import ScanConfig
from assets.staleness import DATA_VERSION, latest_tags
from pipeline.ingest.readers import export_files

wave_job = dg.define_asset_job(
    "wave_job",
    selection=dg.AssetSelection.assets(raw_responses).downstream()
    - dg.AssetSelection.assets(privacy_boundary).downstream(),
    description="A wave up to the privacy boundary: its exports read and validated.",
)

cross_wave_sensor = dg.AutomationConditionSensorDefinition(
    "cross_wave_sensor",
    target=dg.AssetSelection.assets(privacy_boundary).downstream(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Runs everything from the privacy boundary on by its automation condition: "
    "each wave's protected data and analyses once every wave is validated (anonymisation "
    "protects the waves together), then the cross-wave assets, then the reports; never over "
    "a wave whose last run failed.",
)


def stored_version(instance: dg.DagsterInstance, wave: str) -> str | None:
    return (latest_tags(instance, raw_responses.key, wave) or {}).get(DATA_VERSION)


@dg.sensor(
    job=wave_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    # what the UI shows (a sensor's docstring is not used), as Markdown: paths in backticks
    description="Adds a `waves` partition for each new wave folder with exports under "
    "`data/raw/<wave>/`, and starts `wave_job` for a wave whose inputs' content (sha256 of its "
    "exports and the codebook) changed since the last tick, unless a run (from `scan run`, say) "
    "already materialized exactly these inputs. Touching a file changes nothing. A folder the "
    "codebook does not declare, or with a reserved name (`all_waves`), is left out, with a "
    "warning in the tick's log.",
)
def wave_files_sensor(context: dg.SensorEvaluationContext, scan: ScanConfig) -> dg.SensorResult:
    """The sensor's tick: the partitions to add, the runs to request and the new cursor (each
    wave's input fingerprint), as its description says."""
    settings, codebook = scan.settings, scan.codebook()
    seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    found = [wave for wave in settings.waves() if export_files(settings.wave_dir(wave))]
    for wave in found:
        if refused := codebook.refused_wave(wave):
            context.log.warning(f"{refused}; it is left alone until then")
    current = {
        wave: wave_fingerprint(wave_inputs(settings, wave))
        for wave in found
        if not codebook.refused_wave(wave)
    }
    known = set(context.instance.get_dynamic_partitions(waves.name))
    new_partitions = sorted(set(current) - known)
    changed = sorted(
        wave
        for wave, digest in current.items()
        if seen.get(wave) != digest
        and (latest_tags(context.instance, raw_responses.key, wave) or {}).get(DATA_VERSION)
        != digest
    )
    return dg.SensorResult(
        dynamic_partitions_requests=[waves.build_add_request(new_partitions)]
        if new_partitions
        else [],
        run_requests=[
            dg.RunRequest(partition_key=wave, run_key=f"{wave}:{current[wave]}") for wave in changed
        ],
        cursor=json.dumps(current, sort_keys=True),
    )
