"""Redshift through the Data API: a load transaction sent as one BatchExecuteStatement, behind a DB-API-shaped connection.

Many deployments (MWAA among them) have no network path to the cluster; the Data API is an
HTTPS endpoint. It keeps no session across calls, so nothing may span two calls: the
statements a transaction executes are collected and sent at ``commit`` as one
BatchExecuteStatement, which Redshift runs as one transaction in one session (the merge's
temporary tables live and die inside it). ``rollback`` drops what was collected: nothing
was sent.

What the batch cannot do, and what the connection does instead:

- Bind parameters: BatchExecuteStatement takes none, so each statement's values are written
  as SQL literals (``render.inline_parameters``).
- Reads mid-transaction: a read sent before any write of the transaction is its own small
  ExecuteStatement (read back with GetStatementResult), outside the batch; a read after a
  write is refused (DataApiBatchError). A check that must hold inside the transaction
  is a *guard* (``BatchCursor.guard``): a statement that fails the batch when the check
  fails, whose failure is mapped to the caller's own error after the rollback.
- Lists in SQL: a list of rows (``executemany`` of an ``INSERT ... VALUES``) is written to S3
  as JSON lines, named by its digest, and the batch COPYs it; no statement grows with the
  hour's objects, so every batch stays under the Data API's limits (MAX_STATEMENTS,
  MAX_STATEMENT_BYTES), which are checked before anything is sent.

A response lost on the way back (a connection error or a read timeout) is answered by
sending the batch again with the same client token, which the Data API treats as the same
request; were it run twice, the ledger makes the second merge of an hour change nothing.
The connection waits for the batch by polling DescribeStatement with backoff, no longer than
its timeout (the stream's statement_timeout_minutes), and then cancels it. A failed batch
raises DataApiStatementError naming the statement (1-based) and Redshift's message, which
``transactions.is_serialization_failure`` recognises for a serialization or lock failure.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from botocore.exceptions import ConnectionClosedError, ConnectTimeoutError, EndpointConnectionError, ReadTimeoutError

from firehose_loader.errors import PermanentError
from firehose_loader.warehouse.render import inline_parameters, render
from firehose_loader.warehouse.transactions import backoff_delay

log = logging.getLogger(__name__)

# The Data API's limits on BatchExecuteStatement (AWS: "Considerations when calling the Amazon
# Redshift Data API"): at most 40 statements, each at most 100 KB of text.
MAX_STATEMENTS = 40
MAX_STATEMENT_BYTES = 100 * 1024
# How often a lost response is answered by sending the same request again (same client token).
RESUBMISSIONS = 3
FIRST_POLL_SECONDS = 0.5
MAX_POLL_SECONDS = 10.0
# What a lost response looks like to botocore: the request may or may not have reached the service.
LOST_RESPONSE = (ConnectionClosedError, EndpointConnectionError, ReadTimeoutError, ConnectTimeoutError)
RUNNING = frozenset({"SUBMITTED", "PICKED", "STARTED"})
READ = re.compile(r"\s*(SELECT|WITH)\b", re.IGNORECASE)
INSERT_VALUES = re.compile(
    r'\s*INSERT INTO\s+(?P<table>"(?:[^"]|"")+"(?:\."(?:[^"]|"")+")?)\s*\((?P<columns>[^)]*)\)'
    r"\s*VALUES\s*\((?P<values>.*)\)\s*;?\s*",
    re.DOTALL,
)
PLACEHOLDER = re.compile(r"%\((\w+)\)s")
QUOTED_NAME = re.compile(r'"((?:[^"]|"")+)"')
# A batch's sub-statement ids are the batch's id with ":<number>" (1-based).
SUB_STATEMENT_NUMBER = re.compile(r":(\d+)$")


class DataApiConfigError(PermanentError, ValueError):
    """The warehouse connection's ``data_api`` extra is missing a field, or has one the loader does not know."""


class DataApiLimitError(PermanentError, ValueError):
    """A batch would exceed the Data API's limits: more than 40 statements, or a statement over 100 KB."""


class DataApiBatchError(PermanentError, RuntimeError):
    """What a Data API batch cannot carry: a read after a write of the transaction, a list that is no INSERT ... VALUES."""


