"""The audit dashboard's data and its page: read the loader's tables, draw the last 48 hours.

Free of Airflow (the plugin in ``plugins/firehose_dashboard.py`` is the thin layer that
authenticates the request and opens the warehouse connection). Every statement is a template
in ``include/sql/dashboard/`` rendered through :func:`firehose_loader.warehouse.render.render`; values travel
as bind parameters. Nothing here writes: each query ends with a rollback.

Per hour of the window the dashboard shows

* the hour's load (``load_hours``): status, objects, records, quarantined;
* ``s3_keys``: the distinct keys of the hour in S3, from the hour's latest audit, or from its
  load (valid records minus duplicates within the batch) when it was never audited;
* ``warehouse_rows``: rows in the stream's table now whose ``_firehose_object`` lies in the
  hour's folder (rows of other writers carry no provenance and are not counted);
* what the audits of the hour found (``audit_results``), summed over the audits of the hour:
  each audit repairs what it found, so two audits' findings are two separate events;
* the real-time drop rate: missing keys / S3 keys, per hour and over the window.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
import markupsafe

from firehose_loader.config import Settings, Stream
from firehose_loader.layout import HOUR, hour_folder, hour_start
from firehose_loader.warehouse.render import render

WINDOW_HOURS = 48
TEMPLATES = Path(__file__).resolve().parent / "templates"
LOADER_TABLES = ("ledger", "load_hours", "audit_results")


# --- The window and hours ---------------------------------------------------------------------------------------------


def window(end: datetime | None, now: datetime, hours: int = WINDOW_HOURS) -> tuple[datetime, datetime]:
    """The ``hours`` UTC hours ending with the hour of ``end`` (default: the current hour), as [start, end)."""
    last = hour_start(end or now)
    return last - (hours - 1) * HOUR, last + HOUR


def parse_hour(text: str) -> datetime:
    """An hour given as ISO 8601 (``2026-03-01T10``, ``2026-03-01T10:00:00Z``, ...); naive means UTC."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO 8601 hour such as 2026-03-01T10:00") from None
    moment = moment.replace(tzinfo=moment.tzinfo or UTC).astimezone(UTC)
    if moment != hour_start(moment):
        raise ValueError(f"{text!r} is not on a whole hour")
    return moment


def naive(moment: datetime) -> datetime:
    """A UTC moment as the naive timestamp the loader tables store."""
    return moment.astimezone(UTC).replace(tzinfo=None)


def aware(moment: datetime | None) -> datetime | None:
    """A timestamp read from the loader tables (naive UTC, or aware) as an aware UTC datetime."""
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def hour_key(moment: datetime) -> str:
    """How an hour appears in URLs and JSON: ``2026-03-01T10:00``."""
    return f"{hour_start(moment):%Y-%m-%dT%H:00}"


# --- The model --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HourPoint:
    """One hour of a stream in the dashboard's window."""

    hour: datetime
    load_status: str | None = None
    objects: int | None = None
    records_raw: int | None = None
    records_quarantined: int | None = None
    records_duplicate: int | None = None
    loaded_at: datetime | None = None
    s3_keys: int | None = None
    s3_keys_source: str | None = None  # "audit", "load" or None
    warehouse_rows: int | None = None
    audits: int = 0
    audit_status: str | None = None  # the latest audit's status
    repaired_audits: int = 0
    failed_audits: int = 0
    missing_keys: int | None = None
    duplicate_keys: int | None = None
    stale_keys: int | None = None
    late_objects: int | None = None
    repaired_keys: int | None = None
    error_objects: int | None = None
    drop_rate: float | None = None
    last_audited_at: datetime | None = None
    audit_message: str | None = None

    @property
    def has_drops(self) -> bool:
        return bool(self.missing_keys)

    @property
    def findings(self) -> int:
        return sum(value or 0 for value in (self.missing_keys, self.duplicate_keys, self.stale_keys, self.late_objects))

    @property
    def loaded(self) -> bool:
        """Loaded with records (an ``empty`` hour had no objects)."""
        return self.load_status not in (None, "empty")

    @property
    def has_data(self) -> bool:
        """Worth a row in the page's table: records, rows, findings or a failure."""
        return (
            self.loaded or bool(self.s3_keys or self.warehouse_rows or self.findings) or self.audit_status == "failed"
        )


