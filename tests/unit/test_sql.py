"""SQL rendering: only validated identifiers get in, always double-quoted, and no statement comes out empty."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest

from firehose_loader.config import ColumnType, Settings, Stream
from firehose_loader.load import template_context
from firehose_loader.warehouse.postgres import Postgres
from firehose_loader.warehouse.redshift import Redshift
from firehose_loader.warehouse.render import quote_identifier, quote_qualified, render_statements
from tests.unit.stream_factory import make_stream

DIALECT = Postgres()
SETTINGS = Settings(loader_schema="loader_meta")


@pytest.mark.parametrize("name", ["a", "_", "order_id", "x1", "a" * 63, "select", "_firehose_object"])
def test_quote_identifier_accepts_validated_names(name: str) -> None:
    assert quote_identifier(name) == f'"{name}"'


@pytest.mark.parametrize(
    "name",
    [
        "x; DROP TABLE y",
        '"quoted"',
        'a"b',
        "café",
        "Upper",
        "",
        "1abc",
        "a" * 64,
        "a b",
        "a-b",
        "a.b",
        "a--b",
        "abc\n",
        "abc\r\n",
        "\nabc",
        "ab\x00c",
        None,
        5,
        b"abc",
        ["abc"],
    ],
)
def test_quote_identifier_refuses_anything_else(name: Any) -> None:
    with pytest.raises(ValueError):
        quote_identifier(name)


def test_quote_qualified() -> None:
    assert quote_qualified(("sales", "order_lines")) == '"sales"."order_lines"'
    with pytest.raises(ValueError):
        quote_qualified(("sales", "x; DROP TABLE y"))


# --- rendered templates ---------------------------------------------------------------------------------------


def context_for(stream: Stream, with_lock: bool = True) -> dict[str, Any]:
    context = template_context(stream, SETTINGS, DIALECT)
    if with_lock:
        context["lock_statement"] = DIALECT.lock_statement(context)
    return context


def rendered(stream: Stream) -> dict[str, list[str]]:
    context = context_for(stream)
    templates = ["create_loader_tables.sql", "create_target.sql", "create_staging.sql", "merge.sql"]
    templates += ["postgres/copy_staging.sql", "postgres/copy_winners.sql"]
    templates += list(DIALECT.extra_ddl_templates())
    return {template: render_statements(template, **context) for template in templates}


def without_quoted_parts(statement: str) -> str:
    """The statement with quoted identifiers, string literals and bind parameters removed."""
    statement = re.sub(r'"[^"]*"', " ", statement)
    statement = re.sub(r"'[^']*'", " ", statement)
    return re.sub(r"%\(\w+\)s", " ", statement)


def stream_identifiers(stream: Stream) -> set[str]:
    return {stream.schema, stream.table, *stream.columns, *stream.key, stream.order_by}


STREAM = make_stream()
RENDERED = rendered(STREAM)  # rendered once: sqlparse is slow enough to matter when repeated per test


@pytest.mark.parametrize("template", list(RENDERED))
def test_no_statement_is_empty(template: str) -> None:
    statements = RENDERED[template]
    assert statements
    for statement in statements:
        assert statement.strip()
        assert not statement.rstrip().endswith(";")
        assert re.match(r"^\s*[A-Z]", statement), statement  # starts with a keyword, not a comment or a blank
        assert "--" not in statement
        assert "{{" not in statement and "{%" not in statement and "{#" not in statement


@pytest.mark.parametrize("template", list(RENDERED))
def test_stream_identifiers_never_appear_unquoted(template: str) -> None:
    identifiers = stream_identifiers(STREAM) | {SETTINGS.loader_schema}
    for statement in RENDERED[template]:
        bare_words = set(re.findall(r"\b\w+\b", without_quoted_parts(statement)))
        assert not bare_words & identifiers, statement


def quoted_names(statements: list[str]) -> set[str]:
    return set(re.findall(r'"([^"]*)"', "\n".join(statements)))


def test_create_target_quotes_every_stream_identifier() -> None:
    statements = RENDERED["create_target.sql"]
    assert stream_identifiers(STREAM) <= quoted_names(statements)
    create_table = next(statement for statement in statements if "CREATE TABLE" in statement)
    assert f'"{STREAM.schema}"."{STREAM.table}"' in create_table
    for name, column_type in STREAM.columns.items():
        expected = "jsonb" if column_type.name == "json" else str(column_type)
        line = next(line for line in create_table.splitlines() if f'"{name}"' in line)
        assert expected in line
        assert ("NOT NULL" in line) == (name in STREAM.key)


def test_postgres_stages_only_what_the_merge_plan_reads() -> None:
    (create,) = [s for s in RENDERED["create_staging.sql"] if s.startswith('CREATE TEMPORARY TABLE "firehose_staging"')]
    plan_columns = {*STREAM.key, STREAM.order_by, "_firehose_object", "_firehose_offset"}
    assert quoted_names([create]) == {"firehose_staging", *plan_columns, "C"}
    (copy,) = RENDERED["postgres/copy_staging.sql"]
    assert quoted_names([copy]) == {"firehose_staging", *plan_columns}


def test_the_winners_go_into_the_target_with_every_column() -> None:
    (copy,) = RENDERED["postgres/copy_winners.sql"]
    assert copy.startswith(f'COPY "{STREAM.schema}"."{STREAM.table}" (')
    assert quoted_names([copy]) == {
        STREAM.schema,
        STREAM.table,
        *STREAM.columns,
        "_firehose_object",
        "_firehose_offset",
    }
    assert not any(s.startswith(f'INSERT INTO "{STREAM.schema}"') for s in RENDERED["merge.sql"])


def test_create_loader_tables_quote_loader_schema() -> None:
    statements = RENDERED["create_loader_tables.sql"]
    assert SETTINGS.loader_schema in quoted_names(statements)
    assert any(f'"{SETTINGS.loader_schema}"."ledger"' in statement for statement in statements)


def test_merge_quotes_key_order_by_and_columns() -> None:
    statements = RENDERED["merge.sql"]
    names = quoted_names(statements + RENDERED["postgres/copy_winners.sql"])
    assert stream_identifiers(STREAM) <= names
    assert SETTINGS.loader_schema in names
    assert statements[0].startswith("LOCK TABLE")
    assert f'"{STREAM.schema}"."{STREAM.table}"' in statements[0]
    text = "\n".join(statements)
    for column in STREAM.key:
        assert f's."{column}"' in text
    assert f's."{STREAM.order_by}" > c."{STREAM.order_by}"' in text
    # values travel as bind parameters, never in the text
    assert "%(stream)s" in text and "%(hour)s" in text and "%(run_id)s" in text
    assert STREAM.name not in without_quoted_parts(text).split()


def test_sql_keywords_as_identifiers_are_quoted() -> None:
    stream = make_stream(
        table="select.from",
        key=["user", "order"],
        order_by="group",
        columns={"user": "bigint", "order": "integer", "group": "timestamptz", "table": "text"},
    )
    statements = rendered(stream)
    names = quoted_names([statement for group in statements.values() for statement in group])
    assert {"select", "from", "user", "order", "group", "table"} <= names
    merge = "\n".join(statements["merge.sql"])
    assert 'PARTITION BY t."user", t."order"' in merge
    assert 's."group" > c."group"' in merge


def test_composite_key_joins_on_every_key_column() -> None:
    merge = "\n".join(RENDERED["merge.sql"])
    expected = " AND ".join(f'c."{column}" = s."{column}"' for column in STREAM.key)
    assert f"ON {expected}" in merge


def test_long_table_name_gives_a_valid_index_name() -> None:
    stream = make_stream(table=f"sales.{'t' * 63}")
    (statement,) = render_statements("postgres/create_key_index.sql", **context_for(stream, with_lock=False))
    index_name = re.search(r'CREATE INDEX IF NOT EXISTS "([^"]*)"', statement).group(1)
    assert len(index_name) <= 63


# --- an unvalidated name is refused at render time ---------------------------------------------------------------


HOSTILE = "x; DROP TABLE y"


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"schema": HOSTILE}, id="schema"),
        pytest.param({"table": 'a"b'}, id="table"),
        pytest.param({"columns": {**STREAM.columns, HOSTILE: ColumnType("text")}}, id="column"),
        pytest.param({"key": (HOSTILE,)}, id="key"),
        pytest.param({"order_by": "Updated_At"}, id="order-by"),
    ],
)
def test_unvalidated_stream_names_are_refused(change: dict[str, Any]) -> None:
    stream = dataclasses.replace(STREAM, **change)
    with pytest.raises(ValueError, match="not a validated identifier"):
        context = template_context(stream, SETTINGS, DIALECT)  # renders each column's insert expression
        for template in ("create_target.sql", "create_staging.sql"):
            render_statements(template, **context)
        context["lock_statement"] = DIALECT.lock_statement(context)
        render_statements("merge.sql", **context)


def test_unvalidated_loader_schema_is_refused() -> None:
    context = template_context(STREAM, Settings(loader_schema=HOSTILE), DIALECT)
    with pytest.raises(ValueError, match="not a validated identifier"):
        render_statements("create_loader_tables.sql", **context)


# --- the target relies on no key constraint (Redshift does not enforce them) ----------------------------------------
# Redshift does not enforce primary keys: nothing the loader promises may depend on them.
#
# On both warehouses the target has no PRIMARY KEY or UNIQUE constraint (the real-time path writes
# duplicates that the audit must be able to see), so "one row per key" comes from the merge: per
# key it deletes every copy and inserts the winner, under the table lock. The loader tables declare
# primary keys as documentation only: their rows are replaced DELETE-then-INSERT in the same locked
# transaction, never inserted blindly. The integration tests run on PostgreSQL without any
# constraint on the target, which is exactly what Redshift gives.


DIALECTS = [Postgres(), Redshift(iam_role="arn:aws:iam::123456789012:role/firehose-loader-copy")]


def statements(template: str, dialect) -> list[str]:
    context = template_context(make_stream(), Settings(), dialect)
    return render_statements(template, **{**context, "lock_statement": dialect.lock_statement(context)})


@pytest.mark.parametrize("dialect", DIALECTS, ids=lambda dialect: dialect.name)
def test_the_target_relies_on_no_constraint(dialect) -> None:
    (create,) = [s for s in statements("create_target.sql", dialect) if s.startswith("CREATE TABLE")]
    assert not re.search(r"PRIMARY\s+KEY|UNIQUE|REFERENCES", create, re.IGNORECASE)


@pytest.mark.parametrize("dialect", DIALECTS, ids=lambda dialect: dialect.name)
def test_every_write_to_a_keyed_table_replaces_under_the_lock(dialect) -> None:
    merge = statements("merge.sql", dialect)
    if not dialect.stages_rows:  # the dialect COPYs the winners after merge.sql, in its transaction
        merge += statements("postgres/copy_winners.sql", dialect)
    assert merge[0].startswith("LOCK")
    writes = [(VERBS[match.group(1).upper()], match.group(2)) for s in merge if (match := WRITE.match(s))]
    # target: delete the keys that change, then insert; ledger and load_hours: delete the hour, then insert
    tables = [table for _verb, table in writes]
    first_commits = '"firehose_loader"."object_commits"'
    assert set(tables) == {
        '"sales"."order_lines"',
        '"firehose_loader"."ledger"',
        '"firehose_loader"."load_hours"',
        first_commits,
    }
    for table in dict.fromkeys(tables):
        verbs = [verb for verb, name in writes if name == table]
        # the ledger's one in-place change marks the objects a later listing lacks as gone (no count changes);
        # object_commits is written once per object version: inserted only where absent, under the same lock.
        if table == '"firehose_loader"."ledger"':
            expected = ["UPDATE", "DELETE", "INSERT"]
        elif table == first_commits:
            expected = ["INSERT"]
        else:
            expected = ["DELETE", "INSERT"]
        assert verbs == expected, (table, verbs)
    (insert_once,) = [s for s in merge if (match := WRITE.match(s)) and match.group(2) == first_commits]
    assert "WHERE NOT EXISTS" in insert_once
    (marks_gone,) = [s for s in merge if re.match(r"\s*UPDATE\b", s, re.IGNORECASE)]
    assert re.match(
        r"\s*UPDATE \S+\nSET status = 'gone', message = CAST\(%\(gone_message\)s AS varchar\(1024\)\)\nWHERE ",
        marks_gone,
    ), marks_gone
    # no other in-place UPDATE, no TRUNCATE (an implicit commit on Redshift), no COMMIT midway
    assert not any(re.match(r"\s*(TRUNCATE|COMMIT|END)\b", s, re.IGNORECASE) for s in merge)


WRITE = re.compile(r'\s*(DELETE FROM|INSERT INTO|COPY|UPDATE)\s+("[^"]+"\."[^"]+")', re.IGNORECASE)
VERBS = {"DELETE FROM": "DELETE", "INSERT INTO": "INSERT", "COPY": "INSERT", "UPDATE": "UPDATE"}
