"""What the dashboard shows, as plain data: the window, one point per hour, the window's summary, an hour's detail.

Pure: no I/O. :mod:`firehose_loader.dashboard.queries` fills these from the warehouse;
:mod:`firehose_loader.dashboard.chart` and :mod:`firehose_loader.dashboard.page` draw them, and
:func:`jsonable` turns them into the API's JSON.

Per hour of the window a point holds

* the hour's load (``load_hours``): status, objects, records, quarantined;
* ``s3_keys``: the distinct keys of the hour in S3, from the hour's latest audit, or from its
  load (valid records minus duplicates within the batch) when it was never audited;
* ``warehouse_rows``: rows in the stream's table now whose ``_firehose_object`` lies in the
  hour's folder (rows of other writers carry no provenance and are not counted);
* **the real-time path at first merge** (``realtime_quality``, streams with ``realtime_writer``):
  what the real-time writer had written for the hour's keys when the loader first merged them,
  measured before the merge changed a row: keys missing, doubled, stale, and the drop rate
  (missing / S3 keys). The merge repaired all of it; it is the real-time path's quality;
* **damage after the load** (``audit_results``), summed over the audits of the hour: keys the
  loader had reconciled that were later missing, doubled or stale, and how many the audit
  repaired (each audit repairs what it found, so two audits' findings are two separate events).
  Something changed loaded rows: this is the number to act on.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from firehose_loader.layout import HOUR, hour_start

WINDOW_HOURS = 48


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


def percent(value: float | None) -> str:
    """A rate as the chart and the page write it: ``0.17%``, or ``-`` for none."""
    return "-" if value is None else f"{value:.2%}"


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
    last_audited_at: datetime | None = None
    audit_message: str | None = None
    # The real-time path at the hour's first merge (realtime_quality); None when not measured.
    realtime_keys: int | None = None
    realtime_missing: int | None = None
    realtime_duplicate: int | None = None
    realtime_stale: int | None = None
    drop_rate: float | None = None  # realtime_quality.drop_rate: the real-time path's missing / S3 keys
    realtime_measured_by: str | None = None  # "ingest", "audit", "sweep" or "microbatch"
    realtime_measured_at: datetime | None = None

    @property
    def has_drops(self) -> bool:
        """The real-time path had dropped keys of the hour when the loader first merged it."""
        return bool(self.realtime_missing)

    @property
    def has_damage(self) -> bool:
        """An audit found keys missing, doubled or stale after the hour's load."""
        return bool(self.missing_keys or self.duplicate_keys or self.stale_keys)

    @property
    def realtime_findings(self) -> int:
        return sum(value or 0 for value in (self.realtime_missing, self.realtime_duplicate, self.realtime_stale))

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
            self.loaded
            or bool(self.s3_keys or self.warehouse_rows or self.findings or self.realtime_keys)
            or self.audit_status == "failed"
        )


@dataclass(frozen=True)
class Summary:
    hours_loaded: int  # loaded with records (not empty)
    hours_audited: int
    hours_with_drops: int  # the real-time path had dropped keys at the first merge
    hours_failed: int
    s3_keys_audited: int
    # Damage after the load (audit_results), over the audited hours of the window.
    missing_keys: int
    duplicate_keys: int
    stale_keys: int
    late_objects: int
    repaired_keys: int
    records_quarantined: int
    # The real-time path at first merge (realtime_quality), over the measured hours of the window.
    hours_measured: int = 0
    realtime_keys: int = 0
    realtime_missing: int = 0
    realtime_duplicate: int = 0
    realtime_stale: int = 0
    drop_rate: float | None = None  # realtime missing / realtime S3 keys
    hours_damaged: int = 0  # hours whose audits found damage after the load


@dataclass(frozen=True)
class LandingHour:
    """Landing -> committed of the objects that landed in one hour (seconds)."""

    hour: datetime
    objects: int
    p50: float
    p95: float
    max: float


