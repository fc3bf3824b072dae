"""A 24-hour backfill forwards, backwards and in a shuffled order with repeats: identical tables.

The hours share keys: later hours carry newer versions, some carry older ones, some versions
tie across hours (the later object key wins), and records repeat inside an hour. The loads
call the two ingest steps directly (extract_hour, load_and_merge: what the tasks run), so 72
hour loads take seconds; test_ingest.py::test_backfill_in_reverse_order_gives_the_same_table
runs a reverse backfill through whole DAG runs.
"""

from __future__ import annotations

import os
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql

from firehose_loader.config import Settings
from firehose_loader.extract import extract_hour
from firehose_loader.layout import StageWriter
from firehose_loader.load import ensure_tables, load_and_merge, staged_batch
from firehose_loader.warehouse.postgres import Postgres
from tests.integration.support import ndjson, object_key, snapshot, unlisted_stream

HOURS = [datetime(2026, 5, 3, 0, tzinfo=UTC) + timedelta(hours=index) for index in range(24)]
FIELDS = {
    "key": ["tenant", "id"],
    "order_by": "version",
    "columns": {"tenant": "varchar(8)", "id": "varchar(16)", "version": "bigint", "note": "text", "at": "timestamptz"},
}


def write_day(s3: Any, bucket: str) -> dict[tuple[str, str], tuple[int, str, int, str]]:
    """Write the 24 hours; return per key the expected winner (version, object key, offset, note)."""
    rng = random.Random(24)
    keys = [(tenant, f"k{n:03d}") for tenant in ("a", "b") for n in range(80)]
    winners: dict[tuple[str, str], tuple[int, str, int, str]] = {}
    for index, hour in enumerate(HOURS):
        for name in ("00-a", "30-b"):
            key = object_key(hour, name)
            records: list[dict[str, Any] | bytes] = []
            for tenant, identifier in rng.sample(keys, k=40):
                # mostly growing with the hour; sometimes older; often equal to a neighbour hour's
                version = max(0, index // 2 + rng.choice([-3, -1, 0, 0, 1, 2]))
                record = {
                    "tenant": tenant,
                    "id": identifier,
                    "version": version,
                    "note": f"{hour:%H}{name} {rng.random():.6f}",
                    "at": (hour + timedelta(minutes=rng.randrange(60))).isoformat(),
                }
                records.append(record)
                if rng.random() < 0.1:
                    records.append(record)  # at-least-once delivery
            if index % 5 == 0:
                records.insert(3, b'{"tenant": "a", "id": "broken"')
            body = ndjson(records)
            s3.put_object(Bucket=bucket, Key=key, Body=body)
            offset = 0
            for record in records:
                line = body[offset : body.index(b"\n", offset)]
                if isinstance(record, dict):
                    candidate = (record["version"], key, offset, record["note"])
                    current = winners.get((record["tenant"], record["id"]))
                    if current is None or candidate[:3] > current[:3]:
                        winners[(record["tenant"], record["id"])] = candidate
                offset += len(line) + 1
    return winners


@pytest.fixture(scope="module")
def conn():
    with psycopg.connect(os.environ["WAREHOUSE_URL"]) as connection:
        yield connection


def backfill(s3, conn, name: str, hours: list[datetime]) -> dict[str, Any]:
    entry, stream = unlisted_stream(s3, name, **FIELDS)
    write_day(s3, entry["bucket"])
    settings, dialect = Settings(), Postgres()
    ensure_tables(conn, stream, settings, dialect)
    for number, hour in enumerate(hours):
        run_id = f"backfill__{number:03d}"
        manifest = extract_hour(s3, stream, hour, StageWriter("ingest", run_id, "extract_hour", 1))
        load_and_merge(conn, stream, settings, dialect, manifest, staged_batch(s3, stream, manifest), run_id)
    return entry


def test_backfill_forwards_backwards_and_shuffled_give_identical_tables(s3, warehouse, conn):
    forwards = backfill(s3, conn, "rel_fill_fwd", HOURS)
    backwards = backfill(s3, conn, "rel_fill_back", HOURS[::-1])
    shuffled_hours = HOURS + HOURS[::3]  # every hour, a third of them twice
    random.Random(5).shuffle(shuffled_hours)
    shuffled = backfill(s3, conn, "rel_fill_shuffled", shuffled_hours)

    order = "tenant, id"
    states = [snapshot(warehouse, entry, order) for entry in (forwards, backwards, shuffled)]
    assert states[0].table == states[1].table == states[2].table
    # Per object and per hour the same records were read, quarantined, deduplicated and merged;
    # only whether a merged row counted as inserted, updated, unchanged or superseded depends on the order.
    assert states[0].accounting() == states[1].accounting() == states[2].accounting()

    expected = write_day(s3, forwards["bucket"])
    query = sql.SQL('SELECT tenant, id, version, "_firehose_object", "_firehose_offset", note FROM {} ORDER BY 1, 2')
    rows = warehouse.execute(query.format(sql.Identifier(*forwards["table"].split(".")))).fetchall()
    assert rows == [(tenant, identifier, *winner) for (tenant, identifier), winner in sorted(expected.items())]
    for row in states[0].load_hours:
        raw, valid, quarantined, duplicate, merged = row[5], row[6], row[7], row[8], sum(row[9:13])
        assert raw == valid + quarantined and valid == duplicate + merged
