"""records/validate.py: validation, quarantine lines, and the per-object accounting of an hour."""

from __future__ import annotations

import base64
import gzip
import io
import json
import re
from decimal import Decimal
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.orc as pa_orc
import pyarrow.parquet as pq
import pytest

from firehose_loader.records.decoding import SNAPPY_FRAMED_MAGIC, decode_object
from firehose_loader.records.schema import OBJECT_COLUMN, OFFSET_COLUMN, arrow_schema
from firehose_loader.records.validate import QuarantinedRecord, SourceObject, decode_and_validate, validate_records
from tests.unit.hour_batch import build_hour_batch
from tests.unit.order_records import ENTRY, STREAM, ndjson, rec, rows_of, source

# --- validate_records ----------------------------------------------------------------------------------------------


def test_validate_quarantines_whole_records_naming_the_column() -> None:
    records: list[Any] = [
        rec(1, "eu", 1, amount="12.345", note="ok", attrs={"a": [1]}),  # valid
        {"region": "eu", "seq": 2},  # key column missing
        rec(3, None, 3),  # key column null
        rec(4, "eu", None),  # order column null
        {"order_id": 5, "region": "eu"},  # order column missing
        rec(6, "eu", 6, amount="lots"),  # uncoercible value
        rec(7, "toolongregion", 7),  # too long for varchar(8)
        rec("x8", "eu", 8),  # key not a bigint
        rec(9, "eu", True),  # boolean is not an integer
        rec(10, "us", 10, unknown="ignored", also_unknown={"x": 1}),  # valid, unknown fields, note/attrs/amount missing
    ]
    expected_column = {
        1: "order_id",
        2: "region",
        3: "seq",
        4: "seq",
        5: "amount",
        6: "region",
        7: "order_id",
        8: "seq",
    }
    data, offsets = ndjson(records)
    decoded = decode_object(data)
    table, quarantined = validate_records(STREAM, "orders/2026/01/01/00/obj-a", decoded)

    assert table.schema == arrow_schema(STREAM)
    assert [entry.offset for entry in quarantined] == [offsets[index] for index in expected_column]
    for entry, (index, column) in zip(quarantined, expected_column.items(), strict=True):
        assert entry.object_key == "orders/2026/01/01/00/obj-a"
        named = set(re.findall(r"\w+", entry.reason)) & set(ENTRY["columns"])
        assert named == {column}, entry.reason
        assert entry.raw == json.dumps(records[index]).encode()
        assert data[entry.offset : entry.offset + len(entry.raw)] == entry.raw

    rows = rows_of(table)
    assert [(row["order_id"], row["region"], row["seq"]) for row in rows] == [(1, "eu", 1), (10, "us", 10)]
    assert rows[0]["amount"] == Decimal("12.35")
    assert rows[0]["note"] == "ok"
    assert json.loads(rows[0]["attrs"]) == {"a": [1]}
    assert rows[1]["amount"] is None and rows[1]["note"] is None and rows[1]["attrs"] is None
    assert set(rows[1]) == set(ENTRY["columns"]) | {OBJECT_COLUMN, OFFSET_COLUMN}
    assert [row[OFFSET_COLUMN] for row in rows] == [offsets[0], offsets[9]]
    assert {row[OBJECT_COLUMN] for row in rows} == {"orders/2026/01/01/00/obj-a"}


def test_validate_null_optional_value_becomes_null() -> None:
    decoded = decode_object(ndjson([rec(1, "eu", 1, amount=None, note=None, attrs=None)])[0])
    table, quarantined = validate_records(STREAM, "k", decoded)
    assert quarantined == []
    (row,) = rows_of(table)
    assert row["amount"] is None and row["note"] is None and row["attrs"] is None


def test_validate_keeps_decoding_errors_in_offset_order() -> None:
    records: list[Any] = [rec(1, "eu", 1), rec(2, "eu", "two"), b"[1, 2]", b'{"order_id": }', rec(3, "eu", 3)]
    data, offsets = ndjson(records)
    table, quarantined = validate_records(STREAM, "k", decode_object(data))
    assert [entry.offset for entry in quarantined] == [offsets[1], offsets[2], offsets[3]]
    assert [entry.raw for entry in quarantined] == [json.dumps(records[1]).encode(), records[2], records[3]]
    assert table.num_rows == 2


def test_validate_raw_bytes_of_a_concatenated_record() -> None:
    parts = [
        json.dumps(rec(1, "eu", 1)).encode(),
        json.dumps(rec(2, "eu", "bad")).encode(),
        json.dumps(rec(3, "eu", 3)).encode(),
    ]
    data = b"".join(parts)
    table, (entry,) = validate_records(STREAM, "k", decode_object(data))
    assert entry.offset == len(parts[0])
    assert entry.raw == parts[1]
    assert "seq" in entry.reason
    assert table.num_rows == 2