@dataclass(frozen=True)
class Summary:
    hours_loaded: int  # loaded with records (not empty)
    hours_audited: int
    hours_with_drops: int
    hours_failed: int
    s3_keys_audited: int
    missing_keys: int
    duplicate_keys: int
    stale_keys: int
    late_objects: int
    repaired_keys: int
    records_quarantined: int
    drop_rate: float | None  # missing / S3 keys over the audited hours of the window


@dataclass(frozen=True)
class StreamDashboard:
    stream: str
    table: str
    ingest_dag_id: str
    audit_dag_id: str
    start: datetime
    end: datetime
    ready: bool  # the loader's tables and the stream's table exist
    hours: tuple[HourPoint, ...]
    summary: Summary
    missing_tables: tuple[str, ...] = ()


@dataclass(frozen=True)
class HourDetail:
    stream: str
    hour: datetime
    load: dict[str, Any] | None
    objects: tuple[dict[str, Any], ...]
    audits: tuple[dict[str, Any], ...]
    totals: dict[str, int] = field(default_factory=dict)


# --- Queries ----------------------------------------------------------------------------------------------------------


def template_context(stream: Stream, settings: Settings) -> dict[str, Any]:
    return {"loader_schema": settings.loader_schema, "target": (stream.schema, stream.table)}


def fetch_all(conn: Any, template: str, context: Mapping[str, Any], parameters: Mapping[str, Any]) -> list[dict]:
    """Run one read-only template; rows as dicts."""
    with conn.cursor() as cursor:
        cursor.execute(render(template, **context), dict(parameters))
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def existing_tables(conn: Any, stream: Stream, settings: Settings) -> set[str]:
    """Which of ``ledger``, ``load_hours``, ``audit_results`` and ``target`` exist."""
    rows = fetch_all(
        conn,
        "dashboard/tables.sql",
        template_context(stream, settings),
        {"loader_schema": settings.loader_schema, "schema": stream.schema, "table": stream.table},
    )
    found = set()
    for row in rows:
        if row["table_schema"] == settings.loader_schema and row["table_name"] in LOADER_TABLES:
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


def folder_hour(folder: str) -> datetime | None:
    """``2026/03/01/10`` (as ``warehouse_rows.sql`` cuts it from a key) as an hour; None if it is not one."""
    try:
        return datetime.strptime(folder, "%Y/%m/%d/%H").replace(tzinfo=UTC)
    except (TypeError, ValueError):
        return None


