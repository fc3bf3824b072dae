"""Micro-batches: the objects of the open hours that the ledger does not hold yet, merged within minutes.

A stream whose ``freshness`` mode is ``poll`` or ``events`` has a micro-batch DAG. Each run
lists the current and the previous hour folder, plus any hour an S3 event named, takes the
objects the ledger does not hold at their ETag (oldest first, at most ``max_objects_per_run``),
extracts them with the hourly path's decode, validate and dedupe, and merges them with their
ledger rows in one transaction: the late sweep's delta merge (``load.merge_hour(delta=True)``),
whose newest-wins rule makes the order of micro-batches irrelevant.

An S3 event is a doorbell, never the work list: S3 notifications are at-least-once and can be
late, a multipart upload sends two, ``s3:TestEvent`` comes first, keys are URL-encoded, and the
queue's trigger deletes messages before Airflow stores the event (a triggerer crash loses them).
So an event only adds its hour to the hours listed; what is loaded is always what the listing
shows and the ledger lacks, and the open hours are listed on every run, event or not.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import unquote_plus

from firehose_loader.audit import late_objects
from firehose_loader.config import Settings, Stream
from firehose_loader.extract import extract_chosen
from firehose_loader.layout import HOUR, StageWriter, hour_start, stream_layout
from firehose_loader.load import merge_hour, staged_batch
from firehose_loader.s3io import ObjectInfo, list_hour_objects
from firehose_loader.sweep import horizon_ledgers
from firehose_loader.warehouse.protocol import Dialect

log = logging.getLogger(__name__)

# The micro-batch DAG's task: its stages name it, beside the run and the try.
MICROBATCH_TASK = "merge_new_objects"
# realtime_quality.measured_by of a key first merged by a micro-batch.
MEASURED_BY = "microbatch"


@dataclass(frozen=True)
class EventKey:
    """An object an S3 event names: its bucket and its key, URL-decoded."""

    bucket: str
    key: str


@dataclass(frozen=True)
class BatchResult:
    """What one micro-batch merged of one hour."""

    hour: datetime
    keys: tuple[str, ...]
    rows: int


def _records(body: Any) -> list[Mapping[str, Any]]:
    """The S3 event records of one message body: S3's own notification, one wrapped by SNS, or EventBridge's."""
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError:
            return []
    if not isinstance(body, Mapping):
        return []
    if body.get("Type") == "Notification" and isinstance(body.get("Message"), str):  # through SNS
        return _records(body["Message"])
    if isinstance(body.get("detail"), Mapping) and body.get("source") == "aws.s3":  # EventBridge: keys not encoded
        detail = body["detail"]
        bucket, item = detail.get("bucket", {}), detail.get("object", {})
        if isinstance(bucket, Mapping) and isinstance(item, Mapping) and "name" in bucket and "key" in item:
            return [{"eventName": "ObjectCreated:" + str(body.get("detail-type", "")), "decoded": True, "s3": detail}]
        return []
    records = body.get("Records")
    return [record for record in records if isinstance(record, Mapping)] if isinstance(records, list) else []


def event_keys(messages: Iterable[Any]) -> list[EventKey]:
    """The objects the messages say were created, each once, in the order first named.

    ``s3:TestEvent`` (sent when the notification is set up), deletions, other event kinds and
    bodies that are not S3 events name nothing. Keys in S3's notifications are URL-encoded
    (a space as ``+``, ``/`` possibly as ``%2F``); EventBridge's are not.
    """
    named: dict[EventKey, None] = {}
    for message in messages:
        body = message.get("Body") if isinstance(message, Mapping) else message
        for record in _records(body):
            if not str(record.get("eventName", "")).startswith("ObjectCreated:"):
                continue
            s3 = record.get("s3")
            bucket = s3.get("bucket", {}) if isinstance(s3, Mapping) else {}
            item = s3.get("object", {}) if isinstance(s3, Mapping) else {}
            if not isinstance(bucket, Mapping) or not isinstance(item, Mapping):
                continue
            name, key = bucket.get("name"), item.get("key")
            if not isinstance(name, str) or not isinstance(key, str) or not key:
                continue
            named[EventKey(name, key if record.get("decoded") else unquote_plus(key))] = None
    return list(named)


def messages_of_asset_events(asset_events: Iterable[Any]) -> list[Any]:
    """The SQS messages the run's triggering asset events carry (the SQS trigger's ``message_batch``)."""
    messages: list[Any] = []
    for event in asset_events:
        extra = getattr(event, "extra", None) if not isinstance(event, Mapping) else event.get("extra")
        payload = extra.get("payload") if isinstance(extra, Mapping) else None
        batch = payload.get("message_batch") if isinstance(payload, Mapping) else None
        if isinstance(batch, list):
            messages.extend(batch)
    return messages


def hours_named(stream: Stream, keys: Iterable[EventKey], now: datetime) -> set[datetime]:
    """The hours whose folders hold objects the events name: the stream's bucket and prefix only,
    no hour in the future, none older than the late sweep's horizon (the sweep covers those)."""
    newest, oldest = hour_start(now), hour_start(now) - stream.late_horizon_hours * HOUR
    hours = set()
    layout = stream_layout(stream)
    for named in keys:
        if named.bucket != stream.bucket:
            continue
        hour = layout.hour_of_key(named.key)
        if hour is not None and oldest <= hour <= newest:
            hours.add(hour)
    return hours