def test_validate_raw_bytes_of_a_gzipped_pretty_printed_record() -> None:
    good = json.dumps(rec(1, "eu", 1), indent=2).encode()
    bad = json.dumps(rec(2, "eu", 2, amount="NaN"), indent=2).encode()
    data = good + b"\n" + bad + b"\n"
    _, (entry,) = validate_records(STREAM, "k", decode_object(gzip.compress(data)))
    assert entry.offset == len(good) + 1
    assert entry.raw == bad
    assert "amount" in entry.reason


def test_quarantine_line_round_trips_raw_bytes() -> None:
    raw = b'{"order_id": "\xff"}'
    line = QuarantinedRecord("obj", 17, "invalid", raw).as_json_line("orders", "2026-01-01T00:00:00+00:00")
    entry = orjson.loads(line)
    assert line.endswith(b"\n")
    assert entry["offset"] == 17 and entry["length"] == len(raw)
    assert "raw" not in entry
    assert base64.b64decode(entry["raw_base64"]) == raw
    text = QuarantinedRecord("obj", 0, "r", b'{"a": "\xc3\xa9"}').as_json_line("orders", "h")
    assert orjson.loads(text)["raw"] == '{"a": "é"}'


# --- build_hour_batch accounting -----------------------------------------------------------------------------------


def gzip_truncated(records: list[dict[str, Any]]) -> bytes:
    body, _ = ndjson(records)
    compressed = gzip.compress(body)
    return compressed[:-4]  # inside the 8-byte trailer: every record is readable


def test_hour_batch_accounting_and_statuses() -> None:
    clean = source("h/obj-1-clean", [rec(1, "eu", 1), rec(2, "eu", 1), rec(3, "eu", 1)])
    partial = source("h/obj-2-partial", [rec(1, "eu", 2), b"7", rec(4, "eu", "x"), rec(2, "eu", 0), b'{"order_id": }'])
    empty = SourceObject("h/obj-3-empty", "e3", 0, b"")
    blank = SourceObject("h/obj-4-blank", "e4", 3, b" \n\n")
    snappy_body = SNAPPY_FRAMED_MAGIC + b"\x00" * 8
    snappy = SourceObject("h/obj-5-snappy", "e5", len(snappy_body), snappy_body)
    truncated_body = gzip_truncated([rec(5, "eu", 1), rec(1, "eu", 0), rec(6, "eu", 1)])
    truncated = SourceObject("h/obj-6-truncated.gz", "e6", len(truncated_body), truncated_body)
    # gzip body under a key without .gz, and a plain body under a key ending in .gz
    gz_body = gzip.compress(ndjson([rec(7, "eu", 1), rec(3, "eu", 5)])[0])
    gz_no_suffix = SourceObject("h/obj-7-no-suffix", "e7", len(gz_body), gz_body)
    plain_gz_suffix = source("h/obj-8-plain.gz", [rec(8, "eu", 1)])

    objects = [clean, partial, empty, blank, snappy, truncated, gz_no_suffix, plain_gz_suffix]
    batch = build_hour_batch(STREAM, objects)
    stats = {entry.key: entry for entry in batch.objects}
    assert list(stats) == [obj.key for obj in objects]

    for obj in objects:
        entry = stats[obj.key]
        assert (entry.etag, entry.size) == (obj.etag, obj.size)
        assert entry.records_raw == entry.records_valid + entry.records_quarantined

    assert (stats[clean.key].status, stats[clean.key].records_raw, stats[clean.key].records_quarantined) == (
        "loaded",
        3,
        0,
    )
    # partial: 5 lines, of which a number, an uncoercible seq and a broken record are quarantined
    assert stats[partial.key].status == "partial"
    assert (stats[partial.key].records_raw, stats[partial.key].records_valid) == (5, 2)
    assert stats[empty.key].status == "empty" and stats[empty.key].records_raw == 0
    assert stats[blank.key].status == "empty" and stats[blank.key].records_raw == 0
    assert stats[snappy.key].status == "unreadable"
    assert stats[snappy.key].message
    assert batch.unreadable == [snappy]
    assert stats[truncated.key].status == "partial"
    assert stats[truncated.key].compression == "gzip"
    assert stats[truncated.key].message  # the truncation warning is kept
    assert stats[truncated.key].records_valid == 3  # only the gzip trailer is missing
    assert (stats[gz_no_suffix.key].compression, stats[gz_no_suffix.key].status) == ("gzip", "loaded")
    assert (stats[plain_gz_suffix.key].compression, stats[plain_gz_suffix.key].status) == ("none", "loaded")

    total_valid = sum(entry.records_valid for entry in batch.objects)
    total_duplicate = sum(entry.records_duplicate for entry in batch.objects)
    assert total_valid == total_duplicate + batch.rows.num_rows
    assert batch.records_raw == sum(entry.records_raw for entry in batch.objects)
    assert len(batch.quarantined) == sum(entry.records_quarantined for entry in batch.objects)

    # the rows: one per key, and the duplicate counts land on the losing objects
    keys = [(row["order_id"], row["region"]) for row in rows_of(batch.rows)]
    assert keys == [(n, "eu") for n in (1, 2, 3, 5, 6, 7, 8)]  # key 4 only had an invalid record
    assert len(keys) == len(set(keys))
    # key (1,eu): seq 1 in clean, seq 2 in partial, seq 0 in truncated -> partial wins
    # key (2,eu): seq 1 in clean, seq 0 in partial -> clean wins; key (3,eu): seq 1 clean, seq 5 gz -> gz wins
    assert stats[clean.key].records_duplicate == 2
    assert stats[partial.key].records_duplicate == 1
    assert stats[truncated.key].records_duplicate == 1
    assert stats[gz_no_suffix.key].records_duplicate == 0
    winners = {(row["order_id"], row["region"]): row[OBJECT_COLUMN] for row in rows_of(batch.rows)}
    assert winners[(1, "eu")] == partial.key
    assert winners[(2, "eu")] == clean.key
    assert winners[(3, "eu")] == gz_no_suffix.key


