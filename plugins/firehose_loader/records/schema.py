"""The columns every stage and table carries: the stream's columns, then the loader's provenance."""

from __future__ import annotations

import pyarrow as pa

from firehose_loader.config import Stream
from firehose_loader.records.coercion import arrow_type

# Which object and byte offset a row came from: after the stream's columns in the stage and the tables.
OBJECT_COLUMN = "_firehose_object"
OFFSET_COLUMN = "_firehose_offset"
PROVENANCE_COLUMNS = (OBJECT_COLUMN, OFFSET_COLUMN)


def arrow_schema(stream: Stream) -> pa.Schema:
    fields = [pa.field(name, arrow_type(column_type)) for name, column_type in stream.columns.items()]
    fields += [
        pa.field(OBJECT_COLUMN, pa.string(), nullable=False),
        pa.field(OFFSET_COLUMN, pa.int64(), nullable=False),
    ]
    return pa.schema(fields)
