"""Task bodies: what each DAG task calls, from Airflow's context to the library and back.

The data plane (pyarrow, numpy, pandas, the SQL templates) is imported inside each task body,
so that parsing the DAG files imports none of it.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from firehose_loader.airflow.connections import fail_fast, s3_client, warehouse_connection
from firehose_loader.config import Settings, Stream
from firehose_loader.layout import HOUR, hour_start
from firehose_loader.s3io import PermanentS3Error

log = logging.getLogger(__name__)


def interval_hour(data_interval_start: datetime, data_interval_end: datetime) -> datetime:
    """The one hour a run loads: its data interval, which must be exactly one whole hour."""
    hour = hour_start(data_interval_start)
    if hour != data_interval_start or data_interval_end - data_interval_start != HOUR:
        raise ValueError(
            f"this DAG loads one whole UTC hour per run; got the data interval "
            f"{data_interval_start.isoformat()} .. {data_interval_end.isoformat()}"
        )
    return hour


def run_ensure_tables(stream: Stream, settings: Settings) -> None:
    from firehose_loader.load import ensure_tables

    conn, dialect = warehouse_connection(settings)
    try:
        ensure_tables(conn, stream, settings, dialect)
    finally:
        conn.close()


def run_extract(stream: Stream, settings: Settings, start: datetime, end: datetime, run_id: str) -> dict[str, Any]:
    from firehose_loader.extract import extract_listing_again

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
    from firehose_loader.extract import extract_part

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
    from firehose_loader.extract import combine_hour_parts

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


def run_load_and_merge(stream: Stream, settings: Settings, manifest: dict[str, Any], run_id: str) -> dict[str, Any]:
    from firehose_loader.load import load_and_merge, staged_batch

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


def run_audit(
    stream: Stream, settings: Settings, data_interval_end: datetime, lookback_hours: int, run_id: str, context: Any
) -> list[dict[str, Any]]:
    """Audit and repair the lookback window; alert, then fail the task if an hour could not be repaired."""
    from firehose_loader.airflow.notify import send_alert
    from firehose_loader.audit import audit_hours, audit_window, format_report, needs_alert

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
