"""Which keys belong to an hour."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from firehose_loader.layout import (
    HOUR,
    DeliveryLayout,
    StageWriter,
    default_layout,
    hour_folder,
    hour_prefix,
    hour_start,
    is_hour_object,
    object_basename,
    part_stage_key,
    stage_key,
)
from firehose_loader.prefixes import parse_prefix
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


# -- Delivery layouts: custom prefixes and prefix time zones --------------------------------------

NEW_YORK = "America/New_York"
PARTITIONED = "events/!{partitionKeyFromQuery:event_type}/!{timestamp:yyyy/MM/dd/HH}/"


def ny_layout(prefix: str = "events/") -> DeliveryLayout:
    return DeliveryLayout(parse_prefix(prefix), parse_prefix("errors/", "error_prefix"), NEW_YORK)


@pytest.mark.parametrize(
    ("day", "folders"),
    [
        pytest.param(datetime(2026, 3, 8), 23, id="spring-forward-23-hours"),
        pytest.param(datetime(2026, 11, 1), 25 - 1, id="fall-back-25-hours-24-folders"),
        pytest.param(datetime(2026, 7, 1), 24, id="summer-day"),
    ],
)
def test_every_local_folder_of_a_dst_day_is_covered_by_exactly_one_run(day: datetime, folders: int) -> None:
    zone = ZoneInfo(NEW_YORK)
    start = day.replace(tzinfo=zone).astimezone(UTC)
    end = (day + timedelta(days=1)).replace(tzinfo=zone).astimezone(UTC)
    runs = [start + n * HOUR for n in range(int((end - start) / HOUR))]
    covered = [local for run in runs for local in ny_layout().folder_hours(run)]
    assert len(covered) == len(set(covered)) == folders
    assert covered == sorted(covered) and all(local.date() == day.date() for local in covered)


def test_the_spring_forward_day_has_no_0200_folder() -> None:
    layout = ny_layout()
    assert layout.folder_hours(datetime(2026, 3, 8, 6, tzinfo=UTC)) == (datetime(2026, 3, 8, 1),)
    assert layout.folder_hours(datetime(2026, 3, 8, 7, tzinfo=UTC)) == (datetime(2026, 3, 8, 3),)
    assert layout.hour_of_key("events/2026/03/08/02/stream-1-x") is None


def test_the_repeated_hour_of_the_fall_back_day_is_one_folder_covered_by_its_second_utc_hour() -> None:
    layout = ny_layout()
    first, second = datetime(2026, 11, 1, 5, tzinfo=UTC), datetime(2026, 11, 1, 6, tzinfo=UTC)
    assert layout.folder_hours(first) == ()
    assert layout.hour_patterns(first) == []
    assert layout.folder_hours(second) == (datetime(2026, 11, 1, 1),)
    key = "events/2026/11/01/01/stream-1-2026-11-01-01-30-00-x"
    assert not layout.is_hour_object(key, first) and layout.is_hour_object(key, second)
    assert layout.hour_of_key(key) == second


def test_a_half_hour_zone_covers_the_folder_that_ends_within_the_run() -> None:
    layout = DeliveryLayout(parse_prefix("e/"), parse_prefix("", "error_prefix"), "Asia/Kolkata")
    # 10:00-11:00 IST is 04:30-05:30 UTC: it ends within the run of 05:00 UTC.
    assert layout.folder_hours(datetime(2026, 3, 1, 5, tzinfo=UTC)) == (datetime(2026, 3, 1, 10),)
    assert layout.hour_of_key("e/2026/03/01/10/x") == datetime(2026, 3, 1, 5, tzinfo=UTC)


def test_utc_runs_and_the_default_layout_are_today_s_folders() -> None:
    layout = default_layout(PREFIX)
    assert layout.is_default
    assert layout.folder_hours(HOUR_01) == (datetime(2026, 1, 2, 1),)
    assert layout.hour_of_key("events/2026/01/02/01/events-1-x") == HOUR_01
    assert layout.hour_of_key("events/2026/01/02/01/sub/x") is None


@pytest.mark.parametrize(
    ("key", "matches"),
    [
        pytest.param("events/click/2026/01/02/01/stream-1-x", True, id="a-partition"),
        pytest.param("events/a=b/2026/01/02/01/stream-1-x", True, id="any-value"),
        pytest.param("events/click/2026/01/02/10/stream-1-x", False, id="hour-10-is-not-hour-01"),
        pytest.param("events/click/2026/01/02/1/stream-1-x", False, id="unpadded"),
        pytest.param("events/click/2026/01/02/01/", False, id="folder-marker"),
        pytest.param("events/click/2026/01/02/01/sub/x", False, id="sub-folder"),
        pytest.param("events/click/extra/2026/01/02/01/x", False, id="two-levels-for-one-value"),
        pytest.param("events//2026/01/02/01/x", False, id="empty-value"),
        pytest.param("events/processing-failed/2026/01/02/01/x", False, id="error-output-among-the-partitions"),
    ],
)
def test_a_partitioned_hour_matches_exactly_its_folders(key: str, matches: bool) -> None:
    layout = DeliveryLayout(
        parse_prefix(PARTITIONED),
        parse_prefix("events/!{firehose:error-output-type}/!{timestamp:yyyy/MM/dd/HH}/", "error_prefix"),
    )
    assert layout.is_hour_object(key, HOUR_01) is matches


def test_a_simulated_delivery_writes_where_the_layout_lists() -> None:
    layout = DeliveryLayout(parse_prefix(PARTITIONED), parse_prefix("errors/", "error_prefix"), "Asia/Kolkata")
    # 04:45 UTC is 10:15 IST: the folder of local hour 10, which the run of 05:00 UTC covers.
    folder = layout.folder_of(datetime(2026, 3, 1, 4, 45, tzinfo=UTC), {"event_type": "click"})
    assert folder == "events/click/2026/03/01/10/"
    assert layout.is_hour_object(folder + "stream-1-x", datetime(2026, 3, 1, 5, tzinfo=UTC))
    with pytest.raises(ValueError, match="no value for partition key 'event_type'"):
        layout.folder_of(datetime(2026, 3, 1, 4, 45, tzinfo=UTC))
