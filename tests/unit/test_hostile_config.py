"""Hostile configuration is refused before any SQL runs, with a message naming the stream and the field.

tests/unit/test_config.py covers `x; DROP TABLE y`, `"quoted"`, `café`, uppercase and prefixes
without their trailing slash in column and table names; tests/dags/test_dag_integrity.py shows the
refusal is a DAG import error (no DAG, so no task and no SQL). Added here: look-alike unicode
(homoglyphs, full-width letters, zero-width and non-breaking characters) in every identifier
field, the decision that SQL reserved words are accepted (every identifier is quoted), and the
second line of defence: a stream that bypassed validation makes ensure_tables (the first task
that touches the warehouse) raise before it executes a single statement.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from firehose_loader.config import ColumnType, ConfigError, Settings, parse_config
from firehose_loader.load import ensure_tables, merge_hour
from firehose_loader.warehouse.postgres import Postgres
from tests.unit.stream_factory import make_stream, stream_entry

HOSTILE_NAMES = [
    pytest.param("\u043erders", id="cyrillic-o-homoglyph"),
    pytest.param("\uff4frders", id="fullwidth-o"),
    pytest.param("or\u200bders", id="zero-width-space"),
    pytest.param("or\u00a0ders", id="no-break-space"),
    pytest.param("orders\u0000", id="nul"),
    pytest.param("\u0131d", id="dotless-i"),
    pytest.param("x; DROP TABLE y", id="injection"),
    pytest.param('"quoted"', id="quoted"),
    pytest.param("a.b", id="dot"),
    pytest.param("", id="empty"),
]


# The field a message names for each place a name can go.
REPORTED_FIELD = {"schema": "table", "column": "columns"}


def refusal(entry: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config({"streams": [entry]})
    return str(caught.value)


@pytest.mark.parametrize("name", HOSTILE_NAMES)
@pytest.mark.parametrize("field", ["schema", "table", "column", "key", "order_by"])
def test_hostile_identifier_in_any_field_is_refused_naming_stream_and_field(field: str, name: str) -> None:
    entry = stream_entry()
    if field == "schema":
        entry["table"] = f"{name}.order_lines"
    elif field == "table":
        entry["table"] = f"sales.{name}"
    elif field == "column":
        entry["columns"] = {**entry["columns"], name: "text"}
    elif field == "key":
        entry["key"] = ["order_id", name]
    else:
        entry["order_by"] = name
    message = refusal(entry)
    assert message.startswith("stream 'orders'")
    assert f"'{REPORTED_FIELD.get(field, field)}'" in message
    assert repr(name)[1:-1] in message  # the offending value, escaped so that it can be seen


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_loader_schema_is_refused(name: str) -> None:
    with pytest.raises(ConfigError, match="loader_schema"):
        parse_config({"streams": [stream_entry()], "loader_schema": name})


def test_sql_reserved_words_are_accepted_as_identifiers() -> None:
    """Decision: accepted. Every identifier reaches SQL double-quoted (tests/unit/test_sql.py), and
    tests/integration/test_reserved_words.py loads and audits such a stream end to end."""
    stream = make_stream(
        table="select.order",
        key=["from", "user"],
        order_by="order",
        columns={"from": "bigint", "user": "varchar(8)", "order": "timestamptz", "group": "json", "table": "text"},
    )
    assert (stream.schema, stream.table, stream.key, stream.order_by) == ("select", "order", ("from", "user"), "order")


class RecordingConnection:
    """A DB-API connection that records what would be executed."""

    def __init__(self) -> None:
        self.executed: list[str] = []

    def cursor(self) -> RecordingConnection:
        return self

    def __enter__(self) -> RecordingConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def execute(self, statement: str, *args: Any) -> None:
        self.executed.append(statement)

    def executemany(self, statement: str, *args: Any) -> None:
        self.executed.append(statement)

    def fetchall(self) -> list:
        return []  # the catalog knows no table and the hour no ledger: no type check, nothing gone

    def fetchone(self) -> None:
        return None  # no row: ensure_tables' catalog check then adds the column

    def commit(self) -> None:
        self.executed.append("COMMIT")

    def rollback(self) -> None:
        self.executed.append("ROLLBACK")


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"schema": "x; DROP TABLE y"}, id="schema"),
        pytest.param({"table": 'order_lines"; DROP TABLE y; --'}, id="table"),
        pytest.param({"key": ("order_id", "line no")}, id="key"),
        pytest.param({"columns": {"order_id": ColumnType("bigint"), "naïve": ColumnType("text")}}, id="column"),
    ],
)
def test_a_stream_that_bypassed_validation_runs_no_sql_at_all(change: dict[str, Any]) -> None:
    stream = dataclasses.replace(make_stream(), **change)
    conn = RecordingConnection()
    with pytest.raises(ValueError, match="refusing to put"):
        ensure_tables(conn, stream, Settings(), Postgres())
    assert conn.executed == []


def test_an_unvalidated_order_by_never_reaches_the_merge() -> None:
    """order_by appears in no DDL on PostgreSQL; the merge renders it, and refuses before any statement runs."""
    stream = dataclasses.replace(make_stream(), order_by="updated_at; DROP TABLE y")
    manifest = {"hour": "2026-03-01T10:00:00+00:00", "stage_key": None, "error_objects": 0, "objects": []}
    conn = RecordingConnection()
    with pytest.raises(ValueError, match="refusing to put"):
        merge_hour(conn, stream, Settings(), Postgres(), manifest, None, "run")
    # Every statement of the merge is rendered before the first one runs: nothing was sent at all.
    assert conn.executed == []


def test_a_valid_stream_runs_its_ddl_through_the_same_path() -> None:
    conn = RecordingConnection()
    ensure_tables(conn, make_stream(), Settings(), Postgres())
    assert any('CREATE TABLE IF NOT EXISTS "sales"."order_lines"' in statement for statement in conn.executed)
    assert conn.executed[-1] == "COMMIT"