class DataApiStatementError(RuntimeError):
    """A Data API statement (or one statement of a batch) failed or was aborted."""

    def __init__(self, statement_id: str, index: int | None, count: int, message: str, statement: str) -> None:
        self.statement_id = statement_id
        self.index = index  # 1-based, as the Data API numbers a batch's sub-statements; None: not known
        self.count = count
        self.message = message
        where = f"statement {index} of {count}" if index is not None else f"a batch of {count} statement(s)"
        first_line = statement.strip().splitlines()[0][:200] if statement.strip() else ""
        super().__init__(f"Redshift Data API {statement_id}: {where} failed: {message} ({first_line})")


class DataApiTimeoutError(RuntimeError):
    """A Data API statement still ran when its time was up; it was cancelled."""


@dataclass(frozen=True)
class DataApiTarget:
    """Where the Data API runs statements, and as whom: the warehouse connection's extra ``data_api``.

    A provisioned cluster (``cluster_identifier``) with ``db_user`` (temporary credentials from
    redshift:GetClusterCredentials) or ``secret_arn`` (Secrets Manager); or a Serverless
    ``workgroup_name``, with ``secret_arn`` or none (the caller's IAM identity). ``aws_conn_id``:
    the Airflow AWS connection of the Data API calls (default: the loader's aws_conn_id).
    """

    database: str
    cluster_identifier: str | None = None
    workgroup_name: str | None = None
    db_user: str | None = None
    secret_arn: str | None = None
    aws_conn_id: str | None = None

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise DataApiConfigError(f"data_api: {item.name!r} must be a non-empty string, got {value!r}")
        if (self.cluster_identifier is None) == (self.workgroup_name is None):
            raise DataApiConfigError("data_api: set exactly one of 'cluster_identifier' and 'workgroup_name'")
        if self.cluster_identifier is not None and (self.db_user is None) == (self.secret_arn is None):
            raise DataApiConfigError("data_api: a cluster_identifier needs exactly one of 'db_user' and 'secret_arn'")
        if self.workgroup_name is not None and self.db_user is not None:
            raise DataApiConfigError(
                "data_api: a workgroup_name takes 'secret_arn' or nothing (your IAM identity), not 'db_user'"
            )

    @classmethod
    def from_extra(cls, value: Any) -> DataApiTarget:
        if not isinstance(value, Mapping):
            raise DataApiConfigError(f"data_api: expected an object of settings, got {value!r}")
        known = {item.name for item in fields(cls)}
        if unknown := sorted(set(value) - known):
            raise DataApiConfigError(f"data_api: unknown setting(s) {unknown}; known: {sorted(known)}")
        if "database" not in value:
            raise DataApiConfigError("data_api: 'database' is required (the database the loader's tables are in)")
        return cls(**value)

    def api_arguments(self) -> dict[str, str]:
        """The arguments every ExecuteStatement and BatchExecuteStatement call carries."""
        # The API's names are the fields' in PascalCase (cluster_identifier: ClusterIdentifier).
        return {
            "".join(part.capitalize() for part in item.name.split("_")): getattr(self, item.name)
            for item in fields(self)
            if item.name != "aws_conn_id" and getattr(self, item.name) is not None
        }


def check_batch_limits(statements: Sequence[str]) -> None:
    """Refuse a batch the Data API would refuse, before anything is sent."""
    if not statements:
        raise DataApiLimitError("a Data API batch needs at least one statement")
    if len(statements) > MAX_STATEMENTS:
        raise DataApiLimitError(
            f"a Data API batch holds at most {MAX_STATEMENTS} statements; this transaction has {len(statements)}"
        )
    for index, statement in enumerate(statements, start=1):
        size = len(statement.encode("utf-8"))
        if size > MAX_STATEMENT_BYTES:
            first_line = statement.strip().splitlines()[0][:200]
            raise DataApiLimitError(
                f"statement {index} of the Data API batch is {size} bytes, over the limit of "
                f"{MAX_STATEMENT_BYTES} ({first_line})"
            )


def client_token(statements: Sequence[str]) -> str:
    """The batch's idempotency token: the same statements are the same request (64 hex digits, the API's maximum)."""
    digest = hashlib.sha256()
    for statement in statements:
        digest.update(statement.encode("utf-8"))
        digest.update(b"\x00")
    return digest.hexdigest()


