"""The production instance (deploy/dagster.yaml): the demo's `scan run` that was killed and
completed by the next one (conftest.killed_run) ran on it, with runs, events and schedules in a
PostgreSQL database of its own; read them back."""

import dagster as dg
import yaml
from conftest import (
    DEPLOY_INSTANCE,
    ROOT,
    WAVES,
    fill_env,
    postgres_connect,
    postgres_server,
)
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

from assets.definitions import build_definitions
from pipeline.lineage.settings import Settings

# a few assets of each stage: per wave, across the waves, the reports
PER_WAVE = ["raw_responses", "validated_responses", "scale_scores", "reliability"]
CROSS_WAVE = ["measurement_invariance", "longitudinal_multilevel"]
REPORTS = ["wave_report", "provenance_manifest"]


def database(home) -> str:
    return yaml.safe_load((home / "dagster.yaml").read_text())["storage"]["postgres"][
        "postgres_db"
    ]["db_name"]


def test_the_run_used_the_shipped_instance_config(killed_run):
    """What `scan run` read is deploy/dagster.yaml with the server's values filled in: the file
    the README tells an operator to copy is the one tested."""
    config = yaml.safe_load((killed_run.home / "dagster.yaml").read_text())
    values = {**postgres_server(), "DAGSTER_PG_DB": database(killed_run.home)}
    values["DAGSTER_PG_PORT"] = int(values["DAGSTER_PG_PORT"])
    assert config == fill_env(yaml.safe_load(DEPLOY_INSTANCE.read_text()), values)
    assert set(config) >= {"storage", "run_coordinator", "concurrency", "telemetry"}


def test_runs_and_materializations_read_back_from_postgres(killed_run):
    with dg.DagsterInstance.from_config(str(killed_run.home)) as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
        records = instance.get_run_records()
        # 3 waves validated, 3 protected, the cross-wave stage and the first wave's reports,
        # killed (marked failed by the next run); then the next run's 3 waves' reports and the
        # catalog
        statuses = [r.dagster_run.status for r in records]
        assert len(records) == 12
        assert statuses.count(dg.DagsterRunStatus.FAILURE) == 1
        assert statuses.count(dg.DagsterRunStatus.SUCCESS) == 11
        assert {r.dagster_run.tags["scan/command"] for r in records} == {"scan run"}
        by_partition = {r.dagster_run.tags.get("dagster/partition") for r in records}
        assert by_partition == {*WAVES, None}
        run_ids = {
            r.dagster_run.run_id
            for r in records
            if r.dagster_run.status == dg.DagsterRunStatus.SUCCESS
        }
        assert sorted(instance.get_dynamic_partitions("waves")) == WAVES

        for wave in WAVES:
            for asset in [*PER_WAVE, *REPORTS]:
                key = dg.AssetKey(asset)
                found = instance.fetch_materializations(
                    dg.AssetRecordsFilter(asset_key=key, asset_partitions=[wave]), limit=1
                ).records
                assert found, (asset, wave)
                assert found[0].run_id in run_ids  # the latest, from a run that succeeded
                assert found[0].asset_materialization.metadata, (asset, wave)
        for asset in CROSS_WAVE:
            found = instance.fetch_materializations(dg.AssetKey(asset), limit=2).records
            assert len(found) == 1 and found[0].run_id in run_ids, asset
        # the data versions `scan status` compares come from the same records
        for wave in WAVES:
            record = instance.get_latest_data_version_record(
                dg.AssetKey("scale_scores"), partition_key=wave
            )
            assert record is not None and record.run_id in run_ids
            assert record.asset_materialization.tags["dagster/data_version"]


def test_the_storage_is_really_postgres(killed_run):
    """Dagster's tables are in the session's PostgreSQL database, and DAGSTER_HOME holds no
    SQLite storage (only logs and the local artifacts)."""
    connection = postgres_connect(postgres_server(), database(killed_run.home))
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            )
            tables = {name for (name,) in cursor.fetchall()}
            cursor.execute("SELECT count(*), count(DISTINCT status) FROM runs")
            runs = cursor.fetchone()
            cursor.execute(
                "SELECT count(*) FROM event_logs WHERE dagster_event_type = "
                "'ASSET_MATERIALIZATION' AND partition = %s",
                (WAVES[0],),
            )
            (materialized,) = cursor.fetchone()
            cursor.execute("SELECT partition FROM dynamic_partitions ORDER BY partition")
            partitions = [name for (name,) in cursor.fetchall()]
    finally:
        connection.close()
    # runs, the event log, and the schedule and sensor storage
    assert {"runs", "event_logs", "asset_keys", "jobs", "job_ticks", "instigators"} <= tables
    assert {"concurrency_limits", "dynamic_partitions", "alembic_version"} <= tables
    assert runs == (12, 2)  # 11 succeeded, 1 marked failed
    assert materialized >= len(PER_WAVE) + len(REPORTS)
    assert partitions == WAVES
    assert not list(killed_run.home.rglob("*.db")), "SQLite storage in DAGSTER_HOME"


def test_the_shipped_config_reads_its_connection_from_the_environment(killed_run, monkeypatch):
    """deploy/dagster.yaml as an operator installs it: copied verbatim into DAGSTER_HOME, the
    connection in DAGSTER_PG_*; it sees the same runs, and carries the concurrency limits."""
    home = killed_run.home.parent / "operator_home"
    home.mkdir()
    (home / "dagster.yaml").write_bytes(DEPLOY_INSTANCE.read_bytes())
    for name, value in postgres_server().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DAGSTER_PG_DB", database(killed_run.home))
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get() as instance:
        assert len(instance.get_runs()) == 12
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        limits = instance.get_concurrency_config()
        assert limits.run_queue_config.max_concurrent_runs == 2
        assert limits.run_queue_config.tag_concurrency_limits == [
            {"key": "dagster/partition", "value": {"applyLimitPerUniqueValue": True}, "limit": 1}
        ]
        assert limits.pool_config.default_pool_limit == 1
    assert yaml.safe_load(DEPLOY_INSTANCE.read_text())["telemetry"] == {"enabled": False}


def test_the_run_config_sets_the_multiprocess_executor_of_wave_job():
    """deploy/run_config.yaml is valid run config for the code location's job."""
    run_config = yaml.safe_load((ROOT / "deploy" / "run_config.yaml").read_text())
    job = build_definitions(Settings.from_env()).resolve_job_def("wave_job")
    assert job.executor_def.name == "multi_or_in_process_executor"
    execution = dg.validate_run_config(job, run_config)["execution"]
    assert execution["multi_or_in_process_executor"]["multiprocess"]["max_concurrent"] == 2


def test_the_helm_values_run_this_code_location():
    """deploy/helm/values.yaml (not deployed here): the user code deployment serves the module
    workspace.yaml loads, runs go to Kubernetes jobs, and PostgreSQL holds the storage."""
    values = yaml.safe_load((ROOT / "deploy" / "helm" / "values.yaml").read_text())
    workspace = yaml.safe_load((ROOT / "workspace.yaml").read_text())
    module = workspace["load_from"][0]["python_module"]["module_name"]
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    assert deployment["dagsterApiGrpcArgs"][:2] == ["--module-name", module]
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["postgresql"]["enabled"] is True
    shipped = yaml.safe_load(DEPLOY_INSTANCE.read_text())["storage"]["postgres"]["postgres_db"]
    assert values["postgresql"]["postgresqlScheme"] == shipped["scheme"]
    assert values["concurrency"]["runs"]["maxConcurrentRuns"] == 2
    assert values["telemetry"]["enabled"] is False
