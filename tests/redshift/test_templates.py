"""Every SQL template, rendered with the Redshift dialect, is SQL that Redshift's grammar accepts.

These tests stand in for Amazon Redshift, which cannot run here: sqlglot's Redshift
dialect and sqlfluff's parse each rendered statement (sqlfluff knows Redshift's reserved words
and COPY options, which sqlglot lets through), and the rendering is checked for what
PostgreSQL accepts but Redshift does not.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import sqlglot
from sqlfluff.core import FluffConfig, Linter
from sqlglot import exp
from sqlglot.errors import ParseError

from firehose_loader.config import MAX_VARCHAR
from firehose_loader.load import template_context
from firehose_loader.warehouse.render import SQL_DIR, render, render_statements
from tests.redshift.redshift_setup import COPY_ROLE, DIALECT, SETTINGS, STREAMS

pytestmark = pytest.mark.redshift

STAGE_URI = (
    "s3://firehose-orders/firehose-loader/staging/orders/2026/03/01/10/"
    "ingest/scheduled__2026-03-01T11_00_00_00_00/extract_hour.try-0001.parquet"
)
# Pieces of statements, not statements: checked inside the statements that embed them.
FRAGMENTS = {"redshift/table_options.sql", "redshift/insert_expression.sql"}
# Never sent to Redshift: the PostgreSQL dialect's own templates, and the demo's damage simulator.
LOCAL_ONLY = {"postgres", "simulate"}
TEMPLATES = sorted(
    str(path.relative_to(SQL_DIR))
    for path in SQL_DIR.rglob("*.sql")
    if path.relative_to(SQL_DIR).parts[0] not in LOCAL_ONLY and str(path.relative_to(SQL_DIR)) not in FRAGMENTS
)
LOCK = re.compile(r'LOCK "[a-z_][a-z0-9_]*"\."[a-z_][a-z0-9_]*"(, "[a-z_][a-z0-9_]*"\."[a-z_][a-z0-9_]*")*')


def redshift_context(stream_name: str) -> dict[str, Any]:
    # A split hour's context: the templates render their parts-table statements too (create_staging.sql).
    context = template_context(STREAMS[stream_name], SETTINGS, DIALECT, split=True)
    return {
        **context,
        "lock_statement": DIALECT.lock_statement(context),
        "manifest_uri": f"{STAGE_URI}.manifest",
        "iam_role": COPY_ROLE,
        # What the column templates (add_column.sql, redshift/alter_column_type.sql) take: the
        # first column, and the change Redshift cannot make in place (the longer form).
        "name": context["columns"][0]["name"],
        "type": context["columns"][0]["type"],
        "widen": False,
    }


def rendered(template: str, stream_name: str) -> list[str]:
    return render_statements(template, **redshift_context(stream_name))


RENDERED = {(template, name): rendered(template, name) for template in TEMPLATES for name in STREAMS}
ALL_TEXT = "\n".join(statement for statements in RENDERED.values() for statement in statements)


def test_the_templates_include_the_shared_and_the_redshift_ones() -> None:
    assert {"create_loader_tables.sql", "create_target.sql", "create_staging.sql", "merge.sql"} <= set(TEMPLATES)
    assert {"redshift/copy_staging.sql", "redshift/lock_loader_tables.sql", "dedupe_parts.sql"} <= set(TEMPLATES)


@pytest.mark.parametrize("stream_name", list(STREAMS))
@pytest.mark.parametrize("template", TEMPLATES)
def test_every_statement_parses_as_redshift(template: str, stream_name: str) -> None:
    """Stands in for Redshift: sqlglot's Redshift grammar must accept every statement the template renders."""
    statements = RENDERED[(template, stream_name)]
    assert statements, f"{template} rendered nothing"
    for statement in statements:
        try:
            expression = sqlglot.parse_one(statement, read="redshift")
        except ParseError as exc:
            pytest.fail(f"{template} ({stream_name}) does not parse as Redshift SQL: {exc}\n{statement}")
        if isinstance(expression, exp.Command):
            # sqlglot keeps statements it does not model as an opaque command: only LOCK may be one.
            assert LOCK.fullmatch(statement), f"{template}: sqlglot did not understand\n{statement}"


