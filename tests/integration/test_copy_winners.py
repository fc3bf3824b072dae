"""The PostgreSQL dialect's COPY of the merge's winners into the target, against the real server, with both drivers.

The stage is handed over one record batch at a time in PostgreSQL's binary COPY format (only one
batch and its encoding are in memory); every value of every column type the streams file accepts
must arrive exactly, whichever batch it is in and whichever driver the provider uses; the rows the
merge plan keeps out are not sent, and a target column of another type is named.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal

import psycopg
import psycopg2
import pyarrow as pa
import pytest

from firehose_loader.config import parse_column_type
from firehose_loader.records.coercion import arrow_type
from firehose_loader.warehouse.postgres import Postgres
from firehose_loader.warehouse.protocol import Stage, TargetTypeError
from firehose_loader.warehouse.target_types import check_target_types

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


TARGET = ("copy_test", "events")


def context() -> dict:
    dialect = Postgres()
    columns = [
        {
            "name": name,
            "type": dialect.column_type(parse_column_type(kind)),
            "staging_type": dialect.staging_type(parse_column_type(kind)),
        }
        for name, kind in COLUMNS.items()
    ]
    return {
        "target": TARGET,
        "plan": "firehose_plan",
        "columns": columns,
        "insert_columns": columns,
        "stages_rows": False,
    }


def create_target(cursor, types: dict[str, str] | None = None) -> None:
    """The target table as ensure_tables makes it (or with other ``types``), and a merge plan for it."""
    types = {column["name"]: column["type"] for column in context()["columns"]} | (types or {})
    columns = ", ".join(f'"{name}" {kind}' for name, kind in types.items())
    cursor.execute('CREATE SCHEMA "copy_test"')
    cursor.execute(
        f'CREATE TABLE "copy_test"."events" ({columns}, "_firehose_object" varchar(1024) COLLATE "C", '
        '"_firehose_offset" bigint)'
    )
    cursor.execute(
        'CREATE TEMPORARY TABLE firehose_plan ("_firehose_object" text, "_firehose_offset" bigint, action text)'
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
        f'SELECT {names}, "_firehose_object", "_firehose_offset" FROM "copy_test"."events" ORDER BY "_firehose_offset"'
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


def insert_winners(driver: str, table: pa.Table, batches=None, actions=None, types=None) -> list[tuple]:
    """Postgres.insert_winners into a fresh target; the target's rows after it (rolled back).

    The merge plan holds every staged row, as merge.sql makes it: its action from ``actions``
    (by object and offset), 'insert' otherwise.
    """
    actions = actions or {}
    plan = [
        (
            row["_firehose_object"],
            row["_firehose_offset"],
            actions.get((row["_firehose_object"], row["_firehose_offset"]), "insert"),
        )
        for row in table.select(["_firehose_object", "_firehose_offset"]).to_pylist()
    ]
    batches = batches or (lambda: iter(table.to_batches(max_chunksize=128)))
    connect = psycopg.connect if driver == "psycopg" else psycopg2.connect
    conn = connect(os.environ["WAREHOUSE_URL"])
    try:
        with conn.cursor() as cursor:
            cursor.execute("SET TIME ZONE 'America/Los_Angeles'")  # a session zone must not shift anything
            create_target(cursor, types)
            cursor.executemany("INSERT INTO firehose_plan VALUES (%s, %s, %s)", plan)
            stage = Stage("bucket", "stage.parquet", lambda columns=None: batches())
            Postgres().insert_winners(cursor, context(), stage)
            loaded = read_back(cursor)
        conn.rollback()
    finally:
        conn.close()
    return loaded


def counted_batches(table: pa.Table, handed_out: list[int]):
    """The stage's batches of 128 rows; each batch handed out is noted in ``handed_out``."""

    def batches() -> Iterator[pa.RecordBatch]:
        for batch in table.to_batches(max_chunksize=128):
            handed_out.append(batch.num_rows)
            yield batch

    return batches


@pytest.mark.parametrize("driver", ["psycopg", "psycopg2"])
def test_copy_streams_every_batch_exactly(stack_up, driver: str) -> None:
    table = stage_rows(1_000)
    handed_out: list[int] = []
    batches = counted_batches(table, handed_out)

    loaded = insert_winners(driver, table, batches)

    assert len(handed_out) == 8 and sum(handed_out) == 1_000  # the stage went over in batches, not at once
    assert loaded == expected_rows(table)
    notes = [row[1] for row in loaded]
    assert notes.count("") == notes.count(None) > 0  # the empty string and NULL stay apart
    assert "NULL" in notes and "\\N" in notes
    assert {row[list(COLUMNS).index("large")] for row in loaded} >= {-(2**63), 2**63 - 1}
    assert any(row[list(COLUMNS).index("at")] == TIMES[1] for row in loaded)


