"""Firehose-shaped test data: what a delivery stream leaves in S3 for an hour.

Used by the demo, the tests and the benchmarks. Objects are named the way
Firehose names them (``<prefix>YYYY/MM/DD/HH/<stream>-1-YYYY-MM-DD-HH-MM-SS-<uuid>``)
and encoded the ways it writes them: newline-delimited, concatenated with no
delimiter, gzip (whatever the key's suffix).
"""

from __future__ import annotations

import contextlib
import gzip
import heapq
import random
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from firehose_loader.layout import hour_prefix, hour_start

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
# The columns of the bundled example stream (include/streams.yml) that product events fill.
PRODUCT_EVENT_COLUMNS = {
    "event_id": "varchar(64)",
    "event_type": "varchar(64)",
    "user_id": "bigint",
    "received_at": "timestamptz",
    "amount": "numeric(12,2)",
    "is_test": "boolean",
    "properties": "json",
}


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


def partitioned_hour(
    layout: Any,
    error_folder: str,
    stream_name: str,
    hour: datetime,
    objects: Sequence[SimulatedObject],
    field: str,
    rng: random.Random,
) -> list[SimulatedObject]:
    """The same records as Firehose's dynamic partitioning delivers them, into ``layout`` (a DeliveryLayout).

    Each object's records are split by their ``field`` value into one object per value, in its
    partition's folder. A record the partition key cannot be read from (not JSON, no value) goes to
    ``error_folder`` (Firehose's processing-failed output), as Firehose sends it there.
    """
    delivered: list[SimulatedObject] = []
    for index, item in enumerate(objects):
        moment = hour_start(hour) + timedelta(minutes=index * 9, seconds=rng.randrange(60))
        groups: dict[str | None, list[bytes]] = {}
        for raw in item.records:
            try:
                value = orjson.loads(raw).get(field)
            except (orjson.JSONDecodeError, AttributeError):
                value = None
            groups.setdefault(None if value is None else str(value), []).append(raw)
        for value, records in sorted(groups.items(), key=lambda group: group[0] or ""):
            token = uuid.UUID(int=rng.getrandbits(128), version=4)
            name = f"{stream_name}-1-{moment:%Y-%m-%d-%H-%M-%S}-{token}"
            folder = error_folder if value is None else layout.folder_of(moment, {field: value})
            encoding = "gzip-ndjson" if index % 2 else "ndjson"
            delivered.append(SimulatedObject(folder + name, encode(records, encoding), tuple(records)))
    return delivered


