"""The dashboard's reads of the warehouse: one stream's window, one hour's load, ledger and audits.

Every statement is a template in ``include/sql/dashboard/`` rendered through
:func:`firehose_loader.warehouse.render.render`; values travel as bind parameters. Nothing here
writes: each query ends with a rollback. What the numbers mean is in
:mod:`firehose_loader.dashboard.model`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from firehose_loader.config import Settings, Stream
from firehose_loader.dashboard.model import (
    HourDetail,
    StreamDashboard,
    aware,
    build_points,
    measure_freshness,
    naive,
    summarize,
)
from firehose_loader.layout import hour_folder, hour_start, stream_layout
from firehose_loader.warehouse.render import render

LOADER_TABLES = ("ledger", "load_hours", "audit_results")
# Read when it exists (a loader from before it has none); its absence does not make a stream "not ready".
DRIFT_TABLE = "schema_drift"
# Read when it exists and the stream declares a real-time writer; its absence does not make a stream "not ready".
REALTIME_TABLE = "realtime_quality"
# Read when it exists (each object version's first commit: freshness); its absence does not make a stream "not ready".
COMMITS_TABLE = "object_commits"
SWEEP_TABLE = "sweep_results"
SILENCES_TABLE = "silences"
LEDGER_TOTALS = (
    "size_bytes",
    "records_raw",
    "records_valid",
    "records_quarantined",
    "records_duplicate",
    "records_inserted",
    "records_updated",
    "records_unchanged",
    "records_superseded",
)


def template_context(stream: Stream, settings: Settings) -> dict[str, Any]:
    return {"loader_schema": settings.loader_schema, "target": (stream.schema, stream.table)}


def fetch_all(
    conn: Any, template: str, context: Mapping[str, Any], parameters: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """Run one read-only template; rows as dicts."""
    with conn.cursor() as cursor:
        cursor.execute(render(template, **context), dict(parameters))
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def existing_tables(conn: Any, stream: Stream, settings: Settings) -> set[str]:
    """Which of ``ledger``, ``load_hours``, ``audit_results``, ``realtime_quality``, ``schema_drift`` and ``target`` exist."""
    rows = fetch_all(
        conn,
        "dashboard/tables.sql",
        template_context(stream, settings),
        {"loader_schema": settings.loader_schema, "schema": stream.schema, "table": stream.table},
    )
    found = set()
    for row in rows:
        if row["table_schema"] == settings.loader_schema and row["table_name"] in (
            *LOADER_TABLES,
            REALTIME_TABLE,
            DRIFT_TABLE,
            COMMITS_TABLE,
            SWEEP_TABLE,
            SILENCES_TABLE,
        ):
            found.add(row["table_name"])
        if row["table_schema"] == stream.schema and row["table_name"] == stream.table:
            found.add("target")
    return found


def warehouse_rows_range(stream: Stream, start: datetime, end: datetime) -> dict[str, Any]:
    """Bind parameters of ``warehouse_rows.sql``: the provenance range of the window's hour folders."""
    return {
        "folder_position": len(stream.prefix) + 1,
        "low": stream.prefix + hour_folder(start),
        "high": stream.prefix + hour_folder(end),
    }


def warehouse_row_counts(
    conn: Any, stream: Stream, context: Mapping[str, Any], start: datetime, end: datetime
) -> dict[datetime, int]:
    """Rows in the stream's table now per hour of the window, by the hour folder of their object.

    The default layout (a plain prefix in UTC) reads one range of fixed-width folders; any other
    layout reads its objects and lets the layout say each one's hour.
    """
    layout = stream_layout(stream)
    counts: dict[datetime, int] = {}
    if layout.is_default:
        for row in fetch_all(conn, "dashboard/warehouse_rows.sql", context, warehouse_rows_range(stream, start, end)):
            hour = folder_hour(row["folder"])
            if hour is not None:
                counts[hour] = counts.get(hour, 0) + int(row["row_count"])
        return counts
    lead = layout.prefix.lead
    parameters = {"lead": lead, "lead_length": len(lead)}
    for row in fetch_all(conn, "dashboard/warehouse_objects.sql", context, parameters):
        hour = layout.hour_of_key(row["object_key"])
        if hour is not None and start <= hour < end:
            counts[hour] = counts.get(hour, 0) + int(row["row_count"])
    return counts