@pytest.mark.parametrize(
    "forbidden",
    [r"\bCOLLATE\b", r"\bjsonb\b", r"\bON\s+CONFLICT\b", r"\bTRUNCATE\b", r"\bCREATE\s+(UNIQUE\s+)?INDEX\b"],
)
def test_no_postgresql_only_syntax(forbidden: str) -> None:
    """Stands in for Redshift: what PostgreSQL accepts and Redshift refuses (or ignores) never appears."""
    assert not re.search(forbidden, ALL_TEXT, re.IGNORECASE), forbidden


def test_no_column_is_declared_text() -> None:
    """Stands in for Redshift: there, text means varchar(256); the dialect declares byte lengths instead."""
    assert not re.search(r'"\s+text\b', ALL_TEXT, re.IGNORECASE)


def column_line(statement: str, name: str) -> str:
    return next(line.strip().rstrip(",") for line in statement.splitlines() if line.strip().startswith(f'"{name}" '))


def test_target_types_distribution_and_sort_keys() -> None:
    """Stands in for Redshift: the stream's table gets Redshift types, byte lengths, a DISTKEY and a SORTKEY."""
    (create,) = [s for s in RENDERED[("create_target.sql", "rich")] if s.startswith("CREATE TABLE")]
    expected = {
        "order_id": "bigint NOT NULL",
        "line_no": "smallint NOT NULL",
        "qty": "integer",
        "price": "numeric(12,2)",
        "weight": "double precision",
        "gift": "boolean",
        "sku": "varchar(128)",  # varchar(32): 32 characters take at most 128 bytes
        "note": f"varchar({MAX_VARCHAR})",
        "ship_date": "date",
        "created_local": "timestamp",
        "updated_at": "timestamptz",
        "attrs": "super",
        "_firehose_object": "varchar(1024)",
        "_firehose_offset": "bigint",
    }
    for name, declared in expected.items():
        assert column_line(create, name) == f'"{name}" {declared}'
    assert create.endswith(') DISTSTYLE KEY DISTKEY ("order_id") COMPOUND SORTKEY ("updated_at")')
    (keywords,) = [s for s in RENDERED[("create_target.sql", "keywords")] if s.startswith("CREATE TABLE")]
    assert column_line(keywords, "limit") == f'"limit" varchar({MAX_VARCHAR})'  # 4 x 20000 is capped
    assert keywords.endswith(') DISTSTYLE KEY DISTKEY ("user") COMPOUND SORTKEY ("group")')


def test_json_is_staged_as_text_and_parsed_into_super() -> None:
    """Stands in for Redshift: COPY loads the JSON text into varchar; the merge's INSERT parses it with JSON_PARSE."""
    (staging,) = [s for s in RENDERED[("create_staging.sql", "rich")] if 'TABLE "firehose_staging"' in s]
    assert column_line(staging, "attrs") == f'"attrs" varchar({MAX_VARCHAR})'
    assert column_line(staging, "sku") == '"sku" varchar(128)'
    assert column_line(staging, "_firehose_object") == '"_firehose_object" varchar(1024) NOT NULL'
    (insert,) = [s for s in RENDERED[("merge.sql", "rich")] if s.startswith('INSERT INTO "sales"."order_lines"')]
    select = insert.split("SELECT", 1)[1]
    assert 'JSON_PARSE(s."attrs")' in select
    assert select.count("JSON_PARSE") == 1
    assert 's."sku", ' in select and 's."updated_at", ' in select
    parsed = sqlglot.parse_one(insert, read="redshift")
    assert len(parsed.expression.expressions) == len(STREAMS["rich"].columns) + 2  # + object, offset
    merge = "\n".join(RENDERED[("merge.sql", "keywords")])
    assert 'JSON_PARSE(s."super")' in merge


def test_copy_uses_the_iam_role_the_stage_manifest_and_parquet() -> None:
    """Stands in for Redshift: the COPY statement, as sent."""
    assert RENDERED[("redshift/copy_staging.sql", "rich")] == [
        f"""COPY "firehose_staging"\nFROM '{STAGE_URI}.manifest'\nIAM_ROLE '{COPY_ROLE}'\nFORMAT AS PARQUET\nMANIFEST"""
    ]
    copy = sqlglot.parse_one(RENDERED[("redshift/copy_staging.sql", "rich")][0], read="redshift")
    assert isinstance(copy, exp.Copy)
    default = render("redshift/copy_staging.sql", **{**redshift_context("rich"), "iam_role": "default"})
    assert "IAM_ROLE default\n" in default


