"""One hour of hostile input, end to end through the ingest DAG.

Every record is either loaded (coerced as README.md documents) or quarantined with its object
key, byte offset and reason; the hour still loads its good records, and the ledger accounts for
every record: raw = valid + quarantined and valid = duplicates + merged, per object and per hour.
The single cases are unit-tested in tests/unit/test_decoding.py, test_coercion.py and test_validate.py;
this is all of them together in one hour, through S3 and PostgreSQL.
"""

from __future__ import annotations

import base64
import gzip
import os
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
import psycopg
from psycopg import sql

from firehose_loader.config import Settings
from firehose_loader.extract import extract_hour
from firehose_loader.layout import StageWriter
from firehose_loader.load import ensure_tables
from firehose_loader.warehouse.postgres import Postgres
from tests.integration.conftest import run_hour
from tests.integration.support import object_key, unlisted_stream

HOUR = datetime(2026, 5, 4, 6, tzinfo=UTC)
FIELDS = {
    "key": ["id"],
    "order_by": "seq",
    "columns": {
        "id": "varchar(64)",
        "seq": "bigint",
        "note": "text",
        "payload": "json",
        "small": "smallint",
        "amount": "numeric(10,2)",
        "ratio": "double precision",
        "at": "timestamptz",
        "local": "timestamp",
    },
}
SIX_THIRTY = datetime(2026, 5, 4, 6, 30, tzinfo=UTC)


@dataclass(frozen=True)
class Case:
    raw: bytes
    reason: str | None = None  # None: loaded; else a part of the quarantine reason


def record(**fields: Any) -> bytes:
    return orjson.dumps(fields)


def nested(depth: int) -> bytes:
    return b"[" * depth + b"1" + b"]" * depth


MIXED = [
    Case(record(id="plain", seq=1, note="ok")),
    Case(record(id="plain", seq=1, note="ok")),  # at-least-once: the same record again
    Case(record(id="plain", seq=0, note="older")),  # an older version in the same hour
    Case(record(id="big-json", seq=1, payload={"blob": "x" * 1_000_000})),  # a 1 MB record
    Case(record(id="big-text", seq=1, note="y" * 1_048_576), "65535 bytes"),
    Case(b'{"id": "nested-200", "seq": 1, "payload": ' + nested(200) + b"}"),
    Case(b'{"id": "nested-2000", "seq": 1, "payload": ' + nested(2000) + b"}", "invalid JSON"),
    Case(b'{"id": "utf8-\xff\xfe", "seq": 1}', "invalid JSON"),
    Case(b'{"id": "nul-\x00-raw", "seq": 1}', "invalid JSON"),
    Case(b"\x00\x00\x00\x00", "invalid JSON"),
    Case(record(id="nul-escaped", seq=1, note="a\u0000b"), "NUL"),
    Case(record(id="nul-json", seq=1, payload={"k": "a\u0000b"}), "NUL"),
    Case(record(id="small-big", seq=1, small=40000), "out of range for smallint"),
    Case(b'{"id": "seq-big", "seq": 9223372036854775808}', "out of range for bigint"),
    Case(record(id="amount-big", seq=1, amount=123456789.5), "does not fit numeric(10,2)"),
    Case(record(id="amount-round", seq=1, amount="12.345")),
    Case(b'{"id": "ratio-inf", "seq": 1, "ratio": 1e400}', "invalid JSON"),
    Case(record(id="ratio-nan", seq=1, ratio="NaN"), "not a finite number"),
    Case(record(id="ts-offset", seq=1, at="2026-05-04T12:00:00+05:30", local="2026-05-04T08:30:00+02:00")),
    Case(record(id="ts-negative", seq=1, at="2026-05-03T22:30:00-08:00")),
    Case(record(id="ts-zulu", seq=1, at="2026-05-04T06:30:00Z")),
    Case(record(id="ts-naive", seq=1, at="2026-05-04 06:30:00", local="2026-05-04 06:30:00")),
    Case(record(id="ts-epoch", seq=1, at=SIX_THIRTY.timestamp())),
    Case(record(id="ts-epoch-int", seq=1, at=int(SIX_THIRTY.timestamp()))),
    Case(record(id="ts-rfc2822", seq=1, at="Mon, 04 May 2026 06:30:00 GMT"), "ISO 8601"),
    Case(record(id="ts-us", seq=1, at="05/04/2026 06:30"), "ISO 8601"),
    Case(record(id="ts-overflow", seq=1, at="9999-12-31T23:59:59-01:00"), "out of range"),
    Case(b'{"id": "repeated", "seq": 1, "note": "first", "note": "last", "seq": 3}'),
    Case(record(id="no-key", seq=1), None),  # replaced below: a missing key column
]
MIXED[-1] = Case(record(seq=1, note="no id"), "column id: missing")


