"""Freshness mode events end to end: a running api-server, scheduler, dag-processor and triggerer.

One stream in mode ``events`` on the local stack: its bucket notifies its SQS queue (moto delivers
S3 notifications to its own SQS, as S3 does), the triggerer's ``SqsSensorTrigger`` turns messages
into asset events, and each wakes ``microbatch_<stream>``. Objects PUT at intervals into the open
hour must be committed within the events mode's target latency; an object whose event is lost
(the notification removed and the queue purged before it lands) must be committed by the timed
sweep. The whole run takes a few minutes: Airflow starts, and the sweep runs every 2 minutes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import psycopg
import pytest
import yaml
from psycopg import sql

from firehose_loader.layout import hour_start
from tests.integration.support import ndjson
from tools import airflow_local, stack

ROOT = Path(__file__).resolve().parents[2]
HOME = ROOT / ".local" / "freshness-e2e"
DATABASE = "airflow_freshness"
SWEEP_MINUTES = 2
# Events mode's target: p95 landing -> committed within 30 s on the local stack (bench, not here).
# A test on a shared 2-core CI machine asserts the looser bound the issue gives poll mode.
EVENT_BOUND_SECONDS = 90
pytestmark = [pytest.mark.integration, pytest.mark.scheduler]


def in_one_hour() -> datetime:
    """The current hour, with at least 8 minutes left in it (else the next one, after waiting for it)."""
    now = datetime.now(UTC)
    end = hour_start(now) + timedelta(hours=1)
    if end - now < timedelta(minutes=8):
        time.sleep((end - now).total_seconds() + 2)
    return hour_start(datetime.now(UTC))


@pytest.fixture(scope="module")
def airflow_running(stack_up):
    token = uuid.uuid4().hex[:8]
    shutil.rmtree(HOME, ignore_errors=True)
    logs = HOME / "logs"
    logs.mkdir(parents=True)
    name = f"fresh_{token}"
    queue_url = stack.local_queue_url(f"fresh-{token}")
    entry = {
        "name": name,
        "bucket": f"t-fresh-{token}",
        "prefix": "events/",
        "table": f"t_{token}_fresh.events",
        "key": ["id"],
        "order_by": "seq",
        "columns": {"id": "varchar(32)", "seq": "integer", "note": "text"},
        "settle_grace_minutes": 0,
        # From the current hour: the ingest and audit have no hour to run yet, only the micro-batches.
        "start_date": hour_start(datetime.now(UTC)).isoformat(),
        "freshness": {
            "mode": "events",
            "queue_url": queue_url,
            "interval_minutes": SWEEP_MINUTES,
            "queue_poll_seconds": 2,
        },
    }
    streams_file = HOME / "streams.yml"
    streams_file.write_text(yaml.safe_dump({"streams": [entry]}, sort_keys=False))
    saved = os.environ.get("STREAMS_CONFIG")
    os.environ["STREAMS_CONFIG"] = str(streams_file)
    try:
        assert stack.ensure_event_queues() == [queue_url]
    finally:
        if saved is None:
            os.environ.pop("STREAMS_CONFIG")
        else:
            os.environ["STREAMS_CONFIG"] = saved
    port = airflow_local.free_port()
    env = airflow_local.airflow_environment(
        HOME / "airflow",
        port,
        DATABASE,
        STREAMS_CONFIG=str(streams_file),
        AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="False",
        AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="5",
        AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC="2",
        AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=str(airflow_local.free_port()),
        AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT=str(airflow_local.free_port()),
    )
    airflow_local.ensure_password(HOME / "airflow")
    processes: dict[str, subprocess.Popen] = {}
    airflow = str(airflow_local.VENV_BIN / "airflow")
    try:
        with psycopg.connect(stack.pg_url("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{DATABASE}"')
        airflow_local.run_airflow(["db", "migrate"], env, logs / "db-migrate.log", timeout=600)
        processes["api-server"] = airflow_local.start([airflow, "api-server"], env, logs / "api-server.log")
        airflow_local.wait_until(
            lambda: airflow_local.http_status(f"http://localhost:{port}/api/v2/version") == 200,
            "the api-server",
            180,
            processes["api-server"],
            logs / "api-server.log",
        )
        for component in ("scheduler", "dag-processor", "triggerer"):
            processes[component] = airflow_local.start([airflow, component], env, logs / f"{component}.log")
        yield entry, queue_url, logs
    finally:
        survivors = []
        for component, process in processes.items():
            tree = airflow_local.process_tree(process.pid)
            airflow_local.stop_tree(process.pid, grace=20)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)
            survivors += [f"{component}: {pid}" for pid in tree if airflow_local.alive(pid)]
        assert not survivors, f"processes still running after the test: {survivors}"


def committed_at(key: str) -> datetime | None:
    with psycopg.connect(os.environ["WAREHOUSE_URL"]) as conn:
        row = conn.execute("SELECT loaded_at FROM firehose_loader.ledger WHERE object_key = %s", (key,)).fetchone()
    return None if row is None else row[0].replace(tzinfo=UTC)


def wait_committed(key: str, timeout: float, logs: Path) -> datetime:
    return airflow_local.wait_until(
        lambda: committed_at(key), f"{key} in the ledger", timeout, log=logs / "scheduler.log"
    )


def runs_by_type(dag_id: str) -> dict[str, int]:
    with psycopg.connect(stack.pg_url(DATABASE)) as conn:
        rows = conn.execute(
            "SELECT run_type, COUNT(*) FROM dag_run WHERE dag_id = %s GROUP BY run_type", (dag_id,)
        ).fetchall()
    return dict(rows)


def test_objects_are_committed_on_their_events_and_a_lost_event_by_the_sweep(airflow_running):
    entry, queue_url, logs = airflow_running
    s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1")
    sqs = boto3.client("sqs", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1")

    # The watcher is live once the triggerer has taken the notification's s3:TestEvent off the queue.
    def queue_drained() -> bool:
        attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"])
        return attributes["Attributes"]["ApproximateNumberOfMessages"] == "0"

    airflow_local.wait_until(queue_drained, "the triggerer to read the queue", 300, log=logs / "triggerer.log")
    hour = in_one_hour()
    latencies = []
    for index in range(3):
        key = f"events/{hour:%Y/%m/%d/%H}/stream-1-{hour:%Y-%m-%d-%H}-{index:02d} landed"
        landed = datetime.now(UTC)
        s3.put_object(Bucket=entry["bucket"], Key=key, Body=ndjson([{"id": f"k{index}", "seq": 1, "note": "x"}]))
        latencies.append((wait_committed(key, 240, logs) - landed).total_seconds())
        time.sleep(10)
    print(f"landing -> committed (events): {', '.join(f'{seconds:.1f} s' for seconds in latencies)}")
    assert max(latencies) <= EVENT_BOUND_SECONDS, latencies
    # Woken by the events (the s3:TestEvent's run, and the objects'), not only by the timed sweep.
    assert runs_by_type(f"microbatch_{entry['name']}").get("asset_triggered", 0) >= 2

    # A lost event: no notification reaches the queue for this object.
    s3.put_bucket_notification_configuration(Bucket=entry["bucket"], NotificationConfiguration={})
    sqs.purge_queue(QueueUrl=queue_url)
    lost = f"events/{hour:%Y/%m/%d/%H}/stream-1-{hour:%Y-%m-%d-%H}-99-unannounced"
    landed = datetime.now(UTC)
    s3.put_object(Bucket=entry["bucket"], Key=lost, Body=ndjson([{"id": "k-lost", "seq": 1, "note": "x"}]))
    swept = wait_committed(lost, SWEEP_MINUTES * 60 + 120, logs)
    print(f"landing -> committed (lost event, timed sweep): {(swept - landed).total_seconds():.1f} s")
    with psycopg.connect(os.environ["WAREHOUSE_URL"]) as conn:
        (run_id,) = conn.execute("SELECT run_id FROM firehose_loader.ledger WHERE object_key = %s", (lost,)).fetchone()
        assert run_id.startswith("scheduled__"), run_id  # the timed sweep's run, not an event's
        table = sql.Identifier(*entry["table"].split("."))
        rows = conn.execute(sql.SQL("SELECT id, COUNT(*) FROM {} GROUP BY id").format(table)).fetchall()
    assert dict(rows) == {"k0": 1, "k1": 1, "k2": 1, "k-lost": 1}
