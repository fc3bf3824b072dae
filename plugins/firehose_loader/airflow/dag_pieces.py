"""What every stream DAG shares: its timetable, the table's Asset, and its first two tasks."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.providers.standard.sensors.time_delta import TimeDeltaSensor
from airflow.sdk import (
    Asset,
    AssetOrTimeSchedule,
    AssetWatcher,
    CronDataIntervalTimetable,
    CronTriggerTimetable,
    Param,
    XComArg,
    task,
)

from firehose_loader.airflow.tasks import run_ensure_tables
from firehose_loader.config import Settings, Stream

# A run covers its data interval [H, H+1): the run at 11:00 is about 10:00-11:00.
HOURLY = CronDataIntervalTimetable("0 * * * *", timezone="UTC")


# A failed try is retried with exponential backoff: 30 s, then doubling, at most 10 minutes apart.
RETRY_DEFAULTS = {
    "retries": 3,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": timedelta(minutes=10),
}


def task_defaults(stream: Stream, retries: dict[str, Any] = RETRY_DEFAULTS) -> dict[str, Any]:
    """Every task's owner, retries and execution_timeout (a try that hangs fails and is retried)."""
    return {
        "owner": stream.owner,
        **retries,
        "execution_timeout": timedelta(minutes=stream.task_timeout_minutes),
    }


# Both DAGs refuse a listing of an hour that lacks objects its ledger loaded; a run given this
# param true loads the hour as it is listed and marks those objects gone (docs/operations.md).
FORCE_RELISTING_PARAM = {
    "force_relisting": Param(
        False,
        type="boolean",
        description="load hours whose folders lost objects the ledger loaded (expired, deleted): mark them gone",
    )
}


def table_asset(stream: Stream, settings: Settings) -> Asset:
    return Asset(
        name=f"warehouse.{stream.qualified_table}",
        uri=f"x-warehouse://{settings.warehouse_conn_id}/{stream.schema}/{stream.table}",
        group="warehouse",
    )


# A micro-batch's own retries are quick: the next run (a minute or an event away) lists the hours again anyway.
MICROBATCH_RETRY_DEFAULTS = {
    "retries": 3,
    "retry_delay": timedelta(seconds=10),
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": timedelta(minutes=2),
}


def s3_events_asset(stream: Stream, settings: Settings) -> Asset:
    """The stream's S3 event queue as an Asset whose watcher fires a run per batch of messages (mode events).

    The SQS trigger deletes what it receives and hands it to Airflow as the asset event's payload;
    the micro-batch reads the hours the messages name from ``triggering_asset_events``.
    """
    from airflow.providers.amazon.aws.triggers.sqs import SqsSensorTrigger

    freshness = stream.freshness
    assert freshness.queue_url is not None, "config refuses mode events without a queue_url"
    trigger = SqsSensorTrigger(
        sqs_queue=freshness.queue_url,
        aws_conn_id=settings.aws_conn_id,
        max_messages=10,  # SQS's largest batch
        wait_time_seconds=1,
        waiter_delay=freshness.queue_poll_seconds,
    )
    return Asset(
        name=f"s3-events.{stream.name}",
        uri=f"x-s3-events://{stream.bucket}/{stream.prefix}",
        group="s3-events",
        watchers=[AssetWatcher(name=f"{stream.name}_s3_events", trigger=trigger)],
    )


def microbatch_schedule(stream: Stream, settings: Settings) -> CronTriggerTimetable | AssetOrTimeSchedule:
    """Every ``interval_minutes`` (poll), or on each S3 event and every ``interval_minutes`` as the timed sweep (events)."""
    every = CronTriggerTimetable(f"*/{stream.freshness.interval_minutes} * * * *", timezone="UTC")
    if stream.freshness.mode == "events":
        return AssetOrTimeSchedule(timetable=every, assets=s3_events_asset(stream, settings))
    return every


def settled_and_ready(
    stream: Stream, settings: Settings, extra_wait: timedelta = timedelta(0)
) -> tuple[TimeDeltaSensor, XComArg]:
    """The two tasks a stream DAG starts with, side by side: the wait for the settled hour and ensure_tables.

    Call inside a DAG. The DAG's reading of S3 follows the wait; its first write to the warehouse
    follows ensure_tables. Creating missing tables does not depend on the hour, so it runs while the
    sensor waits (deferred, no worker slot) instead of after it, and its retries do not hold up the
    extract.
    """
    wait_for_settled_hour = TimeDeltaSensor(
        task_id="wait_for_settled_hour",
        delta=stream.settle_grace + extra_wait,
        deferrable=True,
        # The wait itself is not the work the task timeout bounds.
        execution_timeout=stream.settle_grace + extra_wait + timedelta(minutes=stream.task_timeout_minutes),
        # The DAG's retries apply: a sensor that fails because the worker could not reach the
        # execution API (a restart) is tried again, instead of failing its run for good.
    )

    @task
    def ensure_tables() -> None:
        run_ensure_tables(stream, settings)

    return wait_for_settled_hour, ensure_tables()
