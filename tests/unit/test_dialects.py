"""Dialects: chosen by connection type, Redshift's types and checks, and the literal filter they rely on."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest

from firehose_loader.config import parse_column_type
from firehose_loader.warehouse.dialect import dialect_for
from firehose_loader.warehouse.postgres import Postgres
from firehose_loader.warehouse.protocol import Stage
from firehose_loader.warehouse.redshift import Redshift
from firehose_loader.warehouse.render import quote_literal

ROLE = "arn:aws:iam::123456789012:role/firehose-loader-copy"


def test_dialect_for_each_connection_type() -> None:
    assert dialect_for("postgres") == Postgres()
    assert dialect_for("redshift", {"iam_role": ROLE, "sslmode": "verify-full"}) == Redshift(iam_role=ROLE)
    with pytest.raises(ValueError, match="'mysql' is not supported"):
        dialect_for("mysql")
    with pytest.raises(ValueError, match="set extra 'iam_role'"):
        dialect_for("redshift", {})


@pytest.mark.parametrize(
    "role",
    [
        ROLE,
        "default",
        "arn:aws:iam::123456789012:role/service-role/firehose+loader=copy@x.y_z-1",
        "arn:aws-cn:iam::123456789012:role/copy",
        "arn:aws:iam::123456789012:role/a,arn:aws:iam::210987654321:role/b",
    ],
)
def test_accepted_iam_roles(role: str) -> None:
    assert Redshift(iam_role=role).iam_role == role


@pytest.mark.parametrize(
    "role",
    [
        "arn:aws:iam::123456789012:role/x' ACCESS_KEY_ID 'AKIA",
        "arn:aws:iam::123456789012:user/loader",
        "arn:aws:iam::123456789012:role/a,b",  # a comma separates chained roles; it is no part of a name
        "arn:aws:iam::12345:role/x",
        "arn:aws:iam::123456789012:role/x\n",
        "arn:aws:iam::" + "\uff11" * 12 + ":role/x",  # fullwidth digits
        "",
        "DEFAULT",
        None,
    ],
)
def test_refused_iam_roles(role: Any) -> None:
    with pytest.raises(ValueError, match="iam_role"):
        Redshift(iam_role=role)


@pytest.mark.parametrize(
    ("declared", "postgres", "redshift", "staged"),
    [
        ("smallint", "smallint", "smallint", "smallint"),
        ("integer", "integer", "integer", "integer"),
        ("bigint", "bigint", "bigint", "bigint"),
        ("numeric(38,9)", "numeric(38,9)", "numeric(38,9)", "numeric(38,9)"),
        ("double precision", "double precision", "double precision", "double precision"),
        ("boolean", "boolean", "boolean", "boolean"),
        ("varchar(1)", "varchar(1)", "varchar(4)", "varchar(4)"),
        ("varchar(16383)", "varchar(16383)", "varchar(65532)", "varchar(65532)"),
        ("varchar(16384)", "varchar(16384)", "varchar(65535)", "varchar(65535)"),
        ("text", "text", "varchar(65535)", "varchar(65535)"),
        ("date", "date", "date", "date"),
        ("timestamp", "timestamp", "timestamp", "timestamp"),
        ("timestamptz", "timestamptz", "timestamptz", "timestamptz"),
        ("json", "jsonb", "super", "varchar(65535)"),
    ],
)
def test_column_types(declared: str, postgres: str, redshift: str, staged: str) -> None:
    column_type = parse_column_type(declared)
    assert Postgres().column_type(column_type) == Postgres().staging_type(column_type) == postgres
    dialect = Redshift(iam_role=ROLE)
    assert dialect.column_type(column_type) == redshift
    assert dialect.staging_type(column_type) == staged


def test_insert_expressions() -> None:
    json_type, text_type = parse_column_type("json"), parse_column_type("text")
    assert Postgres().insert_expression("attrs", json_type) == 's."attrs"'
    assert Redshift(iam_role=ROLE).insert_expression("attrs", json_type) == 'JSON_PARSE(s."attrs")'
    assert Redshift(iam_role=ROLE).insert_expression("note", text_type) == 's."note"'
    with pytest.raises(ValueError, match="not a validated identifier"):
        Redshift(iam_role=ROLE).insert_expression('x"); DROP TABLE y; --', json_type)


class Cursor:
    def __init__(self, loaded: int) -> None:
        self.loaded = loaded
        self.statements: list[str] = []

    def execute(self, statement: str, parameters: Any = None) -> None:
        self.statements.append(statement)

    def fetchone(self) -> tuple[int]:
        return (self.loaded,)


def stage(key: str, rows: int | None = 2, bucket: str = "firehose-orders") -> Stage:
    return Stage(
        bucket,
        key,
        lambda columns=None: iter(pa.table({"a": [1, 2]}).to_batches()),
        rows=rows,
        copy_manifest=lambda: f"{key}.manifest",
    )


@pytest.mark.parametrize(
    "key",
    [
        "staging/it's.parquet",
        "staging/a\\b.parquet",
        "staging/100%.parquet",
        "staging/ü.parquet",
        "staging/a b.parquet",
        "staging/x.parquet' IAM_ROLE 'arn:aws:iam::999999999999:role/other",
    ],
)
def test_copy_refuses_stage_keys_that_could_leave_the_literal(key: str) -> None:
    cursor = Cursor(2)
    with pytest.raises(ValueError, match="may only contain"):
        Redshift(iam_role=ROLE).copy_into_staging(cursor, {"staging": "firehose_staging"}, stage(key))
    assert cursor.statements == []


def test_copy_reads_exactly_the_files_its_manifest_lists() -> None:
    """A COPY of a key prefix would also load any other object under it: the COPY reads a manifest,
    so there is nothing to count afterwards (and nothing of the stage is read by the worker)."""
    cursor = Cursor(2)
    key = "staging/orders/2026/03/01/10/run.parquet"
    Redshift(iam_role=ROLE).copy_into_staging(cursor, {"staging": "firehose_staging"}, stage(key, rows=None))
    (copy,) = cursor.statements
    assert copy.startswith(f"COPY \"firehose_staging\"\nFROM 's3://firehose-orders/{key}.manifest'\n")
    assert copy.endswith("FORMAT AS PARQUET\nMANIFEST")


@pytest.mark.parametrize("value", ["s3://b/k.parquet", ROLE, "a-b_c.d/e(f)*g!h"])
def test_literal_quotes_plain_values(value: str) -> None:
    assert quote_literal(value) == f"'{value}'"


@pytest.mark.parametrize("value", ["it's", "a\\b", '"q"', "100%", "é", "a\nb", "", "x" * 2049, None, 5])
def test_literal_refuses_anything_that_could_escape(value: Any) -> None:
    with pytest.raises(ValueError, match="as a literal"):
        quote_literal(value)
