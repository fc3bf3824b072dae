"""What every warehouse supplies to the shared templates (the Dialect protocol), and the stage it loads."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import pyarrow as pa

from firehose_loader.config import ColumnType
from firehose_loader.errors import PermanentError
from firehose_loader.records.coercion import WarehouseLimits


@dataclass(frozen=True)
class Stage:
    """The staged Parquet batch of a run: where it is, and how to read it a record batch at a time.

    One stage file holds the hour's deduplicated rows. A split hour's stage (``split``) is the COPY
    manifest of its part stages, each deduplicated on its own: the merge dedupes across them in the
    warehouse (dedupe_parts.sql), so no worker holds the hour's keys.
    """

    bucket: str
    key: str  # the stage file, or a split hour's COPY manifest
    # The stage's rows a record batch at a time: all columns, or only those named.
    batches: Callable[[Sequence[str] | None], Iterator[pa.RecordBatch]]
    rows: int | None = None  # how many rows the stage holds, when the caller knows
    # The columns the stage was written with (names and declared types, in the file's order);
    # None: the stream's columns as declared now.
    columns: Mapping[str, ColumnType] | None = None
    split: bool = False
    # The key of a COPY manifest listing exactly the stage's files (mandatory, each once), written
    # on first use when the stage has none: a COPY of a key prefix could load other objects too.
    copy_manifest: Callable[[], str] | None = None
    # The COPY manifest of the stage's key files (key, order_by, provenance: a lock-free audit's
    # plan reads no more), or None where it has none (a stage written before they were).
    key_manifest: Callable[[], str | None] | None = None

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


class Dialect(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def object_key_type(self) -> str: ...

    @property
    def limits(self) -> WarehouseLimits:
        """What the warehouse stores, which validation checks before staging (a value beyond is quarantined)."""
        ...

    @property
    def text_collation(self) -> str:
        """What makes a text comparison go by code point (as Python and Arrow compare), e.g. ' COLLATE "C"'."""
        ...

    @property
    def clock(self) -> str:
        """A SQL expression for the current moment, as a UTC timestamp, when the statement runs."""
        ...

    @property
    def stages_rows(self) -> bool:
        """True: the staging table holds whole rows and merge.sql inserts the winners from it.
        False: it holds only the plan's columns and insert_winners COPYs the winners."""
        ...

    def column_type(self, column_type: ColumnType) -> str: ...

    def staging_type(self, column_type: ColumnType) -> str: ...

    def insert_expression(self, name: str, column_type: ColumnType) -> str: ...

    def table_options(self, key: tuple[str, ...], order_by: str) -> str: ...

    def extra_ddl_templates(self) -> tuple[str, ...]: ...

    def catalog_template(self) -> str:
        """A read of the tables (and indexes) in the loader's and the target's schemas: (schema, name) rows."""
        ...

    def session_timeouts_template(self) -> str:
        """The SET statements of a session's lock and statement timeouts."""
        ...

    def lock_statement(self, context: dict[str, Any]) -> str: ...

    def add_column_statement(self, target: tuple[str, str], name: str, column_type: str) -> str:
        """ALTER TABLE ... ADD COLUMN for a column of the dialect's ``column_type`` spelling."""
        ...

    def alter_column_statement(self, target: tuple[str, str], name: str, found: str, declared: str) -> str:
        """The statement(s) that change a target column of type ``found`` to ``declared`` (never run by the loader)."""
        ...

    def copy_into_staging(self, cursor: Any, context: dict[str, Any], stage: Stage) -> None: ...

    def insert_winners(self, cursor: Any, context: dict[str, Any], stage: Stage) -> None: ...


class TargetTypeError(PermanentError, ValueError):
    """The target table has a column whose type is not the one the streams file declares."""


class StageSchemaError(RuntimeError):
    """A stage's columns no longer fit the stream's (a type changed): the hour must be extracted again."""
