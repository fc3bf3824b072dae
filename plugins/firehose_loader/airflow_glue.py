"""The thin layer between Airflow and the library: connections in, plain objects out."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any

from firehose_loader.config import Settings, Stream
from firehose_loader.dialects import REDSHIFT_EXTRA_KEYS, Dialect, dialect_for
from firehose_loader.ingest import (
    combine_hour_parts,
    ensure_tables,
    extract_or_split,
    extract_part,
    load_and_merge,
    staged_batch,
)
from firehose_loader.partitions import HOUR, hour_start
from firehose_loader.s3io import ObjectChangedError, PermanentS3Error

log = logging.getLogger(__name__)

# How the S3 client retries throttling (503 SlowDown), 5xx and connection errors, unless the AWS
# connection's extra sets its own ``config_kwargs.retries``: botocore's "standard" mode backs off
# exponentially with full jitter (at most 20 s between attempts). What still fails after that
# fails the task, which Airflow retries (RETRY_DEFAULTS); permanent errors fail it at once.
S3_RETRIES = {"mode": "standard", "total_max_attempts": 5}
# How often one extract lists the hour again when a listed object vanished or changed before it was read.
LIST_ATTEMPTS = 3


def s3_client(settings: Settings) -> Any:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook
    from botocore.config import Config

    hook = S3Hook(aws_conn_id=settings.aws_conn_id)
    if hook.config.retries is None:
        hook = S3Hook(aws_conn_id=settings.aws_conn_id, config=hook.config.merge(Config(retries=S3_RETRIES)))
    return hook.get_conn()


def warehouse_connection(settings: Settings) -> tuple[Any, Dialect]:
    """A DB-API connection from the warehouse connection's own provider hook, and its dialect."""
    from airflow.sdk import BaseHook

    connection = BaseHook.get_connection(settings.warehouse_conn_id)
    try:
        dialect = dialect_for(connection.conn_type, connection.extra_dejson)
    except ValueError as exc:
        fail_fast(exc)
    try:
        if connection.conn_type == "redshift":
            return redshift_connection(settings.warehouse_conn_id), dialect
        return connection.get_hook().get_conn(), dialect
    except Exception as exc:
        if is_permanent_connect_error(exc):
            fail_fast(
                ValueError(
                    f"cannot log in to the warehouse through connection {settings.warehouse_conn_id!r}: {exc}. "
                    "Fix the connection's login, password or database; retrying will not help."
                )
            )
        raise


# Server messages that no retry can fix: wrong credentials, a database or role that does not exist.
PERMANENT_CONNECT_ERRORS = ("password authentication failed", "does not exist", "no pg_hba.conf entry")


def is_permanent_connect_error(exc: Exception) -> bool:
    text = str(exc).lower()
    return any(marker in text for marker in PERMANENT_CONNECT_ERRORS)


class PyformatConnection:
    """A redshift_connector connection whose cursors take ``%(name)s`` parameters, as the templates write them.

    redshift_connector's default paramstyle is ``format`` (``%s``) and is module-wide; each
    cursor is switched instead, so nothing else in the process changes.
    """

    def __init__(self, connection: Any) -> None:
        self._connection = connection

    def cursor(self) -> Any:
        cursor = self._connection.cursor()
        cursor.paramstyle = "pyformat"
        return cursor

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)


def without_extra(connection: Any, keys: tuple[str, ...]) -> Any:
    """A copy of an Airflow connection without the given extra keys."""
    import attrs

    extra = {name: value for name, value in connection.extra_dejson.items() if name not in keys}
    return attrs.evolve(connection, extra=json.dumps(extra))


def redshift_connection(conn_id: str) -> PyformatConnection:
    """A DB-API connection from the Amazon provider's RedshiftSQLHook (password, IAM or serverless auth).

    The hook passes every key of the connection's extra to ``redshift_connector.connect()``,
    which refuses keys it does not know; the loader's own keys (``iam_role``) are removed first.
    """
    from airflow.providers.amazon.aws.hooks.redshift_sql import RedshiftSQLHook

    class LoaderRedshiftSQLHook(RedshiftSQLHook):
        @cached_property
        def conn(self) -> Any:
            return without_extra(self.get_connection(self.get_conn_id()), REDSHIFT_EXTRA_KEYS)

    return PyformatConnection(LoaderRedshiftSQLHook(redshift_conn_id=conn_id).get_conn())


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
        manifest = extract_listing_again(s3_client(settings), stream, hour, run_id)
    except PermanentS3Error as exc:
        fail_fast(exc)
    if manifest["parts"]:
        log.info(
            "hour %s: %d objects over %d bytes, split into %d parts for extract_part",
            manifest["hour"],
            sum(len(part["objects"]) for part in manifest["parts"]),
            stream.split_above_bytes,
            len(manifest["parts"]),
        )
    else:
        log_manifest(manifest)
    return manifest


