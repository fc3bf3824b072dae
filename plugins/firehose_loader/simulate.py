"""Firehose-shaped test data: what a delivery stream leaves in S3 for an hour.

Used by the demo, the tests and the benchmarks. Objects are named the way
Firehose names them (``<prefix>YYYY/MM/DD/HH/<stream>-1-YYYY-MM-DD-HH-MM-SS-<uuid>``)
and encoded the ways it writes them: newline-delimited, concatenated with no
delimiter, gzip (whatever the key's suffix).
"""

from __future__ import annotations

import gzip
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson

from firehose_loader.partitions import hour_prefix, hour_start

ENCODINGS = ("ndjson", "concatenated", "crlf", "gzip-ndjson", "gzip-concatenated")


@dataclass(frozen=True)
class SimulatedObject:
    key: str
    body: bytes
    records: tuple[bytes, ...]


def object_key(prefix: str, stream_name: str, hour: datetime, minute: int, rng: random.Random) -> str:
    moment = hour_start(hour) + timedelta(minutes=minute, seconds=rng.randrange(60))
    token = uuid.UUID(int=rng.getrandbits(128), version=4)
    return f"{hour_prefix(prefix, hour)}{stream_name}-1-{moment:%Y-%m-%d-%H-%M-%S}-{token}"


def encode(records: Sequence[bytes], encoding: str) -> bytes:
    """Join serialized records the way Firehose delivers them."""
    if encoding.endswith("ndjson"):
        body = b"".join(record + b"\n" for record in records)
    elif encoding.endswith("concatenated"):
        body = b"".join(records)
    elif encoding == "crlf":
        body = b"\r\n".join(records) + b"\r\n"
    else:
        raise ValueError(f"unknown encoding {encoding!r} (known: {ENCODINGS})")
    return gzip.compress(body, mtime=0) if encoding.startswith("gzip") else body


def make_object(
    prefix: str,
    stream_name: str,
    hour: datetime,
    minute: int,
    records: Sequence[dict[str, Any] | bytes],
    encoding: str,
    rng: random.Random,
) -> SimulatedObject:
    serialized = tuple(record if isinstance(record, bytes) else orjson.dumps(record) for record in records)
    return SimulatedObject(object_key(prefix, stream_name, hour, minute, rng), encode(serialized, encoding), serialized)


EVENT_TYPES = ("page_view", "click", "signup", "purchase", "logout")


def product_event(rng: random.Random, hour: datetime, number: int) -> dict[str, Any]:
    """One event of the bundled example stream (see include/streams.yml)."""
    received = hour_start(hour) + timedelta(seconds=rng.randrange(3600), microseconds=rng.randrange(1_000_000))
    event_type = rng.choice(EVENT_TYPES)
    event: dict[str, Any] = {
        "event_id": f"evt-{hour:%Y%m%d%H}-{number:06d}",
        "event_type": event_type,
        "user_id": rng.randrange(1, 50_000),
        "received_at": received.isoformat().replace("+00:00", "Z"),
        "is_test": rng.random() < 0.02,
        "properties": {
            "page": rng.choice(["/", "/pricing", "/docs", "/blog/launch", "/checkout"]),
            "referrer": rng.choice([None, "https://example.com/", "newsletter"]),
            "device": {"os": rng.choice(["ios", "android", "linux", "macos"]), "version": rng.randrange(1, 20)},
            "tags": rng.sample(["a", "b", "c", "d"], k=rng.randrange(0, 3)),
        },
    }
    if event_type == "purchase":
        event["amount"] = f"{rng.randrange(100, 100_000) / 100:.2f}"
    return event


def product_hour(
    prefix: str, stream_name: str, hour: datetime, records: int, rng: random.Random, duplicate_rate: float = 0.03
) -> list[SimulatedObject]:
    """A realistic hour: several objects in mixed encodings, with at-least-once duplicates."""
    events = [product_event(rng, hour, number) for number in range(records)]
    duplicates = [dict(event) for event in rng.sample(events, k=int(records * duplicate_rate))]
    pool = events + duplicates
    rng.shuffle(pool)
    objects = []
    chunk = max(1, len(pool) // 6)
    for index, start in enumerate(range(0, len(pool), chunk)):
        encoding = ENCODINGS[index % len(ENCODINGS)]
        objects.append(make_object(prefix, stream_name, hour, index * 9, pool[start : start + chunk], encoding, rng))
    return objects
