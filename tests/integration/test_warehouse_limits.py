"""Warehouse limits at validation, through the extract and the load on moto S3 and PostgreSQL.

Under the Redshift dialect's limits (Redshift itself cannot run here; the extract task takes the
limits from the warehouse connection's dialect), a 70 KB JSON value and an over-long multibyte
varchar go to the quarantine file with their reasons and the rest of the hour stages. On
PostgreSQL, keys sent as JSON numbers beyond a double load exactly, and "a1" / "a1 " are two keys.
"""

from __future__ import annotations

import io
import os
from datetime import UTC, datetime
from decimal import Decimal

import orjson
import psycopg
import pyarrow.parquet as pq
from psycopg import sql

from firehose_loader.extract import extract_hour
from firehose_loader.layout import StageWriter
from firehose_loader.warehouse.redshift import REDSHIFT_LIMITS
from tests.integration.support import load_in_process, ndjson, object_key, unlisted_stream

HOUR = datetime(2026, 6, 1, 8, tzinfo=UTC)


def rows_of(entry: dict, order: str = "id") -> list[tuple]:
    with psycopg.connect(os.environ["WAREHOUSE_URL"]) as conn:
        statement = sql.SQL("SELECT * FROM {} ORDER BY {}").format(
            sql.Identifier(*entry["table"].split(".")), sql.Identifier(order)
        )
        return [row[:-2] for row in conn.execute(statement).fetchall()]  # without the provenance columns


def test_under_redshift_limits_the_values_it_cannot_store_are_quarantined_and_the_rest_stages(s3) -> None:
    columns = {"id": "varchar(64)", "seq": "integer", "body": "json", "essay": "varchar(30000)"}
    entry, stream = unlisted_stream(s3, "limits_redshift", key=["id"], order_by="seq", columns=columns)
    records = [
        {"id": "ok-1", "seq": 1, "body": {"n": 1}},
        {"id": "big-json", "seq": 1, "body": {"blob": "x" * 70_000}},
        {"id": "long-essay", "seq": 1, "essay": "ü" * 29_000},  # 29000 characters, 58000 bytes: fits
        {"id": "too-long-essay", "seq": 1, "essay": "😀" * 20_000},  # 20000 characters, 80000 bytes
        {"id": "ok-2", "seq": 1},
    ]
    key = object_key(HOUR, "00-a")
    s3.put_object(Bucket=entry["bucket"], Key=key, Body=ndjson(records))

    manifest = extract_hour(s3, stream, HOUR, StageWriter("ingest", "limits", "extract_hour", 1), REDSHIFT_LIMITS)

    stage = pq.read_table(io.BytesIO(s3.get_object(Bucket=entry["bucket"], Key=manifest["stage_key"])["Body"].read()))
    assert sorted(stage.column("id").to_pylist()) == ["long-essay", "ok-1", "ok-2"]
    (entry_out,) = manifest["objects"]
    assert (entry_out["records_raw"], entry_out["records_valid"], entry_out["records_quarantined"]) == (5, 3, 2)
    quarantine = s3.get_object(Bucket=entry["bucket"], Key=entry_out["quarantine_key"])["Body"].read()
    lines = [orjson.loads(line) for line in quarantine.splitlines()]
    assert [(line["object_key"], orjson.loads(line["raw"])["id"]) for line in lines] == [
        (key, "big-json"),
        (key, "too-long-essay"),
    ]
    assert (
        lines[0]["reason"]
        == "column body: JSON value of 70011 bytes exceeds the 65535 bytes a Redshift json column takes"
    )
    assert lines[1]["reason"] == "column essay: string of 80000 bytes exceeds the 65535 bytes a Redshift varchar holds"
    body = s3.get_object(Bucket=entry["bucket"], Key=key)["Body"].read()
    assert all(body[line["offset"] :].startswith(line["raw"].encode()) for line in lines)


def test_keys_beyond_a_double_sent_as_json_numbers_end_as_two_exact_rows(s3) -> None:
    columns = {"id": "numeric(38,0)", "seq": "integer", "share": "numeric(38,20)"}
    entry, _stream = unlisted_stream(s3, "limits_exact", key=["id"], order_by="seq", columns=columns)
    body = (
        b'{"id": 123456789012345678901234567890, "seq": 1, "share": 0.12345678901234567890123}\n'
        b'{"id": 123456789012345678901234567891, "seq": 1, "share": 2.5}\n'
    )
    s3.put_object(Bucket=entry["bucket"], Key=object_key(HOUR, "00-a"), Body=body)
    summary = load_in_process(entry, HOUR, "limits_exact")
    assert (summary["records_valid"], summary["records_inserted"], summary["records_quarantined"]) == (2, 2, 0)
    assert rows_of(entry) == [
        (Decimal("123456789012345678901234567890"), 1, Decimal("0.12345678901234567890")),
        (Decimal("123456789012345678901234567891"), 1, Decimal("2.50000000000000000000")),
    ]


def test_a_key_beyond_bigint_is_quarantined_with_its_reason_and_the_rest_loads(s3) -> None:
    entry, _stream = unlisted_stream(
        s3, "limits_bigint", key=["id"], order_by="seq", columns={"id": "bigint", "seq": "integer"}
    )
    body = b'{"id": 123456789012345678901234567890, "seq": 1}\n{"id": 123456789012345678901234567891, "seq": 1}\n{"id": 7, "seq": 1}\n'
    s3.put_object(Bucket=entry["bucket"], Key=object_key(HOUR, "00-a"), Body=body)
    summary = load_in_process(entry, HOUR, "limits_bigint")
    assert (summary["records_valid"], summary["records_quarantined"]) == (1, 2)
    assert rows_of(entry) == [(7, 1)]
    quarantine_key = f"firehose-loader/quarantine/{entry['name']}/2026/06/01/08/stream-1-2026-06-01-08-00-a.jsonl"
    lines = s3.get_object(Bucket=entry["bucket"], Key=quarantine_key)["Body"].read().splitlines()
    assert [orjson.loads(line)["reason"] for line in lines] == [
        "column id: 123456789012345678901234567890 is out of range for bigint",
        "column id: 123456789012345678901234567891 is out of range for bigint",
    ]


def test_on_postgresql_a1_and_a1_with_a_blank_are_two_keys_and_a_text_order_by_compares_by_code_point(s3) -> None:
    """The documented rule on PostgreSQL: varchar compares trailing blanks, so both keys load (on Redshift,
    which ignores them, "a1 " is quarantined: tests/unit/test_warehouse_limits.py). The order_by is text:
    the merge compares it COLLATE "C", as the deduplication does."""
    columns = {"id": "varchar(16)", "version": "varchar(16)", "note": "text"}
    entry, _stream = unlisted_stream(s3, "limits_blanks", key=["id"], order_by="version", columns=columns)
    records = [
        {"id": "a1", "version": "B", "note": "a1 at B"},
        {"id": "a1 ", "version": "B", "note": "a1-blank at B"},
        {"id": "a1", "version": "a", "note": "a1 at a"},  # "a" > "B" by code point: this one wins
    ]
    s3.put_object(Bucket=entry["bucket"], Key=object_key(HOUR, "00-a"), Body=ndjson(records))
    load_in_process(entry, HOUR, "limits_blanks")
    load_in_process(entry, HOUR, "limits_blanks_again")  # a rerun merges the same winners again: unchanged
    assert rows_of(entry) == [("a1", "a", "a1 at a"), ("a1 ", "B", "a1-blank at B")]
