"""What differs between warehouses, and nothing else.

The merge, ledger and DDL templates are shared; a dialect supplies column
types, table options, the lock statement and how the staged object gets into
the staging table. The dialect follows the warehouse connection's type, so the
same DAGs run against PostgreSQL locally and Redshift in production.

Each column of the shared templates carries three dialect-made pieces: ``type``
(the target's column type), ``staging_type`` (the session-local staging table's)
and ``insert_expression`` (how the merge's INSERT ... SELECT reads it from the
staging table, alias ``s``). They differ only where the stage cannot be loaded
into the target type directly: Redshift stages a json column as its text and
parses it into SUPER with JSON_PARSE.

Where the winning rows come from differs too (``stages_rows``). Redshift COPYs the
whole stage into the staging table and the merge inserts from it. PostgreSQL stages
only what the merge plan reads (key, order_by, provenance) and COPYs the winners
straight into the target once the plan is made: every row is written once, not into
a staging table first and then again into the target.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc

from firehose_loader.config import MAX_VARCHAR, ColumnType
from firehose_loader.sql import quote_qualified, render


@dataclass(frozen=True)
class Stage:
    """The staged Parquet batch of a run: where it is, and how to read it a record batch at a time."""

    bucket: str
    key: str
    # The stage's rows a record batch at a time: all columns, or only those named.
    batches: Callable[[Sequence[str] | None], Iterator[pa.RecordBatch]]
    rows: int | None = None  # how many rows the stage holds, when the caller knows

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


class Dialect(Protocol):
    name: str
    object_key_type: str
    # True: the staging table holds whole rows and merge.sql inserts the winners from it.
    # False: it holds only the plan's columns and insert_winners COPYs the winners.
    stages_rows: bool

    def column_type(self, column_type: ColumnType) -> str: ...

    def staging_type(self, column_type: ColumnType) -> str: ...

    def insert_expression(self, name: str, column_type: ColumnType) -> str: ...

    def table_options(self, key: tuple[str, ...], order_by: str) -> str: ...

    def extra_ddl_templates(self) -> tuple[str, ...]: ...

    def lock_statement(self, context: dict[str, Any]) -> str: ...

    def copy_into_staging(self, cursor: Any, context: dict[str, Any], stage: Stage) -> None: ...

    def insert_winners(self, cursor: Any, context: dict[str, Any], stage: Stage) -> None: ...


class TargetTypeError(ValueError):
    """The target table has a column whose type is not the one the streams file declares."""


@dataclass(frozen=True)
class Postgres:
    name: str = "postgres"
    stages_rows: bool = False

    def column_type(self, column_type: ColumnType) -> str:
        return "jsonb" if column_type.name == "json" else str(column_type)

    def staging_type(self, column_type: ColumnType) -> str:
        return self.column_type(column_type)

    def insert_expression(self, name: str, column_type: ColumnType) -> str:
        return render("postgres/insert_expression.sql", name=name).strip()

    # Winners between equal order_by values are decided by comparing object keys; the
    # warehouse must order them as Python does (by code point), whatever the database collation.
    object_key_type: str = 'varchar(1024) COLLATE "C"'

    def table_options(self, key: tuple[str, ...], order_by: str) -> str:
        return ""

    def extra_ddl_templates(self) -> tuple[str, ...]:
        return ("postgres/create_key_index.sql",)

    def lock_statement(self, context: dict[str, Any]) -> str:
        return render("postgres/lock_target.sql", **context).strip()

    def copy_into_staging(self, cursor: Any, context: dict[str, Any], stage: Stage) -> None:
        """COPY the staged rows' plan columns (key, order_by, provenance) into the staging table."""
        names = [column["name"] for column in context["staging_columns"]]
        statement = render("postgres/copy_staging.sql", **context)
        _copy_binary(cursor, statement, stage.batches([*names, *PROVENANCE]), _jsonb_names(context["staging_columns"]))

    def insert_winners(self, cursor: Any, context: dict[str, Any], stage: Stage) -> None:
        """COPY the rows the merge plan inserts or updates straight from the stage into the target.

        Runs after merge.sql, in its transaction: the plan (firehose_plan) says which staged
        rows lose or are already there; every other row is sent. A rerun of a loaded hour
        sends nothing.
        """
        cursor.execute(
            render("postgres/target_type_mismatches.sql"),
            {
                "table": quote_qualified(context["target"]),
                "names": [column["name"] for column in context["columns"]],
                "types": [column["type"] for column in context["columns"]],
            },
        )
        _check_target_types(context, cursor.fetchall())
        cursor.execute(render("postgres/rows_not_inserted.sql", **context, count_only=True))
        (inserted,) = cursor.fetchone()
        if inserted == 0:
            return  # a rerun of a loaded hour: the stage is not even read
        cursor.execute(render("postgres/rows_not_inserted.sql", **context, count_only=False))
        not_inserted = _offsets_by_object(cursor.fetchall())
        batches = (_without_rows(batch, not_inserted) for batch in stage.batches(None))
        statement = render("postgres/copy_winners.sql", **context)
        _copy_binary(
            cursor, statement, (batch for batch in batches if batch.num_rows), _jsonb_names(context["columns"])
        )


