"""One hour's objects to rows: validation, quarantine, deduplication and per-object accounting."""

from __future__ import annotations

import base64
import gzip
import itertools
import json
import re
from decimal import Decimal
from typing import Any

import orjson
import pyarrow as pa
import pytest

from firehose_loader.config import Stream, parse_config
from firehose_loader.records.decoding import SNAPPY_FRAMED_MAGIC, decode_object
from firehose_loader.records.dedupe import dedupe
from firehose_loader.records.schema import OBJECT_COLUMN, OFFSET_COLUMN, arrow_schema
from firehose_loader.records.validate import QuarantinedRecord, SourceObject, decode_and_validate, validate_records
from tests.unit.hour_batch import build_hour_batch

ENTRY = {
    "name": "orders",
    "bucket": "firehose-orders",
    "prefix": "orders/",
    "table": "sales.orders",
    "key": ["order_id", "region"],
    "order_by": "seq",
    "columns": {
        "order_id": "bigint",
        "region": "varchar(8)",
        "seq": "integer",
        "amount": "numeric(10,2)",
        "note": "text",
        "attrs": "json",
    },
}
STREAM: Stream = parse_config({"streams": [ENTRY]}).streams[0]
KEY = ("order_id", "region")


def rec(order_id: Any, region: Any, seq: Any, **extra: Any) -> dict[str, Any]:
    record = {"order_id": order_id, "region": region, "seq": seq}
    record.update(extra)
    return record


def ndjson(records: list[Any]) -> tuple[bytes, list[int]]:
    """Records (dicts, or raw bytes for damaged lines) one per line; returns the data and each line's offset."""
    data = b""
    offsets = []
    for record in records:
        offsets.append(len(data))
        data += (record if isinstance(record, bytes) else json.dumps(record).encode()) + b"\n"
    return data, offsets


def source(key: str, records: list[Any]) -> SourceObject:
    body, _ = ndjson(records)
    return SourceObject(key=key, etag=f"etag-{key}", size=len(body), body=body)


def rows_of(batch_rows) -> list[dict[str, Any]]:
    return batch_rows.to_pylist()


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


# --- dedupe -----------------------------------------------------------------------------------------------------


def expected_winners(objects: list[SourceObject]) -> tuple[list[tuple[Any, ...]], dict[str, int]]:
    """Reference: per key, the greatest (seq, object key, offset); losers counted per object."""
    candidates: dict[tuple[Any, ...], list[tuple[Any, ...]]] = {}
    for obj in objects:
        offset = 0
        for line in obj.body.split(b"\n")[:-1]:
            record = json.loads(line)
            candidates.setdefault((record["order_id"], record["region"]), []).append(
                (record["seq"], obj.key, offset, record.get("note"))
            )
            offset += len(line) + 1
    winners = []
    losers: dict[str, int] = {}
    for key in sorted(candidates):
        ranked = sorted(candidates[key])
        winners.append((*key, *ranked[-1]))
        for loser in ranked[:-1]:
            losers[loser[1]] = losers.get(loser[1], 0) + 1
    return winners, losers


def winners_of(batch_rows) -> list[tuple[Any, ...]]:
    return [
        (row["order_id"], row["region"], row["seq"], row[OBJECT_COLUMN], row[OFFSET_COLUMN], row["note"])
        for row in rows_of(batch_rows)
    ]


DEDUPE_OBJECTS = [
    source(
        "orders/2026/01/01/00/obj-a",
        [
            rec(1, "eu", 5, note="a1-newest"),  # greatest seq wins even in the first object at offset 0
            rec(2, "eu", 1, note="a2"),
            rec(3, "eu", 7, note="a3-first"),
            rec(3, "eu", 7, note="a3-later-offset"),  # equal seq: later offset in the same object wins ...
            rec(5, "eu", 1, note="a5-only"),
        ],
    ),
    source(
        "orders/2026/01/01/00/obj-b",
        [
            rec(1, "eu", 4, note="b1-older"),
            rec(2, "eu", 1, note="b2-tie-greater-object"),  # equal seq: greater object key wins
            rec(1, "us", 1, note="b1us-other-region"),  # composite key: a different key
            rec(3, "eu", 6, note="b3-older"),
        ],
    ),
    source(
        "orders/2026/01/01/00/obj-c",
        [
            rec(3, "eu", 7, note="c3-tie-greatest-object"),  # ... unless a greater object has the same seq
            rec(4, "eu", 10, note="c4"),
            rec(4, "eu", 9, note="c4-older-later-offset"),
            rec(2, "eu", 0, note="c2-oldest"),
        ],
    ),
]