def folder_hour(folder: str) -> datetime | None:
    """``2026/03/01/10`` (as ``warehouse_rows.sql`` cuts it from a key) as an hour; None if it is not one."""
    try:
        return datetime.strptime(folder, "%Y/%m/%d/%H").replace(tzinfo=UTC)
    except (TypeError, ValueError):
        return None


def query_stream(
    conn: Any, stream: Stream, settings: Settings, start: datetime, end: datetime, now: datetime | None = None
) -> StreamDashboard:
    """Read one stream's window from the warehouse and build its dashboard (read-only); ``now`` is when the lag is measured."""
    now = now or datetime.now(UTC)
    context = template_context(stream, settings)
    parameters = {"stream": stream.name, "start": naive(start), "end": naive(end)}
    try:
        tables = existing_tables(conn, stream, settings)
        loads = fetch_all(conn, "dashboard/load_hours.sql", context, parameters) if "load_hours" in tables else []
        audits = fetch_all(conn, "dashboard/audits.sql", context, parameters) if "audit_results" in tables else []
        realtime: list[dict[str, Any]] = []
        if stream.realtime_writer and REALTIME_TABLE in tables:
            realtime = fetch_all(conn, "dashboard/realtime_quality.sql", context, parameters)
        commits: list[dict[str, Any]] = []
        if COMMITS_TABLE in tables:
            commits = fetch_all(conn, "dashboard/object_commits.sql", context, parameters)
        counts = warehouse_row_counts(conn, stream, context, start, end) if "target" in tables else {}
        silences = fetch_all(conn, "dashboard/silences.sql", context, parameters) if SILENCES_TABLE in tables else []
    finally:
        conn.rollback()
    hours = build_points(start, end, loads, audits, counts, realtime)
    missing = tuple(name for name in (*LOADER_TABLES, "target") if name not in tables)
    return StreamDashboard(
        stream=stream.name,
        table=stream.qualified_table,
        ingest_dag_id=stream.ingest_dag_id,
        audit_dag_id=stream.audit_dag_id,
        start=start,
        end=end,
        ready=not missing,
        hours=hours,
        summary=summarize(hours),
        missing_tables=missing,
        realtime_writer=stream.realtime_writer,
        freshness=measure_freshness(commits, now),
        freshness_mode=stream.freshness.mode,
        silences=tuple(_with_aware_times(row) for row in silences),
    )


def query_hour(conn: Any, stream: Stream, settings: Settings, hour: datetime) -> HourDetail:
    """One hour's load, its ledger (one row per object) and every audit of it (read-only)."""
    context = template_context(stream, settings)
    parameters = {"stream": stream.name, "hour": naive(hour)}
    try:
        tables = existing_tables(conn, stream, settings)
        load = fetch_all(conn, "dashboard/hour_load.sql", context, parameters) if "load_hours" in tables else []
        objects = fetch_all(conn, "dashboard/hour_ledger.sql", context, parameters) if "ledger" in tables else []
        audits = fetch_all(conn, "dashboard/hour_audits.sql", context, parameters) if "audit_results" in tables else []
        realtime: list[dict[str, Any]] = []
        if stream.realtime_writer and REALTIME_TABLE in tables:
            realtime = fetch_all(conn, "dashboard/hour_realtime.sql", context, parameters)
        drift = fetch_all(conn, "dashboard/hour_drift.sql", context, parameters) if DRIFT_TABLE in tables else []
        sweeps = fetch_all(conn, "dashboard/hour_sweeps.sql", context, parameters) if SWEEP_TABLE in tables else []
    finally:
        conn.rollback()
    totals = {name: sum(int(row[name] or 0) for row in objects) for name in LEDGER_TOTALS}
    return HourDetail(
        stream=stream.name,
        hour=hour_start(hour),
        load=_with_aware_times(load[0]) if load else None,
        objects=tuple(_with_aware_times(row) for row in objects),
        audits=tuple(_with_aware_times(row) for row in audits),
        totals=totals,
        realtime=_with_aware_times(realtime[0]) if realtime else None,
        realtime_writer=stream.realtime_writer,
        new_fields=tuple(drift),
        sweeps=tuple(_with_aware_times(row) for row in sweeps),
    )


def _with_aware_times(row: dict[str, Any]) -> dict[str, Any]:
    return {name: aware(value) if isinstance(value, datetime) else value for name, value in row.items()}