def query_stream(conn: Any, stream: Stream, settings: Settings, start: datetime, end: datetime) -> StreamDashboard:
    """Read one stream's window from the warehouse and build its dashboard (read-only)."""
    context = template_context(stream, settings)
    parameters = {"stream": stream.name, "start": naive(start), "end": naive(end)}
    try:
        tables = existing_tables(conn, stream, settings)
        loads = fetch_all(conn, "dashboard/load_hours.sql", context, parameters) if "load_hours" in tables else []
        audits = fetch_all(conn, "dashboard/audits.sql", context, parameters) if "audit_results" in tables else []
        rows: list[dict] = []
        if "target" in tables:
            rows = fetch_all(conn, "dashboard/warehouse_rows.sql", context, warehouse_rows_range(stream, start, end))
    finally:
        conn.rollback()
    counts: dict[datetime, int] = {}
    for row in rows:
        hour = folder_hour(row["folder"])
        if hour is not None:
            counts[hour] = counts.get(hour, 0) + int(row["row_count"])
    hours = build_points(start, end, loads, audits, counts)
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
    finally:
        conn.rollback()
    totals = {
        name: sum(int(row[name] or 0) for row in objects)
        for name in (
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
    }
    return HourDetail(
        stream=stream.name,
        hour=hour_start(hour),
        load=_with_aware_times(load[0]) if load else None,
        objects=tuple(_with_aware_times(row) for row in objects),
        audits=tuple(_with_aware_times(row) for row in audits),
        totals=totals,
    )


def _with_aware_times(row: dict[str, Any]) -> dict[str, Any]:
    return {name: aware(value) if isinstance(value, datetime) else value for name, value in row.items()}


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def build_points(
    start: datetime,
    end: datetime,
    loads: Iterable[Mapping[str, Any]],
    audits: Iterable[Mapping[str, Any]],
    warehouse_rows: Mapping[datetime, int],
) -> tuple[HourPoint, ...]:
    """Merge the query results into one point per hour of [start, end), oldest first."""
    by_hour_load = {aware(row["hour"]): row for row in loads}
    by_hour_audit = {aware(row["hour"]): row for row in audits}
    points = []
    hour = start
    while hour < end:
        load = by_hour_load.get(hour)
        audit = by_hour_audit.get(hour)
        values: dict[str, Any] = {"hour": hour, "warehouse_rows": warehouse_rows.get(hour)}
        if load is not None:
            values.update(
                load_status=load["status"],
                objects=_int(load["objects"]),
                records_raw=_int(load["records_raw"]),
                records_quarantined=_int(load["records_quarantined"]),
                records_duplicate=_int(load["records_duplicate"]),
                loaded_at=aware(load["loaded_at"]),
                s3_keys=_int(load["batch_keys"]),
                s3_keys_source="load",
                error_objects=_int(load["error_objects"]),
            )
        if audit is not None:
            missing = int(audit["missing_keys"])
            values.update(
                audits=int(audit["audits"]),
                audit_status=audit["latest_status"],
                repaired_audits=int(audit["repaired_audits"]),
                failed_audits=int(audit["failed_audits"]),
                missing_keys=missing,
                duplicate_keys=int(audit["duplicate_keys"]),
                stale_keys=int(audit["stale_keys"]),
                late_objects=int(audit["late_objects"]),
                repaired_keys=int(audit["repaired_keys"]),
                last_audited_at=aware(audit["last_audited_at"]),
                audit_message=audit["latest_message"],
            )
            if audit["latest_s3_keys"] is not None:
                s3_keys = int(audit["latest_s3_keys"])
                values.update(
                    s3_keys=s3_keys,
                    s3_keys_source="audit",
                    drop_rate=(min(missing, s3_keys) / s3_keys) if s3_keys else None,
                )
            if audit["latest_error_objects"] is not None:
                values["error_objects"] = int(audit["latest_error_objects"])
        points.append(HourPoint(**values))
        hour += HOUR
    return tuple(points)


def summarize(points: Sequence[HourPoint]) -> Summary:
    audited = [point for point in points if point.audits]
    keys = sum(point.s3_keys or 0 for point in audited if point.s3_keys_source == "audit")
    missing = sum(point.missing_keys or 0 for point in audited)
    return Summary(
        hours_loaded=sum(1 for point in points if point.loaded),
        hours_audited=len(audited),
        hours_with_drops=sum(1 for point in points if point.has_drops),
        hours_failed=sum(1 for point in points if point.audit_status == "failed"),
        s3_keys_audited=keys,
        missing_keys=missing,
        duplicate_keys=sum(point.duplicate_keys or 0 for point in audited),
        stale_keys=sum(point.stale_keys or 0 for point in audited),
        late_objects=sum(point.late_objects or 0 for point in audited),
        repaired_keys=sum(point.repaired_keys or 0 for point in audited),
        records_quarantined=sum(point.records_quarantined or 0 for point in points),
        drop_rate=(min(missing, keys) / keys) if keys else None,
    )


# --- JSON -------------------------------------------------------------------------------------------------------------


def jsonable(value: Any) -> Any:
    """Dataclasses, dicts and lists with datetimes as ISO 8601 text (UTC)."""
    if isinstance(value, HourPoint):
        data = {item.name: jsonable(getattr(value, item.name)) for item in fields(value)}
        data.update(has_drops=value.has_drops, findings=value.findings)
        return data
    if hasattr(value, "__dataclass_fields__"):
        return {name: jsonable(item) for name, item in asdict(value).items()} | (
            {"hours": [jsonable(point) for point in value.hours]} if isinstance(value, StreamDashboard) else {}
        )
    if isinstance(value, datetime):
        return aware(value).isoformat()
    if isinstance(value, Mapping):
        return {str(name): jsonable(item) for name, item in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Decimal):
        return float(value)
    return value


# --- The chart (inline SVG, drawn on the server) ----------------------------------------------------------------------

COLORS = {
    "s3_keys": "#2563eb",
    "warehouse_rows": "#16a34a",
    "missing_keys": "#dc2626",
    "duplicate_keys": "#f59e0b",
    "stale_keys": "#7c3aed",
    "late_objects": "#0891b2",
    "drop_rate": "#dc2626",
    "drop_band": "#fee2e2",
    "grid": "#e5e7eb",
    "text": "#374151",
}
FINDINGS = (
    ("missing_keys", "missing"),
    ("duplicate_keys", "duplicate"),
    ("stale_keys", "stale"),
    ("late_objects", "late objects"),
)
WIDTH = 980
LEFT, RIGHT = 64, 16
KEYS_TOP, KEYS_HEIGHT = 44, 170
FINDINGS_TOP, FINDINGS_HEIGHT = 246, 90
RATE_TOP, RATE_HEIGHT = 368, 54
AXIS_Y = RATE_TOP + RATE_HEIGHT
HEIGHT = AXIS_Y + 34


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten that is at least ``value`` (1 for nothing)."""
    if value <= 0:
        return 1
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if value <= step * power:
            return step * power
    return 10 * power  # pragma: no cover


def _number(value: float) -> str:
    return f"{value:,.0f}" if value >= 1 or value == 0 else f"{value:g}"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


def _attr(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def hour_tooltip(point: HourPoint) -> str:
    lines = [f"{point.hour:%Y-%m-%d %H:00} UTC"]
    if point.load_status is None:
        lines.append("not loaded")
    else:
        lines.append(f"load: {point.load_status}, {point.objects} objects, {point.records_quarantined} quarantined")
    source = f" (from the {point.s3_keys_source})" if point.s3_keys_source else ""
    lines.append(f"S3 keys: {'-' if point.s3_keys is None else point.s3_keys}{source}")
    lines.append(f"rows in the warehouse: {'-' if point.warehouse_rows is None else point.warehouse_rows}")
    if point.audits:
        lines.append(f"audits: {point.audits}, latest {point.audit_status}")
        lines.append(
            f"found: missing {point.missing_keys}, duplicate {point.duplicate_keys}, stale {point.stale_keys},"
            f" late objects {point.late_objects}; repaired {point.repaired_keys}"
        )
        lines.append(f"real-time drop rate: {_percent(point.drop_rate)}")
    else:
        lines.append("not audited yet")
    return "\n".join(lines)


def chart_svg(dashboard: StreamDashboard, link: Any = None, selected: datetime | None = None) -> str:
    """The window as an SVG: S3 keys vs warehouse rows, audit findings, drop rate; hours with drops in red.

    ``link(hour)`` gives the URL an hour's bars lead to (its ledger); every hour group carries
    its numbers as ``data-*`` attributes and a ``<title>`` tooltip.
    """
    points = dashboard.hours
    slot = (WIDTH - LEFT - RIGHT) / max(len(points), 1)
    keys_max = nice_ceiling(
        max([point.s3_keys or 0 for point in points] + [point.warehouse_rows or 0 for point in points])
    )
    findings_max = nice_ceiling(max([point.findings for point in points] + [0]))
    rate_max = nice_ceiling(max([point.drop_rate or 0 for point in points] + [0]) * 100) / 100
    if rate_max <= 0:
        rate_max = 0.01
    name = _attr(dashboard.stream)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" id="chart-{name}" data-stream="{name}"'
        f' viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img"'
        f' aria-label="{name}: S3 keys vs rows in the warehouse, audit findings and drop rate per hour">',
        f"<style>text{{font:11px system-ui,sans-serif;fill:{COLORS['text']}}} .title{{font-weight:600;font-size:12px}}"
        " a .hit{fill:transparent} a:hover .hit{fill:#0000000d} .selected .hit{fill:#2563eb1a;stroke:#2563eb}</style>",
    ]
    # Panel titles and legend.
    legend = [
        ("s3_keys", "S3 keys"),
        ("warehouse_rows", "rows in the warehouse"),
        *FINDINGS,
        ("drop_band", "hour with drops"),
    ]
    x = LEFT
    for key, label in legend:
        out.append(f'<rect x="{x}" y="8" width="10" height="10" fill="{COLORS[key]}"/>')
        out.append(f'<text x="{x + 14}" y="17">{html.escape(label)}</text>')
        x += 22 + 6.4 * len(label)
    out.append(f'<text class="title" x="{LEFT}" y="{KEYS_TOP - 8}">S3 keys vs rows in the warehouse</text>')
    out.append(f'<text class="title" x="{LEFT}" y="{FINDINGS_TOP - 8}">audit findings (keys; late objects)</text>')
    out.append(f'<text class="title" x="{LEFT}" y="{RATE_TOP - 8}">real-time drop rate (missing / S3 keys)</text>')
    # Drop bands behind everything.
    for index, point in enumerate(points):
        if point.has_drops:
            out.append(
                f'<rect class="drop-band" x="{LEFT + index * slot:.1f}" y="{KEYS_TOP}" width="{slot:.1f}"'
                f' height="{AXIS_Y - KEYS_TOP}" fill="{COLORS["drop_band"]}"/>'
            )
    # Axes and grid lines.
    for top, height, top_value, formatter in (
        (KEYS_TOP, KEYS_HEIGHT, keys_max, _number),
        (FINDINGS_TOP, FINDINGS_HEIGHT, findings_max, _number),
        (RATE_TOP, RATE_HEIGHT, rate_max, _percent),
    ):
        for step in range(3):
            fraction = step / 2
            y = top + height - fraction * height
            out.append(
                f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="{COLORS["grid"]}"/>'
                f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{formatter(top_value * fraction)}</text>'
            )
    if not any(point.findings for point in points):
        out.append(
            f'<text x="{(LEFT + WIDTH - RIGHT) / 2}" y="{FINDINGS_TOP + FINDINGS_HEIGHT / 2}" text-anchor="middle">'
            f"{'no audit in this window' if not any(point.audits for point in points) else 'the audits found nothing'}"
            "</text>"
        )
    # One group per hour.
    for index, point in enumerate(points):
        x0 = LEFT + index * slot
        classes = ["hour"] + (["drops"] if point.has_drops else []) + (["selected"] if point.hour == selected else [])
        data = {
            "hour": hour_key(point.hour),
            "load-status": point.load_status,
            "objects": point.objects,
            "s3-keys": point.s3_keys,
            "s3-keys-source": point.s3_keys_source,
            "warehouse-rows": point.warehouse_rows,
            "audits": point.audits,
            "audit-status": point.audit_status,
            "missing": point.missing_keys,
            "duplicate": point.duplicate_keys,
            "stale": point.stale_keys,
            "late": point.late_objects,
            "repaired": point.repaired_keys,
            "drop-rate": None if point.drop_rate is None else repr(point.drop_rate),
        }
        attributes = " ".join(f'data-{key}="{_attr(value)}"' for key, value in data.items())
        group = [f'<g class="{" ".join(classes)}" {attributes}>', f"<title>{html.escape(hour_tooltip(point))}</title>"]
        group.append(f'<rect class="hit" x="{x0:.1f}" y="{KEYS_TOP}" width="{slot:.1f}" height="{AXIS_Y - KEYS_TOP}"/>')
        bar = slot * 0.36
        for offset, key, value in ((0.12, "s3_keys", point.s3_keys), (0.52, "warehouse_rows", point.warehouse_rows)):
            if value:
                height = value / keys_max * KEYS_HEIGHT
                group.append(
                    f'<rect class="{key.replace("_", "-")}" x="{x0 + slot * offset:.1f}"'
                    f' y="{KEYS_TOP + KEYS_HEIGHT - height:.1f}" width="{bar:.1f}" height="{height:.1f}"'
                    f' fill="{COLORS[key]}"/>'
                )
        y = FINDINGS_TOP + FINDINGS_HEIGHT
        for key, _label in FINDINGS:
            value = getattr(point, key) or 0
            if value:
                height = max(value / findings_max * FINDINGS_HEIGHT, 1.5)
                y -= height
                group.append(
                    f'<rect class="{key.replace("_", "-")}" x="{x0 + slot * 0.2:.1f}" y="{y:.1f}"'
                    f' width="{slot * 0.6:.1f}" height="{height:.1f}" fill="{COLORS[key]}"/>'
                )
        if point.drop_rate:
            height = max(min(point.drop_rate / rate_max, 1) * RATE_HEIGHT, 1.5)
            group.append(
                f'<rect class="drop-rate" x="{x0 + slot * 0.2:.1f}" y="{RATE_TOP + RATE_HEIGHT - height:.1f}"'
                f' width="{slot * 0.6:.1f}" height="{height:.1f}" fill="{COLORS["drop_rate"]}"/>'
            )
        if point.audit_status == "failed":
            group.append(
                f'<text x="{x0 + slot / 2:.1f}" y="{FINDINGS_TOP + FINDINGS_HEIGHT - 4}" text-anchor="middle"'
                f' fill="{COLORS["missing_keys"]}">!</text>'
            )
        group.append("</g>")
        href = link(point.hour) if link else None
        if href:
            out.append(f'<a href="{_attr(href)}">{"".join(group)}</a>')
        else:
            out.extend(group)
        if point.hour.hour % 6 == 0:
            label = f"{point.hour:%H:00}" if point.hour.hour else f"{point.hour:%b %d}"
            out.append(
                f'<line x1="{x0:.1f}" x2="{x0:.1f}" y1="{AXIS_Y}" y2="{AXIS_Y + 5}" stroke="{COLORS["text"]}"/>'
                f'<text x="{x0:.1f}" y="{AXIS_Y + 18}" text-anchor="middle">{label}</text>'
            )
    out.append(
        f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{AXIS_Y}" y2="{AXIS_Y}" stroke="{COLORS["text"]}"/>'
        f'<text x="{WIDTH - RIGHT}" y="{AXIS_Y + 30}" text-anchor="end">hour (UTC)</text>'
    )
    out.append("</svg>")
    return "\n".join(out)


# --- The page ---------------------------------------------------------------------------------------------------------


def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["percent"] = _percent
    environment.filters["count"] = lambda value: "-" if value is None else f"{value:,}"
    environment.filters["hour_text"] = lambda value: f"{value:%Y-%m-%d %H:00}"
    environment.filters["time_text"] = lambda value: "-" if value is None else f"{aware(value):%Y-%m-%d %H:%M:%S}"
    environment.filters["basename"] = lambda value: "" if value is None else str(value).rsplit("/", 1)[-1]
    return environment


PAGE = _environment()


def page_link(stream: str, hour: datetime | None = None, end: datetime | None = None) -> str:
    """A link to the page itself (relative, so it works wherever the plugin is mounted)."""
    query = {"stream": stream}
    if hour is not None:
        query["hour"] = hour_key(hour)
    if end is not None:
        query["end"] = hour_key(end)
    return f"?{urlencode(query)}#{'ledger' if hour is not None else 'stream'}-{stream}"


def render_page(
    dashboards: Sequence[StreamDashboard],
    *,
    now: datetime,
    end: datetime | None = None,
    selected_stream: str | None = None,
    detail: HourDetail | None = None,
    airflow_root: str = "",
    errors: Mapping[str, str] | None = None,
    hidden_streams: int = 0,
) -> str:
    """The whole page, self-contained: inline CSS and SVG, no script, nothing fetched from elsewhere."""
    charts = {
        dashboard.stream: chart_svg(
            dashboard,
            link=lambda hour, name=dashboard.stream: page_link(name, hour, end),
            selected=detail.hour if detail is not None and detail.stream == dashboard.stream else None,
        )
        for dashboard in dashboards
    }
    return PAGE.get_template("dashboard.html").render(
        dashboards=dashboards,
        charts={name: markupsafe.Markup(svg) for name, svg in charts.items()},
        now=now,
        end=end,
        window_hours=WINDOW_HOURS,
        selected_stream=selected_stream,
        detail=detail,
        airflow_root=airflow_root.rstrip("/"),
        errors=errors or {},
        hidden_streams=hidden_streams,
        colors=COLORS,
        page_link=page_link,
        hour_key=hour_key,
        previous_end=(dashboards[0].start - timedelta(hours=1)) if dashboards else None,
        next_end=(dashboards[0].end + timedelta(hours=WINDOW_HOURS - 1)) if dashboards else None,
    )