def test_dedupe_against_reference() -> None:
    batch = build_hour_batch(STREAM, DEDUPE_OBJECTS)
    winners, losers = expected_winners(DEDUPE_OBJECTS)
    assert winners_of(batch.rows) == winners
    assert {stats.key: stats.records_duplicate for stats in batch.objects} == {
        obj.key: losers.get(obj.key, 0) for obj in DEDUPE_OBJECTS
    }
    notes = {(row[0], row[1]): row[5] for row in winners_of(batch.rows)}
    assert notes == {
        (1, "eu"): "a1-newest",
        (1, "us"): "b1us-other-region",
        (2, "eu"): "b2-tie-greater-object",
        (3, "eu"): "c3-tie-greatest-object",
        (4, "eu"): "c4",
        (5, "eu"): "a5-only",
    }


def test_dedupe_within_one_object_greater_offset_wins_ties() -> None:
    obj = source("k", [rec(1, "eu", 3, note="first"), rec(1, "eu", 3, note="second"), rec(1, "eu", 2, note="older")])
    batch = build_hour_batch(STREAM, [obj])
    (row,) = rows_of(batch.rows)
    assert row["note"] == "second"
    assert batch.objects[0].records_duplicate == 2


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_dedupe_does_not_depend_on_object_order(order: tuple[int, ...]) -> None:
    reference = build_hour_batch(STREAM, DEDUPE_OBJECTS)
    shuffled = build_hour_batch(STREAM, [DEDUPE_OBJECTS[index] for index in order])
    assert rows_of(shuffled.rows) == rows_of(reference.rows)
    assert {s.key: s.records_duplicate for s in shuffled.objects} == {
        s.key: s.records_duplicate for s in reference.objects
    }


def test_dedupe_direct_on_a_table_in_reverse_order() -> None:
    objects = DEDUPE_OBJECTS
    tables = [validate_records(STREAM, obj.key, decode_object(obj.body))[0] for obj in objects]
    forward = pa.concat_tables(tables)
    backward = forward.take(pa.array(range(forward.num_rows - 1, -1, -1)))
    rows_forward, duplicates_forward = dedupe(STREAM, forward)
    rows_backward, duplicates_backward = dedupe(STREAM, backward)
    assert winners_of(rows_forward) == winners_of(rows_backward) == expected_winners(objects)[0]
    assert duplicates_forward == duplicates_backward == expected_winners(objects)[1]


def test_dedupe_orders_by_value_not_text() -> None:
    # seq 10 > seq 9 although "10" < "9" as text; the numbers arrive as strings
    obj = source("k", [rec(1, "eu", "10", note="ten"), rec(1, "eu", "9", note="nine")])
    (row,) = rows_of(build_hour_batch(STREAM, [obj]).rows)
    assert row["note"] == "ten"


def test_dedupe_by_timestamp_order_column_across_offsets() -> None:
    entry = {**ENTRY, "order_by": "at", "columns": {**ENTRY["columns"], "at": "timestamptz"}}
    stream = parse_config({"streams": [entry]}).streams[0]
    # 10:30+02:00 is 08:30 UTC, earlier than 09:00Z although its text sorts later
    obj = source(
        "k",
        [
            rec(1, "eu", 0, at="2026-01-01T09:00:00Z", note="later"),
            rec(1, "eu", 0, at="2026-01-01T10:30:00+02:00", note="earlier"),
        ],
    )
    (row,) = rows_of(build_hour_batch(stream, [obj]).rows)
    assert row["note"] == "later"


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


# --- stage_hour: the bounded-memory path of the extract step -------------------------------------------------------


def staged_rows(stream: Stream, objects: list[SourceObject], tmp_path: Any) -> tuple[Any, list[dict[str, Any]]]:
    import pyarrow.parquet as pq

    from firehose_loader.records.stage import stage_hour

    staged = stage_hour(stream, objects, tmp_path)
    if staged.path is None:
        return staged, []
    table = pq.read_table(staged.path)
    assert table.schema == arrow_schema(stream)
    assert table.num_rows == staged.rows
    return staged, table.to_pylist()


@pytest.mark.parametrize("order", [(0, 1, 2), (2, 1, 0), (1, 0, 2)])
def test_stage_hour_gives_the_rows_and_counts_of_build_hour_batch(order: tuple[int, ...], tmp_path: Any) -> None:
    extra = source(
        "orders/2026/01/01/00/obj-d",
        [rec(6, "eu", 1, amount="lots"), b"[1]", rec(2, "eu", 9, note="d2-newest"), rec(7, "eu", 1, attrs={"x": 1})],
    )
    objects = [*(DEDUPE_OBJECTS[index] for index in order), extra]
    reference = build_hour_batch(STREAM, objects)
    staged, rows = staged_rows(STREAM, objects, tmp_path)
    key = lambda row: (row["order_id"], row["region"])  # noqa: E731
    assert sorted(rows, key=key) == rows_of(reference.rows)
    assert [stats.as_dict() for stats in staged.objects] == [stats.as_dict() for stats in reference.objects]
    assert staged.quarantined == reference.quarantined
    assert staged.unreadable == reference.unreadable
    assert not (tmp_path / "rows.arrows").exists()


