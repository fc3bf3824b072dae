"""The DAG files parse cleanly, follow the project's policies and touch nothing at parse time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from firehose_loader.config import load_config

ROOT = Path(__file__).resolve().parents[2]


def parse_dags(monkeypatch: pytest.MonkeyPatch, streams_file: Path | None = None):
    from airflow.dag_processing.dagbag import DagBag

    if streams_file is None:
        monkeypatch.delenv("STREAMS_CONFIG", raising=False)
    else:
        monkeypatch.setenv("STREAMS_CONFIG", str(streams_file))
    return DagBag(dag_folder=str(ROOT / "dags"))


@pytest.fixture
def bag(monkeypatch):
    # Nothing listens here: if parsing touched S3 or the warehouse, it would fail or hang.
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", '{"conn_type": "postgres", "host": "127.0.0.1", "port": 9}')
    return parse_dags(monkeypatch)


def test_dags_import_without_errors(bag):
    assert bag.import_errors == {}


def test_one_ingest_and_one_audit_dag_per_declared_stream(bag):
    streams = load_config().streams
    assert sorted(bag.dag_ids) == sorted(
        [f"ingest_{stream.name}" for stream in streams] + [f"audit_{stream.name}" for stream in streams]
    )


def test_every_dag_is_tagged_documented_and_retried(bag):
    for dag_id in bag.dag_ids:
        dag = bag.get_dag(dag_id)
        assert "firehose-loader" in dag.tags, dag_id
        assert any(tag.startswith("stream:") for tag in dag.tags), dag_id
        expected_doc = "Which hour a run loads" if dag_id.startswith("ingest_") else "What a run audits"
        assert dag.doc_md and expected_doc in dag.doc_md, dag_id
        for task in dag.tasks:  # the sensor too: a restart must not turn a healthy run red
            assert task.retries >= 1, f"{dag_id}.{task.task_id} has no retries"
            assert task.retry_exponential_backoff, f"{dag_id}.{task.task_id} retries without backoff"
            # a try that hangs (a lost connection, a lock never granted) fails and is retried
            assert task.execution_timeout is not None, f"{dag_id}.{task.task_id} has no execution_timeout"


def test_every_task_try_is_bounded_by_the_streams_task_timeout_and_the_wait_is_not_counted(bag):
    for stream in load_config().streams:
        for dag_id in (stream.ingest_dag_id, stream.audit_dag_id):
            dag = bag.get_dag(dag_id)
            timeout = timedelta(minutes=stream.task_timeout_minutes)
            sensor = dag.get_task("wait_for_settled_hour")
            assert sensor.execution_timeout == sensor.delta + timeout
            for task in dag.tasks:
                if task is not sensor:
                    assert task.execution_timeout == timeout, f"{dag_id}.{task.task_id}"


def test_ingest_waits_with_a_deferrable_sensor_and_emits_the_table_asset(bag):
    for stream in load_config().streams:
        dag = bag.get_dag(stream.ingest_dag_id)
        sensor = dag.get_task("wait_for_settled_hour")
        assert sensor.deferrable is True
        assert sensor.delta == stream.settle_grace
        outlets = dag.get_task("load_and_merge").outlets
        assert [asset.name for asset in outlets] == [f"warehouse.{stream.qualified_table}"]


def test_a_run_at_eleven_loads_ten_to_eleven(bag):
    """`airflow dags test ingest_<name> 2026-03-01T11:00:00+00:00` must load 10:00-11:00."""
    import pendulum
    from airflow.serialization.encoders import coerce_to_core_timetable

    stream = load_config().streams[0]
    timetable = coerce_to_core_timetable(bag.get_dag(stream.ingest_dag_id).timetable)
    interval = timetable.infer_manual_data_interval(run_after=pendulum.datetime(2026, 3, 1, 11, tz="UTC"))
    assert (interval.start, interval.end) == (
        datetime(2026, 3, 1, 10, tzinfo=UTC),
        datetime(2026, 3, 1, 11, tzinfo=UTC),
    )


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("table", "x; DROP TABLE y", "field 'table'"),
        ("key", ["nope"], "field 'key'"),
        ("columns", {"id": "varchar(10)", "seq": "money"}, "unknown column type"),
        ("prefix", "events", "must end with '/'"),
    ],
)
def test_bad_stream_config_is_an_import_error_naming_stream_and_field(monkeypatch, tmp_path, field, value, message):
    entry = {
        "name": "broken",
        "bucket": "some-bucket",
        "prefix": "events/",
        "table": "analytics.broken",
        "key": ["id"],
        "order_by": "seq",
        "columns": {"id": "varchar(10)", "seq": "integer"},
        field: value,
    }
    streams_file = tmp_path / "streams.yml"
    streams_file.write_text(yaml.safe_dump({"streams": [entry]}))
    bag = parse_dags(monkeypatch, streams_file)
    errors = "\n".join(bag.import_errors.values())
    assert "stream 'broken'" in errors
    assert message in errors
    assert bag.dag_ids == []


def stream_entry(name: str, **fields) -> dict:
    return {
        "name": name,
        "bucket": f"bucket-{name.replace('_', '-')}",
        "prefix": "events/",
        "table": f"analytics.{name}",
        "key": ["id"],
        "order_by": "seq",
        "columns": {"id": "varchar(10)", "seq": "integer"},
        **fields,
    }


def test_one_broken_stream_stays_alone(monkeypatch, tmp_path):
    """The valid streams keep their ingest and audit DAGs; the broken one is streams_config.py's import error."""
    streams_file = tmp_path / "streams.yml"
    document = {"streams": [stream_entry("good"), stream_entry("broken", key=["nope"]), stream_entry("also_good")]}
    streams_file.write_text(yaml.safe_dump(document))
    bag = parse_dags(monkeypatch, streams_file)
    assert sorted(bag.dag_ids) == ["audit_also_good", "audit_good", "ingest_also_good", "ingest_good"]
    assert [Path(path).name for path in bag.import_errors] == ["streams_config.py"]
    (error,) = bag.import_errors.values()
    assert "stream 'broken', field 'key'" in error
    assert "'nope'" in error
    assert "'good'" not in error


