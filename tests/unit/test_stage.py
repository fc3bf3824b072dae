"""records/stage.py: the hour's stage file in bounded memory, and combining a split hour's parts."""

from __future__ import annotations

from typing import Any

import pytest

from firehose_loader.config import Stream
from firehose_loader.records.schema import arrow_schema
from firehose_loader.records.validate import SourceObject
from tests.unit.hour_batch import build_hour_batch
from tests.unit.order_records import DEDUPE_OBJECTS, STREAM, rec, rows_of, source

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
