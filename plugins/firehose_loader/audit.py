"""Reconcile S3 with the warehouse hour by hour, by key, and repair what differs.

For each hour the S3 truth is the hour's deduplicated batch: the stage the last
load wrote when the ledger still matches the folder (no object re-read), or a
fresh extract of the whole hour when an object is new or changed ("late") or the
stage is gone. The batch is merged with the same template as the ingest, so the
repair has the same one-transaction guarantee; the merge plan records what the
target held before (missing, duplicated or stale keys), and those findings are
written to ``audit_results`` in the same transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from firehose_loader.config import Settings, Stream
from firehose_loader.extract import extract_hour
from firehose_loader.handover import Manifest, handed_hour, make_manifest
from firehose_loader.layout import HOUR, StageWriter, hour_start, naive_utc, stream_layout
from firehose_loader.load import audit_unchanged_without_lock, merge_hour, query_one, staged_batch, template_context
from firehose_loader.records.schema import stage_lacks_values, stage_misfit
from firehose_loader.s3io import ObjectInfo, count_error_objects, list_hour_objects, object_exists
from firehose_loader.text_table import format_table
from firehose_loader.warehouse.protocol import Dialect
from firehose_loader.warehouse.render import render, render_statements

log = logging.getLogger(__name__)

RESULT_COLUMNS = (
    "hour",
    "status",
    "s3_keys",
    "missing_keys",
    "duplicate_keys",
    "stale_keys",
    "late_objects",
    "error_objects",
    "repaired_keys",
    "drop_rate",
)


def audit_window(data_interval_end: datetime, lookback_hours: int) -> list[datetime]:
    """The hours an audit run covers: the ``lookback_hours`` whole hours before the interval end."""
    if lookback_hours < 1:
        raise ValueError(f"lookback_hours must be at least 1, got {lookback_hours}")
    end = hour_start(data_interval_end)
    return [end - (lookback_hours - index) * HOUR for index in range(lookback_hours)]


def late_objects(listed: list[ObjectInfo], loaded: dict[str, str]) -> list[ObjectInfo]:
    """Objects in the hour's folder that the ledger has not loaded at their current ETag."""
    return [item for item in listed if loaded.get(item.key) != item.etag]


@dataclass(frozen=True)
class HourTruth:
    manifest: Manifest
    reloaded: bool
    late: int


# The audit DAG's task: the stages an audit writes name it, beside the run and the try.
AUDIT_TASK = "audit_and_repair"


def audit_writer(run_id: str, try_number: int) -> StageWriter:
    """The writer of the stages an audit run's try extracts (never an ingest's key, nor another try's)."""
    return StageWriter("audit", run_id, AUDIT_TASK, try_number)


