"""A simulated Firehose delivery stream and a lossy real-time path, for `make up`.

Runs in the background (``make up`` starts it, ``make down`` stops it) against the local stack:

* **Firehose.** Every few seconds it makes sure the stream's folders of the last few hours
  (``--hours``, default 6) and of the current hour hold what Firehose would have delivered by
  now: each hour is a fixed set of objects (mixed encodings, at-least-once duplicates, one
  damaged record now and then), and an object appears once the moment in its key has passed.
  The content of an hour never changes between runs (it is seeded by the hour), so a restart
  rewrites identical objects (same ETags) and nothing counts as new.
* **Dynamic partitioning.** Every stream of the streams file in the same bucket whose prefix
  has a partition key (``events_by_type``) gets the same objects as Firehose's dynamic
  partitioning delivers them: split by the key's value into the partitions' folders.
* **Late objects.** For some hours, after the hour was loaded, one more object arrives in the
  hour's folder (records delivered again, some in a newer version): the audit reports it as a
  late object and merges it.
* **The lossy real-time path, before the load.** As in production, a real-time writer (a Lambda)
  writes each hour into the table before the ingest loads it: once the hour is complete and not
  yet loaded, :func:`tools.simulate.realtime_write` writes the hour's records with some keys
  dropped, some doubled, some in an older version (by delete + insert, and by an in-place
  ``UPDATE``). The ingest's first merge measures exactly that (``realtime_quality``) and repairs it.
* **The lossy real-time path, after the load.** After an hour is loaded (a ``load_hours`` row
  appears) it damages most hours once with
  :func:`tools.simulate.lossy_realtime_path`: rows lost, rows doubled, rows left in an older
  version (some updated in place, keeping the loader's provenance). The audit finds and repairs them.

It triggers nothing in Airflow: the scheduler's own runs (and the backfill `make up` creates)
pick the hours up. What it did (per hour, exactly what it injected before and after the load) is in
``.local/up/producer.log``; what it already wrote and damaged is in ``.local/up/producer-state.json``.

    python -m tools.producer [--stream events] [--hours 6] [--records 400] [--interval 15]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import random
import signal
import sys
import time
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import orjson
import psycopg
from psycopg import sql

from firehose_loader.config import Settings, Stream, load_config
from firehose_loader.layout import HOUR, hour_prefix, hour_start, stream_layout
from firehose_loader.s3io import list_hour_objects, object_exists
from tools import stack
from tools.simulate import (
    SimulatedObject,
    lossy_realtime_path,
    make_object,
    partitioned_hour,
    product_hour,
    realtime_write,
)

# Beside make up's other state, in the stack's folder (FIREHOSE_LOCAL moves it with the stack).
STATE_DIR = stack.LOCAL / "up"
log = logging.getLogger("producer")


def hour_seed(stream: Stream, hour: datetime) -> int:
    return zlib.crc32(f"{stream.name} {hour:%Y-%m-%dT%H}".encode())


# Objects a simulated hour holds: as with a 300 s buffer and a few shards, or (a stream with
# micro-batches) about one a minute, as with the 60 s buffer that mode suits (docs/deploy.md).
OBJECTS_PER_HOUR = {False: 6, True: 60}


def planned_objects(stream: Stream, hour: datetime, records: int) -> list[SimulatedObject]:
    """What Firehose delivers for ``hour``: the same objects every time it is asked."""
    rng = random.Random(hour_seed(stream, hour))
    objects_per_hour = OBJECTS_PER_HOUR[stream.freshness.microbatches]
    objects = product_hour(stream.prefix, stream.name, hour, records, rng, objects_per_hour=objects_per_hour)
    if hour_seed(stream, hour) % 3 == 0:
        # A producer sent a truncated record: it goes to quarantine, the rest of the object loads.
        broken = [b'{"event_id": "evt-broken-' + f"{hour:%H}".encode() + b'", "received_at": ']
        objects.append(make_object(stream.prefix, stream.name, hour, 57, broken, "ndjson", rng))
    return objects


def late_object(stream: Stream, hour: datetime, records: int) -> SimulatedObject | None:
    """For some hours, an object that arrives after the hour was loaded; None for the others.

    It holds 8 of the hour's records again: 4 as they were (a retry), 4 in a newer version.
    """
    seed = hour_seed(stream, hour)
    if seed % 4 != 1:
        return None
    rng = random.Random(seed + 1)
    delivered = []
    for item in planned_objects(stream, hour, records):
        for record in item.records:
            with contextlib.suppress(orjson.JSONDecodeError):
                delivered.append(orjson.loads(record))
    chosen = rng.sample(sorted(delivered, key=lambda event: event["event_id"]), 8)
    last = hour + HOUR - timedelta(microseconds=1)
    newer = []
    for event in chosen[4:]:
        moment = datetime.fromisoformat(event["received_at"].replace("Z", "+00:00")) + timedelta(seconds=30)
        newer.append({**event, "received_at": min(moment, last).isoformat().replace("+00:00", "Z")})
    return make_object(stream.prefix, stream.name, hour, 59, chosen[:4] + newer, "gzip-ndjson", rng)


def key_moment(key: str) -> datetime:
    """When Firehose wrote an object, from its key (``<stream>-1-YYYY-MM-DD-HH-MM-SS-<uuid>``)."""
    name = key.rsplit("/", 1)[-1]
    stamp = "-".join(name.split("-")[2:8])
    return datetime.strptime(stamp, "%Y-%m-%d-%H-%M-%S").replace(tzinfo=UTC)


def realtime_plan(stream: Stream, hour: datetime) -> tuple[int, int, int, int]:
    """What the real-time path does to an hour before its load: (keys dropped, doubled, rewritten
    older by delete + insert, updated older in place)."""
    rng = random.Random(hour_seed(stream, hour) + 3)
    return rng.randint(1, 12), rng.randint(0, 5), rng.randint(0, 4), rng.randint(0, 3)


def damage_plan(stream: Stream, hour: datetime) -> tuple[int, int, int]:
    """(rows lost, rows doubled, rows left older) for an hour after its load; a quarter of the hours stay clean."""
    rng = random.Random(hour_seed(stream, hour) + 7)
    if rng.random() < 0.25:
        return 0, 0, 0
    return rng.randint(1, 12), rng.randint(0, 5), rng.randint(0, 4)


def in_place_plan(stream: Stream, hour: datetime) -> int:
    """Of a damaged hour, how many more rows are updated in place to an older version (provenance kept)."""
    return random.Random(hour_seed(stream, hour) + 11).randint(0, 3) if any(damage_plan(stream, hour)) else 0


def partitioned_copies(
    stream: Stream, partitioned: Stream, objects: list[SimulatedObject], hour: datetime
) -> list[SimulatedObject]:
    """``objects`` (the hour of ``stream``) as dynamic partitioning delivers them to ``partitioned``; the same every time."""
    layout = stream_layout(partitioned)
    (error_pattern, *_rest) = layout.error_patterns(hour)
    error_folder = "".join(segment.text for segment in error_pattern.segments)
    (key, *_more) = layout.partition_keys
    rng = random.Random(hour_seed(partitioned, hour))
    return partitioned_hour(layout, error_folder, partitioned.name, hour, objects, key.name, rng)


class Producer:
    def __init__(
        self,
        stream: Stream,
        settings: Settings,
        hours: int,
        records: int,
        state_file: Path,
        partitioned: tuple[Stream, ...] = (),
    ) -> None:
        self.stream = stream
        self.partitioned = partitioned
        self.settings = settings
        self.hours = hours
        self.records = records
        self.state_file = state_file
        self.s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1")
        self.state = self.load_state()
        self.plans: dict[datetime, list[SimulatedObject]] = {}

    def load_state(self) -> dict[str, list[str]]:
        state: dict[str, list[str]] = {}
        with contextlib.suppress(OSError, ValueError):
            state = json.loads(self.state_file.read_text())
        for name in ("realtime", "damaged", "late"):
            state.setdefault(name, [])
        return state

    def save_state(self) -> None:
        self.state_file.write_text(json.dumps(self.state, indent=1) + "\n")

    def tag(self, hour: datetime) -> str:
        return f"{self.stream.name} {hour:%Y-%m-%dT%H:00}"

    def window(self, now: datetime) -> list[datetime]:
        current = hour_start(now)
        return [current - index * HOUR for index in range(self.hours, -1, -1)]

    def existing_keys(self, hour: datetime) -> set[str]:
        keys = set()
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.stream.bucket, Prefix=hour_prefix(self.stream.prefix, hour)):
            keys.update(item["Key"] for item in page.get("Contents", []))
        return keys

    def deliver(self, now: datetime) -> int:
        """Write every object whose moment has passed and that is not in S3 yet."""
        with contextlib.suppress(self.s3.exceptions.BucketAlreadyOwnedByYou):
            self.s3.create_bucket(Bucket=self.stream.bucket)
        written = 0
        hours = self.window(now)
        self.plans = {hour: self.plans.get(hour) or planned_objects(self.stream, hour, self.records) for hour in hours}
        for hour in hours:
            existing = self.existing_keys(hour)
            for item in self.plans[hour]:
                if item.key not in existing and key_moment(item.key) <= now:
                    self.s3.put_object(Bucket=self.stream.bucket, Key=item.key, Body=item.body)
                    written += 1
            for other in self.partitioned:
                layout = stream_layout(other)
                delivered = {item.key for item in list_hour_objects(self.s3, other.bucket, layout, hour)}
                for item in partitioned_copies(self.stream, other, self.plans[hour], hour):
                    if item.key in delivered or key_moment(item.key) > now:
                        continue
                    # Error output is not among the hour's objects: ask S3 whether it is there.
                    if not layout.is_hour_object(item.key, hour) and object_exists(self.s3, other.bucket, item.key):
                        continue
                    self.s3.put_object(Bucket=other.bucket, Key=item.key, Body=item.body)
                    written += 1
            if self.tag(hour) in self.state["late"]:
                late = late_object(self.stream, hour, self.records)
                if late is not None and late.key not in existing:  # moto forgot it (a restarted stack)
                    self.s3.put_object(Bucket=self.stream.bucket, Key=late.key, Body=late.body)
                    written += 1
        return written

    def loaded_hours(self, conn: psycopg.Connection, hours: list[datetime]) -> set[datetime]:
        exists = conn.execute(
            "SELECT 1 FROM information_schema.tables WHERE table_schema = %s AND table_name = 'load_hours'",
            (self.settings.loader_schema,),
        ).fetchone()
        if exists is None:
            return set()
        rows = conn.execute(
            sql.SQL("SELECT hour FROM {} WHERE stream = %s AND hour = ANY(%s) AND status <> 'empty'").format(
                sql.Identifier(self.settings.loader_schema, "load_hours")
            ),
            (self.stream.name, [hour.replace(tzinfo=None) for hour in hours]),
        ).fetchall()
        return {row[0].replace(tzinfo=UTC) for row in rows}

    def before_loads(self, now: datetime) -> None:
        """The real-time path writes each complete hour that is not loaded yet, once, before its load."""
        complete = [
            hour for hour in self.window(now) if hour + HOUR <= now and self.tag(hour) not in self.state["realtime"]
        ]
        if not complete:
            return
        with psycopg.connect(os.environ["WAREHOUSE_URL"]) as conn:
            loaded = self.loaded_hours(conn, complete)
            conn.rollback()
            for hour in complete:
                tag = self.tag(hour)
                if hour in loaded:
                    log.info("real-time path: %s was loaded before it wrote it (nothing written)", tag)
                else:
                    drops, duplicates, older, in_place = realtime_plan(self.stream, hour)
                    injected = realtime_write(
                        conn,
                        self.stream,
                        self.settings,
                        self.plans.get(hour) or planned_objects(self.stream, hour, self.records),
                        drops=drops,
                        duplicates=duplicates,
                        older=older,
                        older_in_place=in_place,
                        seed=hour_seed(self.stream, hour),
                    )
                    log.info(
                        "real-time path wrote %s before its load: %s (the first merge must measure"
                        " s3_keys=%d missing=%d duplicate=%d stale=%d)",
                        tag,
                        injected.describe(),
                        *injected.counts(),
                    )
                self.state["realtime"].append(tag)
                self.save_state()

    def after_loads(self, now: datetime) -> None:
        """Damage newly loaded hours once (the real-time path) and deliver late objects for some of them."""
        hours = self.window(now)
        with psycopg.connect(os.environ["WAREHOUSE_URL"]) as conn:
            loaded = self.loaded_hours(conn, hours)
            conn.rollback()
            for hour in sorted(loaded):
                tag = self.tag(hour)
                if tag not in self.state["damaged"]:
                    drops, duplicates, stale = damage_plan(self.stream, hour)
                    in_place = in_place_plan(self.stream, hour)
                    if drops or duplicates or stale or in_place:
                        injected = lossy_realtime_path(
                            conn, self.stream, self.settings, hour, drops, duplicates, stale, in_place
                        )
                        log.info(
                            "real-time path damaged %s after its load: %d rows lost, %d doubled, %d older"
                            " (%d by in-place UPDATE); the audit must find missing=%d duplicate=%d stale=%d",
                            tag,
                            injected.missing,
                            injected.duplicate,
                            injected.stale,
                            injected.stale_in_place,
                            injected.missing,
                            injected.duplicate,
                            injected.stale,
                        )
                    else:
                        log.info("real-time path left %s intact after its load", tag)
                    self.state["damaged"].append(tag)
                    self.save_state()
                if tag not in self.state["late"]:
                    late = late_object(self.stream, hour, self.records)
                    if late is not None:
                        self.s3.put_object(Bucket=self.stream.bucket, Key=late.key, Body=late.body)
                        log.info("Firehose delivered a late object into %s: %s", tag, late.key)
                    self.state["late"].append(tag)
                    self.save_state()

    def once(self) -> None:
        now = datetime.now(UTC)
        written = self.deliver(now)
        if written:
            log.info("delivered %d objects to s3://%s/%s", written, self.stream.bucket, self.stream.prefix)
        self.before_loads(now)
        self.after_loads(now)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stream", default="events", help="the stream to produce for (default: events)")
    parser.add_argument("--hours", type=int, default=6, help="complete hours before the current one to fill")
    parser.add_argument("--records", type=int, default=400, help="distinct events per hour")
    parser.add_argument("--interval", type=float, default=15.0, help="seconds between two passes")
    parser.add_argument("--once", action="store_true", help="one pass, then exit")
    parser.add_argument("--ready-file", type=Path, help="touched after the first pass")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)

    config = load_config()
    stream = config.stream(args.stream)
    partitioned = tuple(
        other
        for other in config.streams
        if other.bucket == stream.bucket and other.name != stream.name and stream_layout(other).partition_keys
    )
    producer = Producer(
        stream, config.settings, args.hours, args.records, STATE_DIR / "producer-state.json", partitioned
    )
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    stopping = False

    def stop(signum, frame) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info(
        "producing %s: the last %d hours and the current one, %d events an hour, into s3://%s/%s",
        args.stream,
        args.hours,
        args.records,
        producer.stream.bucket,
        producer.stream.prefix,
    )
    first = True
    while not stopping:
        try:
            producer.once()
        except Exception:
            log.exception("pass failed; trying again in %.0f s", args.interval)
        if first and args.ready_file:
            args.ready_file.touch()
        first = False
        if args.once:
            break
        deadline = time.monotonic() + args.interval
        while not stopping and time.monotonic() < deadline:
            time.sleep(0.2)
    log.info("producer stopped")


if __name__ == "__main__":
    main()
