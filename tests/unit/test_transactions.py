"""Serialization failures: recognised in each driver's shape, and the whole transaction retried, a bounded number of times."""

from __future__ import annotations

from typing import Any

import psycopg.errors
import psycopg2.errors
import pytest
from redshift_connector import InterfaceError, ProgrammingError

from firehose_loader.config import Settings
from firehose_loader.load import merge_hour
from firehose_loader.warehouse import transactions
from firehose_loader.warehouse.postgres import Postgres
from firehose_loader.warehouse.transactions import backoff_delay, is_serialization_failure, retry_serialization_failures
from tests.unit.stream_factory import make_stream

REDSHIFT_1023 = ProgrammingError(
    {"S": "ERROR", "C": "XX000", "M": "1023", "D": "Serializable isolation violation on table - 1, transactions ..."}
)


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(psycopg.errors.SerializationFailure("could not serialize access"), id="psycopg-40001"),
        pytest.param(psycopg.errors.DeadlockDetected("deadlock detected"), id="psycopg-40P01"),
        pytest.param(
            psycopg2.errors.SerializationFailure("could not serialize access due to concurrent update"),
            id="psycopg2",
        ),
        # lock_timeout passed: the transaction is rolled back, and running it again is the remedy
        pytest.param(psycopg.errors.LockNotAvailable("canceling statement due to lock timeout"), id="psycopg-55P03"),
        pytest.param(psycopg2.errors.LockNotAvailable("canceling statement due to lock timeout"), id="psycopg2-55P03"),
        pytest.param(REDSHIFT_1023, id="redshift-1023"),
        pytest.param(ProgrammingError({"S": "ERROR", "C": "40001", "M": "x"}), id="redshift-40001"),
        pytest.param(
            RuntimeError("Statement ... FAILED: ERROR: 1023 DETAIL: Serializable isolation violation on table"),
            id="data-api-text",
        ),
    ],
)
def test_serialization_failures_are_recognised(error: Exception) -> None:
    assert is_serialization_failure(error)


def test_a_wrapped_serialization_failure_is_recognised() -> None:
    try:
        try:
            raise REDSHIFT_1023
        except ProgrammingError as exc:
            raise RuntimeError("merge failed") from exc
    except RuntimeError as wrapped:
        assert is_serialization_failure(wrapped)


@pytest.mark.parametrize(
    "error",
    [
        psycopg.errors.UndefinedTable("relation does not exist"),
        ProgrammingError({"S": "ERROR", "C": "XX000", "M": "S3ServiceException:Access Denied,Status 403"}),
        ProgrammingError({"S": "ERROR", "C": "22001", "M": "value too long for type character varying(64)"}),
        InterfaceError("connection is closed"),
        # a statement over statement_timeout fails the task's try instead: it would time out again at once
        psycopg.errors.QueryCanceled("canceling statement due to statement timeout"),
        ValueError("10230 rows"),
    ],
)
def test_other_errors_are_not(error: Exception) -> None:
    assert not is_serialization_failure(error)


def test_backoff_grows_and_is_capped() -> None:
    for attempt in range(1, 10):
        expected = min(transactions.MAX_DELAY_SECONDS, transactions.FIRST_DELAY_SECONDS * 2 ** (attempt - 1))
        assert expected / 2 <= backoff_delay(attempt) <= expected


class FakeConnection:
    """A DB-API connection (and its cursor) that fails the first ``failures`` transactions at their second statement."""

    def __init__(self, error: Exception, failures: int = 1) -> None:
        self.error = error
        self.failures = failures
        self.log: list[str] = []
        self.in_transaction = 0

    def cursor(self) -> FakeConnection:
        return self

    def __enter__(self) -> FakeConnection:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        return None

    def execute(self, statement: str, parameters: Any = None) -> None:
        self.log.append(statement.split("\n")[0][:40])
        self.in_transaction += 1
        if self.failures and self.in_transaction == 2:
            self.failures -= 1
            raise self.error

    def fetchall(self) -> list:
        return []  # the catalog knows no table and the hour no ledger: no type check, nothing gone

    def executemany(self, statement: str, parameter_sets: Any) -> None:
        self.log.append(statement.split("\n")[0][:40])

    def commit(self) -> None:
        self.log.append("COMMIT")
        self.in_transaction = 0

    def rollback(self) -> None:
        self.log.append("ROLLBACK")
        self.in_transaction = 0


def transaction(conn: FakeConnection) -> str:
    """One whole transaction, as merge_hour runs one: statements, then commit; rollback and raise on error."""
    try:
        conn.execute("first")
        conn.execute("second")
        conn.execute("third")
        conn.commit()
    except Exception:
        conn.rollback()
        raise
    return "done"


@pytest.fixture
def delays(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    recorded: list[float] = []
    monkeypatch.setattr(transactions, "sleep", recorded.append)
    return recorded


def test_a_transaction_that_fails_once_is_run_again_whole(delays: list[float]) -> None:
    conn = FakeConnection(psycopg.errors.SerializationFailure("could not serialize access"))
    assert retry_serialization_failures(transaction)(conn) == "done"
    assert conn.log == ["first", "second", "ROLLBACK", "first", "second", "third", "COMMIT"]
    assert len(delays) == 1


def test_the_retry_gives_up_after_the_last_attempt(delays: list[float]) -> None:
    conn = FakeConnection(REDSHIFT_1023, failures=99)
    with pytest.raises(ProgrammingError):
        retry_serialization_failures(transaction)(conn)
    assert conn.log.count("ROLLBACK") == transactions.ATTEMPTS
    assert "COMMIT" not in conn.log
    assert len(delays) == transactions.ATTEMPTS - 1


def test_other_errors_fail_at_once(delays: list[float]) -> None:
    conn = FakeConnection(psycopg.errors.UndefinedTable("relation does not exist"))
    with pytest.raises(psycopg.errors.UndefinedTable):
        retry_serialization_failures(transaction)(conn)
    assert conn.log == ["first", "second", "ROLLBACK"]
    assert delays == []


def test_merge_hour_is_retried_on_postgresql_too(delays: list[float]) -> None:
    """The load's transaction (merge_hour) carries the retry, whatever the dialect."""
    assert merge_hour.__wrapped__  # functools.wraps keeps the undecorated function
    stream = make_stream()
    conn = FakeConnection(psycopg.errors.SerializationFailure("could not serialize access"))
    manifest = {"stream": stream.name, "hour": "2026-03-01T10:00:00+00:00", "stage_key": None, "objects": []}
    manifest["error_objects"] = 0
    merge_hour(conn, stream, Settings(), Postgres(), manifest, None, "manual__1")
    assert conn.log.count("ROLLBACK") == 1 and conn.log.count("COMMIT") == 1
    first, second = conn.log.index("ROLLBACK"), len(conn.log)
    assert conn.log[first + 1] == conn.log[0]  # the second attempt starts from the first statement
    assert second > first and len(delays) == 1
