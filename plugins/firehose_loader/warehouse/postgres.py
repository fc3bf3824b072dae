"""PostgreSQL (local, CI): COPY in binary format from the stage, the winners straight into the target."""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from firehose_loader.config import ColumnType
from firehose_loader.records.coercion import POSTGRES_LIMITS, WarehouseLimits
from firehose_loader.records.schema import PROVENANCE_COLUMNS
from firehose_loader.warehouse.protocol import Stage
from firehose_loader.warehouse.render import render


@dataclass(frozen=True)
class Postgres:
    name: str = "postgres"
    stages_rows: bool = False
    limits: WarehouseLimits = POSTGRES_LIMITS
    # The database collation may order text otherwise than the deduplication (by code point).
    text_collation: str = ' COLLATE "C"'

    def column_type(self, column_type: ColumnType) -> str:
        return "jsonb" if column_type.name == "json" else str(column_type)

    def staging_type(self, column_type: ColumnType) -> str:
        return self.column_type(column_type)

    def insert_expression(self, name: str, column_type: ColumnType) -> str:
        return render("postgres/insert_expression.sql", name=name).strip()

    # Winners between equal order_by values are decided by comparing object keys; the
    # warehouse must order them as Python does (by code point), whatever the database collation.
    object_key_type: str = 'varchar(1024) COLLATE "C"'
    # The moment the statement runs, in UTC (inside a merge, after its lock wait; not the transaction's start).
    clock: str = "CAST(clock_timestamp() AT TIME ZONE 'UTC' AS timestamp)"

    def table_options(self, key: tuple[str, ...], order_by: str) -> str:
        return ""

    def extra_ddl_templates(self) -> tuple[str, ...]:
        return ("postgres/create_key_index.sql",)

    def catalog_template(self) -> str:
        return "postgres/catalog_objects.sql"

    def session_timeouts_template(self) -> str:
        return "postgres/session_timeouts.sql"

    def lock_statement(self, context: dict[str, Any]) -> str:
        return render("postgres/lock_target.sql", **context).strip()

    def add_column_statement(self, target: tuple[str, str], name: str, column_type: str) -> str:
        return render("add_column.sql", target=target, name=name, type=column_type).strip()

    def alter_column_statement(self, target: tuple[str, str], name: str, found: str, declared: str) -> str:
        strings = ("varchar", "text")
        same_base = found.split("(")[0] == declared.split("(")[0] or (
            found.startswith(strings) and declared.startswith(strings)
        )
        return render(
            "postgres/alter_column_type.sql", target=target, name=name, type=declared, convert=not same_base
        ).strip()

    def copy_into_staging(self, cursor: Any, context: dict[str, Any], stage: Stage) -> None:
        """COPY the staged rows' staging columns (the plan's: key, order_by; whole rows for a split hour)
        and provenance into the staging table, a batch at a time."""
        names = [column["name"] for column in context["staging_columns"]]
        statement = render("postgres/copy_staging.sql", **context)
        _copy_binary(
            cursor, statement, stage.batches([*names, *PROVENANCE_COLUMNS]), _jsonb_names(context["staging_columns"])
        )

    def insert_winners(self, cursor: Any, context: dict[str, Any], stage: Stage) -> None:
        """COPY the rows the merge plan inserts or updates straight from the stage into the target.

        Runs after merge.sql, in its transaction: the plan (firehose_plan) says which staged
        rows lose or are already there; every other row is sent. A rerun of a loaded hour
        sends nothing. Where whole rows were staged (a split hour), merge.sql inserted them.
        """
        if context["stages_rows"]:
            return
        cursor.execute(render("postgres/rows_not_inserted.sql", **context, count_only=True))
        (inserted,) = cursor.fetchone()
        if inserted == 0:
            return  # a rerun of a loaded hour: the stage is not even read
        cursor.execute(render("postgres/rows_not_inserted.sql", **context, count_only=False))
        not_inserted = _offsets_by_object(cursor.fetchall())
        # By name: the stage's columns the target has, whatever their place in the file.
        names = [column["name"] for column in context["insert_columns"]]
        batches = (_without_rows(batch, not_inserted) for batch in stage.batches([*names, *PROVENANCE_COLUMNS]))
        statement = render("postgres/copy_winners.sql", **context)
        _copy_binary(
            cursor, statement, (batch for batch in batches if batch.num_rows), _jsonb_names(context["insert_columns"])
        )


