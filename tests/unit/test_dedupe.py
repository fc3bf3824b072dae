"""records/dedupe.py: the winner among duplicates (greatest order_by, then object key, then offset)."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pyarrow as pa
import pytest

from firehose_loader.config import parse_config
from firehose_loader.records.decoding import decode_object
from firehose_loader.records.dedupe import dedupe
from firehose_loader.records.schema import OBJECT_COLUMN, OFFSET_COLUMN
from firehose_loader.records.validate import SourceObject, validate_records
from tests.unit.hour_batch import build_hour_batch
from tests.unit.order_records import DEDUPE_OBJECTS, ENTRY, STREAM, rec, rows_of, source

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
