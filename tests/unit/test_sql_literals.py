"""The SQL literals the Data API mode writes for bind values (render.sql_literal, render.inline_parameters),
the Data API's limits, its connection settings and the list of rows a batch COPYs, as pure functions.

tests/integration/test_sql_literals_postgres.py reads the same literals back from a real server.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
import sqlglot

from firehose_loader.load import OBJECTS_TABLE
from firehose_loader.warehouse.data_api import (
    MAX_STATEMENT_BYTES,
    MAX_STATEMENTS,
    DataApiConfigError,
    DataApiLimitError,
    DataApiTarget,
    check_batch_limits,
    client_token,
    rows_body,
    rows_insert,
    statement_error,
    top_level_items,
)
from firehose_loader.warehouse.render import LiteralError, inline_parameters, render, sql_literal


@pytest.mark.parametrize(
    ("value", "literal"),
    [
        (None, "NULL"),
        (True, "TRUE"),
        (False, "FALSE"),
        (0, "0"),
        (-42, "-42"),
        (2**63 - 1, "9223372036854775807"),
        (Decimal("12.50"), "12.50"),
        (Decimal("1E+3"), "1000"),
        (Decimal("-0.0001"), "-0.0001"),
        (1.5, "1.5"),
        (1e-05, "1e-05"),
        ("plain", "'plain'"),
        ("", "''"),
        ("it's", "'it''s'"),
        ("''", "''''''"),
        ("a\\b", "('a' || CHR(92) || 'b')"),
        ("\\\\", "(CHR(92) || CHR(92))"),
        ("\\'", "(CHR(92) || '''')"),
        ("é ✓ 😀", "'é ✓ 😀'"),
        ("two\nlines\ttab", "'two\nlines\ttab'"),
        ("%(run_id)s", "'%(run_id)s'"),
        (datetime(2026, 3, 1, 10, 0, 0), "'2026-03-01 10:00:00'"),
        (datetime(2026, 3, 1, 10, 0, 0, 123456), "'2026-03-01 10:00:00.123456'"),
        (date(2026, 3, 1), "'2026-03-01'"),
    ],
)
def test_a_value_becomes_its_literal(value, literal: str) -> None:
    assert sql_literal(value) == literal


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("a\x00b", "NUL"),
        ("\ud800", "not valid Unicode"),
        (float("nan"), "not a finite number"),
        (float("inf"), "not a finite number"),
        (Decimal("NaN"), "not a finite number"),
        (datetime(2026, 3, 1, 10, tzinfo=UTC), "naive UTC"),
        (b"bytes", "no literal for a bytes"),
        (["a"], "no literal for a list"),
    ],
)
def test_a_value_without_a_safe_literal_is_refused_by_name(value, reason: str) -> None:
    with pytest.raises(LiteralError, match=reason):
        sql_literal(value)


@pytest.mark.parametrize("text", ["x'; DROP TABLE t; --", "\\'; DROP TABLE t; --", "'\\", "\\"])
def test_no_string_can_end_its_literal_early(text: str) -> None:
    """Parsed back, the statement is one SELECT of one string: nothing in the value escaped the literal."""
    statement = inline_parameters("SELECT CAST(%(value)s AS varchar(64)) AS v", {"value": text})
    parsed = sqlglot.parse(statement, read="redshift")
    assert len(parsed) == 1 and isinstance(parsed[0], sqlglot.exp.Select)
    assert "DROP" not in [token.text.upper() for token in sqlglot.tokenize(statement, read="redshift")]


def test_parameters_are_inlined_and_a_doubled_percent_is_one() -> None:
    statement = "SELECT CAST(%(hour)s AS timestamp), CAST(%(n)s AS bigint) WHERE note LIKE 'a%%' AND x = %(n)s"
    assert inline_parameters(statement, {"hour": datetime(2026, 3, 1, 10), "n": 7}) == (
        "SELECT CAST('2026-03-01 10:00:00' AS timestamp), CAST(7 AS bigint) WHERE note LIKE 'a%' AND x = 7"
    )


@pytest.mark.parametrize(
    ("statement", "message"),
    [
        ("SELECT %(missing)s", r"no value for the parameter %\(missing\)s"),
        ("SELECT 1 WHERE a LIKE 'x%'", "a lone %"),
    ],
)
def test_a_placeholder_without_a_value_or_a_lone_percent_is_refused(statement: str, message: str) -> None:
    with pytest.raises(LiteralError, match=message):
        inline_parameters(statement, {"present": 1})


# --- the Data API's limits ------------------------------------------------------------------------------------------


def test_a_batch_of_40_statements_of_at_most_100_kb_passes() -> None:
    check_batch_limits(["SELECT 1"] * (MAX_STATEMENTS - 1) + ["SELECT '" + "x" * (MAX_STATEMENT_BYTES - 9) + "'"])


def test_a_41st_statement_is_refused_before_anything_is_sent() -> None:
    with pytest.raises(DataApiLimitError, match="at most 40 statements; this transaction has 41"):
        check_batch_limits(["SELECT 1"] * (MAX_STATEMENTS + 1))


def test_a_statement_over_100_kb_is_refused_naming_it() -> None:
    # 100 KB in UTF-8 bytes: 25,601 four-byte characters are 102,404 bytes.
    big = "SELECT '" + "😀" * 25_601 + "'"
    with pytest.raises(DataApiLimitError, match=r"statement 2 of the Data API batch is 102413 bytes"):
        check_batch_limits(["SELECT 1", big])


def test_the_client_token_is_the_statements_and_fits_the_api() -> None:
    token = client_token(["SELECT 1", "SELECT 2"])
    assert len(token) == 64 and token == client_token(["SELECT 1", "SELECT 2"])
    assert token != client_token(["SELECT 1SELECT 2"]) and token != client_token(["SELECT 2", "SELECT 1"])


# --- the connection's settings --------------------------------------------------------------------------------------


def test_a_cluster_with_a_db_user_and_a_workgroup_with_a_secret_give_the_api_arguments() -> None:
    cluster = DataApiTarget.from_extra({"cluster_identifier": "analytics", "database": "dev", "db_user": "loader"})
    assert cluster.api_arguments() == {"ClusterIdentifier": "analytics", "Database": "dev", "DbUser": "loader"}
    secret = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:loader-AbCdEf"
    serverless = DataApiTarget.from_extra(
        {"workgroup_name": "etl", "database": "dev", "secret_arn": secret, "aws_conn_id": "aws_loader"}
    )
    assert serverless.api_arguments() == {"WorkgroupName": "etl", "Database": "dev", "SecretArn": secret}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"cluster_identifier": "c", "db_user": "u"}, "'database' is required"),
        ({"database": "dev", "db_user": "u"}, "exactly one of 'cluster_identifier' and 'workgroup_name'"),
        ({"database": "dev", "cluster_identifier": "c", "workgroup_name": "w"}, "exactly one of"),
        ({"database": "dev", "cluster_identifier": "c"}, "exactly one of 'db_user' and 'secret_arn'"),
        ({"database": "dev", "workgroup_name": "w", "db_user": "u"}, "not 'db_user'"),
        ({"database": "dev", "workgroup_name": "w", "cluster": "c"}, r"unknown setting\(s\) \['cluster'\]"),
        ({"database": "", "workgroup_name": "w"}, "'database' must be a non-empty string"),
        ("dev", "expected an object"),
    ],
)
def test_a_wrong_data_api_extra_is_refused_by_field(extra, message: str) -> None:
    with pytest.raises(DataApiConfigError, match=message):
        DataApiTarget.from_extra(extra)


# --- lists of rows ----------------------------------------------------------------------------------------------------


def test_the_objects_insert_becomes_json_lines_named_by_its_columns() -> None:
    insert = rows_insert(render("insert_object.sql", objects=OBJECTS_TABLE))
    assert insert.table == (OBJECTS_TABLE,)
    assert insert.columns[:2] == ("object_key", "etag") and insert.columns[-1] == "landed_at"
    assert insert.parameters[:2] == ("key", "etag") and insert.parameters[-1] == "landed_at"
    row = dict.fromkeys(insert.parameters, None) | {
        "key": "events/it's \\ é.gz",
        "records_raw": 3,
        "landed_at": datetime(2026, 3, 1, 10, 5, 0, 250000),
    }
    (line,) = rows_body(insert, [row]).decode().splitlines()
    assert line.startswith('{"object_key":"events/it\'s \\\\ é.gz","etag":null,')
    assert line.endswith('"landed_at":"2026-03-01 10:05:00.250000"}')


def test_a_value_split_only_at_its_top_level_commas() -> None:
    assert top_level_items("CAST(%(a)s AS numeric(12,2)), %(b)s") == ["CAST(%(a)s AS numeric(12,2))", " %(b)s"]


def test_a_failed_sub_statement_is_named_before_the_aborted_ones() -> None:
    described = {
        "Id": "b1",
        "Status": "FAILED",
        "Error": "ERROR: batch failed",
        "SubStatements": [
            {"Id": "b1:1", "Status": "FINISHED"},
            {"Id": "b1:2", "Status": "ABORTED"},
            {"Id": "b1:3", "Status": "FAILED", "Error": 'ERROR: relation "x" does not exist'},
        ],
    }
    error = statement_error(described, ["SET statement_timeout TO 1", "SELECT 2", "DELETE FROM x"])
    assert error.index == 3
    assert str(error) == (
        'Redshift Data API b1: statement 3 of 3 failed: ERROR: relation "x" does not exist (DELETE FROM x)'
    )