def hour_truth(
    conn: Any,
    client: Any,
    stream: Stream,
    settings: Settings,
    dialect: Dialect,
    hour: datetime,
    run_id: str,
    *,
    try_number: int,
) -> HourTruth:
    """The hour's batch: the loaded stage if the ledger matches S3, else a fresh extract (staged under the audit's own key)."""
    context = template_context(stream, settings, dialect)
    naive_hour = naive_utc(hour)
    listed = list_hour_objects(client, stream.bucket, stream_layout(stream), hour)
    with conn.cursor() as cursor:
        cursor.execute(render("audit/loaded_objects.sql", **context), {"stream": stream.name, "hour": naive_hour})
        loaded = {key: etag for key, etag in cursor.fetchall()}
    conn.commit()
    late = late_objects(listed, loaded)
    loaded_hour = query_one(conn, "audit/loaded_stage.sql", context, stream.name, naive_hour)
    stage_key = loaded_hour["stage_key"] if loaded_hour else None
    gone = set(loaded) - {item.key for item in listed}
    stage_usable = (
        loaded_hour is not None
        and not late
        and not gone
        and (stage_key is None or object_exists(client, stream.bucket, stage_key))
        # After a late sweep's delta merge no stage holds the whole hour: extract it again.
        and not (stage_key is None and loaded_hour["records_valid"])
    )
    if stage_usable:
        error_objects = count_error_objects(client, stream.bucket, stream_layout(stream), hour)
        assert loaded_hour is not None
        listed = loaded_hour["listed_at"]
        manifest = make_manifest(
            stream.name,
            hour,
            stage_key,
            None,
            [],
            error_objects,
            listed_at=None if listed is None else listed.replace(tzinfo=UTC),
            stage_columns=loaded_hour["stage_columns"],
        )
        stage = staged_batch(client, stream, manifest)
        misfit = None
        if stage is not None:
            columns = stage.columns or stream.columns
            misfit = stage_misfit(columns, stream)
            if misfit is None and any(name not in columns for name in stream.columns):
                with conn.cursor() as cursor:
                    cursor.execute(
                        render("schema_drift/hour_fields.sql", **context), {"stream": stream.name, "hour": naive_hour}
                    )
                    seen = {row[0] for row in cursor.fetchall()}
                conn.commit()
                misfit = stage_lacks_values(columns, stream, seen)
        if misfit is None:
            return HourTruth(manifest, reloaded=False, late=0)
        # A type changed since the hour was staged, or a column declared since then was in its
        # records all along: its rows are validated again from S3.
        log.warning("%s hour %s: %s; extracting the hour again", stream.name, hour.isoformat(), misfit)
    extracted = extract_hour(client, stream, hour, audit_writer(run_id, try_number), dialect.limits)
    return HourTruth(extracted, reloaded=True, late=len(late))


def audit_hour(
    conn: Any,
    client: Any,
    stream: Stream,
    settings: Settings,
    dialect: Dialect,
    hour: datetime,
    run_id: str,
    *,
    try_number: int,
    force_relisting: bool = False,
) -> dict[str, Any]:
    """Audit and repair one hour in one transaction; return its audit_results row.

    A listing that lacks objects the hour's ledger loaded is refused (load.ShrinkingListingError,
    recorded as the hour's failure) unless ``force_relisting``: then they are marked gone.
    """
    truth = hour_truth(conn, client, stream, settings, dialect, hour, run_id, try_number=try_number)
    audited_at = naive_utc(datetime.now(UTC))
    findings = {"late_objects": truth.late, "audited_at": audited_at, "try_number": try_number}
    stage = staged_batch(client, stream, truth.manifest)
    # An hour whose ledger matches S3 is judged without the lock first; only one with damage locks and repairs.
    if not truth.reloaded and audit_unchanged_without_lock(
        conn, stream, settings, dialect, truth.manifest, stage, run_id, [("audit/record_result.sql", findings)]
    ):
        return read_result(conn, stream, settings, dialect, naive_utc(handed_hour(truth.manifest)), run_id, try_number)
    merge_hour(
        conn,
        stream,
        settings,
        dialect,
        truth.manifest,
        stage,
        run_id,
        write_ledger=truth.reloaded,
        measured_by="audit",
        force_relisting=force_relisting,
        then=[("audit/record_result.sql", findings)],
    )
    return read_result(conn, stream, settings, dialect, naive_utc(handed_hour(truth.manifest)), run_id, try_number)


def record_failure(
    conn: Any,
    stream: Stream,
    settings: Settings,
    dialect: Dialect,
    hour: datetime,
    run_id: str,
    try_number: int,
    error: Exception,
) -> dict[str, Any]:
    message = f"{type(error).__name__}: {error}"
    return record_unjudged(conn, stream, settings, dialect, hour, run_id, try_number, "failed", message)


def record_unjudged(
    conn: Any,
    stream: Stream,
    settings: Settings,
    dialect: Dialect,
    hour: datetime,
    run_id: str,
    try_number: int,
    status: str,
    message: str,
) -> dict[str, Any]:
    """An audit_results row without findings: the hour ``failed``, or is ``waiting`` for its ingest."""
    context = template_context(stream, settings, dialect)
    naive_hour = naive_utc(hour)
    parameters = {
        "stream": stream.name,
        "hour": naive_hour,
        "run_id": run_id,
        "try_number": try_number,
        "audited_at": naive_utc(datetime.now(UTC)),
        "status": status,
        "late_objects": None,
        "message": message[:1024],
    }
    with conn.cursor() as cursor:
        for statement in render_statements("audit/record_failure.sql", **context):
            cursor.execute(statement, parameters)
    conn.commit()
    return read_result(conn, stream, settings, dialect, naive_hour, run_id, try_number)


