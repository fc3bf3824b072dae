"""A stream that goes silent: hours that load no object after hours that did.

Firehose delivers at least one object per buffer interval (at most 15 minutes) while records
flow, so a run of empty hours after a non-empty one means the records stopped, the delivery
failed, or the prefix no longer matches. The ingest of every hour asks :func:`record_silence`;
the silence is recorded once, under the hour it began, so it alerts once however many empty
hours follow, and however often they are rerun. ``silence_alert_hours`` sets how many empty hours
in a row are a finding (0: never, for streams that are legitimately quiet).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from firehose_loader.config import Settings, Stream
from firehose_loader.layout import HOUR, naive_utc
from firehose_loader.warehouse.protocol import Dialect
from firehose_loader.warehouse.render import render, render_statements
from firehose_loader.warehouse.transactions import is_serialization_failure, is_unique_violation


@dataclass(frozen=True)
class Silence:
    stream: str
    silent_from: datetime  # the first empty hour
    empty_hours: int  # the setting's count of empty hours in a row, all loaded empty
    last_objects: int  # objects of the hour before the silence


def silence_began(objects_by_hour: Mapping[datetime, int], hour: datetime, empty_hours: int) -> Silence | None:
    """The silence that the load of ``hour`` completes or belongs to, if one is complete around it.

    ``objects_by_hour`` holds the loaded hours' object counts (an hour not loaded yet is absent,
    and breaks a silence: it is not known to be empty). A silence begins at hour S when S-1
    loaded objects and S .. S+empty_hours-1 all loaded none. ``hour`` takes part in one that
    begins from ``hour - empty_hours + 1`` to ``hour + 1`` (as its last non-empty hour), so the
    check needs the hours around ``hour`` alone, and finds the silence in any load order.
    """
    if empty_hours <= 0:
        return None
    for back in range(-1, empty_hours):
        start = hour - back * HOUR
        before = objects_by_hour.get(start - HOUR)
        run = [objects_by_hour.get(start + step * HOUR) for step in range(empty_hours)]
        if before and all(count == 0 for count in run):
            return Silence("", start, empty_hours, before)
    return None


def record_silence(
    conn: Any, stream: Stream, settings: Settings, dialect: Dialect, hour: datetime, run_id: str
) -> Silence | None:
    """After the hour's load: the silence it completes, if not recorded before (then record it)."""
    from firehose_loader.load import template_context

    empty_hours = stream.silence_alert_hours
    if empty_hours <= 0:
        return None
    context = template_context(stream, settings, dialect)
    parameters = {
        "stream": stream.name,
        "first_hour": naive_utc(hour - empty_hours * HOUR),
        "last_hour": naive_utc(hour + empty_hours * HOUR),
    }
    with conn.cursor() as cursor:
        cursor.execute(render("silence/hour_objects.sql", **context), parameters)
        counts = {loaded.replace(tzinfo=UTC): int(objects) for loaded, objects in cursor.fetchall()}
    conn.commit()
    found = silence_began(counts, hour, empty_hours)
    if found is None:
        return None
    found = Silence(stream.name, found.silent_from, found.empty_hours, found.last_objects)
    row = {
        "stream": stream.name,
        "silent_from": naive_utc(found.silent_from),
        "empty_hours": empty_hours,
        "last_objects": found.last_objects,
        "alerted_at": naive_utc(datetime.now(UTC)),
        "run_id": run_id,
    }
    try:
        with conn.cursor() as cursor:
            (statement,) = render_statements("silence/record_silence.sql", **context)
            cursor.execute(statement, row)
        conn.commit()
    except Exception as exc:
        conn.rollback()
        # Another hour's load recorded it at the same moment (PostgreSQL's key, Redshift's isolation).
        if is_unique_violation(exc) or is_serialization_failure(exc):
            return None
        raise
    # Whether the row is this call's, read back after the commit (a Data API batch has no row count
    # before it is sent): the insert adds nothing when the silence was recorded before.
    with conn.cursor() as cursor:
        cursor.execute(render("silence/recorded_silence.sql", **context), row)
        recorded = cursor.fetchone()
    conn.commit()
    return found if recorded is not None and tuple(recorded) == (run_id, row["alerted_at"]) else None


def silence_summary(stream: Stream, silence: Silence) -> str:
    return (
        f"{stream.name} went silent: no object in s3://{stream.bucket}/{stream.prefix} for "
        f"{silence.empty_hours} hour(s) from {silence.silent_from:%Y-%m-%d %H:00} UTC, after "
        f"{silence.last_objects} object(s) the hour before. Is the delivery stream failing, or did its prefix change? "
        f"(silence_alert_hours: {silence.empty_hours}; 0 for a stream that is legitimately quiet)"
    )
