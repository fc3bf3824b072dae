"""The columns every stage and table carries: the stream's columns, then the loader's provenance.

A stage records the columns it was written with (names and declared types, in order) in its
Parquet metadata, and the load records them in load_hours: a later load of the stage reads its
columns by name, and a stage whose columns no longer fit the stream's is extracted again.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping

import pyarrow as pa

from firehose_loader.config import ColumnType, Stream, parse_column_type
from firehose_loader.records.coercion import arrow_type

# Which object and byte offset a row came from: after the stream's columns in the stage and the tables.
OBJECT_COLUMN = "_firehose_object"
OFFSET_COLUMN = "_firehose_offset"
PROVENANCE_COLUMNS = (OBJECT_COLUMN, OFFSET_COLUMN)
# The Parquet (Arrow schema) metadata key under which a stage names its columns and their declared types.
STAGE_COLUMNS_METADATA = b"firehose_loader.columns"

StageColumns = Mapping[str, ColumnType]


def columns_text(columns: StageColumns) -> str:
    """The columns as the stage's metadata and load_hours store them: a JSON list of [name, type] in order."""
    return json.dumps([[name, str(kind)] for name, kind in columns.items()], separators=(",", ":"))


def parse_columns_text(text: str) -> dict[str, ColumnType]:
    return {name: parse_column_type(kind) for name, kind in json.loads(text)}


def arrow_schema(stream: Stream) -> pa.Schema:
    fields = [pa.field(name, arrow_type(column_type)) for name, column_type in stream.columns.items()]
    fields += [
        pa.field(OBJECT_COLUMN, pa.string(), nullable=False),
        pa.field(OFFSET_COLUMN, pa.int64(), nullable=False),
    ]
    return pa.schema(fields, metadata={STAGE_COLUMNS_METADATA: columns_text(stream.columns).encode()})


def stage_columns(schema: pa.Schema, stream: Stream) -> dict[str, ColumnType]:
    """The columns a stage file was written with, from its schema's metadata.

    A stage written before the metadata existed names only Arrow types: a column whose Arrow
    type is the one the stream's column has now is taken as that column (what loading it by
    position assumed); any other column gets the type its Arrow type stands for (a string is
    text), which does not fit a column declared otherwise.
    """
    metadata = schema.metadata or {}
    if STAGE_COLUMNS_METADATA in metadata:
        return parse_columns_text(metadata[STAGE_COLUMNS_METADATA].decode())
    found: dict[str, ColumnType] = {}
    for field in schema:
        if field.name in PROVENANCE_COLUMNS:
            continue
        declared = stream.columns.get(field.name)
        if declared is not None and arrow_type(declared) == field.type:
            found[field.name] = declared
        else:
            found[field.name] = _declared_type_of(field.type)
    return found


def _declared_type_of(arrow: pa.DataType) -> ColumnType:
    """The column type a stage's Arrow type stands for (the inverse of coercion.arrow_type, strings as text)."""
    if pa.types.is_decimal(arrow):
        return ColumnType("numeric", precision=arrow.precision, scale=arrow.scale)
    if pa.types.is_timestamp(arrow):
        return ColumnType("timestamptz" if arrow.tz else "timestamp")
    names = {
        pa.int16(): "smallint",
        pa.int32(): "integer",
        pa.int64(): "bigint",
        pa.float64(): "double precision",
        pa.bool_(): "boolean",
        pa.string(): "text",
        pa.date32(): "date",
    }
    return ColumnType(names.get(arrow, f"arrow {arrow}"))


def value_fits(stage_type: ColumnType, column_type: ColumnType) -> bool:
    """Whether every value a stage column of ``stage_type`` holds is a valid value of ``column_type`` as it is.

    The same type, or a string that only got more room (varchar(64) into varchar(128) or text);
    anything else (another type, a narrower length, another precision or scale) is extracted again
    from S3, where the values are validated against the type declared now.
    """
    if stage_type == column_type:
        return True
    if stage_type.name == "varchar" and column_type.name == "varchar":
        assert stage_type.length is not None and column_type.length is not None
        return stage_type.length <= column_type.length
    return stage_type.name == "varchar" and column_type.name == "text"


def stage_lacks_values(columns: StageColumns, stream: Stream, fields_seen: Collection[str]) -> str | None:
    """Why a stage that fits would still load NULL where S3 holds values (None: it would not).

    A column declared after the stage was written loads as NULL from it, which is right unless
    the hour's records carried that field all along (its schema drift, ``fields_seen``, says so):
    then the hour must be extracted again.
    """
    carried = sorted(name for name in stream.columns if name not in columns and name in fields_seen)
    if carried:
        return f"the stage lacks column(s) {', '.join(carried)}, which the hour's records carry"
    return None


def stage_misfit(columns: StageColumns, stream: Stream) -> str | None:
    """Why a stage written with ``columns`` cannot be loaded into the stream's columns now (None: it can).

    A column the stage lacks loads as NULL, and one the stream no longer declares is left out,
    except a key or order_by column: a stage without it cannot be merged.
    """
    for name in (*stream.key, stream.order_by):
        if name not in columns:
            return f"the stage has no column {name!r} (a key or order_by column)"
    for name, kind in stream.columns.items():
        staged = columns.get(name)
        if staged is not None and not value_fits(staged, kind):
            return f"column {name!r} is staged as {staged} but is declared {kind}"
    return None