def test_stage_hour_of_an_hour_without_valid_rows(tmp_path: Any) -> None:
    staged, rows = staged_rows(STREAM, [source("k", [rec(None, "eu", 1)]), SourceObject("e", "e", 0, b"")], tmp_path)
    assert staged.path is None and staged.rows == 0 and rows == []
    assert [stats.status for stats in staged.objects] == ["partial", "empty"]
    staged, rows = staged_rows(STREAM, [], tmp_path)
    assert staged.path is None and staged.objects == []


def test_stage_hour_across_row_groups(tmp_path: Any, monkeypatch: Any) -> None:
    from firehose_loader.records import stage as stage_module

    monkeypatch.setattr(stage_module, "STAGE_ROW_GROUP", 7)
    objects = [
        source(f"h/obj-{index}", [rec(number % 23, "eu", number % 5, note=f"{index}-{number}") for number in range(40)])
        for index in range(4)
    ]
    reference = build_hour_batch(STREAM, objects)
    staged, rows = staged_rows(STREAM, objects, tmp_path)
    assert sorted(rows, key=lambda row: (row["order_id"], row["region"])) == rows_of(reference.rows)
    assert {s.key: s.records_duplicate for s in staged.objects} == {
        s.key: s.records_duplicate for s in reference.objects
    }


def decode_in_worker(stream: Stream, source: SourceObject) -> Any:
    """decode_and_validate, noting in the object's message which process ran it."""
    import os

    decoded = decode_and_validate(stream, source)
    decoded.stats.message = f"{decoded.stats.message}|pid={os.getpid()}"
    return decoded


def test_decode_processes_stage_what_one_process_stages(tmp_path: Any, monkeypatch: Any) -> None:
    """Worker processes decode side by side; the stage, counts, quarantine and order are those of one process."""
    import os

    import pyarrow.parquet as pq

    from firehose_loader.records import pool as pool_module
    from firehose_loader.records.stage import stage_hour

    objects = [
        *DEDUPE_OBJECTS,
        source("orders/2026/01/01/00/obj-bad", [rec(6, "eu", 1, amount="lots"), b"[1]", rec(2, "eu", 9)]),
        SourceObject("orders/2026/01/01/00/obj-snappy", "e", 9, SNAPPY_FRAMED_MAGIC + b"garbage"),
        SourceObject("orders/2026/01/01/00/obj-empty", "e", 0, b""),
        *(source(f"orders/2026/01/01/00/obj-{n:02d}", [rec(n % 7, "us", n, note=str(n))]) for n in range(12)),
    ]
    for folder in ("one", "two"):
        (tmp_path / folder).mkdir()
    alone = stage_hour(STREAM, objects, tmp_path / "one", decode_processes=1)
    monkeypatch.setattr(pool_module, "decode_and_validate", decode_in_worker)
    side_by_side = stage_hour(STREAM, objects, tmp_path / "two", decode_processes=2)

    assert alone.path is not None and side_by_side.path is not None
    assert pq.read_table(side_by_side.path) == pq.read_table(alone.path)
    workers = {stats.message.rpartition("|pid=")[2] for stats in side_by_side.objects}
    assert str(os.getpid()) not in workers  # every object was decoded in a worker process
    for stats in side_by_side.objects:
        stats.message = stats.message.rpartition("|pid=")[0]
        stats.message = None if stats.message == "None" else stats.message
    assert [stats.as_dict() for stats in side_by_side.objects] == [stats.as_dict() for stats in alone.objects]
    assert side_by_side.quarantined == alone.quarantined and len(alone.quarantined) == 2
    assert side_by_side.unreadable == alone.unreadable and len(alone.unreadable) == 1


def test_a_failure_in_a_decode_process_fails_the_stage(tmp_path: Any, monkeypatch: Any) -> None:
    from firehose_loader.records import pool as pool_module
    from firehose_loader.records.stage import stage_hour

    monkeypatch.setattr(pool_module, "decode_and_validate", fail_on_object_3)
    objects = [source(f"h/obj-{index}", [rec(index, "eu", 1)]) for index in range(6)]
    with pytest.raises(RuntimeError, match="h/obj-3"):
        stage_hour(STREAM, objects, tmp_path, decode_processes=2)


def fail_on_object_3(stream: Stream, source: SourceObject) -> Any:
    if source.key == "h/obj-3":
        raise RuntimeError(f"cannot decode {source.key}")
    return decode_and_validate(stream, source)


