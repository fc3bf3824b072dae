"""The thin layer between Airflow and the library: connections in, plain objects out."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from firehose_loader.config import Settings, Stream
from firehose_loader.dialects import Dialect, dialect_for
from firehose_loader.ingest import ensure_tables, extract_hour, load_and_merge, staged_batch
from firehose_loader.partitions import HOUR, hour_start
from firehose_loader.s3io import PermanentS3Error

log = logging.getLogger(__name__)


def s3_client(settings: Settings) -> Any:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    return S3Hook(aws_conn_id=settings.aws_conn_id).get_conn()


def warehouse_connection(settings: Settings) -> tuple[Any, Dialect]:
    """A DB-API connection from the warehouse connection's own provider hook, and its dialect."""
    from airflow.sdk import BaseHook

    connection = BaseHook.get_connection(settings.warehouse_conn_id)
    dialect = dialect_for(connection.conn_type, connection.extra_dejson)
    return connection.get_hook().get_conn(), dialect


def interval_hour(data_interval_start: datetime, data_interval_end: datetime) -> datetime:
    """The one hour a run loads: its data interval, which must be exactly one whole hour."""
    hour = hour_start(data_interval_start)
    if hour != data_interval_start or data_interval_end - data_interval_start != HOUR:
        raise ValueError(
            f"this DAG loads one whole UTC hour per run; got the data interval "
            f"{data_interval_start.isoformat()} .. {data_interval_end.isoformat()}"
        )
    return hour


def fail_fast(exc: Exception) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    raise AirflowFailException(str(exc)) from exc


def run_ensure_tables(stream: Stream, settings: Settings) -> None:
    conn, dialect = warehouse_connection(settings)
    try:
        ensure_tables(conn, stream, settings, dialect)
    finally:
        conn.close()


def run_extract(stream: Stream, settings: Settings, start: datetime, end: datetime, run_id: str) -> dict[str, Any]:
    hour = interval_hour(start, end)
    try:
        manifest = extract_hour(s3_client(settings), stream, hour, run_id)
    except PermanentS3Error as exc:
        fail_fast(exc)
    log.info(
        "hour %s: %d objects, %d rows staged at %s, %d error-output objects",
        manifest["hour"],
        len(manifest["objects"]),
        manifest["rows"],
        manifest["stage_key"],
        manifest["error_objects"],
    )
    return manifest


def run_load_and_merge(stream: Stream, settings: Settings, manifest: dict[str, Any], run_id: str) -> dict[str, Any]:
    client = s3_client(settings)
    conn, dialect = warehouse_connection(settings)
    try:
        summary = load_and_merge(
            conn,
            stream,
            settings,
            dialect,
            manifest,
            staged_batch(client, stream, manifest),
            run_id,
        )
    except PermanentS3Error as exc:
        fail_fast(exc)
    finally:
        conn.close()
    width = max(len(name) for name in summary)
    log.info(
        "loaded %s hour %s into %s:\n%s",
        stream.name,
        manifest["hour"],
        stream.qualified_table,
        "\n".join(f"  {name.ljust(width)}  {value}" for name, value in summary.items()),
    )
    return summary


RETRY_DEFAULTS = {
    "retries": 3,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": timedelta(minutes=10),
}
