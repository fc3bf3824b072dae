"""Task bodies fail at once on errors no retry can fix, and leave every other error to Airflow's retries."""

from __future__ import annotations

import inspect

import pytest
from airflow.sdk.exceptions import AirflowFailException

from firehose_loader.airflow import tasks
from firehose_loader.airflow.tasks import fails_at_once_when_permanent
from firehose_loader.load import ShrinkingListingError
from firehose_loader.s3io import PermanentS3Error
from firehose_loader.warehouse.protocol import TargetTypeError


@pytest.mark.parametrize(
    "error",
    [
        TargetTypeError("column analytics.events.n is integer, the streams file says bigint: ALTER TABLE ..."),
        ShrinkingListingError("orders hour 2026-03-01T10:00:00+00:00: the listing finds 1 object(s)"),
        PermanentS3Error("NoSuchBucket on s3://firehose-events/: the bucket does not exist"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_a_permanent_error_fails_the_task_without_retries(error: Exception) -> None:
    @fails_at_once_when_permanent
    def body() -> None:
        raise error

    with pytest.raises(AirflowFailException, match=str(error)[:20]) as caught:
        body()
    assert caught.value.__cause__ is error


def test_other_errors_stay_as_they_are_for_airflow_to_retry() -> None:
    @fails_at_once_when_permanent
    def body() -> None:
        raise ConnectionResetError("connection reset by peer")

    with pytest.raises(ConnectionResetError):
        body()


def test_every_task_body_fails_at_once_on_permanent_errors() -> None:
    bodies = [name for name, function in inspect.getmembers(tasks, inspect.isfunction) if name.startswith("run_")]
    assert len(bodies) >= 6
    unwrapped = [name for name in bodies if not hasattr(getattr(tasks, name), "__wrapped__")]
    assert unwrapped == []


def test_the_audit_asks_the_scheduler_for_unfinished_ingest_runs_of_the_hour() -> None:
    """The scheduler's answer comes through the task instance (Airflow's execution API, which a task
    reaches only while Airflow runs it); this stand-in records the question and answers it."""
    from datetime import UTC, datetime

    from tests.unit.stream_factory import make_stream

    asked: list[dict] = []

    class TaskInstance:
        def get_dr_count(self, **question: object) -> int:
            asked.append(question)
            return 1 if question["logical_dates"] == [datetime(2026, 3, 1, 10, tzinfo=UTC)] else 0

    pending = tasks.ingest_pending(make_stream(), {"ti": TaskInstance()})
    assert pending(datetime(2026, 3, 1, 10, tzinfo=UTC)) is True
    assert pending(datetime(2026, 3, 1, 9, tzinfo=UTC)) is False
    assert asked[0] == {
        "dag_id": "ingest_orders",
        "logical_dates": [datetime(2026, 3, 1, 10, tzinfo=UTC)],
        "states": ["queued", "running"],
    }
