"""The PostgreSQL dialect's COPY into the staging table, against the real server, with both drivers.

The stage is handed over one record batch at a time in PostgreSQL's binary COPY format (only one
batch and its encoding are in memory); every value of every column type the streams file accepts
must arrive exactly, whichever batch it is in and whichever driver the provider uses.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal

import psycopg
import psycopg2
import pyarrow as pa
import pytest

from firehose_loader.coercion import arrow_type
from firehose_loader.config import parse_column_type
from firehose_loader.dialects import Postgres, Stage

# One column of each type the streams file accepts.
COLUMNS = {
    "event_id": "varchar(64)",
    "note": "text",
    "amount": "numeric(12,2)",
    "ratio": "numeric(38,10)",
    "at": "timestamptz",
    "local_at": "timestamp",
    "day": "date",
    "small": "smallint",
    "medium": "integer",
    "large": "bigint",
    "score": "double precision",
    "flag": "boolean",
    "body": "json",
}
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
AMOUNTS = [Decimal("0.00"), Decimal("-1.50"), Decimal("9999999999.99"), Decimal("-9999999999.99"), None]
RATIOS = [Decimal("1234567890123456789012345678.0123456789"), Decimal("-0.0000000001"), Decimal("0E-10"), None]
TIMES = [
    datetime(2026, 3, 1, 10, 0, 0, 123456, tzinfo=UTC),
    datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),  # before PostgreSQL's epoch (2000-01-01)
    datetime(1970, 1, 1, tzinfo=UTC),
    None,
]
DAYS = [date(2026, 3, 1), date(1999, 12, 31), date(1, 1, 1), date(9999, 12, 31), None]
INTEGERS = {"small": (-(2**15), 2**15 - 1), "medium": (-(2**31), 2**31 - 1), "large": (-(2**63), 2**63 - 1)}
SCORES = [0.0, -0.0, 1.5e-300, -2.5e300, 0.1, None]
BODIES = [{"n": 1, "nested": {"list": [1, "two", None, True]}}, {"s": TRICKY_TEXT[5] + "ü"}, [], "text", None]


def cycle(values: list, index: int):
    return values[index % len(values)]


def stage_rows(count: int) -> pa.Table:
    """Rows as the stage holds them: each column in the Arrow type the library maps its column type to."""
    values = {
        "event_id": [f"e{index:05d}" for index in range(count)],
        "note": [cycle(TRICKY_TEXT, index) for index in range(count)],
        "amount": [cycle(AMOUNTS, index) for index in range(count)],
        "ratio": [cycle(RATIOS, index) for index in range(count)],
        "at": [cycle(TIMES, index) for index in range(count)],
        "local_at": [
            None if value is None else value.replace(tzinfo=None)
            for value in map(TIMES.__getitem__, [index % len(TIMES) for index in range(count)])
        ],
        "day": [cycle(DAYS, index) for index in range(count)],
        **{
            name: [
                None if index % 9 == 0 else (low if index % 2 else high) - index % 3 * (1 if index % 2 == 0 else -1)
                for index in range(count)
            ]
            for name, (low, high) in INTEGERS.items()
        },
        "score": [cycle(SCORES, index) for index in range(count)],
        "flag": [None if index % 3 == 0 else index % 2 == 0 for index in range(count)],
        "body": [None if cycle(BODIES, index) is None else json.dumps(cycle(BODIES, index)) for index in range(count)],
    }
    arrays = {name: pa.array(values[name], arrow_type(parse_column_type(kind))) for name, kind in COLUMNS.items()}
    arrays["_firehose_object"] = pa.array([f"obj-{index // 100}" for index in range(count)])
    arrays["_firehose_offset"] = pa.array(range(count), pa.int64())
    return pa.table(arrays)


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
        row["body"] = None if row["body"] is None else json.loads(row["body"])
        rows.append(tuple(row.values()))
    return rows


def read_back(cursor) -> list[tuple]:
    names = ", ".join(f'"{name}"' for name in COLUMNS).replace('"body"', '"body"::text')
    cursor.execute(
        f'SELECT {names}, "_firehose_object", "_firehose_offset" FROM copy_test_staging ORDER BY "_firehose_offset"'
    )
    rows = []
    for row in cursor.fetchall():
        row = list(row)
        body = list(COLUMNS).index("body")
        row[body] = None if row[body] is None else json.loads(row[body])
        at = list(COLUMNS).index("at")
        row[at] = None if row[at] is None else row[at].astimezone(UTC)
        rows.append(tuple(row))
    return rows


def copy_stage(driver: str, batches) -> list[tuple]:
    connect = psycopg.connect if driver == "psycopg" else psycopg2.connect
    conn = connect(os.environ["WAREHOUSE_URL"])
    try:
        with conn.cursor() as cursor:
            cursor.execute("SET TIME ZONE 'America/Los_Angeles'")  # a session zone must not shift anything
            create_staging(cursor)
            Postgres().copy_into_staging(cursor, context(), Stage("bucket", "stage.parquet", batches))
            loaded = read_back(cursor)
        conn.rollback()
    finally:
        conn.close()
    return loaded


@pytest.mark.parametrize("driver", ["psycopg", "psycopg2"])
def test_copy_streams_every_batch_exactly(stack_up, driver: str) -> None:
    table = stage_rows(1_000)
    handed_out: list[int] = []

    def batches() -> Iterator[pa.RecordBatch]:
        for batch in table.to_batches(max_chunksize=128):
            handed_out.append(batch.num_rows)
            yield batch

    loaded = copy_stage(driver, batches)

    assert len(handed_out) == 8 and sum(handed_out) == 1_000  # the stage went over in batches, not at once
    assert loaded == expected_rows(table)
    notes = [row[1] for row in loaded]
    assert notes.count("") == notes.count(None) > 0  # the empty string and NULL stay apart
    assert "NULL" in notes and "\\N" in notes
    assert {row[list(COLUMNS).index("large")] for row in loaded} >= {-(2**63), 2**63 - 1}
    assert any(row[list(COLUMNS).index("at")] == TIMES[1] for row in loaded)


@pytest.mark.parametrize("driver", ["psycopg", "psycopg2"])
def test_copy_of_a_stage_without_batches_loads_nothing(stack_up, driver: str) -> None:
    assert copy_stage(driver, lambda: iter(())) == []
