"""What every warehouse supplies to the shared templates (the Dialect protocol), and the stage it loads."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import pyarrow as pa

from firehose_loader.config import ColumnType
from firehose_loader.errors import PermanentError


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
    @property
    def name(self) -> str: ...

    @property
    def object_key_type(self) -> str: ...

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

    def lock_statement(self, context: dict[str, Any]) -> str: ...

    def copy_into_staging(self, cursor: Any, context: dict[str, Any], stage: Stage) -> None: ...

    def insert_winners(self, cursor: Any, context: dict[str, Any], stage: Stage) -> None: ...


class TargetTypeError(PermanentError, ValueError):
    """The target table has a column whose type is not the one the streams file declares."""
