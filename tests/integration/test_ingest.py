"""Whole ingest DAG runs, hour by hour, against the moto S3 server and PostgreSQL.

The expected table is computed here from the records the test writes: per key the
greatest (version, object key, offset) among the valid records of every loaded hour.
"""

from __future__ import annotations

import gzip
import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import orjson
import pytest
from psycopg import sql

from tests.integration.conftest import dump_table, put, run_hour

HOURS = [datetime(2026, 3, 1, hour, tzinfo=UTC) for hour in (9, 10, 11)]
HOSTILE = [
    "a,b",
    'quote"inside',
    "back\\slash",
    "tab\there",
    "new\nline",
    "crlf\r\nend",
    "ünïcødé 😀 中文",
    "",
    "NULL",
    "\\N",
    " padded ",
    ",",
    '"',
    "'; DROP TABLE x; --",
]
COLUMNS = {
    "tenant": "varchar(16)",
    "event_id": "varchar(64)",
    "version": "bigint",
    "label": "text",
    "amount": "numeric(12,4)",
    "ratio": "double precision",
    "flag": "boolean",
    "day": "date",
    "seen_at": "timestamp",
    "received_at": "timestamptz",
    "payload": "json",
    "small": "smallint",
    "count": "integer",
}
ENCODINGS = ["ndjson", "concatenated", "crlf", "gzip-ndjson", "gzip-concatenated"]


def rich_stream_fields() -> dict[str, Any]:
    return {"key": ["tenant", "event_id"], "order_by": "version", "columns": COLUMNS}


@dataclass
class Expected:
    """Valid records by key, with the provenance that decides the winner."""

    versions: dict[tuple[str, str], list[tuple[tuple[int, str, int], dict[str, Any]]]] = field(default_factory=dict)
    bad: list[tuple[str, int, bytes]] = field(default_factory=list)
    raw_per_object: dict[str, int] = field(default_factory=dict)

    def add(self, key: str, offset: int, record: dict[str, Any]) -> None:
        self.versions.setdefault((record["tenant"], record["event_id"]), []).append(
            ((record["version"], key, offset), record)
        )

    def rows(self) -> list[tuple]:
        rows = []
        for (_tenant, _event), versions in sorted(self.versions.items()):
            (_version, key, offset), record = max(versions, key=lambda item: item[0])
            rows.append(expected_row(record, key, offset))
        return rows


def expected_row(record: dict[str, Any], key: str, offset: int) -> tuple:
    def ts(text: str | None) -> datetime | None:
        return None if text is None else datetime.fromisoformat(text).astimezone(UTC)

    amount = record.get("amount")
    return (
        record["tenant"],
        record["event_id"],
        record["version"],
        record.get("label"),
        None if amount is None else Decimal(str(amount)).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP),
        record.get("ratio"),
        record.get("flag"),
        None if record.get("day") is None else date.fromisoformat(record["day"]),
        None if record.get("seen_at") is None else ts(record["seen_at"]).replace(tzinfo=None),
        ts(record.get("received_at")),
        record.get("payload"),
        record.get("small"),
        record.get("count"),
        key,
        offset,
    )


def make_record(rng: random.Random, tenant: str, event_id: str, version: int, hour: datetime) -> dict[str, Any]:
    record: dict[str, Any] = {
        "tenant": tenant,
        "event_id": event_id,
        "version": version,
        "label": rng.choice([*HOSTILE, None]),
        "amount": rng.choice([None, "12.34565", 0.1, 123456.5, "-0.00005", 7]),
        "ratio": rng.choice([None, 0.1, 1e300, -2.5, 3.141592653589793, 5e-324]),
        "flag": rng.choice([True, False, None]),
        "day": rng.choice([None, "2026-02-28", "1999-12-31"]),
        "seen_at": rng.choice([None, "2026-03-01T10:15:00.123456", "2026-03-01 23:59:59"]),
        "received_at": rng.choice(
            [
                (hour + timedelta(minutes=rng.randrange(60))).isoformat(),
                "2026-03-01T12:00:00+05:30",
                "2026-03-01T10:00:00Z",
            ]
        ),
        "payload": rng.choice(
            [None, {"nested": {"list": [1, 2, {"x": "y"}]}, "text": rng.choice(HOSTILE)}, [1, "two", None], "plain", 42]
        ),
        "small": rng.choice([None, -32768, 32767, 0]),
        "count": rng.choice([None, 2147483647, -5]),
        "ignored_extra_field": {"anything": True},
    }
    if rng.random() < 0.2:
        del record["label"]  # a missing field loads as NULL
    return record


