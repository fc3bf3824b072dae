"""A stage names its columns; what a later load may take from it; the target check's type comparison."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from firehose_loader.config import parse_column_type
from firehose_loader.records.schema import (
    arrow_schema,
    columns_text,
    parse_columns_text,
    stage_columns,
    stage_lacks_values,
    stage_misfit,
    value_fits,
)
from firehose_loader.warehouse.postgres import Postgres
from firehose_loader.warehouse.redshift import Redshift
from firehose_loader.warehouse.target_types import catalog_type, holds, type_problems
from tests.unit.stream_factory import make_stream

STREAM = make_stream()
REDSHIFT = Redshift(iam_role="arn:aws:iam::123456789012:role/firehose-loader-copy")


def test_a_stage_file_names_its_columns_and_declared_types_in_order(tmp_path) -> None:
    path = tmp_path / "stage.parquet"
    pq.write_table(arrow_schema(STREAM).empty_table(), path)
    read = stage_columns(pq.read_schema(path), STREAM)
    assert list(read.items()) == list(STREAM.columns.items())
    assert parse_columns_text(columns_text(STREAM.columns)) == dict(STREAM.columns)


def test_a_stage_from_before_the_metadata_is_read_from_its_arrow_types() -> None:
    schema = pa.schema([("order_id", pa.int64()), ("sku", pa.string()), ("price", pa.decimal128(12, 4))])
    read = stage_columns(schema, STREAM)
    # sku's string is taken as the declared varchar(32); price's decimal is another numeric than declared.
    assert read == {
        "order_id": parse_column_type("bigint"),
        "sku": parse_column_type("varchar(32)"),
        "price": parse_column_type("numeric(12,4)"),
    }


@pytest.mark.parametrize(
    ("staged", "declared", "fits"),
    [
        ("varchar(64)", "varchar(128)", True),
        ("varchar(64)", "text", True),
        ("varchar(128)", "varchar(64)", False),
        ("text", "varchar(64)", False),
        ("numeric(12,2)", "numeric(14,4)", False),
        ("numeric(12,2)", "numeric(12,2)", True),
        ("integer", "bigint", False),
        ("json", "text", False),
    ],
)
def test_which_staged_types_a_declared_type_takes_as_they_are(staged: str, declared: str, fits: bool) -> None:
    assert value_fits(parse_column_type(staged), parse_column_type(declared)) is fits


def test_a_stage_fits_without_a_column_or_with_one_more_but_never_without_the_key() -> None:
    without_note = {name: kind for name, kind in STREAM.columns.items() if name != "note"}
    assert stage_misfit(without_note, STREAM) is None
    assert stage_misfit({**STREAM.columns, "gone": parse_column_type("text")}, STREAM) is None
    without_key = {name: kind for name, kind in STREAM.columns.items() if name != "line_no"}
    assert stage_misfit(without_key, STREAM) == "the stage has no column 'line_no' (a key or order_by column)"
    rescaled = {**STREAM.columns, "price": parse_column_type("numeric(12,4)")}
    assert stage_misfit(rescaled, STREAM) == "column 'price' is staged as numeric(12,4) but is declared numeric(12,2)"


@pytest.mark.parametrize(
    ("row", "spelled"),
    [
        (("character varying", 64, None, None), "varchar(64)"),
        (("numeric", None, 12, 2), "numeric(12,2)"),
        (("timestamp with time zone", None, None, None), "timestamptz"),
        (("timestamp without time zone", None, None, None), "timestamp"),
        (("jsonb", None, None, None), "jsonb"),
        (("integer", None, 32, 0), "integer"),
    ],
)
def test_catalog_rows_are_spelled_as_the_dialects_spell_types(row: tuple, spelled: str) -> None:
    assert catalog_type(*row) == spelled


@pytest.mark.parametrize(
    ("found", "declared", "held"),
    [
        ("varchar(64)", "varchar(128)", False),
        ("varchar(256)", "varchar(128)", True),
        ("text", "varchar(128)", True),
        ("varchar(6000)", "text", False),
        ("varchar(65535)", "text", True),
        ("numeric(12,2)", "numeric(14,4)", False),
        ("numeric(14,2)", "numeric(12,2)", True),
        ("numeric(14,4)", "numeric(12,2)", False),
        ("bigint", "integer", False),
        ("jsonb", "jsonb", True),
    ],
)
def test_the_target_holds_a_declared_type_only_when_every_value_fits_as_it_is(found, declared, held) -> None:
    assert holds(found, declared) is held


def test_each_dialect_names_the_exact_statement_that_fixes_the_column() -> None:
    target = ("sales", "order_lines")
    (postgres,) = type_problems(target, {"sku": "varchar(128)"}, {"sku": "varchar(64)"}, Postgres())
    assert 'ALTER TABLE "sales"."order_lines" ALTER COLUMN "sku" TYPE varchar(128))' in postgres
    (converted,) = type_problems(target, {"qty": "bigint"}, {"qty": "integer"}, Postgres())
    assert 'ALTER COLUMN "qty" TYPE bigint USING CAST("qty" AS bigint)' in converted
    (widen,) = type_problems(target, {"sku": "varchar(512)"}, {"sku": "varchar(256)"}, REDSHIFT)
    assert 'ALTER TABLE "sales"."order_lines" ALTER COLUMN "sku" TYPE varchar(512))' in widen
    # Redshift alters a type in place only to lengthen a varchar: a new column takes the old one's place.
    (rescale,) = type_problems(target, {"price": "numeric(14,4)"}, {"price": "numeric(12,2)"}, REDSHIFT)
    assert (
        'ALTER TABLE "sales"."order_lines" ADD COLUMN "price__new" numeric(14,4); '
        'UPDATE "sales"."order_lines" SET "price__new" = CAST("price" AS numeric(14,4)); '
        'ALTER TABLE "sales"."order_lines" DROP COLUMN "price"; '
        'ALTER TABLE "sales"."order_lines" RENAME COLUMN "price__new" TO "price"'
    ) in rescale
    (missing,) = type_problems(target, {"note": "text"}, {}, Postgres())
    assert missing.startswith("table sales.order_lines has no column 'note'")
    assert 'ALTER TABLE "sales"."order_lines" ADD COLUMN "note" text' in missing


def test_a_stage_without_a_column_whose_field_the_hour_carried_must_be_extracted_again() -> None:
    without_note = {name: kind for name, kind in STREAM.columns.items() if name != "note"}
    assert stage_lacks_values(without_note, STREAM, {"utm_source"}) is None
    assert stage_lacks_values(without_note, STREAM, {"note"}) == (
        "the stage lacks column(s) note, which the hour's records carry"
    )
    assert stage_lacks_values(STREAM.columns, STREAM, {"note"}) is None
