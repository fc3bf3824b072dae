"""A DB-API connection that records what the loader sends, standing in for a Redshift connection (not a test module).

Every ``execute``/``executemany`` (statement and parameters), ``commit`` and ``rollback``
is appended to ``events`` in order. A SELECT answers one row: the staging table's row
count for the COPY check, ``answer``'s row when it gives one, zeros for anything else.
``fail`` may raise an exception for a given statement, as the server would.

The row count is ``staged_rows``, or with ``stages`` (S3 URI -> rows of the object there) what
Redshift's COPY would load: the rows of every object whose URI starts with the COPY's source.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlglot
from redshift_connector import ProgrammingError

from firehose_loader.load import STAGING_TABLE


@dataclass
class Event:
    kind: str  # execute, executemany, commit, rollback, close
    statement: str = ""
    parameters: Any = None


def serialization_error() -> ProgrammingError:
    """Error 1023 as redshift_connector raises it: the server's error fields as the first argument."""
    return ProgrammingError(
        {
            "S": "ERROR",
            "C": "XX000",
            "M": "1023",
            "D": "Serializable isolation violation on table - 119371, transactions forming the cycle "
            "are: 1745830, 1745762 (pid:15021)",
            "F": "/home/ec2-user/padb/src/sys/xen_execute.cpp",
            "L": "9797",
            "R": "pg_throw",
        }
    )


@dataclass
class RecordingConnection:
    staged_rows: int = 0
    fail: Callable[[str], BaseException | None] = lambda statement: None
    events: list[Event] = field(default_factory=list)
    stages: dict[str, int] | None = None
    answer: Callable[[str], tuple[Any, ...] | None] = lambda statement: None

    def cursor(self) -> RecordingCursor:
        return RecordingCursor(self)

    def commit(self) -> None:
        self.events.append(Event("commit"))

    def rollback(self) -> None:
        self.events.append(Event("rollback"))

    def close(self) -> None:
        self.events.append(Event("close"))

    # --- reading the record -------------------------------------------------------------------------------

    def statements(self) -> list[str]:
        return [event.statement for event in self.events if event.kind in ("execute", "executemany")]

    def transactions(self) -> list[list[Event]]:
        """The events between transaction ends, each list ending with its commit or rollback."""
        groups: list[list[Event]] = [[]]
        for event in self.events:
            if event.kind == "close":
                continue
            groups[-1].append(event)
            if event.kind in ("commit", "rollback"):
                groups.append([])
        return [group for group in groups if group]


class RecordingCursor:
    def __init__(self, connection: RecordingConnection) -> None:
        self.connection = connection
        self.description: list[tuple[str, ...]] | None = None
        self._row: tuple[Any, ...] | None = None

    def __enter__(self) -> RecordingCursor:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        return None

    def execute(self, statement: str, parameters: Any = None) -> None:
        self.connection.events.append(Event("execute", statement, parameters))
        error = self.connection.fail(statement)
        if error is not None:
            raise error
        self.description, self._row = None, None
        copy_source = re.match(r"COPY \S+\nFROM '([^']+)'", statement)
        if copy_source and self.connection.stages is not None:
            source = copy_source.group(1)
            self.connection.staged_rows = sum(
                rows for uri, rows in self.connection.stages.items() if uri.startswith(source)
            )
        if re.match(r"\s*SELECT\b", statement):
            self._answer(statement)

    def executemany(self, statement: str, parameter_sets: Any) -> None:
        self.connection.events.append(Event("executemany", statement, list(parameter_sets)))
        error = self.connection.fail(statement)
        if error is not None:
            raise error

    def fetchone(self) -> tuple[Any, ...] | None:
        return self._row

    def fetchall(self) -> list[tuple[Any, ...]]:
        # Only the target type check reads many rows: the catalog of a table the recording does not know.
        return []

    def _answer(self, statement: str) -> None:
        if re.fullmatch(rf'\s*SELECT COUNT\(\*\) FROM "{STAGING_TABLE}"\s*', statement):
            self.description, self._row = [("count",)], (self.connection.staged_rows,)
            return
        answered = self.connection.answer(statement)
        if answered is not None:
            self.description, self._row = [(f"column{index}",) for index in range(len(answered))], answered
            return
        names = [column.alias_or_name for column in sqlglot.parse_one(statement, read="redshift").expressions]
        self.description = [(name,) for name in names]
        self._row = tuple(0 for _ in names)