# The loader's provenance columns, after the stream's columns in the stage and the tables.
PROVENANCE = ("_firehose_object", "_firehose_offset")


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


def _check_target_types(context: Mapping[str, Any], mismatches: Sequence[tuple[str, str, str | None]]) -> None:
    """Binary COPY sends each value as its declared type, which a column of another type refuses."""
    target = ".".join(context["target"])
    for name, declared, found in mismatches:
        if found is None:
            raise TargetTypeError(
                f"table {target} has no column {name!r}, which the streams file declares: "
                f"add it (ALTER TABLE {target} ADD COLUMN {name} {declared}) or recreate the table"
            )
        raise TargetTypeError(
            f"column {name!r} of {target} is {found} but the streams file declares {declared}: the loader "
            f"writes the declared type; change the column (ALTER TABLE {target} ALTER COLUMN {name} TYPE "
            f"{declared}) or the streams file"
        )


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


# The role Redshift assumes to read the stage: an IAM role ARN (a comma-separated chain of up
# to 10 for cross-account access), or "default" for the cluster's default IAM role.
IAM_ROLE_ARN = r"arn:aws(?:-cn|-us-gov|-iso|-iso-b)?:iam::[0-9]{12}:role/[A-Za-z0-9+=.@_/-]{1,512}"
IAM_ROLE = re.compile(rf"default|{IAM_ROLE_ARN}(?:,{IAM_ROLE_ARN}){{0,9}}")
# What a stage's bucket and key may contain to be put in COPY's source literal (stage keys are
# built from the config's prefixes, the stream name, the hour and the run id, all checked).
STAGE_BUCKET = re.compile(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]")
STAGE_KEY = re.compile(r"[A-Za-z0-9!_.*()/-]{1,1024}")
# Redshift's varchar length counts bytes; a UTF-8 character takes at most 4.
UTF8_MAX_BYTES_PER_CHAR = 4
# The connection extra the Redshift dialect reads; airflow_glue hides it from the driver.
REDSHIFT_EXTRA_KEYS = ("iam_role",)


class StageMismatchError(RuntimeError):
    """The staging table did not receive exactly the staged rows."""