def layout(cases: list[Case]) -> tuple[bytes, list[int]]:
    body, offsets = b"", []
    for case in cases:
        offsets.append(len(body))
        body += case.raw + b"\n"
    return body, offsets


def garbage() -> bytes:
    body = bytearray(random.Random(13).randbytes(8192))
    body[0] = 0  # no gzip, zip or Snappy magic: the bytes are read as (broken) JSON text
    return bytes(body)


def truncated_gzip() -> bytes:
    lines = b"".join(record(id=f"gz-{n:03d}", seq=1, note=f"n{n}" * (n % 7 + 1)) + b"\n" for n in range(200))
    whole = gzip.compress(lines, mtime=0)
    return whole[: len(whole) * 2 // 3]


def quarantine(s3, entry: dict[str, Any], key: str) -> list[dict[str, Any]]:
    name = f"firehose-loader/quarantine/{entry['name']}/{HOUR:%Y/%m/%d/%H}/{key.rsplit('/', 1)[1]}.jsonl"
    body = s3.get_object(Bucket=entry["bucket"], Key=name)["Body"].read()
    return [orjson.loads(line) for line in body.splitlines()]


def test_an_hour_of_hostile_input_loads_its_good_records_and_accounts_for_every_record(streams, s3, warehouse):
    entry = streams.declare(s3, "rel_hostile", **FIELDS)
    mixed_key, garbage_key, gzip_key = (object_key(HOUR, name) for name in ("00-mixed", "10-garbage", "20-cut.gz"))
    mixed_body, offsets = layout(MIXED)
    s3.put_object(Bucket=entry["bucket"], Key=mixed_key, Body=mixed_body)
    s3.put_object(Bucket=entry["bucket"], Key=garbage_key, Body=garbage())
    s3.put_object(Bucket=entry["bucket"], Key=gzip_key, Body=truncated_gzip())

    assert run_hour(entry["name"], HOUR).state == "success"

    table = sql.Identifier(*entry["table"].split("."))
    rows = {
        row[0]: row
        for row in warehouse.execute(
            sql.SQL(
                "SELECT id, seq, note, payload, small, amount, ratio, at, local, length(payload->>'blob') FROM {}"
            ).format(table)
        ).fetchall()
    }
    loaded = {orjson.loads(case.raw)["id"] for case in MIXED if case.reason is None}
    gz_ids = sorted(key for key in rows if key.startswith("gz-"))
    assert set(rows) - set(gz_ids) == loaded
    assert rows["plain"][1:3] == (1, "ok")
    assert rows["big-json"][9] == 1_000_000
    assert rows["nested-200"][3] == orjson.loads(nested(200))
    assert rows["amount-round"][5] == Decimal("12.35")  # rounded half away from zero
    for name in ("ts-offset", "ts-negative", "ts-zulu", "ts-naive", "ts-epoch", "ts-epoch-int"):
        assert rows[name][7] == SIX_THIRTY, name
    assert rows["ts-offset"][8] == rows["ts-naive"][8] == SIX_THIRTY.replace(tzinfo=None)
    assert rows["repeated"][1:3] == (3, "last")  # a repeated field: the last one wins
    # The truncated gzip stream: its readable part loads, in order.
    assert gz_ids == [f"gz-{n:03d}" for n in range(len(gz_ids))] and len(gz_ids) >= 50

    # Every quarantined record of the mixed object, at its byte offset, with its reason.
    expected_bad = {offset: case for offset, case in zip(offsets, MIXED, strict=True) if case.reason}
    entries = {item["offset"]: item for item in quarantine(s3, entry, mixed_key)}
    assert sorted(entries) == sorted(expected_bad)
    for offset, case in expected_bad.items():
        item = entries[offset]
        assert case.reason in item["reason"], (case.raw[:60], item["reason"])
        assert item["object_key"] == mixed_key
        kept = item["raw"].encode() if "raw" in item else base64.b64decode(item["raw_base64"])
        assert kept == case.raw
    assert "raw_base64" in entries[offsets[7]]  # invalid UTF-8 is kept byte for byte
    assert all("invalid JSON" in item["reason"] for item in quarantine(s3, entry, garbage_key))

    ledger = {
        row[0]: row[1:]
        for row in warehouse.execute(
            "SELECT object_key, status, compression, records_raw, records_valid, records_quarantined,"
            " records_duplicate, records_inserted + records_updated + records_unchanged + records_superseded, message"
            " FROM firehose_loader.ledger WHERE stream = %s",
            (entry["name"],),
        ).fetchall()
    }
    assert ledger[mixed_key][:6] == ("partial", "none", len(MIXED), len(loaded) + 2, len(expected_bad), 2)
    status, compression, raw, valid, quarantined, duplicate, _merged, _message = ledger[garbage_key]
    assert (status, compression, valid, duplicate) == ("partial", "none", 0, 0) and raw == quarantined > 0
    status, compression, raw, valid, quarantined, duplicate, _merged, message = ledger[gzip_key]
    assert (status, compression, valid, duplicate) == ("partial", "gzip", len(gz_ids), 0)
    assert "truncated" in message and raw == valid + quarantined
    for _status, _compression, raw, valid, quarantined, duplicate, merged, _message in ledger.values():
        assert raw == valid + quarantined and valid == duplicate + merged

    hour = warehouse.execute(
        "SELECT status, objects, records_raw, records_valid, records_quarantined, records_duplicate,"
        " records_inserted, records_updated + records_unchanged + records_superseded"
        " FROM firehose_loader.load_hours WHERE stream = %s",
        (entry["name"],),
    ).fetchone()
    status, objects, raw, valid, quarantined, duplicate, inserted, others = hour
    assert (status, objects) == ("partial", 3)
    assert raw == sum(row[2] for row in ledger.values()) == valid + quarantined
    assert valid == duplicate + inserted + others and (inserted, others) == (len(rows), 0)


def test_a_json_value_nested_300_deep_is_quarantined_not_fatal(s3):
    entry, stream = unlisted_stream(s3, "rel_nested", **FIELDS)
    body = b'{"id": "nested-300", "seq": 1, "payload": ' + nested(300) + b"}\n" + record(id="good", seq=1) + b"\n"
    s3.put_object(Bucket=entry["bucket"], Key=object_key(HOUR, "00-a"), Body=body)
    manifest = extract_hour(s3, stream, HOUR, StageWriter("ingest", "run", "extract_hour", 1))
    (stats,) = manifest["objects"]
    assert (stats["records_valid"], stats["records_quarantined"]) == (1, 1)


def test_a_gzip_object_corrupt_from_its_first_byte_is_unreadable_and_kept(s3):
    entry, stream = unlisted_stream(s3, "rel_badgzip", **FIELDS)
    body = b"\x1f\x8b" + random.Random(7).randbytes(3000)
    s3.put_object(Bucket=entry["bucket"], Key=object_key(HOUR, "00-a"), Body=body)
    with psycopg.connect(os.environ["WAREHOUSE_URL"]) as conn:
        ensure_tables(conn, stream, Settings(), Postgres())
    manifest = extract_hour(s3, stream, HOUR, StageWriter("ingest", "run", "extract_hour", 1))
    (stats,) = manifest["objects"]
    assert stats["status"] == "unreadable"
    kept = f"firehose-loader/quarantine/{entry['name']}/{HOUR:%Y/%m/%d/%H}/{object_key(HOUR, '00-a').rsplit('/', 1)[1]}"
    assert s3.get_object(Bucket=entry["bucket"], Key=kept)["Body"].read() == body
