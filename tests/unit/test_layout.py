"""Which keys belong to an hour."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, timezone

import pytest

from firehose_loader.layout import (
    StageWriter,
    hour_folder,
    hour_prefix,
    hour_start,
    is_hour_object,
    object_basename,
    part_stage_key,
    stage_key,
)
from tests.unit.stream_factory import make_stream

PREFIX = "events/"
HOUR_01 = datetime(2026, 1, 2, 1, tzinfo=UTC)
PLUS_0530 = timezone(timedelta(hours=5, minutes=30))


def test_hour_prefix_is_zero_padded_with_trailing_slash() -> None:
    assert hour_prefix(PREFIX, HOUR_01) == "events/2026/01/02/01/"
    assert hour_prefix("", datetime(2026, 11, 30, 23, tzinfo=UTC)) == "2026/11/30/23/"


def test_hour_prefix_of_a_moment_inside_the_hour() -> None:
    assert hour_prefix(PREFIX, HOUR_01 + timedelta(minutes=59, seconds=59)) == "events/2026/01/02/01/"


def test_hour_prefix_uses_the_utc_hour() -> None:
    # 2026-01-02 06:45 at +05:30 is 01:15 UTC.
    moment = datetime(2026, 1, 2, 6, 45, tzinfo=PLUS_0530)
    assert hour_folder(moment) == "2026/01/02/01/"
    # 2026-01-01 02:00 at +05:30 is 2025-12-31 20:30 UTC: the folder moves to the previous day and year.
    assert hour_folder(datetime(2026, 1, 1, 2, tzinfo=PLUS_0530)) == "2025/12/31/20/"


def test_hour_start() -> None:
    assert hour_start(datetime(2026, 1, 2, 6, 45, 12, 345, tzinfo=PLUS_0530)) == datetime(2026, 1, 2, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    "key",
    [
        "events/2026/01/02/01/events-1-2026-01-02-01-00-00-abc",
        "events/2026/01/02/01/x.gz",
        "events/2026/01/02/01/a",
    ],
)
def test_objects_directly_in_the_hour_folder_match(key: str) -> None:
    assert is_hour_object(key, PREFIX, HOUR_01)


@pytest.mark.parametrize("hour", range(10, 20))
def test_hour_01_never_matches_hours_10_to_19(hour: int) -> None:
    other = HOUR_01.replace(hour=hour)
    key = f"{hour_prefix(PREFIX, other)}events-1-object"
    assert key.startswith("events/2026/01/02/1")
    assert not is_hour_object(key, PREFIX, HOUR_01)
    assert is_hour_object(key, PREFIX, other)


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("events/2026/01/02/01/", id="folder-marker"),
        pytest.param("events/2026/01/02/01/sub/object", id="sub-folder-object"),
        pytest.param("events/2026/01/02/01/sub/", id="sub-folder-marker"),
        pytest.param("events/2026/01/02/01", id="folder-without-slash"),
        pytest.param("events/2026/01/02/010/object", id="three-digit-hour"),
        pytest.param("events/2026/01/02/02/object", id="next-hour"),
        pytest.param("events/2026/01/03/01/object", id="next-day"),
        pytest.param("other/2026/01/02/01/object", id="other-prefix"),
        pytest.param("events-v2/2026/01/02/01/object", id="sibling-prefix"),
        pytest.param("archive/events/2026/01/02/01/object", id="nested-prefix"),
        pytest.param("2026/01/02/01/object", id="no-prefix"),
    ],
)
def test_keys_outside_the_hour_folder_do_not_match(key: str) -> None:
    assert not is_hour_object(key, PREFIX, HOUR_01)


def test_empty_prefix() -> None:
    assert is_hour_object("2026/01/02/01/object", "", HOUR_01)
    assert not is_hour_object("events/2026/01/02/01/object", "", HOUR_01)


NAIVE = datetime(2026, 1, 2, 1)


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda: hour_start(NAIVE), id="hour_start"),
        pytest.param(lambda: hour_folder(NAIVE), id="hour_folder"),
        pytest.param(lambda: hour_prefix(PREFIX, NAIVE), id="hour_prefix"),
        pytest.param(lambda: is_hour_object("events/2026/01/02/01/x", PREFIX, NAIVE), id="is_hour_object"),
    ],
)
def test_naive_datetimes_are_refused(call) -> None:
    with pytest.raises(ValueError, match="time zone"):
        call()


def test_object_basename() -> None:
    assert object_basename("events/2026/01/02/01/obj-1.gz") == "obj-1.gz"
    assert object_basename("obj") == "obj"


RUN_ID = "scheduled__2026-01-02T02:00:00+00:00"


def all_stage_keys(writers: list[StageWriter], hours: list[datetime]) -> list[str]:
    stream = make_stream()
    keys = []
    for hour in hours:
        for writer in writers:
            keys.append(stage_key(stream, hour, writer))
            keys.extend(part_stage_key(stream, hour, writer, index) for index in (0, 1, 9, 10, 99, 9999, 10000))
    return keys


def test_two_tries_of_one_task_stage_apart_and_no_stage_key_is_a_prefix_of_another() -> None:
    """Redshift's COPY reads every object under its source as a prefix: no key may be another's prefix."""
    writers = [
        StageWriter(kind, run_id, task, try_number)
        for kind, task in (
            ("ingest", "extract_hour"),
            ("ingest", "extract_part"),
            ("ingest", "combine_parts"),
            ("audit", "audit_and_repair"),
        )
        for run_id in (RUN_ID, RUN_ID + "x", "manual__2026-01-02T02:00:00+00:00", "a", "a.parquet", "a/try-0001")
        for try_number in (1, 2, 9, 10, 11, 100, 1000, 9999, 10000, 10001)
    ]
    keys = all_stage_keys(writers, [HOUR_01, HOUR_01 + timedelta(hours=9)])
    assert len(set(keys)) == len(keys)
    ordered = sorted(keys)  # a key's extensions sort right after it
    for shorter, longer in itertools.pairwise(ordered):
        assert not longer.startswith(shorter), (shorter, longer)
    first, second = (
        stage_key(make_stream(), HOUR_01, StageWriter("ingest", RUN_ID, "extract_hour", n)) for n in (1, 2)
    )
    assert first != second and not second.startswith(first.removesuffix(".parquet") + ".")


def test_a_stage_key_names_the_dag_kind_the_run_the_task_and_the_try() -> None:
    ingest = stage_key(make_stream(), HOUR_01, StageWriter("ingest", RUN_ID, "extract_hour", 3))
    audit = stage_key(make_stream(), HOUR_01, StageWriter("audit", RUN_ID, "audit_and_repair", 3))
    folder = "firehose-loader/staging/orders/2026/01/02/01/"
    assert ingest == f"{folder}ingest/scheduled__2026-01-02T02_00_00_00_00/extract_hour.try-0003.parquet"
    assert audit == f"{folder}audit/scheduled__2026-01-02T02_00_00_00_00/audit_and_repair.try-0003.parquet"


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param(("backfill", RUN_ID, "extract_hour", 1), id="unknown-kind"),
        pytest.param(("ingest", "", "extract_hour", 1), id="no-run-id"),
        pytest.param(("ingest", RUN_ID, "extract.hour", 1), id="dot-in-task"),
        pytest.param(("ingest", RUN_ID, "", 1), id="no-task"),
        pytest.param(("ingest", RUN_ID, "extract_hour", 0), id="try-zero"),
        pytest.param(("ingest", RUN_ID, "extract_hour", True), id="try-bool"),
    ],
)
def test_a_stage_writer_refuses_what_could_make_keys_collide(fields: tuple) -> None:
    with pytest.raises(ValueError):
        StageWriter(*fields)