@dataclass(frozen=True)
class RowsInsert:
    """An ``INSERT INTO table (columns) VALUES (...)`` with one placeholder per column: what executemany writes."""

    table: tuple[str, ...]
    columns: tuple[str, ...]
    parameters: tuple[str, ...]


def rows_insert(statement: str) -> RowsInsert:
    """The table, columns and parameter names of a one-row INSERT, or DataApiBatchError if it is not one."""
    match = INSERT_VALUES.fullmatch(statement)
    if match is None:
        raise DataApiBatchError(
            f"in Data API mode a list of rows is COPYed from S3, which needs an INSERT ... VALUES: {statement[:120]!r}"
        )
    table = tuple(part.replace('""', '"') for part in QUOTED_NAME.findall(match.group("table")))
    columns = tuple(column.strip() for column in match.group("columns").split(","))
    values = top_level_items(match.group("values"))
    parameters = []
    for value in values:
        names = PLACEHOLDER.findall(value)
        if len(names) != 1:
            raise DataApiBatchError(
                f"in Data API mode each value of a list INSERT must be one parameter: {value.strip()!r}"
            )
        parameters.append(names[0])
    if len(columns) != len(parameters):
        raise DataApiBatchError(f"an INSERT with {len(columns)} columns and {len(parameters)} values")
    return RowsInsert(table, columns, tuple(parameters))


def top_level_items(text: str) -> list[str]:
    """``text`` split at the commas outside parentheses (``CAST(x AS numeric(12,2)), y`` is two items)."""
    items, depth, start = [], 0, 0
    for position, character in enumerate(text):
        if character == "(":
            depth += 1
        elif character == ")":
            depth -= 1
        elif character == "," and depth == 0:
            items.append(text[start:position])
            start = position + 1
    items.append(text[start:])
    return items


def json_value(value: Any) -> bool | int | float | str | None:
    """A row value as COPY's JSON reads it into a column (times in the ISO form Redshift's TIMEFORMAT 'auto' reads)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime | date):
        if isinstance(value, datetime) and value.utcoffset() is not None:
            raise ValueError(f"a row value {value!r}: the loader's rows hold naive UTC times")
        return value.isoformat(sep=" ") if isinstance(value, datetime) else value.isoformat()
    raise TypeError(f"no JSON value for a {type(value).__name__} in a row COPYed from S3")


def rows_body(insert: RowsInsert, rows: Iterable[Mapping[str, Any]]) -> bytes:
    """The rows as JSON lines, one object per row named by the INSERT's columns."""
    lines = [
        json.dumps(
            {column: json_value(row[name]) for column, name in zip(insert.columns, insert.parameters, strict=True)},
            ensure_ascii=False,
            separators=(",", ":"),
        )
        for row in rows
    ]
    return ("\n".join(lines) + "\n").encode("utf-8")


# What a guard's failure means: given a read (statement -> rows, run after the batch rolled back),
# the caller's own error, or None to raise the batch's.
Refusal = Callable[[Callable[[str], list[tuple[Any, ...]]]], Exception | None]


@dataclass(frozen=True)
class Guard:
    """A statement of the batch that fails when a check fails, and what that failure means."""

    statement: str
    refusal: Refusal


@dataclass(frozen=True)
class ReadResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]


# The store of a list of rows: writes the bytes to S3 and returns the s3:// URI the batch COPYs.
RowsStore = Callable[[bytes], str]


