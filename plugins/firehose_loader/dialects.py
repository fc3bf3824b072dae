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
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from itertools import chain
from typing import Any, Protocol

import pyarrow as pa

from firehose_loader.config import MAX_VARCHAR, ColumnType
from firehose_loader.sql import render


@dataclass(frozen=True)
class Stage:
    """The staged Parquet batch of a run: where it is, and how to read it a record batch at a time."""

    bucket: str
    key: str
    batches: Callable[[], Iterator[pa.RecordBatch]]
    rows: int | None = None  # how many rows the stage holds, when the caller knows

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


class Dialect(Protocol):
    name: str
    object_key_type: str

    def column_type(self, column_type: ColumnType) -> str: ...

    def staging_type(self, column_type: ColumnType) -> str: ...

    def insert_expression(self, name: str, column_type: ColumnType) -> str: ...

    def table_options(self, key: tuple[str, ...], order_by: str) -> str: ...

    def extra_ddl_templates(self) -> tuple[str, ...]: ...

    def lock_statement(self, context: dict[str, Any]) -> str: ...

    def copy_into_staging(self, cursor: Any, context: dict[str, Any], stage: Stage) -> None: ...


@dataclass(frozen=True)
class Postgres:
    name: str = "postgres"

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
        """Stream the staged rows into the staging table with binary COPY FROM STDIN, a batch at a time.

        pgpq encodes each Arrow record batch in PostgreSQL's binary COPY format: the server
        reads numbers, timestamps and text without parsing them (only JSON is parsed, into
        jsonb), and NULL stays apart from every text. Only one record batch and its encoding
        are in memory at once, whatever the size of the hour.
        """
        statement = render("postgres/copy_staging.sql", **context)
        jsonb_columns = {column["name"] for column in context["columns"] if column["staging_type"] == "jsonb"}
        chunks = _binary_copy_chunks(stage.batches(), jsonb_columns)
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
        expected = stage.rows if stage.rows is not None else sum(batch.num_rows for batch in stage.batches())
        if loaded != expected:
            raise StageMismatchError(
                f"COPY from {stage.uri} loaded {loaded} rows but the stage holds {expected}: another object "
                "under the same key prefix was loaded with it; remove it and clear the task"
            )


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