def test_a_later_duplicate_is_refused_and_the_first_keeps_its_dags(monkeypatch, tmp_path):
    streams_file = tmp_path / "streams.yml"
    document = {"streams": [stream_entry("orders"), stream_entry("orders", table="analytics.other")]}
    streams_file.write_text(yaml.safe_dump(document))
    bag = parse_dags(monkeypatch, streams_file)
    assert sorted(bag.dag_ids) == ["audit_orders", "ingest_orders"]
    assert bag.get_dag("ingest_orders").get_task("load_and_merge").outlets[0].name == "warehouse.analytics.orders"
    (error,) = bag.import_errors.values()
    assert "stream 'orders' (streams[1]), field 'name': duplicate stream name" in error


def test_a_streams_merge_pool_holds_exactly_its_warehouse_writing_tasks(monkeypatch, tmp_path):
    streams_file = tmp_path / "streams.yml"
    document = {"streams": [stream_entry("pooled", merge_pool="firehose_warehouse"), stream_entry("plain")]}
    streams_file.write_text(yaml.safe_dump(document))
    bag = parse_dags(monkeypatch, streams_file)
    writers = {"load_and_merge", "audit_and_repair", "late_sweep", "erase_keys"}
    for name, pool in (("pooled", "firehose_warehouse"), ("plain", "default_pool")):
        for dag_id in (f"ingest_{name}", f"audit_{name}"):
            for task in bag.get_dag(dag_id).tasks:
                expected = pool if task.task_id in writers else "default_pool"
                assert task.pool == expected, (dag_id, task.task_id, task.pool)


def test_an_error_of_the_whole_file_fails_every_dag_file(monkeypatch, tmp_path):
    streams_file = tmp_path / "streams.yml"
    streams_file.write_text(yaml.safe_dump({"streams": [stream_entry("good")], "loader_schema": "Bad-Schema"}))
    bag = parse_dags(monkeypatch, streams_file)
    assert bag.dag_ids == []
    assert sorted(Path(path).name for path in bag.import_errors) == [
        "audit.py",
        "ingest.py",
        "microbatch.py",
        "streams_config.py",
    ]
    assert all("loader_schema" in error for error in bag.import_errors.values())