class DataApiConnection:
    """A DB-API-shaped connection over Redshift's Data API (``client``: a boto3 ``redshift-data`` client).

    ``session_statements`` (the stream's SET statement_timeout) open every batch, since no
    session outlives a call. ``iam_role`` is the role the batch's COPYs of row lists assume,
    and ``store_rows`` where those lists are written.
    """

    def __init__(
        self,
        client: Any,
        target: DataApiTarget,
        *,
        iam_role: str,
        timeout_seconds: float,
        session_statements: Sequence[str] = (),
        store_rows: RowsStore | None = None,
        statement_name: str = "firehose-loader",
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.target = target
        self.iam_role = iam_role
        self.timeout_seconds = timeout_seconds
        self.session_statements = list(session_statements)
        self.store_rows = store_rows
        self.statement_name = statement_name[:500]
        self.sleep = sleep
        self.clock = clock
        self.pending: list[str] = []
        self.guards: dict[int, Guard] = {}

    # --- DB-API ---------------------------------------------------------------------------------------------

    def cursor(self) -> BatchCursor:
        return BatchCursor(self)

    def commit(self) -> None:
        """Send the transaction's statements as one batch and wait for it; nothing to send, nothing sent."""
        pending, guards = self.pending, self.guards
        self.pending, self.guards = [], {}
        if not pending:
            return
        statements = [*self.session_statements, *pending]
        check_batch_limits(statements)
        try:
            self.run_batch(statements)
        except DataApiStatementError as exc:
            guard = None if exc.index is None else guards.get(exc.index - len(self.session_statements) - 1)
            refusal = None if guard is None else guard.refusal(lambda statement: self.read(statement).rows)
            if refusal is not None:
                raise refusal from exc
            raise

    def rollback(self) -> None:
        self.pending, self.guards = [], {}

    def close(self) -> None:
        self.rollback()  # no session to close: each call was its own

    # --- collecting ---------------------------------------------------------------------------------------

    def add(self, statement: str) -> None:
        self.pending.append(statement)

    def add_guard(self, guard: Guard) -> None:
        self.guards[len(self.pending)] = guard
        self.pending.append(guard.statement)

    # --- calls --------------------------------------------------------------------------------------------

    def run_batch(self, statements: Sequence[str]) -> dict[str, Any]:
        """Send the statements as one BatchExecuteStatement (again, with the same token, if the response is lost)."""
        token = client_token(statements)
        response = self._resending(
            "BatchExecuteStatement",
            lambda: self.client.batch_execute_statement(
                Sqls=list(statements),
                ClientToken=token,
                StatementName=self.statement_name,
                **self.target.api_arguments(),
            ),
        )
        return self.wait(response["Id"], statements)

    def read(self, statement: str) -> ReadResult:
        """A small read as its own ExecuteStatement, its rows read back with GetStatementResult."""
        response = self._resending(
            "ExecuteStatement",
            lambda: self.client.execute_statement(
                Sql=statement, StatementName=self.statement_name, **self.target.api_arguments()
            ),
        )
        described = self.wait(response["Id"], [statement])
        if not described.get("HasResultSet"):
            return ReadResult([], [])
        columns: list[str] = []
        rows: list[tuple[Any, ...]] = []
        arguments: dict[str, str] = {"Id": response["Id"]}
        while True:
            page = self.client.get_statement_result(**arguments)
            metadata = page.get("ColumnMetadata") or []
            columns = columns or [column["name"] for column in metadata]
            types = [column.get("typeName", "") for column in metadata]
            rows += [
                tuple(field_value(field, kind) for field, kind in zip(record, types, strict=True))
                for record in page["Records"]
            ]
            if not page.get("NextToken"):
                return ReadResult(columns, rows)
            arguments["NextToken"] = page["NextToken"]

    def wait(self, statement_id: str, statements: Sequence[str]) -> dict[str, Any]:
        """Poll DescribeStatement with backoff until the statement ends; cancel it when the timeout passes."""
        deadline = self.clock() + self.timeout_seconds
        delay = FIRST_POLL_SECONDS
        while True:
            described: dict[str, Any] = self.client.describe_statement(Id=statement_id)
            status = described["Status"]
            if status == "FINISHED":
                return described
            if status not in RUNNING:
                raise statement_error(described, statements)
            if self.clock() + delay > deadline:
                self.client.cancel_statement(Id=statement_id)
                raise DataApiTimeoutError(
                    f"Redshift Data API {statement_id} ({len(statements)} statement(s)) still {status} after "
                    f"{self.timeout_seconds:.0f} s (the stream's statement_timeout_minutes); cancelled"
                )
            self.sleep(delay)
            delay = min(delay * 2, MAX_POLL_SECONDS)

    def _resending(self, operation: str, call: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        attempt = 1
        while True:
            try:
                return call()
            except LOST_RESPONSE as exc:
                if attempt > RESUBMISSIONS:
                    raise
                delay = backoff_delay(attempt)
                log.warning(
                    "%s: no response (%s); sending the same request again in %.1f s (%d of %d)",
                    operation,
                    exc,
                    delay,
                    attempt,
                    RESUBMISSIONS,
                )
                self.sleep(delay)
                attempt += 1


def statement_error(described: Mapping[str, Any], statements: Sequence[str]) -> DataApiStatementError:
    """The error of a failed or aborted statement, naming the sub-statement of a batch that failed.

    The statements after a batch's failed one are aborted with it; the failed one is named.
    """
    subs = list(described.get("SubStatements") or [])
    for status in ("FAILED", "ABORTED"):
        for position, sub in enumerate(subs, start=1):
            if sub.get("Status") == status:
                numbered = SUB_STATEMENT_NUMBER.search(str(sub.get("Id", "")))
                index = int(numbered.group(1)) if numbered else position
                message = sub.get("Error") or described.get("Error") or status
                statement = statements[index - 1] if 0 < index <= len(statements) else ""
                return DataApiStatementError(described["Id"], index, len(statements), message, statement)
    message = described.get("Error") or described["Status"]
    if len(statements) == 1:
        return DataApiStatementError(described["Id"], 1, 1, message, statements[0])
    return DataApiStatementError(described["Id"], None, len(statements), message, "")


def field_value(field: Mapping[str, Any], type_name: str) -> Any:
    """One GetStatementResult field as the value a DB-API driver returns for its Redshift type."""
    if field.get("isNull"):
        return None
    for name in ("longValue", "doubleValue", "booleanValue", "blobValue"):
        if name in field:
            return field[name]
    text = field["stringValue"]
    kind = type_name.lower()
    if kind in ("timestamp", "timestamptz"):
        return datetime.fromisoformat(text)
    if kind == "date":
        return date.fromisoformat(text)
    if kind == "numeric":
        return Decimal(text)
    return text


class BatchCursor:
    """The cursor of a DataApiConnection: writes collect into the batch, a read before them is sent at once."""

    def __init__(self, connection: DataApiConnection) -> None:
        self.connection = connection
        self.description: list[tuple[str, ...]] | None = None
        self.rows: list[tuple[Any, ...]] = []

    def __enter__(self) -> BatchCursor:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        return None

    @property
    def rowcount(self) -> int:
        raise DataApiBatchError("in Data API mode a statement's row count is known only after the batch")

    def execute(self, statement: str, parameters: Mapping[str, Any] | None = None) -> None:
        sql = statement.strip() if parameters is None else inline_parameters(statement, parameters).strip()
        if READ.match(sql) is None:
            self.connection.add(sql)
            return
        if self.connection.pending:
            raise DataApiBatchError(
                "in Data API mode a transaction is one batch, which cannot be read in the middle; this read comes "
                f"after {len(self.connection.pending)} statement(s) of it: {sql.splitlines()[0][:120]!r}"
            )
        result = self.connection.read(sql)
        self.description = [(name,) for name in result.columns]
        self.rows = list(result.rows)

    def executemany(self, statement: str, parameter_sets: Iterable[Mapping[str, Any]]) -> None:
        """A list of rows for an INSERT ... VALUES: written to S3 as JSON lines and COPYed by the batch."""
        rows = list(parameter_sets)
        if not rows:
            return
        insert = rows_insert(statement)
        if self.connection.store_rows is None:
            raise DataApiBatchError("this Data API connection has no S3 location for lists of rows")
        source = self.connection.store_rows(rows_body(insert, rows))
        copy = render(
            "redshift/copy_rows.sql",
            rows_table=list(insert.table),
            rows_columns=list(insert.columns),
            rows_source=source,
            iam_role=self.connection.iam_role,
        )
        self.connection.add(copy.strip())

    def guard(self, statement: str, parameters: Mapping[str, Any], refusal: Refusal) -> None:
        """A statement that fails the batch when its check fails; ``refusal`` maps that failure afterwards."""
        self.connection.add_guard(Guard(inline_parameters(statement, parameters).strip(), refusal))

    def fetchone(self) -> tuple[Any, ...] | None:
        return self.rows.pop(0) if self.rows else None

    def fetchall(self) -> list[tuple[Any, ...]]:
        rows, self.rows = self.rows, []
        return rows