def _jsonb_names(columns: Sequence[Mapping[str, Any]]) -> set[str]:
    return {column["name"] for column in columns if column["staging_type"] == "jsonb"}


def _copy_binary(cursor: Any, statement: str, batches: Iterator[pa.RecordBatch], jsonb_columns: set[str]) -> None:
    """Stream record batches into ``COPY ... FROM STDIN WITH (FORMAT binary)``, a batch at a time.

    pgpq encodes each Arrow record batch in PostgreSQL's binary COPY format: the server
    reads numbers, timestamps and text without parsing them (only JSON is parsed, into
    jsonb), and NULL stays apart from every text. Only one record batch and its encoding
    are in memory at once, whatever the size of the hour.
    """
    chunks = _binary_copy_chunks(batches, jsonb_columns)
    header = next(chunks, None)
    if header is None:
        return  # no batches: nothing to copy (binary COPY of no bytes at all is an error)
    chunks = chain([header], chunks)
    if hasattr(cursor, "copy"):  # psycopg 3, which the postgres provider prefers when installed
        from psycopg.copy import QueuedLibpqWriter

        # A writer thread sends the data while this one encodes the next batch
        # (its queue holds at most ~128 MB).
        with cursor.copy(statement, writer=QueuedLibpqWriter(cursor)) as copy:
            for chunk in chunks:
                copy.write(chunk)
    else:  # psycopg2 reads a file object: hand it the chunks one after another
        cursor.copy_expert(statement, _ChunkReader(chunks))


def _offsets_by_object(rows: Sequence[tuple[str, int]]) -> dict[str, pa.Array]:
    by_object: dict[str, list[int]] = {}
    for object_key, offset in rows:
        by_object.setdefault(object_key, []).append(offset)
    return {object_key: pa.array(offsets, pa.int64()) for object_key, offsets in by_object.items()}


def _without_rows(batch: pa.RecordBatch, offsets_by_object: Mapping[str, pa.Array]) -> pa.RecordBatch:
    """The batch without the rows whose (object, offset) is listed: a staged row's identity."""
    if not offsets_by_object:
        return batch
    objects, offsets = batch.column("_firehose_object"), batch.column("_firehose_offset")
    dropped = None
    for object_key in pc.unique(objects).to_pylist():
        listed = offsets_by_object.get(object_key)
        if listed is None:
            continue
        rows = pc.and_(pc.equal(objects, object_key), pc.is_in(offsets, value_set=listed))
        dropped = rows if dropped is None else pc.or_(dropped, rows)
    return batch if dropped is None else batch.filter(pc.invert(dropped))


def _binary_copy_chunks(batches: Iterator[pa.RecordBatch], jsonb_columns: set[str]) -> Iterator[bytes]:
    """The batches in PostgreSQL's binary COPY format: a header, one chunk per batch, the trailer.

    Each Arrow type is sent as the PostgreSQL type the stage's schema maps it to (int16/32/64,
    float64, bool, decimal128 as numeric, date32, timestamp[us] with or without a zone, string as
    text); the JSON columns, Arrow strings, are sent as jsonb.
    """
    from pgpq import ArrowToPostgresBinaryEncoder
    from pgpq.encoders import StringEncoderBuilder
    from pgpq.schema import Jsonb

    encoder = None
    for batch in batches:
        if encoder is None:
            encoders = {field.name: ArrowToPostgresBinaryEncoder.infer_encoder(field) for field in batch.schema}
            for name in jsonb_columns:
                encoders[name] = StringEncoderBuilder.new_with_output(batch.schema.field(name), Jsonb())
            encoder = ArrowToPostgresBinaryEncoder.new_with_encoders(batch.schema, encoders)
            yield encoder.write_header()
        yield encoder.write_batch(batch)
    if encoder is not None:
        yield encoder.finish()


class _ChunkReader(io.RawIOBase):
    """A readable file over an iterator of byte chunks (what psycopg2's copy_expert reads from)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._current = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        while not self._current:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._current = memoryview(chunk).cast("B")
        size = min(len(target), len(self._current))
        target[:size] = self._current[:size]
        self._current = self._current[size:]
        return size