def test_all_records_bad_is_partial_with_no_rows() -> None:
    batch = build_hour_batch(STREAM, [source("k", [rec(None, "eu", 1), b"[]"])])
    (stats,) = batch.objects
    assert stats.status == "partial"
    assert (stats.records_raw, stats.records_valid, stats.records_quarantined) == (2, 0, 2)
    assert batch.rows.num_rows == 0


def test_empty_hour() -> None:
    batch = build_hour_batch(STREAM, [])
    assert batch.objects == []
    assert batch.rows.num_rows == 0
    assert batch.rows.schema == arrow_schema(STREAM)


def test_objects_may_be_a_generator() -> None:
    objects = (source(f"k{index}", [rec(index, "eu", 1)]) for index in range(3))
    batch = build_hour_batch(STREAM, objects)
    assert batch.rows.num_rows == 3
    assert [stats.key for stats in batch.objects] == ["k0", "k1", "k2"]


# --- Parquet and ORC objects ---------------------------------------------------------------------------------------


def columnar(file_format: str, rows: list[dict[str, Any]]) -> bytes:
    table = pa.table(
        {
            "order_id": pa.array([row["order_id"] for row in rows], pa.int64()),
            "region": pa.array([row["region"] for row in rows], pa.string()),
            "seq": pa.array([row["seq"] for row in rows], pa.int64()),
            "amount": pa.array([row.get("amount") for row in rows], pa.decimal128(10, 2)),
        }
    )
    buffer = io.BytesIO()
    (pq.write_table if file_format == "parquet" else pa_orc.write_table)(table, buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("file_format", ["parquet", "orc"])
def test_a_columnar_row_outside_its_column_s_range_is_quarantined_naming_object_and_row(file_format: str) -> None:
    rows = [rec(1, "eu", 1, amount=Decimal("1.50")), rec(2, "eu", 2**40), rec(3, "toolongregion", 3), rec(4, "us", 4)]
    body = columnar(file_format, rows)
    result = decode_and_validate(STREAM, SourceObject(f"orders/x.{file_format}", "e", len(body), body))
    assert result.stats.compression == file_format and result.stats.status == "partial"
    assert (result.stats.records_raw, result.stats.records_valid, result.stats.records_quarantined) == (4, 2, 2)
    assert [(entry.offset, entry.position) for entry in result.quarantined] == [(1, "row"), (2, "row")]
    assert result.quarantined[0].reason == f"row 1: column seq: {2**40} is out of range for integer"
    assert "column region" in result.quarantined[1].reason
    line = orjson.loads(result.quarantined[0].as_json_line("orders", "2026-01-01T00:00:00+00:00"))
    assert line["object_key"] == f"orders/x.{file_format}" and line["row"] == 1 and "offset" not in line
    assert orjson.loads(line["raw"]) == {"order_id": 2, "region": "eu", "seq": 2**40, "amount": None}
    assert result.rows is not None
    valid = rows_of(result.rows)
    # The row index stands where a JSON record's byte offset does.
    assert [(row["order_id"], row[OFFSET_COLUMN]) for row in valid] == [(1, 0), (4, 3)]
    assert valid[0]["amount"] == Decimal("1.50") and valid[0]["note"] is None


def test_a_corrupt_parquet_object_is_unreadable() -> None:
    body = columnar("parquet", [rec(1, "eu", 1)])[:-20]
    result = decode_and_validate(STREAM, SourceObject("orders/x.parquet", "e", len(body), body))
    assert result.stats.status == "unreadable" and "parquet" in (result.stats.message or "")