def batch_hours(now: datetime, named: Iterable[datetime] = ()) -> list[datetime]:
    """The hours a micro-batch lists: the previous and the current hour, and those the events named, oldest first."""
    current = hour_start(now)
    return sorted({current - HOUR, current, *named})


def choose_objects(
    listings: Mapping[datetime, list[ObjectInfo]], loaded: Mapping[datetime, Mapping[str, str]], limit: int
) -> dict[datetime, list[ObjectInfo]]:
    """Per hour, the listed objects the ledger lacks at their ETag: at most ``limit`` in all, oldest landing first.

    An object already in the ledger at its ETag is not taken again, whatever events said; one
    whose ETag changed is (the ledger then accounts for its new version). What the limit leaves
    is the next run's.
    """
    pending = [
        (item.last_modified is None, item.last_modified or datetime.min, item.key, hour, item)
        for hour, listed in listings.items()
        for item in late_objects(listed, dict(loaded.get(hour, {})))
    ]
    pending.sort(key=lambda entry: entry[:3])
    chosen: dict[datetime, list[ObjectInfo]] = {}
    for *_, hour, item in pending[:limit]:
        chosen.setdefault(hour, []).append(item)
    return {hour: sorted(items, key=lambda item: item.key) for hour, items in sorted(chosen.items())}


def still_new(wanted: set[str], loaded: Mapping[str, str]) -> Callable[[list[ObjectInfo]], list[ObjectInfo]]:
    """The extract's choice from its own listing: the chosen keys the ledger still lacks at their (current) ETag."""
    return lambda listed: [item for item in late_objects(listed, dict(loaded)) if item.key in wanted]


def microbatch_writer(run_id: str, try_number: int) -> StageWriter:
    return StageWriter("microbatch", run_id, MICROBATCH_TASK, try_number)


def run_microbatch(
    conn: Any,
    client: Any,
    stream: Stream,
    settings: Settings,
    dialect: Dialect,
    now: datetime,
    named: Iterable[datetime],
    run_id: str,
    *,
    try_number: int,
) -> list[BatchResult]:
    """One micro-batch: list the hours, take what the ledger lacks (bounded), merge each hour's delta.

    Returns what each hour merged (nothing: no object was new). An hour that fails does not stop
    the others; the first error is raised after them, so the task fails and is retried.
    """
    hours = batch_hours(now, named)
    ledgers = horizon_ledgers(conn, stream, settings, dialect, hours)
    layout = stream_layout(stream)
    listings = {hour: list_hour_objects(client, stream.bucket, layout, hour) for hour in hours}
    chosen = choose_objects(
        listings, {hour: ledger.loaded for hour, ledger in ledgers.items()}, stream.freshness.max_objects_per_run
    )
    waiting = sum(len(late_objects(listed, ledgers[hour].loaded)) for hour, listed in listings.items())
    if waiting > sum(len(items) for items in chosen.values()):
        log.info("%d new objects wait; this run takes %d", waiting, stream.freshness.max_objects_per_run)
    results: list[BatchResult] = []
    errors: list[Exception] = []
    writer = microbatch_writer(run_id, try_number)
    for hour, items in chosen.items():
        try:
            # The extract lists the hour again and reads what is there then (an object rewritten
            # meanwhile is read at its new ETag), still only among the chosen keys.
            manifest, merged = extract_chosen(
                client,
                stream,
                hour,
                writer,
                still_new({item.key for item in items}, ledgers[hour].loaded),
                dialect.limits,
            )
            if manifest is None:
                continue
            merge_hour(
                conn,
                stream,
                settings,
                dialect,
                manifest,
                staged_batch(client, stream, manifest),
                run_id,
                delta=True,
                measured_by=MEASURED_BY,
            )
        except Exception as exc:
            log.exception("micro-batch of %s hour %s failed", stream.name, hour.isoformat())
            conn.rollback()
            errors.append(exc)
            continue
        results.append(BatchResult(hour, tuple(item.key for item in merged), manifest["rows"] or 0))
    if errors:
        raise errors[0]
    return results