def test_lock_takes_the_loader_tables_in_a_fixed_order_and_never_the_target() -> None:
    """Stands in for Redshift: one LOCK statement, of the ledger, load_hours, schema_drift and object_commits (and realtime_quality,
    which a stream with a real-time writer writes in the same transaction). Redshift's LOCK is
    ACCESS EXCLUSIVE, so the target that readers use is not in it: a reader is never blocked."""
    (lock, *_) = RENDERED[("merge.sql", "rich")]
    assert (
        lock
        == 'LOCK "firehose_loader"."ledger", "firehose_loader"."load_hours", "firehose_loader"."schema_drift", "firehose_loader"."object_commits", "firehose_loader"."realtime_quality"'
    )
    (lock, *_) = RENDERED[("merge.sql", "keywords")]
    assert lock == (
        'LOCK "firehose_loader"."ledger", "firehose_loader"."load_hours", "firehose_loader"."schema_drift",'
        ' "firehose_loader"."object_commits"'
    )
    assert '"select"."from"' not in lock


def test_no_statement_carries_a_literal_value_but_the_copy_source_and_role() -> None:
    """Stands in for Redshift: values travel as bind parameters; only COPY's source and role are literals."""
    literals = set(re.findall(r"'([^']*)'", ALL_TEXT)) - {f"{STAGE_URI}.manifest", COPY_ROLE}
    assert literals and all(re.fullmatch(r"[a-z_]+", literal) for literal in literals), literals  # status words


@pytest.fixture(scope="module")
def sqlfluff_redshift() -> Linter:
    return Linter(config=FluffConfig(overrides={"dialect": "redshift", "templater": "raw"}))


def sqlfluff_errors(linter: Linter, statement: str) -> list[str]:
    """What sqlfluff's Redshift grammar cannot parse in the statement (its bind parameters read as NULL)."""
    text = re.sub(r"%\(\w+\)s", "NULL", statement)
    return [violation.desc() for violation in linter.parse_string(text + ";\n").violations]


@pytest.mark.parametrize("stream_name", list(STREAMS))
@pytest.mark.parametrize("template", TEMPLATES)
def test_every_statement_parses_with_sqlfluffs_redshift_grammar(
    template: str, stream_name: str, sqlfluff_redshift: Linter
) -> None:
    """Stands in for Redshift: sqlfluff's grammar accepts every statement (reserved words quoted, COPY options known)."""
    for statement in RENDERED[(template, stream_name)]:
        assert not sqlfluff_errors(sqlfluff_redshift, statement), statement


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT open FROM t",  # a Redshift reserved word, unquoted
        "COPY \"t\" FROM 's3://b/k' IAM_ROLE 'arn:aws:iam::123456789012:role/r' FORMAT AS PARQUETT",
        "SELECT 1 FROM",
    ],
)
def test_sqlfluff_refuses_what_sqlglot_lets_through(statement: str, sqlfluff_redshift: Linter) -> None:
    """The check above can fail, where sqlglot's would not for the first two."""
    assert sqlfluff_errors(sqlfluff_redshift, statement)


@pytest.mark.parametrize(
    "statement",
    ['CREATE TABLE "t" ("a" bigint', "SELECT FROM WHERE", 'DELETE "t" USING WHERE'],
)
def test_the_parser_refuses_broken_sql(statement: str) -> None:
    """The check above can fail: sqlglot's Redshift grammar raises on malformed statements."""
    with pytest.raises(ParseError):
        sqlglot.parse_one(statement, read="redshift")


def test_templates_directory_has_no_stray_redshift_template() -> None:
    """Every template under redshift/ is either rendered above or a fragment checked inside a statement."""
    on_disk = {str(path.relative_to(SQL_DIR)) for path in Path(SQL_DIR, "redshift").glob("*.sql")}
    assert on_disk <= set(TEMPLATES) | FRAGMENTS