@dataclass(frozen=True)
class Redshift:
    """Amazon Redshift: COPY the Parquet stage from S3 with an IAM role; no secrets in SQL.

    Built from the Redshift connection's extra ``iam_role``: the ARN of the IAM role
    attached to the cluster (or namespace) that may read the staging prefix.
    """

    iam_role: str
    name: str = "redshift"
    stages_rows: bool = True
    # Redshift compares varchar values byte by byte, and UTF-8 byte order is code point
    # order, which is how Python orders object keys; there is no COLLATE to add (and 1024
    # bytes is S3's own limit for a key).
    object_key_type: str = "varchar(1024)"

    def __post_init__(self) -> None:
        if not isinstance(self.iam_role, str) or not IAM_ROLE.fullmatch(self.iam_role):
            raise ValueError(
                f"redshift warehouse connection: extra 'iam_role' must be an IAM role ARN such as "
                f"arn:aws:iam::123456789012:role/firehose-loader-copy (or 'default'), got {self.iam_role!r}"
            )

    @classmethod
    def from_extra(cls, extra: Mapping[str, Any]) -> Redshift:
        if not extra.get("iam_role"):
            raise ValueError(
                "redshift warehouse connection: set extra 'iam_role' to the ARN of the IAM role Redshift "
                "assumes to COPY the stage from S3 (see docs/deploy.md)"
            )
        return cls(iam_role=extra["iam_role"])

    def column_type(self, column_type: ColumnType) -> str:
        if column_type.name == "json":
            return "super"
        if column_type.name == "text":
            return str(ColumnType("varchar", length=MAX_VARCHAR))
        if column_type.name == "varchar":
            assert column_type.length is not None
            length = min(UTF8_MAX_BYTES_PER_CHAR * column_type.length, MAX_VARCHAR)
            return str(ColumnType("varchar", length=length))
        return str(column_type)

    def staging_type(self, column_type: ColumnType) -> str:
        # COPY cannot parse a Parquet string into SUPER (it would load a SUPER string); the
        # JSON text is staged as varchar and parsed by the merge's INSERT (insert_expression).
        if column_type.name == "json":
            return str(ColumnType("varchar", length=MAX_VARCHAR))
        return self.column_type(column_type)

    def insert_expression(self, name: str, column_type: ColumnType) -> str:
        return render("redshift/insert_expression.sql", name=name, kind=column_type.name).strip()

    def table_options(self, key: tuple[str, ...], order_by: str) -> str:
        return " " + render("redshift/table_options.sql", key=list(key), order_by=order_by).strip()

    def extra_ddl_templates(self) -> tuple[str, ...]:
        return ()  # Redshift has no indexes: distribution and sort keys are table options

    def lock_statement(self, context: dict[str, Any]) -> str:
        return render("redshift/lock_target.sql", **context).strip()

    def copy_into_staging(self, cursor: Any, context: dict[str, Any], stage: Stage) -> None:
        """COPY the stage from S3 into the staging table, then check that exactly its rows arrived."""
        if not STAGE_BUCKET.fullmatch(stage.bucket) or not STAGE_KEY.fullmatch(stage.key):
            raise ValueError(
                f"cannot COPY s3://{stage.bucket}/{stage.key}: a stage key for Redshift may only contain "
                "letters, digits and !_.*()/- (check the stream's staging_prefix)"
            )
        cursor.execute(
            render("redshift/copy_staging.sql", **context, stage_uri=stage.uri, iam_role=self.iam_role).strip()
        )
        # COPY's source is a key prefix: another object whose key starts with this one would be
        # loaded too. The staging table must hold exactly the staged rows.
        cursor.execute(render("redshift/staged_rows.sql", **context).strip())
        (loaded,) = cursor.fetchone()
        expected = stage.rows if stage.rows is not None else sum(batch.num_rows for batch in stage.batches(None))
        if loaded != expected:
            raise StageMismatchError(
                f"COPY from {stage.uri} loaded {loaded} rows but the stage holds {expected}: another object "
                "under the same key prefix was loaded with it; remove it and clear the task"
            )

    def insert_winners(self, cursor: Any, context: dict[str, Any], stage: Stage) -> None:
        """Nothing more to do: merge.sql inserted the winners from the staging table."""


DIALECTS: dict[str, Callable[[Mapping[str, Any]], Dialect]] = {
    "postgres": lambda extra: Postgres(),
    "redshift": Redshift.from_extra,
}


def dialect_for(conn_type: str, extra: Mapping[str, Any] | None = None) -> Dialect:
    """The dialect of a warehouse connection, configured from the connection's extra."""
    try:
        factory = DIALECTS[conn_type]
    except KeyError:
        raise ValueError(
            f"warehouse connection type {conn_type!r} is not supported (supported: {sorted(DIALECTS)})"
        ) from None
    return factory(extra or {})