def ingest_committed(conn: Any, stream: Stream, settings: Settings, dialect: Dialect, hour: datetime) -> bool:
    """Whether an ingest (or an earlier audit) has committed the hour: it has a load_hours row."""
    context = template_context(stream, settings, dialect)
    return query_one(conn, "audit/loaded_stage.sql", context, stream.name, naive_utc(hour)) is not None


def read_result(
    conn: Any, stream: Stream, settings: Settings, dialect: Dialect, hour: datetime, run_id: str, try_number: int
) -> dict[str, Any]:
    context = template_context(stream, settings, dialect)
    row = query_one(conn, "audit/hour_result.sql", context, stream.name, hour, run_id=run_id, try_number=try_number)
    assert row is not None, "every audited hour gets an audit_results row"
    return row


def audit_hours(
    conn: Any,
    client: Any,
    stream: Stream,
    settings: Settings,
    dialect: Dialect,
    hours: list[datetime],
    run_id: str,
    ingest_pending: Callable[[datetime], bool] = lambda hour: False,
    *,
    try_number: int,
    force_relisting: bool = False,
) -> list[dict[str, Any]]:
    """Audit every hour; a failing hour is recorded as ``failed`` and the others still run.

    An hour is judged only once its ingest has committed it, or once no ingest is coming: an
    hour without a load_hours row whose ingest run is still queued or running (``ingest_pending``,
    which the scheduler knows) is recorded as ``waiting``, with no findings and no alert, and the
    next audit judges it. An hour no ingest will load (its run failed, the DAG is paused, the run
    was never created) is loaded by the audit, and its first merge is measured as the audit's.

    ``try_number`` is the audit task's try: a re-extracted hour is staged under a key of this run's try alone.
    """
    results = []
    for hour in hours:
        try:
            if not ingest_committed(conn, stream, settings, dialect, hour) and ingest_pending(hour):
                message = f"the ingest of hour {hour.isoformat()} has not committed yet; the next audit judges it"
                results.append(
                    record_unjudged(conn, stream, settings, dialect, hour, run_id, try_number, "waiting", message)
                )
                continue
            results.append(
                audit_hour(
                    conn,
                    client,
                    stream,
                    settings,
                    dialect,
                    hour,
                    run_id,
                    try_number=try_number,
                    force_relisting=force_relisting,
                )
            )
        except Exception as exc:
            log.exception("audit of %s hour %s failed", stream.name, hour.isoformat())
            conn.rollback()
            results.append(record_failure(conn, stream, settings, dialect, hour, run_id, try_number, exc))
    return results


def needs_alert(result: dict[str, Any], threshold: int) -> bool:
    return result["status"] == "failed" or (result["repaired_keys"] or 0) + (result["late_objects"] or 0) > threshold


def format_report(stream: Stream, results: list[dict[str, Any]], indent: str = "") -> str:
    """The per-hour table the task log, the alert and the demo show."""
    header = (
        "hour (UTC)",
        "status",
        "s3 keys",
        "missing",
        "duplicate",
        "stale",
        "late obj",
        "errors",
        "repaired",
        "lost after load",
    )
    rows = [
        (
            f"{result['hour']:%Y-%m-%d %H:00}",
            result["status"],
            *("-" if result[name] is None else str(result[name]) for name in RESULT_COLUMNS[2:9]),
            "-" if result["drop_rate"] is None else f"{result['drop_rate']:.2%}",
        )
        for result in results
    ]
    title = f"{indent}audit of {stream.name} ({stream.qualified_table}): damage after the load"
    return title + "\n" + format_table(header, rows, indent)
