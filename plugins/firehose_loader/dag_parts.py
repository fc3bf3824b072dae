"""What every stream DAG shares: its timetable, the table's Asset, and its first two tasks."""

from __future__ import annotations

from datetime import timedelta

from airflow.providers.standard.sensors.time_delta import TimeDeltaSensor
from airflow.sdk import Asset, CronDataIntervalTimetable, XComArg, task

from firehose_loader.airflow_glue import run_ensure_tables
from firehose_loader.config import Settings, Stream

# A run covers its data interval [H, H+1): the run at 11:00 is about 10:00-11:00.
HOURLY = CronDataIntervalTimetable("0 * * * *", timezone="UTC")


def table_asset(stream: Stream, settings: Settings) -> Asset:
    return Asset(
        name=f"warehouse.{stream.qualified_table}",
        uri=f"x-warehouse://{settings.warehouse_conn_id}/{stream.schema}/{stream.table}",
        group="warehouse",
    )


def settled_and_ready(stream: Stream, settings: Settings, extra_wait: timedelta = timedelta(0)) -> XComArg:
    """Wait (deferred, no worker slot) until the interval's last hour has settled, then create missing tables.

    Call inside a DAG; returns the task that the DAG's own work follows.
    """
    wait_for_settled_hour = TimeDeltaSensor(
        task_id="wait_for_settled_hour",
        delta=stream.settle_grace + extra_wait,
        deferrable=True,
        retries=0,
    )

    @task
    def ensure_tables() -> None:
        run_ensure_tables(stream, settings)

    ready = ensure_tables()
    wait_for_settled_hour >> ready
    return ready
