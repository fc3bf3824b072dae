"""The late sweep: every hour of a long horizon compared with its ledger, and only what is new loaded.

Firehose retries S3 delivery for up to 24 hours (Direct PUT), and with a Kinesis source for as
long as the stream keeps its records (days); such an object lands in its original hour folder,
possibly long after that hour's last audit. The sweep lists each hour folder of the stream's
``late_horizon_hours`` and compares keys and ETags with the ledger, without reading any object;
an hour with new or changed objects has only those extracted and merged as a delta (the merge's
winner rule makes that the same table as a whole-hour merge). An hour in the horizon that no
load committed (no load_hours row) and whose ingest is not coming is loaded whole: a gap.
What it found is written to ``sweep_results`` in the merge's transaction.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from firehose_loader.audit import late_objects
from firehose_loader.config import Settings, Stream
from firehose_loader.extract import extract_chosen
from firehose_loader.layout import HOUR, StageWriter, naive_utc, stream_layout
from firehose_loader.load import merge_hour, query_one, staged_batch, template_context
from firehose_loader.s3io import ObjectInfo, list_hour_objects
from firehose_loader.text_table import format_table
from firehose_loader.warehouse.protocol import Dialect
from firehose_loader.warehouse.render import render, render_statements

log = logging.getLogger(__name__)

# The audit DAG's task that sweeps: its stages name it, beside the run and the try.
SWEEP_TASK = "late_sweep"
# sweep_results.late_keys holds at most this many characters (Redshift's longest varchar).
LATE_KEYS_CHARS = 65535


@dataclass(frozen=True)
class HourLedger:
    """What the warehouse knows of an hour: whether a load committed it, and its ledger's ETags by key."""

    committed: bool
    loaded: dict[str, str]


@dataclass(frozen=True)
class SweepFinding:
    hour: datetime
    status: str  # late, gap or failed
    late_keys: tuple[str, ...] = ()
    max_lateness_seconds: int | None = None
    records_loaded: int | None = None
    message: str | None = None


def sweep_writer(run_id: str, try_number: int) -> StageWriter:
    return StageWriter("sweep", run_id, SWEEP_TASK, try_number)


def lateness_seconds(hour: datetime, objects: list[ObjectInfo]) -> int | None:
    """How long after its hour's end the latest of the objects was written (0 if in time; None if unknown)."""
    moments = [item.last_modified for item in objects if item.last_modified is not None]
    if not moments:
        return None
    return max(0, int((max(moments) - (hour + HOUR)).total_seconds()))


def horizon_ledgers(
    conn: Any, stream: Stream, settings: Settings, dialect: Dialect, hours: list[datetime]
) -> dict[datetime, HourLedger]:
    """Every hour's ledger in two queries for the whole horizon (not two per hour)."""
    context = template_context(stream, settings, dialect)
    parameters = {"stream": stream.name, "first_hour": naive_utc(min(hours)), "last_hour": naive_utc(max(hours))}
    loaded: dict[datetime, dict[str, str]] = defaultdict(dict)
    with conn.cursor() as cursor:
        cursor.execute(render("sweep/horizon_ledger.sql", **context), parameters)
        for hour, key, etag in cursor.fetchall():
            loaded[hour.replace(tzinfo=UTC)][key] = etag
        cursor.execute(render("sweep/horizon_hours.sql", **context), parameters)
        committed = {hour.replace(tzinfo=UTC) for (hour,) in cursor.fetchall()}
    conn.commit()
    return {hour: HourLedger(hour in committed, loaded.get(hour, {})) for hour in hours}