@pytest.mark.parametrize("driver", ["psycopg", "psycopg2"])
def test_an_empty_stage_loads_nothing(stack_up, driver: str) -> None:
    assert insert_winners(driver, stage_rows(0)) == []


@pytest.mark.parametrize("driver", ["psycopg", "psycopg2"])
def test_rows_the_plan_does_not_insert_are_not_sent(stack_up, driver: str) -> None:
    table = stage_rows(1_000)
    actions = {("obj-0", 5): "unchanged", ("obj-1", 105): "superseded", ("obj-4", 400): "update"}
    actions |= {("obj-9", 999): "superseded", ("obj-9", 998): "unchanged"}

    loaded = insert_winners(driver, table, actions=actions)

    skipped = {5, 105, 998, 999}
    assert [row[-1] for row in loaded] == [offset for offset in range(1_000) if offset not in skipped]
    assert loaded == [row for row in expected_rows(table) if row[-1] not in skipped]


def test_a_rerun_that_inserts_nothing_does_not_read_the_stage(stack_up) -> None:
    table = stage_rows(300)
    handed_out: list[int] = []
    batches = counted_batches(table, handed_out)

    actions = {(f"obj-{offset // 100}", offset): "unchanged" for offset in range(300)}
    assert insert_winners("psycopg", table, batches, actions) == []
    assert handed_out == []


def check_types(types: dict[str, str], alter: str | None = None) -> None:
    """The target check against a fresh target with these column types (after ``alter``, if given); rolled back."""
    conn = psycopg.connect(os.environ["WAREHOUSE_URL"])
    try:
        with conn.cursor() as cursor:
            create_target(cursor, types)
            if alter is not None:
                for statement in alter.split("; "):
                    cursor.execute(statement)
            check_target_types(cursor, context(), Postgres())
    finally:
        conn.rollback()
        conn.close()


@pytest.mark.parametrize(
    ("types", "message"),
    [
        ({"medium": "bigint"}, "column 'medium' of copy_test.events is bigint but the streams file declares integer"),
        ({"at": "timestamp"}, "column 'at' of copy_test.events is timestamp but the streams file declares timestamptz"),
        ({"body": "json"}, "column 'body' of copy_test.events is json but the streams file declares jsonb"),
        # Modifiers: a shorter varchar fails the COPY once a long value arrives; another scale rounds.
        (
            {"event_id": "varchar(32)"},
            "column 'event_id' of copy_test.events is varchar(32) but the streams file declares varchar(64)",
        ),
        (
            {"amount": "numeric(14,4)"},
            "column 'amount' of copy_test.events is numeric(14,4) but the streams file declares numeric(12,2)",
        ),
        (
            {"ratio": "numeric(30,10)"},
            "column 'ratio' of copy_test.events is numeric(30,10) but the streams file declares numeric(38,10)",
        ),
        (
            {"note": "varchar(6000)"},
            "column 'note' of copy_test.events is varchar(6000) but the streams file declares text",
        ),
    ],
)
def test_a_target_column_of_another_type_or_size_is_named_with_the_alter_that_fixes_it(
    stack_up, types: dict, message: str
) -> None:
    with pytest.raises(TargetTypeError, match=re.escape(message)) as caught:
        check_types(types)
    # The message carries the exact statement; run as it is, it makes the target hold the declared type.
    alter = re.search(r"change the column \((ALTER TABLE .*)\) or the streams file", str(caught.value))
    assert alter is not None, str(caught.value)
    check_types(types, alter.group(1))


def test_a_wider_target_column_holds_every_declared_value(stack_up) -> None:
    """text and varchar take one binary form; a column wider than declared (the ALTER came first) is accepted."""
    check_types({"note": "varchar(65535)", "event_id": "text", "amount": "numeric(20,2)"})
    table = stage_rows(50)
    loaded = insert_winners("psycopg", table, types={"note": "varchar(65535)", "event_id": "varchar(128)"})
    assert loaded == expected_rows(table)


def test_a_target_without_a_declared_column_is_named(stack_up) -> None:
    conn = psycopg.connect(os.environ["WAREHOUSE_URL"])
    try:
        with conn.cursor() as cursor:
            create_target(cursor)
            cursor.execute('ALTER TABLE "copy_test"."events" DROP COLUMN "flag"')
            with pytest.raises(TargetTypeError, match=re.escape("table copy_test.events has no column 'flag'")):
                check_target_types(cursor, context(), Postgres())
    finally:
        conn.rollback()
        conn.close()