def run_extract_part(stream: Stream, settings: Settings, part: dict[str, Any], run_id: str) -> dict[str, Any]:
    try:
        result = extract_part(s3_client(settings), stream, part, run_id)
    except PermanentS3Error as exc:
        fail_fast(exc)
    log.info(
        "hour %s part %d: %d objects, %d rows staged at %s",
        part["hour"],
        part["index"],
        len(result["objects"]),
        result["rows"],
        result["stage_key"],
    )
    return result


def run_combine_parts(
    stream: Stream, settings: Settings, manifest: dict[str, Any], parts: list[dict[str, Any]], run_id: str
) -> dict[str, Any]:
    try:
        combined = combine_hour_parts(lambda: s3_client(settings), stream, manifest, list(parts), run_id)
    except PermanentS3Error as exc:
        fail_fast(exc)
    if manifest["parts"]:
        log_manifest(combined)
    return combined


def log_manifest(manifest: dict[str, Any]) -> None:
    log.info(
        "hour %s: %d objects, %d rows staged at %s, %d error-output objects",
        manifest["hour"],
        len(manifest["objects"]),
        manifest["rows"],
        manifest["stage_key"],
        manifest["error_objects"],
    )


def extract_listing_again(client: Any, stream: Stream, hour: datetime, run_id: str) -> dict[str, Any]:
    """Extract the hour; when a listed object vanished or changed before it was read, list the hour again.

    Nothing is staged before every listed object was read, so starting over is safe. After
    ``LIST_ATTEMPTS`` listings the error (naming the object) fails the try, and Airflow's retry
    lists once more.
    """
    for attempt in range(1, LIST_ATTEMPTS + 1):
        try:
            return extract_or_split(client, stream, hour, run_id)
        except ObjectChangedError as exc:
            if attempt == LIST_ATTEMPTS:
                raise
            log.warning(
                "%s; listing %s hour %s again (listing %d of %d)",
                exc,
                stream.name,
                hour.isoformat(),
                attempt + 1,
                LIST_ATTEMPTS,
            )
    raise AssertionError("unreachable")


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


def run_audit(
    stream: Stream, settings: Settings, data_interval_end: datetime, lookback_hours: int, run_id: str, context: Any
) -> list[dict[str, Any]]:
    """Audit and repair the lookback window; alert, then fail the task if an hour could not be repaired."""
    from firehose_loader.audit import audit_hours, audit_window, format_report, needs_alert
    from firehose_loader.notify import send_alert

    hours = audit_window(data_interval_end, lookback_hours)
    client = s3_client(settings)
    conn, dialect = warehouse_connection(settings)
    try:
        try:
            results = audit_hours(conn, client, stream, settings, dialect, hours, run_id)
        except PermanentS3Error as exc:
            fail_fast(exc)
    finally:
        conn.close()
    report = format_report(stream, results)
    log.info("%s", report)
    alerting = [result for result in results if needs_alert(result, stream.audit_alert_threshold)]
    if alerting:
        summary = (
            f"{stream.name}: {len(alerting)} of {len(results)} audited hours needed more repair than "
            f"{stream.audit_alert_threshold} keys or failed"
        )
        send_alert(
            stream.audit_notifier,
            context,
            {"stream": stream.name, "summary": summary, "report": report, "hours": jsonable(alerting)},
        )
    failed = [result for result in results if result["status"] == "failed"]
    if failed:
        hours_text = ", ".join(f"{result['hour']:%Y-%m-%d %H:00}" for result in failed)
        raise RuntimeError(f"audit could not repair {stream.name} hour(s) {hours_text}; see audit_results.message")
    return jsonable(results)


def jsonable(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Audit rows for XCom: datetimes as ISO text."""
    return [
        {name: value.isoformat() if isinstance(value, datetime) else value for name, value in result.items()}
        for result in results
    ]