def test_big_hours_fan_out_to_mapped_parts_and_meet_again_before_the_merge(bag):
    for stream in load_config().streams:
        dag = bag.get_dag(stream.ingest_dag_id)
        part = dag.get_task("extract_part")
        combine = dag.get_task("combine_parts")
        assert type(part).__name__.endswith("MappedOperator")
        assert part.upstream_task_ids == {"extract_hour"}
        assert combine.upstream_task_ids == {"extract_hour", "extract_part"}
        # A small hour maps over no parts and skips extract_part; the merge must still run.
        assert str(combine.trigger_rule) in ("none_failed", "TriggerRule.NONE_FAILED")
        assert dag.get_task("load_and_merge").upstream_task_ids == {"combine_parts", "ensure_tables"}


def test_tables_are_ensured_beside_the_wait_and_before_the_first_write(bag):
    for stream in load_config().streams:
        ingest = bag.get_dag(stream.ingest_dag_id)
        assert ingest.get_task("ensure_tables").upstream_task_ids == set()
        assert ingest.get_task("extract_hour").upstream_task_ids == {"wait_for_settled_hour"}
        assert "ensure_tables" in ingest.get_task("load_and_merge").upstream_task_ids
        audit = bag.get_dag(stream.audit_dag_id)
        assert audit.get_task("ensure_tables").upstream_task_ids == set()
        assert audit.get_task("audit_and_repair").upstream_task_ids == {"wait_for_settled_hour", "ensure_tables"}


def test_the_audit_dag_erases_the_keys_a_run_names_beside_the_audit(bag):
    for stream in load_config().streams:
        audit = bag.get_dag(stream.audit_dag_id)
        assert audit.get_task("erase_keys").upstream_task_ids == {"ensure_tables"}
        assert audit.params["erase_keys"] == [] and audit.params["erase_reason"] == ""


def test_the_late_sweep_follows_the_audit_in_its_dag(bag):
    for stream in load_config().streams:
        audit = bag.get_dag(stream.audit_dag_id)
        assert audit.get_task("late_sweep").upstream_task_ids == {"audit_and_repair"}
        assert audit.get_task("late_sweep").retries == 3
        assert audit.get_task("late_sweep").trigger_rule == "all_done"


def test_poll_and_events_streams_get_a_micro_batch_dag_hourly_ones_do_not(monkeypatch, tmp_path):
    queue = "https://sqs.us-east-1.amazonaws.com/123456789012/firehose-events"
    streams_file = tmp_path / "streams.yml"
    document = {
        "streams": [
            stream_entry("hourly"),
            stream_entry("polled", freshness={"mode": "poll", "interval_minutes": 2}),
            stream_entry("evented", freshness={"mode": "events", "queue_url": queue, "queue_poll_seconds": 3}),
        ]
    }
    streams_file.write_text(yaml.safe_dump(document))
    bag = parse_dags(monkeypatch, streams_file)
    assert bag.import_errors == {}
    assert sorted(dag_id for dag_id in bag.dag_ids if dag_id.startswith("microbatch_")) == [
        "microbatch_evented",
        "microbatch_polled",
    ]
    from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable

    polled = bag.get_dag("microbatch_polled")
    assert isinstance(polled.timetable, CronTriggerTimetable) and polled.timetable.expression == "*/2 * * * *"
    evented = bag.get_dag("microbatch_evented")
    # The S3 events wake it; the timed sweep (every 10 minutes) finds what a lost event did not announce.
    assert isinstance(evented.timetable, AssetOrTimeSchedule)
    assert evented.timetable.timetable.expression == "*/10 * * * *"
    asset = evented.timetable.asset_condition
    assert asset.name == "s3-events.evented"
    (watcher,) = asset.watchers
    assert type(watcher.trigger).__name__ == "SqsSensorTrigger"
    assert (watcher.trigger.sqs_queue, watcher.trigger.waiter_delay) == (queue, 3)
    for dag in (polled, evented):
        assert dag.max_active_runs == 1 and not dag.catchup
        (task,) = dag.tasks
        assert task.task_id == "merge_new_objects" and task.retries >= 1 and task.retry_exponential_backoff
        assert [outlet.name for outlet in task.outlets] == [
            f"warehouse.analytics.{dag.dag_id.removeprefix('microbatch_')}"
        ]