def sweep_hour(
    conn: Any,
    client: Any,
    stream: Stream,
    settings: Settings,
    dialect: Dialect,
    hour: datetime,
    ledger: HourLedger,
    run_id: str,
    *,
    try_number: int,
    listing: list[ObjectInfo] | None = None,
) -> SweepFinding | None:
    """Load the hour's new or changed objects (the whole hour for a gap); None when there are none.

    ``listing`` is the hour's listing if the caller has it; the extract lists again anyway, so
    the objects it reads are the folder's as they are then.
    """
    listed = list_hour_objects(client, stream.bucket, stream_layout(stream), hour) if listing is None else listing
    if not late_objects(listed, ledger.loaded):
        return None
    manifest, chosen = extract_chosen(
        client,
        stream,
        hour,
        sweep_writer(run_id, try_number),
        lambda now: late_objects(now, ledger.loaded),
        dialect.limits,
    )
    if manifest is None:
        return None  # what was late is gone again
    status = "late" if ledger.committed else "gap"
    keys = tuple(item.key for item in chosen)
    lateness = lateness_seconds(hour, chosen)
    findings = {
        "swept_at": naive_utc(datetime.now(UTC)),
        "try_number": try_number,
        "status": status,
        "late_objects": len(chosen),
        "late_keys": "\n".join(keys)[:LATE_KEYS_CHARS],
        "max_lateness_seconds": lateness,
    }
    merge_hour(
        conn,
        stream,
        settings,
        dialect,
        manifest,
        staged_batch(client, stream, manifest),
        run_id,
        # A gap is the hour's first load: its whole ledger is written, as an ingest's.
        delta=ledger.committed,
        measured_by="sweep",
        then=[("sweep/record_result.sql", findings)],
    )
    return SweepFinding(
        hour, status, keys, lateness, _records_loaded(conn, stream, settings, dialect, hour, run_id, try_number)
    )


def _records_loaded(
    conn: Any, stream: Stream, settings: Settings, dialect: Dialect, hour: datetime, run_id: str, try_number: int
) -> int | None:
    """The rows the hour's merge loaded, from the sweep_results row it committed."""
    context = template_context(stream, settings, dialect)
    row = query_one(
        conn, "sweep/records_loaded.sql", context, stream.name, naive_utc(hour), run_id=run_id, try_number=try_number
    )
    return None if row is None else row["records_loaded"]


def record_failure(
    conn: Any,
    stream: Stream,
    settings: Settings,
    dialect: Dialect,
    hour: datetime,
    run_id: str,
    try_number: int,
    error: Exception,
) -> SweepFinding:
    message = f"{type(error).__name__}: {error}"[:1024]
    parameters = {
        "stream": stream.name,
        "hour": naive_utc(hour),
        "run_id": run_id,
        "try_number": try_number,
        "swept_at": naive_utc(datetime.now(UTC)),
        "message": message,
    }
    with conn.cursor() as cursor:
        for statement in render_statements("sweep/record_failure.sql", **template_context(stream, settings, dialect)):
            cursor.execute(statement, parameters)
    conn.commit()
    return SweepFinding(hour, "failed", message=message)


def sweep_hours(
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
) -> list[SweepFinding]:
    """Sweep every hour; return a finding per hour that had late objects, was a gap, or failed.

    An hour no load committed whose ingest run is still queued or running is left to that ingest
    (and to the audit), as the audit does. A failing hour is recorded and the others still run.
    """
    if not hours:
        return []
    ledgers = horizon_ledgers(conn, stream, settings, dialect, hours)
    findings = []
    for hour in hours:
        ledger = ledgers[hour]
        try:
            if not ledger.committed and ingest_pending(hour):
                continue
            finding = sweep_hour(conn, client, stream, settings, dialect, hour, ledger, run_id, try_number=try_number)
        except Exception as exc:
            log.exception("late sweep of %s hour %s failed", stream.name, hour.isoformat())
            conn.rollback()
            finding = record_failure(conn, stream, settings, dialect, hour, run_id, try_number, exc)
        if finding is not None:
            findings.append(finding)
    return findings


def format_findings(stream: Stream, hours: int, findings: list[SweepFinding]) -> str:
    """The per-hour table the task log and the alert show."""
    title = f"late sweep of {stream.name} over {hours} hours: {len(findings)} hour(s) with findings"
    if not findings:
        return title
    header = ("hour (UTC)", "status", "late obj", "late by (h)", "rows loaded", "keys or error")
    rows = [
        (
            f"{finding.hour:%Y-%m-%d %H:00}",
            finding.status,
            str(len(finding.late_keys)),
            "-" if finding.max_lateness_seconds is None else f"{finding.max_lateness_seconds / 3600:.1f}",
            "-" if finding.records_loaded is None else str(finding.records_loaded),
            finding.message or ", ".join(key.rsplit("/", 1)[-1] for key in finding.late_keys),
        )
        for finding in findings
    ]
    return title + "\n" + format_table(header, rows)