def product_hour(
    prefix: str,
    stream_name: str,
    hour: datetime,
    records: int,
    rng: random.Random,
    duplicate_rate: float = 0.03,
    objects_per_hour: int = 6,
) -> list[SimulatedObject]:
    """A realistic hour: ``objects_per_hour`` objects (about; spread over the hour) in mixed encodings,
    with at-least-once duplicates. Six are nine minutes apart; sixty, one a minute (a 60 s buffer)."""
    events = [product_event(rng, hour, number) for number in range(records)]
    duplicates = [dict(event) for event in rng.sample(events, k=int(records * duplicate_rate))]
    pool = events + duplicates
    rng.shuffle(pool)
    objects = []
    chunk = max(1, len(pool) // objects_per_hour)
    minutes_apart = max(1, 54 // objects_per_hour)
    for index, start in enumerate(range(0, len(pool), chunk)):
        encoding = ENCODINGS[index % len(ENCODINGS)]
        minute = min(index * minutes_apart, 59)
        objects.append(make_object(prefix, stream_name, hour, minute, pool[start : start + chunk], encoding, rng))
    return objects


SQL_DIR = Path(__file__).resolve().parent / "sql"


@dataclass(frozen=True)
class Injected:
    """What the simulated real-time path did to one hour: the keys it left missing, doubled or older.

    Before the load, ``keys`` is the hour's distinct keys in S3 and these are exactly the numbers
    the first merge records in ``realtime_quality``. After the load, they are what the audit must
    find (``stale`` counts both kinds of older version).
    """

    keys: int
    missing: int
    duplicate: int
    stale: int
    stale_in_place: int = 0  # of ``stale``: updated in place rather than rewritten

    def counts(self) -> tuple[int, int, int, int]:
        return self.keys, self.missing, self.duplicate, self.stale

    def describe(self) -> str:
        return (
            f"{self.missing} missing, {self.duplicate} doubled, {self.stale} older"
            f" ({self.stale_in_place} by in-place UPDATE) of {self.keys} keys"
        )


def _run_template(conn: Any, stream: Any, settings: Any, template: str, parameters: dict[str, Any]) -> list[int]:
    """Render one of tools/sql/ with the loader's context and run it; the row count of each statement."""
    from firehose_loader.load import template_context
    from firehose_loader.warehouse.postgres import Postgres
    from firehose_loader.warehouse.render import split_statements, sql_environment

    context = template_context(stream, settings, Postgres())
    counts = []
    with conn.cursor() as cursor:
        for statement in split_statements(sql_environment(SQL_DIR).get_template(template).render(**context)):
            cursor.execute(statement, parameters)
            counts.append(cursor.rowcount)
    conn.commit()
    return counts


def hour_truth(stream: Any, objects: Sequence[SimulatedObject]) -> dict[str, dict[str, Any]]:
    """The hour's S3 truth: per key (the first key column, as text), its newest record.

    Records that do not parse, or lack the key or ``order_by``, are quarantined by the loader and
    are not part of it.
    """
    truth: dict[str, dict[str, Any]] = {}
    newest: dict[str, Any] = {}
    for item in objects:
        for raw in item.records:
            try:
                record = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(record, dict):
                continue
            key, order = record.get(stream.key[0]), record.get(stream.order_by)
            if key is None or order is None:
                continue
            value = _order_value(order)
            if str(key) not in truth or value > newest[str(key)]:
                truth[str(key)], newest[str(key)] = record, value
    return truth


def _order_value(order: Any) -> Any:
    if isinstance(order, str):
        with contextlib.suppress(ValueError):
            return datetime.fromisoformat(order.replace("Z", "+00:00")).timestamp()
    return order


def realtime_write(
    conn: Any,
    stream: Any,
    settings: Any,
    objects: Sequence[SimulatedObject],
    *,
    drops: int,
    duplicates: int,
    older: int,
    older_in_place: int,
    seed: int = 0,
) -> Injected:
    """Write an hour into the target BEFORE its load, as the real-time path (a Lambda) does (PostgreSQL).

    ``objects`` are what the simulator wrote to S3 for the hour. Every key of it is written once in
    its newest version, with no provenance, except: ``drops`` keys are never written, ``duplicates``
    keys are written twice, ``older`` keys are rewritten in an older version (delete + insert) and
    ``older_in_place`` keys are updated in place to an older version. The keys of each kind are
    distinct, drawn with ``seed``. Returns exactly what was injected: the first merge of the hour
    must record these numbers in ``realtime_quality``.
    """
    from firehose_loader.load import ensure_tables
    from firehose_loader.warehouse.postgres import Postgres

    truth = hour_truth(stream, objects)
    keys = sorted(truth)
    wanted = drops + duplicates + older + older_in_place
    if wanted > len(keys):
        raise ValueError(f"the hour has {len(keys)} keys, fewer than the {wanted} to damage")
    chosen = random.Random(seed).sample(keys, wanted)
    dropped = set(chosen[:drops])
    doubled = chosen[drops : drops + duplicates]
    rewritten = chosen[drops + duplicates : drops + duplicates + older]
    in_place = chosen[drops + duplicates + older :]
    rows = [truth[key] for key in keys if key not in dropped] + [truth[key] for key in doubled]
    ensure_tables(conn, stream, settings, Postgres())  # the real-time path may write before any load
    counts = _run_template(
        conn,
        stream,
        settings,
        "realtime_write.sql",
        {"rows": orjson.dumps(rows).decode(), "older": rewritten, "in_place": in_place},
    )
    inserted, deleted, reinserted, updated = counts
    if (inserted, deleted, reinserted, updated) != (len(rows), len(rewritten), len(rewritten), len(in_place)):
        raise RuntimeError(f"the real-time writer wrote {counts}, not what it planned")
    return Injected(len(keys), len(dropped), len(doubled), len(rewritten) + len(in_place), len(in_place))


def lossy_realtime_path(
    conn: Any,
    stream: Any,
    settings: Any,
    hour: datetime,
    drops: int,
    duplicates: int,
    stale: int,
    stale_in_place: int = 0,
) -> Injected:
    """Damage one loaded hour of the target AFTER its load, as the real-time path does (PostgreSQL).

    ``drops`` rows deleted, ``duplicates`` rows doubled (no provenance), ``stale`` rows rewritten in
    an older version without provenance and ``stale_in_place`` updated in place to an older version
    (provenance kept). Returns what it did (``keys`` is 0: it does not read S3); the audit must find
    exactly that.
    """
    parameters = {
        "hour_prefix": hour_prefix(stream.prefix, hour) + "%",
        "drops": drops,
        "duplicates": duplicates,
        "stale": stale,
        "stale_in_place": stale_in_place,
    }
    deleted, doubled, rewritten, updated = _run_template(conn, stream, settings, "realtime_damage.sql", parameters)
    return Injected(0, deleted, doubled, rewritten + updated, updated)


def reset_hours(conn: Any, stream: Any, settings: Any, hours: Sequence[datetime], keys: Sequence[str]) -> None:
    """Forget the hours (demo only): the target's rows of ``keys`` and the loader's rows of the hours."""
    from firehose_loader.load import ensure_tables
    from firehose_loader.warehouse.postgres import Postgres

    ensure_tables(conn, stream, settings, Postgres())
    parameters = {
        "stream": stream.name,
        "hours": [hour_start(h).replace(tzinfo=None) for h in hours],
        "keys": list(keys),
    }
    _run_template(conn, stream, settings, "reset_hours.sql", parameters)


# --- A full-rate hour for the benchmarks ------------------------------------------------------------------------------

# Firehose buffers this much (uncompressed) before it writes an object, unless its interval ends first;
# 5 MiB is the console's default, so a busy stream writes objects of about this size.
FIREHOSE_BUFFER_BYTES = 5 * 1024 * 1024
# How the objects of a benchmark hour are encoded (weights): mostly gzip, some plain, both record layouts.
BENCH_ENCODINGS = (("gzip-ndjson", 5), ("gzip-concatenated", 3), ("ndjson", 1), ("concatenated", 1))
_PAGES = ("/", "/pricing", "/docs", "/docs/getting-started", "/blog/launch", "/checkout", "/account/settings")
_REFERRERS = (None, "https://example.com/", "https://search.example.org/?q=firehose", "newsletter", "partner-42")
_COUNTRIES = (("DE", "Berlin"), ("FR", "Paris"), ("US", "Seattle"), ("BR", "São Paulo"), ("JP", "東京"), ("IN", "Pune"))
_BROWSERS = ("Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0", "Mozilla/5.0 (Macintosh) Safari/605.1.15", "okhttp/4.12")
_WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet", "kilo", "lima")


def _lorem(length: int) -> str:
    """Text of pseudo-words, long enough that gzip's 32 KB window rarely sees a slice of it twice."""
    rng = random.Random(0)
    syllables = ("ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "qua", "bri", "sto", "an", "el", "ox")
    words = ["".join(rng.choices(syllables, k=rng.randrange(1, 5))) for _ in range(4000)]
    return " ".join(rng.choices(words, k=length // 5))[:length]


_TEXT = _lorem(1 << 20)


def bench_event(rng: random.Random, hour: datetime, number: int, records: int) -> dict[str, Any]:
    """One event of the example stream with realistic nested properties: 0.4 to 1 KB as JSON.

    ``received_at`` grows with ``number`` through the hour (as a stream delivers it), with jitter.
    """
    r = rng.random

    def pick(choices: Sequence[Any]) -> Any:
        return choices[int(r() * len(choices))]

    seconds = min(number * 3600 / max(records, 1) + r() * 2, 3599.999999)
    received = hour_start(hour) + timedelta(seconds=seconds)
    event_type = pick(EVENT_TYPES)
    country, city = pick(_COUNTRIES)
    text_start = int(r() * ((1 << 20) - 400))
    event: dict[str, Any] = {
        "event_id": f"evt-{hour:%Y%m%d%H}-{number:08d}",
        "event_type": event_type,
        "user_id": 1 + int(r() * 5_000_000),
        "received_at": received.isoformat(timespec="microseconds").replace("+00:00", "Z"),
        "is_test": r() < 0.02,
        "properties": {
            "page": pick(_PAGES),
            "referrer": pick(_REFERRERS),
            "session": {"id": f"{rng.getrandbits(64):016x}", "sequence": 1 + int(r() * 400)},
            "device": {
                "os": pick(("ios", "android", "linux", "macos", "windows")),
                "version": 1 + int(r() * 19),
                "screen": {"width": pick((390, 412, 1280, 1920)), "height": pick((844, 915, 800, 1080))},
                "user_agent": pick(_BROWSERS),
            },
            "geo": {"country": country, "city": city, "lat": round(r() * 120 - 60, 4)},
            "utm": {"source": pick(("google", "newsletter", "direct")), "campaign": f"spring-{int(r() * 40)}"},
            "tags": _WORDS[int(r() * 8) : int(r() * 8) + int(r() * 4)],
            "text": _TEXT[text_start : text_start + int(r() * 330)],
        },
    }
    if event_type == "purchase":
        event["amount"] = f"{100 + int(r() * 99_900)}"[:-2] + "." + f"{int(r() * 100):02d}"
        event["properties"]["items"] = [
            {"sku": f"sku-{int(r() * 10_000):05d}", "quantity": 1 + int(r() * 3)} for _ in range(1 + int(r() * 3))
        ]
    return event


def bench_hour(
    prefix: str,
    stream_name: str,
    hour: datetime,
    records: int,
    rng: random.Random,
    duplicate_rate: float = 0.03,
    buffer_bytes: int = FIREHOSE_BUFFER_BYTES,
    encodings: Sequence[tuple[str, int]] = BENCH_ENCODINGS,
    compresslevel: int = 6,
) -> Iterator[SimulatedObject]:
    """A full-rate hour of ``records`` distinct events, one object at a time (memory stays small).

    ``duplicate_rate`` of the events arrive a second time a little later, as at-least-once
    delivery does: two thirds as the same bytes again (a producer retry), one third as a newer
    version of the event (later ``received_at``, changed properties). Objects are cut when
    ``buffer_bytes`` of records have been buffered, as Firehose does, and named and encoded
    like Firehose objects (the encoding of each drawn from ``encodings`` by weight; gzip at
    zlib's default level).
    """
    names = [name for name, _ in encodings]
    weights = [weight for _, weight in encodings]
    duplicated = set(rng.sample(range(records), k=int(records * duplicate_rate)))
    pending: list[tuple[int, int, bytes]] = []  # (emit after this many records, number, bytes)
    buffer: list[bytes] = []
    buffered = 0
    emitted = 0

    def cut() -> SimulatedObject:
        nonlocal buffer, buffered
        minute = min(59, emitted * 60 // max(records, 1))
        encoding = rng.choices(names, weights)[0]
        body = encode(buffer, encoding.removeprefix("gzip-"))
        if encoding.startswith("gzip"):
            body = gzip.compress(body, compresslevel=compresslevel, mtime=0)
        made = SimulatedObject(object_key(prefix, stream_name, hour, minute, rng), body, tuple(buffer))
        buffer, buffered = [], 0
        return made

    for number in range(records):
        event = bench_event(rng, hour, number, records)
        data = orjson.dumps(event)
        buffer.append(data)
        buffered += len(data)
        emitted += 1
        if number in duplicated:
            if rng.random() < 2 / 3:
                again = data
            else:
                newer = datetime.fromisoformat(event["received_at"]) + timedelta(seconds=rng.randrange(1, 300))
                event["received_at"] = newer.isoformat(timespec="microseconds").replace("+00:00", "Z")
                event["properties"]["session"]["sequence"] += 1
                again = orjson.dumps(event)
            heapq.heappush(pending, (emitted + rng.randrange(1, 20_000), number, again))
        while pending and pending[0][0] <= emitted:
            again = heapq.heappop(pending)[2]
            buffer.append(again)
            buffered += len(again)
        if buffered >= buffer_bytes:
            yield cut()
    while pending:
        again = heapq.heappop(pending)[2]
        buffer.append(again)
        buffered += len(again)
        if buffered >= buffer_bytes:
            yield cut()
    if buffer:
        yield cut()
