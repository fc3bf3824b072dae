"""Retry a whole warehouse transaction when the warehouse cancelled it to keep transactions serializable.

PostgreSQL reports ``serialization_failure`` (SQLSTATE 40001) or ``deadlock_detected`` (40P01);
Amazon Redshift reports error 1023, "Serializable isolation violation on table", which
``redshift_connector`` raises as a ``ProgrammingError`` whose first argument is the server's
error fields, e.g. ``{'C': 'XX000', 'M': '1023', 'D': 'Serializable isolation violation ...'}``
(the SQLSTATE is the generic XX000, not 40001, so the code and the text are checked too).
A merge that gave up waiting for its lock (PostgreSQL's ``lock_timeout``, SQLSTATE 55P03,
set per session from the stream's ``lock_timeout_seconds``) is retried the same way: the writer
it waited behind has usually finished by the next attempt, and meanwhile nothing queued behind
the waiting merge (a real-time writer) stays blocked.
In every case the transaction was rolled back as a whole and the remedy is to run it again
from its first statement: retrying a single statement would run it outside the transaction
that the others were part of.
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

log = logging.getLogger(__name__)

LOCK_TIMEOUT_SQLSTATE = "55P03"  # lock_not_available: lock_timeout passed
RETRYABLE_SQLSTATES = frozenset({"40001", "40P01", LOCK_TIMEOUT_SQLSTATE})
REDSHIFT_SERIALIZATION_CODE = "1023"
RETRYABLE_TEXTS = (
    "serializable isolation violation",
    "could not serialize access",
    "deadlock detected",
    "canceling statement due to lock timeout",
)

ATTEMPTS = 4
FIRST_DELAY_SECONDS = 2.0
MAX_DELAY_SECONDS = 30.0

# Looked up at call time, so tests can replace it.
sleep = time.sleep

T = TypeVar("T")


def _server_fields(exc: BaseException) -> Mapping[str, Any]:
    """The error fields redshift_connector puts in an exception's first argument, if any."""
    first = exc.args[0] if exc.args else None
    return first if isinstance(first, Mapping) else {}


def is_serialization_failure(exc: BaseException) -> bool:
    """Whether the warehouse rolled the transaction back to keep transactions serializable."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        fields = _server_fields(current)
        codes = {
            getattr(current, "sqlstate", None),  # psycopg 3
            getattr(current, "pgcode", None),  # psycopg2
            fields.get("C"),  # redshift_connector
        }
        if codes & RETRYABLE_SQLSTATES:
            return True
        if str(fields.get("M", "")).strip().startswith(REDSHIFT_SERIALIZATION_CODE):
            return True
        text = " ".join(str(part) for part in (current, fields.get("D", ""))).lower()
        if any(marker in text for marker in RETRYABLE_TEXTS):  # e.g. the Data API's error text
            return True
        current = current.__cause__ or current.__context__
    return False


def backoff_delay(attempt: int) -> float:
    """Seconds to wait after the given failed attempt (1-based): 2, 4, 8 ... at most 30, with jitter."""
    delay = min(MAX_DELAY_SECONDS, FIRST_DELAY_SECONDS * 2 ** (attempt - 1))
    return delay * random.uniform(0.5, 1.0)


def retry_serialization_failures(function: Callable[..., T]) -> Callable[..., T]:
    """Run ``function`` again, up to ``ATTEMPTS`` times in all, when it fails with a serialization failure.

    ``function`` must run one whole transaction, commit it, and roll it back before raising,
    so that every attempt starts from a clean connection; it must be safe to run again from
    its first statement (the load's session-local tables are dropped and recreated, the stage
    is copied again).
    """

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        attempt = 1
        while True:
            try:
                return function(*args, **kwargs)
            except Exception as exc:
                if attempt >= ATTEMPTS or not is_serialization_failure(exc):
                    raise
                delay = backoff_delay(attempt)
                log.warning(
                    "%s: the warehouse cancelled the transaction to keep it serializable, or it waited "
                    "longer than lock_timeout (%s); "
                    "running the whole transaction again in %.1f s (attempt %d of %d)",
                    function.__name__,
                    exc,
                    delay,
                    attempt + 1,
                    ATTEMPTS,
                )
                sleep(delay)
                attempt += 1

    return wrapper


UNIQUE_VIOLATION_SQLSTATE = "23505"


def is_unique_violation(exc: BaseException) -> bool:
    """Whether the statement broke a unique or primary key (PostgreSQL enforces them; Redshift does not)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        codes = {getattr(current, "sqlstate", None), getattr(current, "pgcode", None), _server_fields(current).get("C")}
        if UNIQUE_VIOLATION_SQLSTATE in codes:
            return True
        current = current.__cause__ or current.__context__
    return False
