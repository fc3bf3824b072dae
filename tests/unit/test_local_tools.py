"""`make up`'s pieces that need no server: the producer's plan, the backfill window, stopping a process tree."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from firehose_loader.config import parse_config
from firehose_loader.layout import hour_prefix
from tools import airflow_local, producer, up

STREAM = parse_config(
    {
        "streams": [
            {
                "name": "events",
                "bucket": "firehose-events",
                "prefix": "events/",
                "table": "analytics.events",
                "key": ["event_id"],
                "order_by": "received_at",
                "columns": {"event_id": "varchar(64)", "received_at": "timestamptz", "properties": "json"},
            }
        ]
    }
).streams[0]
HOUR = datetime(2026, 3, 1, 10, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]


def test_an_hour_is_the_same_objects_every_time():
    first = producer.planned_objects(STREAM, HOUR, 200)
    again = producer.planned_objects(STREAM, HOUR, 200)
    assert [(item.key, item.body) for item in first] == [(item.key, item.body) for item in again]
    assert all(item.key.startswith(hour_prefix("events/", HOUR)) for item in first)
    assert all(HOUR <= producer.key_moment(item.key) < HOUR + timedelta(hours=1) for item in first)
    other = producer.planned_objects(STREAM, HOUR + timedelta(hours=1), 200)
    assert not {item.key for item in first} & {item.key for item in other}


def test_late_objects_resend_records_of_their_hour_some_newer():
    hours = [HOUR + timedelta(hours=offset) for offset in range(12)]
    late = {hour: producer.late_object(STREAM, hour, 200) for hour in hours}
    assert 0 < sum(item is not None for item in late.values()) < len(hours)
    for hour, item in late.items():
        if item is None:
            continue
        planned = {}
        for obj in producer.planned_objects(STREAM, hour, 200):
            for record in obj.records:
                with contextlib.suppress(orjson.JSONDecodeError):  # the truncated record some hours have
                    event = orjson.loads(record)
                    planned[event["event_id"]] = event
        events = [orjson.loads(record) for record in item.records]
        assert len(events) == 8 and all(event["event_id"] in planned for event in events)
        newer = [event for event in events if event["received_at"] > planned[event["event_id"]]["received_at"]]
        assert len(newer) == 4
        assert item.key.startswith(hour_prefix("events/", hour)) and item.key not in {
            obj.key for obj in producer.planned_objects(STREAM, hour, 200)
        }


def test_most_hours_are_damaged_some_stay_clean():
    plans = [producer.damage_plan(STREAM, HOUR + timedelta(hours=offset)) for offset in range(48)]
    clean = [plan for plan in plans if plan == (0, 0, 0)]
    assert 0 < len(clean) < len(plans) / 2
    assert all(1 <= drops <= 12 and 0 <= doubled <= 5 and 0 <= older <= 4 for drops, doubled, older in plans if drops)


def test_the_backfill_leaves_the_latest_hour_to_the_scheduler():
    start, end = up.backfill_window(datetime(2026, 3, 1, 19, 7, tzinfo=UTC))
    assert end == datetime(2026, 3, 1, 17, tzinfo=UTC)  # the scheduler runs 18:00-19:00 itself
    assert (end - start) / timedelta(hours=1) == up.BACKFILL_HOURS - 2


def test_stop_tree_stops_a_process_and_its_children():
    script = (
        "import subprocess, sys, time\n"
        "subprocess.Popen([sys.executable, '-c', 'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)'])\n"
        "time.sleep(60)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    deadline = time.monotonic() + 10
    while len(airflow_local.process_tree(process.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    tree = airflow_local.process_tree(process.pid)
    assert len(tree) == 2
    killed = airflow_local.stop_tree(process.pid, signal.SIGINT, grace=1.0)
    process.wait(timeout=5)
    assert killed == [tree[1]]  # the child ignored SIGTERM and had to be killed
    time.sleep(0.2)
    assert not any(airflow_local.alive(pid) for pid in tree)


def test_the_ui_has_a_metadata_database_and_home_of_its_own():
    from tools import stack

    ui = up.environment()
    tests = stack.stack_environment()
    assert ui["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].endswith(f"/{stack.UI_DATABASE}")
    assert tests["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].endswith(f"/{stack.TESTS_DATABASE}")
    assert stack.UI_DATABASE != stack.TESTS_DATABASE and stack.UI_DATABASE in stack.DATABASES
    assert ui["AIRFLOW_HOME"] == str(up.AIRFLOW_HOME) != tests["AIRFLOW_HOME"]
    # The api-server and the scheduler sign and check the tasks' tokens with the same secret, kept across starts.
    assert ui["AIRFLOW__API_AUTH__JWT_SECRET"] == up.environment()["AIRFLOW__API_AUTH__JWT_SECRET"]
    assert ui["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"] != "8793"


def test_the_api_server_starts_before_anything_that_runs_a_task():
    assert up.COMPONENTS[0] == "api-server"
    assert set(up.COMPONENTS) == {"api-server", "scheduler", "dag-processor", "triggerer"}


def test_a_failed_task_is_explained_by_the_error_its_log_ends_with():
    content = [
        {"event": "Task started", "level": "info"},
        {"event": "Connection refused, retrying", "level": "error"},
        {
            "event": "Task failed with exception",
            "level": "error",
            "error_detail": [{"exc_type": "ConnectError", "exc_value": "[Errno 111]\n Connection refused"}],
        },
    ]
    assert up.error_in_log(content) == "ConnectError: [Errno 111] Connection refused"
    assert up.error_in_log([{"event": "S3 said no", "level": "error"}]) == "S3 said no"
    assert "did not run" in up.error_in_log([{"event": "hello", "level": "info"}])


def test_dynamic_partitioning_delivers_the_same_records_into_the_partitions_folders():
    from firehose_loader.config import load_config
    from firehose_loader.layout import stream_layout

    # The bundled streams file, whatever STREAMS_CONFIG another test left pointing elsewhere.
    partitioned = load_config(ROOT / "include" / "streams.yml").stream("events_by_type")
    layout = stream_layout(partitioned)
    planned = producer.planned_objects(STREAM, HOUR, 200)
    copies = producer.partitioned_copies(STREAM, partitioned, planned, HOUR)
    again = producer.partitioned_copies(STREAM, partitioned, planned, HOUR)
    assert [(item.key, item.body) for item in copies] == [(item.key, item.body) for item in again]
    assert sorted(record for item in copies for record in item.records) == sorted(
        record for item in planned for record in item.records
    )
    for item in copies:
        values = (
            {orjson.loads(record)["event_type"] for record in item.records}
            if layout.is_hour_object(item.key, HOUR)
            else set()
        )
        if values:  # one event type per object, in its own folder of the hour
            (value,) = values
            assert item.key.startswith(f"by-type/event_type={value}/year=2026/month=03/day=01/hour=10/")
        else:  # records without a partition key value: Firehose's error output
            assert layout.is_error_object(item.key, HOUR)
            assert all(b"event_type" not in record for record in item.records)
