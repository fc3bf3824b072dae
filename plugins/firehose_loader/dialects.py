"""What differs between warehouses, and nothing else.

The merge, ledger and DDL templates are shared; a dialect supplies column
types, table options, the lock statement and how the staged object gets into
the staging table. The dialect follows the warehouse connection's type, so the
same DAGs run against PostgreSQL locally and Redshift in production.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.csv as pa_csv

from firehose_loader.config import ColumnType
from firehose_loader.sql import render


@dataclass(frozen=True)
class Stage:
    """The staged Parquet batch of a run: where it is, and how to read it into memory."""

    bucket: str
    key: str
    read: Callable[[], pa.Table]

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


class Dialect(Protocol):
    name: str
    object_key_type: str

    def column_type(self, column_type: ColumnType) -> str: ...

    def table_options(self, key: tuple[str, ...], order_by: str) -> str: ...

    def extra_ddl_templates(self) -> tuple[str, ...]: ...

    def lock_statement(self, context: dict[str, Any]) -> str: ...

    def copy_into_staging(self, cursor: Any, context: dict[str, Any], stage: Stage) -> None: ...


@dataclass(frozen=True)
class Postgres:
    name: str = "postgres"

    def column_type(self, column_type: ColumnType) -> str:
        return "jsonb" if column_type.name == "json" else str(column_type)

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
        """Stream the staged rows into the staging table with COPY FROM STDIN (CSV).

        Every non-null value is quoted, so an unquoted empty field is NULL and ``""`` is
        the empty string; the text ``NULL`` is just text.
        """
        buffer = io.BytesIO()
        pa_csv.write_csv(
            stage.read(),
            buffer,
            pa_csv.WriteOptions(include_header=False, quoting_style="all_valid"),
        )
        statement = render("postgres/copy_staging.sql", **context)
        if hasattr(cursor, "copy"):  # psycopg 3, which the postgres provider prefers when installed
            with cursor.copy(statement) as copy:
                copy.write(buffer.getbuffer())
        else:  # psycopg2
            buffer.seek(0)
            cursor.copy_expert(statement, buffer)


DIALECTS: dict[str, Callable[[Mapping[str, Any]], Dialect]] = {"postgres": lambda extra: Postgres()}


def dialect_for(conn_type: str, extra: Mapping[str, Any] | None = None) -> Dialect:
    """The dialect of a warehouse connection, configured from the connection's extra."""
    try:
        factory = DIALECTS[conn_type]
    except KeyError:
        raise ValueError(
            f"warehouse connection type {conn_type!r} is not supported (supported: {sorted(DIALECTS)})"
        ) from None
    return factory(extra or {})