# --- combine_parts: a split hour's parts, staged apart, deduplicated into one stage ---------------------------------


def combined_over_parts(
    stream: Stream, parts: list[list[SourceObject]], tmp_path: Any
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Stage each part on its own, then combine: the rows and each object's duplicates over the hour."""
    import pyarrow.parquet as pq

    from firehose_loader.records.stage import combine_parts, stage_hour

    paths, duplicates = [], {}
    for index, part in enumerate(parts):
        folder = tmp_path / f"part-{index}"
        folder.mkdir()
        staged = stage_hour(stream, part, folder)
        duplicates.update({stats.key: stats.records_duplicate for stats in staged.objects})
        if staged.path is not None:
            paths.append(staged.path)
    combined = combine_parts(stream, paths, tmp_path / "stage.parquet")
    for key, count in combined.cross_part_duplicates.items():
        duplicates[key] += count
    if combined.path is None:
        return [], duplicates
    table = pq.read_table(combined.path)
    assert table.schema == arrow_schema(stream) and table.num_rows == combined.rows
    return table.to_pylist(), duplicates


@pytest.mark.parametrize("cuts", [(1,), (2,), (1, 2), (1, 2, 3)])
@pytest.mark.parametrize("row_group", [7, 131_072])
def test_combining_parts_gives_the_stage_of_the_whole_hour(
    cuts: tuple[int, ...], row_group: int, tmp_path: Any, monkeypatch: Any
) -> None:
    from firehose_loader.records import stage as stage_module

    monkeypatch.setattr(stage_module, "STAGE_ROW_GROUP", row_group)
    extra = source(
        "orders/2026/01/01/00/obj-d",
        [rec(6, "eu", 1, amount="lots"), rec(2, "eu", 9, note="d2-newest"), rec(3, "eu", 7, note="d3-tie-last")],
    )
    objects = [
        *DEDUPE_OBJECTS,
        extra,
        *(
            source(f"h/obj-{index}", [rec(n % 23, "eu", n % 5, note=f"{index}-{n}") for n in range(40)])
            for index in range(2)
        ),
    ]
    bounds = [0, *cuts, len(objects)]
    parts = [objects[start:end] for start, end in itertools.pairwise(bounds)]
    reference = build_hour_batch(STREAM, objects)

    rows, duplicates = combined_over_parts(STREAM, parts, tmp_path)

    assert sorted(rows, key=lambda row: (row["order_id"], row["region"])) == rows_of(reference.rows)
    assert duplicates == {stats.key: stats.records_duplicate for stats in reference.objects}
    assert sum(duplicates.values()) > 0


def test_combining_parts_without_valid_rows(tmp_path: Any) -> None:
    rows, duplicates = combined_over_parts(STREAM, [[source("k", [rec(None, "eu", 1)])], []], tmp_path)
    assert rows == [] and duplicates == {"k": 0}


def test_an_hour_is_split_into_consecutive_parts_of_at_most_the_limit() -> None:
    from firehose_loader.extract import split_into_parts
    from firehose_loader.s3io import ObjectInfo

    objects = [ObjectInfo(f"k{index}", "e", size) for index, size in enumerate([4, 3, 3, 9, 1, 12, 2, 2])]
    parts = split_into_parts(objects, 10)
    assert [[item.key for item in part] for part in parts] == [
        ["k0", "k1", "k2"],
        ["k3", "k4"],
        ["k5"],  # bigger than a part: a part of its own
        ["k6", "k7"],
    ]
    assert [item for part in parts for item in part] == objects
    assert split_into_parts([], 10) == []


def test_decode_processes_follow_the_stream_the_cpus_the_objects_and_the_platform(monkeypatch: Any) -> None:
    import sys
    from dataclasses import replace

    from firehose_loader import extract
    from firehose_loader.extract import PARALLEL_DECODE_MIN_BYTES, decode_processes
    from firehose_loader.s3io import ObjectInfo

    stream = replace(STREAM, decode_processes=3)
    big = [ObjectInfo(f"k{index}", "e", PARALLEL_DECODE_MIN_BYTES // 2) for index in range(4)]
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(extract, "usable_cpus", lambda: 8)
    assert decode_processes(stream, big) == 3
    assert decode_processes(stream, big[:2]) == 2  # one object per worker at most
    assert decode_processes(stream, big[:1]) == 1  # under the size where workers pay off
    monkeypatch.setattr(extract, "usable_cpus", lambda: 2)
    assert decode_processes(stream, big) == 2
    assert decode_processes(replace(stream, decode_processes=1), big) == 1
    monkeypatch.setattr(sys, "platform", "darwin")  # workers are forked: Linux only
    assert decode_processes(stream, big) == 1
