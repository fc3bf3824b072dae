"""Task bodies: what each DAG task calls, from Airflow's context to the library and back.

The data plane (pyarrow, numpy, pandas, the SQL templates) is imported inside each task body,
so that parsing the DAG files imports none of it.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from firehose_loader.airflow.connections import s3_client, warehouse_connection, warehouse_dialect
from firehose_loader.config import Settings, Stream
from firehose_loader.errors import PermanentError
from firehose_loader.handover import Extracted, Manifest, Part, PartResult, handed_hour
from firehose_loader.layout import HOUR, StageWriter, hour_start

if TYPE_CHECKING:
    from firehose_loader.silence import Silence

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")


def interval_hour(data_interval_start: datetime, data_interval_end: datetime) -> datetime:
    """The one hour a run loads: its data interval, which must be exactly one whole hour."""
    hour = hour_start(data_interval_start)
    if hour != data_interval_start or data_interval_end - data_interval_start != HOUR:
        raise ValueError(
            f"this DAG loads one whole UTC hour per run; got the data interval "
            f"{data_interval_start.isoformat()} .. {data_interval_end.isoformat()}"
        )
    return hour


def fails_at_once_when_permanent(body: Callable[P, R]) -> Callable[P, R]:
    """A task body whose :class:`PermanentError` fails the task without Airflow's retries.

    The one place that catches it: the error's message (what to fix) becomes the task's failure.
    """

    @functools.wraps(body)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return body(*args, **kwargs)
        except PermanentError as exc:
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException(str(exc)) from exc

    return run


def effective_stream(stream: Stream, settings: Settings) -> Stream:
    """The stream with the columns the loader added to its table (new_fields: add_columns); others as declared."""
    if stream.new_fields != "add_columns":
        return stream
    from firehose_loader.load import added_columns, with_added_columns

    conn, dialect = warehouse_connection(settings, stream)
    try:
        return with_added_columns(stream, added_columns(conn, stream, settings, dialect))
    finally:
        conn.close()


@fails_at_once_when_permanent
def run_erase(stream: Stream, settings: Settings, keys: list[Any], reason: str, run_id: str) -> int:
    """Erase the keys a manual audit run names (params erase_keys, erase_reason); none: nothing to do."""
    if not keys:
        log.info("no keys to erase")
        return 0
    if not reason.strip():
        raise PermanentError("erase_keys needs an erase_reason: the tombstones record why the keys were erased")
    from firehose_loader.load import erase_keys, key_parameters

    try:
        for key in keys:
            key_parameters(stream, key)
    except ValueError as exc:
        raise PermanentError(str(exc)) from exc
    conn, dialect = warehouse_connection(settings, stream)
    try:
        erased = erase_keys(conn, stream, settings, dialect, keys, reason, run_id)
    finally:
        conn.close()
    # The keys themselves stay out of the log: the tombstones hold them.
    log.info("erased %d keys of %s (%s)", erased, stream.qualified_table, reason)
    return erased


@fails_at_once_when_permanent
def run_ensure_tables(stream: Stream, settings: Settings) -> None:
    from firehose_loader.load import ensure_tables

    conn, dialect = warehouse_connection(settings, stream)
    try:
        ensure_tables(conn, stream, settings, dialect)
    finally:
        conn.close()
    # Tables exist now: the target check also covers the columns the loader added (add_columns).
    if stream.new_fields == "add_columns" and (effective := effective_stream(stream, settings)) is not stream:
        conn, dialect = warehouse_connection(settings, stream)
        try:
            ensure_tables(conn, effective, settings, dialect)
        finally:
            conn.close()


@fails_at_once_when_permanent
def run_extract(
    stream: Stream, settings: Settings, start: datetime, end: datetime, run_id: str, try_number: int
) -> Extracted:
    from firehose_loader.extract import extract_listing_again

    hour = interval_hour(start, end)
    stream = effective_stream(stream, settings)
    writer = StageWriter("ingest", run_id, "extract_hour", try_number)
    # Validated against the warehouse's limits: a value it cannot store is quarantined, not staged.
    limits = warehouse_dialect(settings).limits
    extracted = extract_listing_again(s3_client(settings), stream, hour, writer, limits)
    if extracted["manifest"] is not None:
        log_manifest(extracted["manifest"])
    else:
        log.info(
            "hour %s: %d objects over %d bytes, split into %d parts for extract_part",
            hour.isoformat(),
            sum(len(part["objects"]) for part in extracted["parts"]),
            stream.split_above_bytes,
            len(extracted["parts"]),
        )
    return extracted


@fails_at_once_when_permanent
def run_extract_part(stream: Stream, settings: Settings, part: Part, run_id: str, try_number: int) -> PartResult:
    from firehose_loader.extract import extract_part

    writer = StageWriter("ingest", run_id, "extract_part", try_number)
    stream = effective_stream(stream, settings)
    result = extract_part(s3_client(settings), stream, part, writer, warehouse_dialect(settings).limits)
    log.info(
        "hour %s part %d: %d objects, %d rows staged at %s",
        part["hour"],
        part["index"],
        len(result["objects"]),
        result["rows"],
        result["stage_key"],
    )
    return result


@fails_at_once_when_permanent
def run_combine_parts(
    stream: Stream,
    settings: Settings,
    extracted: Extracted,
    parts: list[PartResult],
    run_id: str,
    try_number: int,
) -> Manifest:
    from firehose_loader.extract import combine_hour_parts

    manifest, planned = extracted["manifest"], extracted["parts"]
    writer = StageWriter("ingest", run_id, "combine_parts", try_number)
    stream = effective_stream(stream, settings)
    combined = combine_hour_parts(lambda: s3_client(settings), stream, manifest, planned, list(parts), writer)
    if manifest is None:
        log_manifest(combined)
    return combined


def log_manifest(manifest: Manifest) -> None:
    # A split hour's rows are counted by the warehouse's dedupe, in the load step.
    rows = "a split hour's" if manifest["rows"] is None else f"{manifest['rows']}"
    log.info(
        "hour %s: %d objects, %s rows staged at %s, %d error-output objects",
        manifest["hour"],
        len(manifest["objects"]),
        rows,
        manifest["stage_key"],
        manifest["error_objects"],
    )


@fails_at_once_when_permanent
def run_load_and_merge(
    stream: Stream,
    settings: Settings,
    manifest: Manifest,
    run_id: str,
    try_number: int = 1,
    context: Any = None,
    *,
    force_relisting: bool = False,
) -> dict[str, Any]:
    """Merge the stage the manifest names (a clear of this task alone merges the same stage again).

    A stage whose columns no longer fit the stream's (a type changed in the streams file since it
    was staged) is not merged: the hour is extracted again from S3 and that stage merged. The
    hour's schema drift goes to the log; with ``new_fields: report`` a field the stream never had
    before is alerted through its notifier (``context``: the task's Airflow context). With
    ``add_columns`` such a field becomes a column (add_new_columns) and the hour is extracted
    again and merged with it, so the hour where a field first appears loads it. Then, with
    ``context``, alert once when the hour completes a silence of the stream (silence.record_silence).
    """
    from firehose_loader.extract import extract_chosen
    from firehose_loader.load import add_new_columns, fitting_stage, load_and_merge, staged_batch, with_added_columns
    from firehose_loader.silence import record_silence

    client = s3_client(settings)
    stream = effective_stream(stream, settings)
    conn, dialect = warehouse_connection(settings, stream)
    try:
        writer = StageWriter("ingest", run_id, "load_and_merge", try_number)
        manifest, stage = fitting_stage(client, stream, manifest, writer, dialect.limits)
        summary = load_and_merge(
            conn, stream, settings, dialect, manifest, stage, run_id, force_relisting=force_relisting
        )
        added = {}
        if stream.new_fields == "add_columns" and summary["new_fields"]:
            hour = datetime.fromisoformat(manifest["hour"])
            added = add_new_columns(conn, stream, settings, dialect, summary["new_fields"], hour, run_id)
        if added:
            log.warning(
                "%s: added column(s) %s to %s (new_fields: add_columns); extracting hour %s again to load them",
                stream.name,
                ", ".join(f"{name} {kind}" for name, kind in added.items()),
                stream.qualified_table,
                manifest["hour"],
            )
            first_seen = summary["first_seen_fields"]
            stream = with_added_columns(stream, added)
            again = StageWriter("ingest", run_id, "add_columns", try_number)
            fresh, _objects = extract_chosen(client, stream, hour, again, lambda objects: objects, dialect.limits)
            if fresh is not None:
                manifest = fresh
                summary = load_and_merge(
                    conn,
                    stream,
                    settings,
                    dialect,
                    manifest,
                    staged_batch(client, stream, manifest),
                    run_id,
                    force_relisting=force_relisting,
                )
            summary = {
                **summary,
                "first_seen_fields": first_seen,
                "added_columns": {n: str(k) for n, k in added.items()},
            }
        silence = record_silence(conn, stream, settings, dialect, handed_hour(manifest), run_id)
    finally:
        conn.close()
    width = max(len(name) for name in summary)
    log.info(
        "loaded %s hour %s into %s:\n%s",
        stream.name,
        manifest["hour"],
        stream.qualified_table,
        "\n".join(
            f"  {name.ljust(width)}  {value}"
            for name, value in summary.items()
            if name not in ("new_fields", "first_seen_fields", "added_columns")
        ),
    )
    report_new_fields(stream, manifest["hour"], summary, context)
    if silence is not None:
        alert_silence(stream, silence, context)
    return summary


def alert_silence(stream: Stream, silence: Silence, context: Any) -> None:
    from firehose_loader.airflow.notify import send_alert
    from firehose_loader.silence import silence_summary

    summary = silence_summary(stream, silence)
    log.warning("%s", summary)
    hours = [
        {"hour": (silence.silent_from + step * HOUR).isoformat(), "status": "empty", "objects": 0}
        for step in range(silence.empty_hours)
    ]
    send_alert(
        stream.audit_notifier,
        context or {},
        {"stream": stream.name, "summary": summary, "report": summary, "hours": hours},
    )


def drift_report(stream: Stream, hour: str, fields: list[dict[str, Any]]) -> str:
    """The hour's schema drift as the log and the alert show it: one line per field."""
    lines = [f"{stream.name} hour {hour}: {len(fields)} field(s) not among the columns of {stream.qualified_table}"]
    lines += [
        f"  {field['name']!r}: {field['records']} record(s), JSON {'/'.join(field['json_types'])}, "
        f"e.g. {field['sample']}"
        for field in fields
    ]
    return "\n".join(lines)


def report_new_fields(stream: Stream, hour: str, summary: dict[str, Any], context: Any) -> None:
    """Log the hour's schema drift; alert once per field the stream never had before (new_fields: report)."""
    if not summary["new_fields"]:
        return
    log.warning("%s", drift_report(stream, hour, summary["new_fields"]))
    first_seen = summary["first_seen_fields"]
    if stream.new_fields == "ignore" or not first_seen or context is None:
        return
    from firehose_loader.airflow.notify import send_alert

    names = ", ".join(field["name"] for field in first_seen)
    added = summary.get("added_columns") or {}
    outcome = (
        "added as column(s) " + ", ".join(f"{name} {kind}" for name, kind in added.items())
        if added
        else "not among the columns"
    )
    send_alert(
        stream.audit_notifier,
        context,
        {
            "stream": stream.name,
            "summary": f"{stream.name}: new field(s) {names} in hour {hour}, {outcome}",
            "report": drift_report(stream, hour, first_seen),
            "hours": [{"hour": hour, "new_fields": first_seen}],
        },
    )


# A run in one of these states will still commit its hour (a task that waits for a retry keeps its run running).
PENDING_RUN_STATES = ["queued", "running"]


def ingest_pending(stream: Stream, context: Any) -> Callable[[datetime], bool]:
    """Whether the ingest DAG has a run of an hour that is queued or running, as the scheduler knows it.

    A run's logical date is its data interval's start, the hour it loads (a backfill's runs too).
    """
    ti = context["ti"]

    def pending(hour: datetime) -> bool:
        return ti.get_dr_count(dag_id=stream.ingest_dag_id, logical_dates=[hour], states=PENDING_RUN_STATES) > 0

    return pending


@fails_at_once_when_permanent
def run_audit(
    stream: Stream,
    settings: Settings,
    data_interval_end: datetime,
    lookback_hours: int,
    run_id: str,
    try_number: int,
    context: Any,
    *,
    force_relisting: bool = False,
) -> list[dict[str, Any]]:
    """Audit and repair the lookback window; alert, then fail the task if an hour could not be repaired."""
    from firehose_loader.airflow.notify import send_alert
    from firehose_loader.audit import audit_hours, audit_window, format_report, needs_alert

    hours = audit_window(data_interval_end, lookback_hours)
    stream = effective_stream(stream, settings)
    client = s3_client(settings)
    conn, dialect = warehouse_connection(settings, stream)
    try:
        results = audit_hours(
            conn,
            client,
            stream,
            settings,
            dialect,
            hours,
            run_id,
            ingest_pending(stream, context),
            try_number=try_number,
            force_relisting=force_relisting,
        )
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


@fails_at_once_when_permanent
def run_late_sweep(
    stream: Stream,
    settings: Settings,
    data_interval_end: datetime,
    run_id: str,
    try_number: int,
    context: Any,
) -> list[dict[str, Any]]:
    """Sweep the stream's late horizon; alert on late objects, gaps and failures, then fail the task if an hour failed."""
    from firehose_loader.airflow.notify import send_alert
    from firehose_loader.audit import audit_window
    from firehose_loader.sweep import format_findings, sweep_hours

    hours = audit_window(data_interval_end, stream.late_horizon_hours)
    stream = effective_stream(stream, settings)
    client = s3_client(settings)
    conn, dialect = warehouse_connection(settings, stream)
    try:
        findings = sweep_hours(
            conn,
            client,
            stream,
            settings,
            dialect,
            hours,
            run_id,
            ingest_pending(stream, context),
            try_number=try_number,
        )
    finally:
        conn.close()
    report = format_findings(stream, len(hours), findings)
    log.info("%s", report)
    rows = jsonable(
        [
            {
                "hour": finding.hour,
                "status": finding.status,
                "late_objects": len(finding.late_keys),
                "late_keys": list(finding.late_keys),
                "max_lateness_seconds": finding.max_lateness_seconds,
                "records_loaded": finding.records_loaded,
                "message": finding.message,
            }
            for finding in findings
        ]
    )
    if findings:
        summary = (
            f"{stream.name}: the late sweep over {len(hours)} hours found {len(findings)} hour(s) with late "
            f"objects, never-loaded objects or a failure"
        )
        send_alert(
            stream.audit_notifier, context, {"stream": stream.name, "summary": summary, "report": report, "hours": rows}
        )
    failed = [finding for finding in findings if finding.status == "failed"]
    if failed:
        hours_text = ", ".join(f"{finding.hour:%Y-%m-%d %H:00}" for finding in failed)
        raise RuntimeError(f"the late sweep could not sweep {stream.name} hour(s) {hours_text}; see sweep_results")
    return rows


@fails_at_once_when_permanent
def run_microbatch(
    stream: Stream, settings: Settings, triggering_asset_events: Any, run_id: str, try_number: int
) -> list[dict[str, Any]]:
    """Merge the open hours' new objects (and those of any hour the run's S3 events name); skip when none."""
    from datetime import UTC

    from firehose_loader.load import ensure_tables
    from firehose_loader.microbatch import event_keys, hours_named, messages_of_asset_events
    from firehose_loader.microbatch import run_microbatch as merge_new_objects

    now = datetime.now(UTC)
    asset_events = [event for events in (triggering_asset_events or {}).values() for event in events]
    messages = messages_of_asset_events(asset_events)
    named = hours_named(stream, event_keys(messages), now)
    if messages:
        log.info(
            "%d S3 event message(s) in %d asset event(s) name hour(s) %s",
            len(messages),
            len(asset_events),
            ", ".join(f"{hour:%Y-%m-%d %H:00}" for hour in sorted(named)) or "none of this stream",
        )
    client = s3_client(settings)
    stream = effective_stream(stream, settings)
    conn, dialect = warehouse_connection(settings, stream)
    try:
        ensure_tables(conn, stream, settings, dialect)
        results = merge_new_objects(conn, client, stream, settings, dialect, now, named, run_id, try_number=try_number)
    finally:
        conn.close()
    if not results:
        from airflow.sdk.exceptions import AirflowSkipException

        # Skipped, so the run emits no event on the table's asset: nothing in it changed.
        raise AirflowSkipException("no new objects in the listed hours")
    for result in results:
        log.info("hour %s: merged %d objects, %d rows", result.hour.isoformat(), len(result.keys), result.rows)
    return [
        {"hour": result.hour.isoformat(), "objects": len(result.keys), "keys": list(result.keys), "rows": result.rows}
        for result in results
    ]