@dataclass(frozen=True)
class Freshness:
    """How soon the stream's objects reached the table: each object version's first commit
    (object_commits) against its landing in S3, over the objects that landed in the window."""

    objects: int = 0
    lag_seconds: float | None = None  # now - the landing of the newest committed object
    p50: float | None = None
    p95: float | None = None
    max: float | None = None
    hours: tuple[LandingHour, ...] = ()


def nearest_rank(ordered: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile of sorted values: the smallest value with at least ``fraction`` of them at or below."""
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def measure_freshness(rows: Iterable[Mapping[str, Any]], now: datetime) -> Freshness:
    """Freshness from object_commits rows (landed_at, committed_at); rows without a landing time are left out."""
    pairs = [
        (landed, committed)
        for row in rows
        if (landed := aware(row["landed_at"])) is not None and (committed := aware(row["committed_at"])) is not None
    ]
    if not pairs:
        return Freshness()
    seconds = sorted(max(0.0, (committed - landed).total_seconds()) for landed, committed in pairs)
    by_hour: dict[datetime, list[float]] = {}
    for landed, committed in pairs:
        by_hour.setdefault(hour_start(landed), []).append(max(0.0, (committed - landed).total_seconds()))
    hours = []
    for hour, values in sorted(by_hour.items()):
        values.sort()
        hours.append(LandingHour(hour, len(values), nearest_rank(values, 0.5), nearest_rank(values, 0.95), values[-1]))
    newest = max(landed for landed, _ in pairs)
    return Freshness(
        objects=len(seconds),
        lag_seconds=max(0.0, (now - newest).total_seconds()),
        p50=nearest_rank(seconds, 0.5),
        p95=nearest_rank(seconds, 0.95),
        max=seconds[-1],
        hours=tuple(hours),
    )


def duration(seconds: float | None) -> str:
    """``42 s``, ``3.5 min``, ``1.3 h``; ``-`` when unknown."""
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


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
    realtime_writer: bool = False  # the stream declares a real-time writer (realtime_quality is measured)
    freshness: Freshness = field(default_factory=Freshness)
    freshness_mode: str = "hourly"
    # The stream's silences (silence_alert_hours empty hours after a busy one) that began in the window.
    silences: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class HourDetail:
    stream: str
    hour: datetime
    load: dict[str, Any] | None
    objects: tuple[dict[str, Any], ...]
    audits: tuple[dict[str, Any], ...]
    totals: dict[str, int] = field(default_factory=dict)
    realtime: dict[str, Any] | None = None  # the hour's realtime_quality row
    realtime_writer: bool = False
    # The hour's schema drift: per field not among the columns, its records, JSON types and a sample.
    new_fields: tuple[dict[str, Any], ...] = ()
    # What the late sweep found in the hour (sweep_results): late objects or a gap it loaded, or a failure.
    sweeps: tuple[dict[str, Any], ...] = ()


# --- Building the model from the query results ------------------------------------------------------------------------


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


# realtime_quality.measured_by of a key first merged by a micro-batch (microbatch.MEASURED_BY).
FIRST_MERGED_BY_MICROBATCH = "microbatch"


def build_points(
    start: datetime,
    end: datetime,
    loads: Iterable[Mapping[str, Any]],
    audits: Iterable[Mapping[str, Any]],
    warehouse_rows: Mapping[datetime, int],
    realtime: Iterable[Mapping[str, Any]] = (),
) -> tuple[HourPoint, ...]:
    """Merge the query results into one point per hour of [start, end), oldest first."""
    by_hour_load = {aware(row["hour"]): row for row in loads}
    by_hour_audit = {aware(row["hour"]): row for row in audits}
    by_hour_realtime = {aware(row["hour"]): row for row in realtime}
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
        measured = by_hour_realtime.get(hour)
        if measured is not None and measured["measured_by"] == FIRST_MERGED_BY_MICROBATCH:
            # Measured a minute or two after landing: "missing" counts keys the real-time writer had
            # not written yet, in flight or dropped, so it is no drop rate (docs/audit.md).
            values.update(
                realtime_measured_by=measured["measured_by"], realtime_measured_at=aware(measured["measured_at"])
            )
        elif measured is not None:
            values.update(
                realtime_keys=int(measured["s3_keys"]),
                realtime_missing=int(measured["missing_keys"]),
                realtime_duplicate=int(measured["duplicate_keys"]),
                realtime_stale=int(measured["stale_keys"]),
                drop_rate=None if measured["drop_rate"] is None else float(measured["drop_rate"]),
                realtime_measured_by=measured["measured_by"],
                realtime_measured_at=aware(measured["measured_at"]),
            )
        if audit is not None:
            values.update(
                audits=int(audit["audits"]),
                audit_status=audit["latest_status"],
                repaired_audits=int(audit["repaired_audits"]),
                failed_audits=int(audit["failed_audits"]),
                missing_keys=int(audit["missing_keys"]),
                duplicate_keys=int(audit["duplicate_keys"]),
                stale_keys=int(audit["stale_keys"]),
                late_objects=int(audit["late_objects"]),
                repaired_keys=int(audit["repaired_keys"]),
                last_audited_at=aware(audit["last_audited_at"]),
                audit_message=audit["latest_message"],
            )
            if audit["latest_s3_keys"] is not None:
                values.update(s3_keys=int(audit["latest_s3_keys"]), s3_keys_source="audit")
            if audit["latest_error_objects"] is not None:
                values["error_objects"] = int(audit["latest_error_objects"])
        points.append(HourPoint(**values))
        hour += HOUR
    return tuple(points)


def summarize(points: Sequence[HourPoint]) -> Summary:
    audited = [point for point in points if point.audits]
    keys = sum(point.s3_keys or 0 for point in audited if point.s3_keys_source == "audit")
    measured = [point for point in points if point.realtime_keys is not None]
    realtime_keys = sum(point.realtime_keys or 0 for point in measured)
    realtime_missing = sum(point.realtime_missing or 0 for point in measured)
    return Summary(
        hours_loaded=sum(1 for point in points if point.loaded),
        hours_audited=len(audited),
        hours_with_drops=sum(1 for point in points if point.has_drops),
        hours_failed=sum(1 for point in points if point.audit_status == "failed"),
        s3_keys_audited=keys,
        missing_keys=sum(point.missing_keys or 0 for point in audited),
        duplicate_keys=sum(point.duplicate_keys or 0 for point in audited),
        stale_keys=sum(point.stale_keys or 0 for point in audited),
        late_objects=sum(point.late_objects or 0 for point in audited),
        repaired_keys=sum(point.repaired_keys or 0 for point in audited),
        records_quarantined=sum(point.records_quarantined or 0 for point in points),
        hours_measured=len(measured),
        realtime_keys=realtime_keys,
        realtime_missing=realtime_missing,
        realtime_duplicate=sum(point.realtime_duplicate or 0 for point in measured),
        realtime_stale=sum(point.realtime_stale or 0 for point in measured),
        drop_rate=(realtime_missing / realtime_keys) if realtime_keys else None,
        hours_damaged=sum(1 for point in audited if point.has_damage),
    )


# --- JSON -------------------------------------------------------------------------------------------------------------


def jsonable(value: Any) -> Any:
    """Dataclasses, dicts and lists with datetimes as ISO 8601 text (UTC)."""
    if isinstance(value, HourPoint):
        data = {item.name: jsonable(getattr(value, item.name)) for item in fields(value)}
        data.update(
            has_drops=value.has_drops,
            has_damage=value.has_damage,
            findings=value.findings,
            realtime_findings=value.realtime_findings,
        )
        return data
    if hasattr(value, "__dataclass_fields__"):
        return {name: jsonable(item) for name, item in asdict(value).items()} | (
            {"hours": [jsonable(point) for point in value.hours]} if isinstance(value, StreamDashboard) else {}
        )
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC).isoformat() if value.tzinfo is None else value.astimezone(UTC).isoformat()
    if isinstance(value, Mapping):
        return {str(name): jsonable(item) for name, item in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Decimal):
        return float(value)
    return value