def encode_object(records: list[bytes], encoding: str) -> tuple[bytes, list[int]]:
    """Encode like Firehose and return the offset of each record in the decompressed bytes."""
    separator = {"ndjson": b"\n", "concatenated": b"", "crlf": b"\r\n"}[encoding.removeprefix("gzip-")]
    offsets, position = [], 0
    for record in records:
        offsets.append(position)
        position += len(record) + len(separator)
    body = b"".join(record + separator for record in records)
    return (gzip.compress(body) if encoding.startswith("gzip") else body), offsets


BAD_RECORDS = [
    (b'{"tenant": "acme", "event_id": broken}', "invalid JSON"),
    (b'{"tenant": "acme", "version": 1}', "column event_id: missing"),
    (
        b'{"tenant": "acme", "event_id": "bad-small", "version": 1, "small": 99999}',
        "column small: 99999 is out of range",
    ),
    (b"[1, 2, 3]", "is not a record"),
]


def write_hours(s3: Any, bucket: str, seed: int) -> Expected:
    """Three hours of objects with duplicates, ties, out-of-order versions and bad records."""
    rng = random.Random(seed)
    expected = Expected()
    keys = [(tenant, f"evt-{number:03d}") for tenant in ("acme", "globex", "ünï") for number in range(25)]
    for hour_index, hour in enumerate(HOURS):
        for object_index, encoding in enumerate(ENCODINGS):
            key = f"events/{hour:%Y/%m/%d/%H}/stream-1-{hour:%Y-%m-%d-%H}-{object_index:02d}-00-{seed:04d}"
            if encoding.startswith("gzip") and object_index % 2:
                key += ".gz"
            records: list[tuple[bytes, dict[str, Any] | None]] = []
            for tenant, event_id in rng.sample(keys, k=20):
                # Versions mostly grow with the hour; some later hours carry older versions.
                version = hour_index * 10 + rng.randrange(0, 12)
                record = make_record(rng, tenant, event_id, version, hour)
                records.append((orjson.dumps(record), record))
                if rng.random() < 0.15:  # at-least-once delivery: the same record again
                    records.append((orjson.dumps(record), record))
            if object_index == 2:
                bad_raw, _reason = BAD_RECORDS[hour_index % len(BAD_RECORDS)]
                records.insert(3, (bad_raw, None))
            body, offsets = encode_object([raw for raw, _ in records], encoding)
            put(s3, bucket, key, body)
            expected.raw_per_object[key] = len(records)
            for (raw, record), offset in zip(records, offsets, strict=True):
                if record is None:
                    expected.bad.append((key, offset, raw))
                else:
                    expected.add(key, offset, record)
        empty_key = f"events/{hour:%Y/%m/%d/%H}/stream-1-{hour:%Y-%m-%d-%H}-59-empty"
        put(s3, bucket, empty_key, b"")
        expected.raw_per_object[empty_key] = 0
    return expected


def table_rows(warehouse: Any, table: str) -> list[tuple]:
    query = sql.SQL("SELECT * FROM {} ORDER BY tenant, event_id").format(sql.Identifier(*table.split(".")))
    return warehouse.execute(query).fetchall()


def load_hours_rows(warehouse: Any, stream: str) -> list[tuple]:
    return warehouse.execute(
        "SELECT hour, status, objects, records_raw, records_valid, records_quarantined, records_duplicate,"
        " records_inserted, records_updated, records_unchanged, records_superseded, run_id"
        " FROM firehose_loader.load_hours WHERE stream = %s ORDER BY hour",
        (stream,),
    ).fetchall()


@pytest.fixture(scope="module")
def rich(streams, s3):
    entry = streams.declare(s3, "rich", **rich_stream_fields())
    expected = write_hours(s3, entry["bucket"], seed=7)
    return entry, expected


def test_three_hours_load_every_key_once_with_its_newest_version(rich, warehouse):
    entry, expected = rich
    for hour in HOURS:
        assert run_hour(entry["name"], hour).state == "success"
    assert table_rows(warehouse, entry["table"]) == expected.rows()

    hours = load_hours_rows(warehouse, entry["name"])
    # The run at H+1 loads [H, H+1): one load_hours row per data-interval start.
    assert [row[0] for row in hours] == [hour.replace(tzinfo=None) for hour in HOURS]
    for row in hours:
        _hour, status, objects, raw, valid, quarantined, duplicate, inserted, updated, unchanged, superseded, _ = row
        assert status == "partial"  # one bad record per hour
        assert objects == len(ENCODINGS) + 1
        assert quarantined == 1
        assert raw == valid + quarantined
        assert valid == duplicate + inserted + updated + unchanged + superseded


