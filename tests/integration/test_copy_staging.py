"""The PostgreSQL dialect's COPY into the staging table, against the real server, with both drivers.

The stage is handed over one record batch at a time (only one batch and its CSV are in memory);
every value must arrive exactly, whichever batch it is in and whichever driver the provider uses.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg
import psycopg2
import pyarrow as pa
import pytest

from firehose_loader.config import parse_column_type
from firehose_loader.dialects import Postgres, Stage

COLUMNS = {"event_id": "varchar(64)", "note": "text", "amount": "numeric(12,2)", "at": "timestamptz", "body": "json"}
TRICKY_TEXT = [
    "plain",
    "",
    None,
    "NULL",
    'a "quoted", value',
    "line\nbreak\r\nand\ttab",
    "ünïcødé ✓",
    "\\N",
    "x" * 5000,
]


def stage_rows(count: int) -> pa.Table:
    return pa.table(
        {
            "event_id": [f"e{index:05d}" for index in range(count)],
            "note": [TRICKY_TEXT[index % len(TRICKY_TEXT)] for index in range(count)],
            "amount": pa.array([None if index % 7 == 0 else f"{index}.{index % 100:02d}" for index in range(count)]),
            "at": pa.array(
                [datetime(2026, 3, 1, index % 24, index % 60, tzinfo=UTC) for index in range(count)],
                pa.timestamp("us", "UTC"),
            ),
            "body": [
                None if index % 5 == 0 else f'{{"n": {index}, "s": "{TRICKY_TEXT[index % 4]}"}}'
                for index in range(count)
            ],
            "_firehose_object": [f"obj-{index // 100}" for index in range(count)],
            "_firehose_offset": pa.array(range(count), pa.int64()),
        }
    )


def context() -> dict:
    dialect = Postgres()
    return {
        "staging": "copy_test_staging",
        "columns": [
            {"name": name, "staging_type": dialect.staging_type(parse_column_type(kind))}
            for name, kind in COLUMNS.items()
        ],
    }


def create_staging(cursor) -> None:
    columns = ", ".join(f'"{column["name"]}" {column["staging_type"]}' for column in context()["columns"])
    cursor.execute(
        f'CREATE TEMPORARY TABLE copy_test_staging ({columns}, "_firehose_object" text NOT NULL, '
        '"_firehose_offset" bigint NOT NULL)'
    )


def expected_rows(table: pa.Table) -> list[tuple]:
    rows = []
    for row in table.to_pylist():
        amount = None if row["amount"] is None else row["amount"]
        rows.append(
            (
                row["event_id"],
                row["note"],
                amount,
                row["at"],
                row["body"],
                row["_firehose_object"],
                row["_firehose_offset"],
            )
        )
    return rows


def read_back(cursor) -> list[tuple]:
    cursor.execute(
        'SELECT event_id, note, amount::text, at, body::text, "_firehose_object", "_firehose_offset" '
        'FROM copy_test_staging ORDER BY "_firehose_offset"'
    )
    return [tuple(row) for row in cursor.fetchall()]


@pytest.mark.parametrize("driver", ["psycopg", "psycopg2"])
def test_copy_streams_every_batch_exactly(stack_up, driver: str) -> None:
    table = stage_rows(1_000)
    handed_out: list[int] = []

    def batches() -> Iterator[pa.RecordBatch]:
        for batch in table.to_batches(max_chunksize=128):
            handed_out.append(batch.num_rows)
            yield batch

    connect = psycopg.connect if driver == "psycopg" else psycopg2.connect
    conn = connect(os.environ["WAREHOUSE_URL"])
    try:
        with conn.cursor() as cursor:
            cursor.execute("SET TIME ZONE 'UTC'")
            create_staging(cursor)
            Postgres().copy_into_staging(
                cursor, context(), Stage("bucket", "stage.parquet", batches, rows=table.num_rows)
            )
            loaded = read_back(cursor)
        conn.rollback()
    finally:
        conn.close()

    assert len(handed_out) == 8 and sum(handed_out) == 1_000  # the stage went over in batches, not at once
    assert loaded == expected_rows(table)
    notes = [row[1] for row in loaded]
    assert notes.count("") == notes.count(None) > 0  # the empty string and NULL stay apart
    assert "NULL" in notes and "\\N" in notes