def test_ledger_accounts_for_every_record_of_every_object(rich, warehouse):
    entry, expected = rich
    ledger = warehouse.execute(
        "SELECT object_key, records_raw, records_valid, records_quarantined, records_duplicate,"
        " records_inserted + records_updated + records_unchanged + records_superseded, status"
        " FROM firehose_loader.ledger WHERE stream = %s ORDER BY object_key",
        (entry["name"],),
    ).fetchall()
    assert [row[0] for row in ledger] == sorted(expected.raw_per_object)
    bad_per_object: dict[str, int] = {}
    for key, _offset, _raw in expected.bad:
        bad_per_object[key] = bad_per_object.get(key, 0) + 1
    for key, raw, valid, quarantined, duplicate, merged, status in ledger:
        assert raw == expected.raw_per_object[key]
        assert quarantined == bad_per_object.get(key, 0)
        assert raw == valid + quarantined == duplicate + merged + quarantined
        assert status == ("empty" if raw == 0 else "partial" if quarantined else "loaded")


def test_quarantine_keeps_each_bad_record_with_key_offset_and_reason(rich, s3):
    entry, expected = rich
    found = []
    for key, offset, raw in expected.bad:
        hour_folder = key.split("/", 1)[1].rsplit("/", 1)[0]
        quarantine_key = f"firehose-loader/quarantine/{entry['name']}/{hour_folder}/{key.rsplit('/', 1)[1]}.jsonl"
        lines = s3.get_object(Bucket=entry["bucket"], Key=quarantine_key)["Body"].read().splitlines()
        entries = [orjson.loads(line) for line in lines]
        match = [item for item in entries if item["offset"] == offset]
        assert len(match) == 1, entries
        assert match[0]["object_key"] == key
        assert match[0]["raw"].encode() == raw
        reason = dict(BAD_RECORDS)[raw]
        assert reason in match[0]["reason"]
        found.append(key)
    assert len(found) == len(HOURS)


def test_rerun_of_a_loaded_hour_leaves_the_table_byte_identical(rich, warehouse):
    entry, _expected = rich
    before = dump_table(warehouse, entry["table"], "tenant, event_id")
    assert run_hour(entry["name"], HOURS[1]).state == "success"
    assert dump_table(warehouse, entry["table"], "tenant, event_id") == before
    rerun = load_hours_rows(warehouse, entry["name"])[1]
    inserted, updated = rerun[7], rerun[8]
    assert (inserted, updated) == (0, 0)


def test_older_hour_rerun_after_newer_ones_keeps_the_newer_rows(rich, warehouse):
    entry, expected = rich
    assert run_hour(entry["name"], HOURS[0]).state == "success"
    assert table_rows(warehouse, entry["table"]) == expected.rows()
    rerun = load_hours_rows(warehouse, entry["name"])[0]
    assert rerun[7] == 0 and rerun[8] == 0  # nothing inserted or updated
    assert rerun[10] > 0  # some of its versions are superseded by newer hours


def test_backfill_in_reverse_order_gives_the_same_table(rich, streams, s3, warehouse):
    entry, _expected = rich
    backwards = streams.declare(s3, "rich_backwards", **rich_stream_fields())
    expected = write_hours(s3, backwards["bucket"], seed=7)
    for hour in reversed(HOURS):
        assert run_hour(backwards["name"], hour).state == "success"
    assert table_rows(warehouse, backwards["table"]) == expected.rows()
    assert dump_table(warehouse, backwards["table"], "tenant, event_id") == dump_table(
        warehouse, entry["table"], "tenant, event_id"
    )


@pytest.mark.parametrize("failpoint", ["after_copy", "before_commit"])
def test_failure_between_load_and_merge_leaves_target_unchanged_and_retry_completes(failpoint, streams, s3, warehouse):
    entry = streams.declare(s3, f"fail_{failpoint}", **rich_stream_fields())
    expected = write_hours(s3, entry["bucket"], seed=11)
    assert run_hour(entry["name"], HOURS[0]).state == "success"
    table_before = dump_table(warehouse, entry["table"], "tenant, event_id")
    hours_before = load_hours_rows(warehouse, entry["name"])

    failed = run_hour(entry["name"], HOURS[1], env={"FIREHOSE_LOADER_FAILPOINTS": failpoint})
    assert failed.state == "failed"
    assert dump_table(warehouse, entry["table"], "tenant, event_id") == table_before
    assert load_hours_rows(warehouse, entry["name"]) == hours_before

    assert run_hour(entry["name"], HOURS[1]).state == "success"
    assert run_hour(entry["name"], HOURS[2]).state == "success"
    assert table_rows(warehouse, entry["table"]) == expected.rows()
