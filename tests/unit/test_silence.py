"""A stream's silence: found once, from the hours around any hour's load, in any load order."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from firehose_loader.load import ShrinkingListingError, gone_objects, refuse_shrinking_listing
from firehose_loader.silence import silence_began
from tests.unit.stream_factory import make_stream

H0 = datetime(2026, 3, 1, 0, tzinfo=UTC)


def hours(*counts: int | None) -> dict[datetime, int]:
    """Object counts from H0 on; None: the hour is not loaded yet."""
    return {H0 + timedelta(hours=n): count for n, count in enumerate(counts) if count is not None}


def found(counts: dict[datetime, int], empty_hours: int) -> set[datetime]:
    """Where a silence begins, as the load of each loaded hour sees it."""
    return {silence.silent_from for hour in counts if (silence := silence_began(counts, hour, empty_hours)) is not None}


def test_two_empty_hours_after_a_busy_one_begin_one_silence() -> None:
    counts = hours(5, 4, 0, 0, 0, 0)
    assert found(counts, 2) == {H0 + timedelta(hours=2)}
    silence = silence_began(counts, H0 + timedelta(hours=3), 2)
    assert silence is not None and silence.last_objects == 4 and silence.empty_hours == 2


def test_one_empty_hour_is_not_yet_a_silence_of_two_and_zero_never_alerts() -> None:
    assert found(hours(5, 0, 3, 0), 2) == set()
    assert found(hours(5, 0, 0, 0), 0) == set()


def test_a_stream_quiet_at_night_alerts_only_past_its_setting() -> None:
    night = hours(9, *([0] * 6), 8)
    assert found(night, 7) == set()
    assert found(night, 6) == {H0 + timedelta(hours=1)}


def test_an_hour_not_loaded_yet_breaks_the_run_and_a_stream_never_busy_is_not_silent() -> None:
    assert found(hours(5, 0, None, 0), 2) == set()
    assert found(hours(0, 0, 0, 0), 2) == set()


@pytest.mark.parametrize("order", list(itertools.permutations(range(5))))
def test_the_silence_is_found_whatever_order_the_hours_load_in(order: tuple[int, ...]) -> None:
    """Out of order (catchup, backfill): the last load of the run finds it, whichever hour that is."""
    full = hours(7, 0, 0, 6, 0)
    loaded: dict[datetime, int] = {}
    seen = set()
    for index in order:
        hour = H0 + timedelta(hours=index)
        loaded[hour] = full[hour]
        if (silence := silence_began(loaded, hour, 2)) is not None:
            seen.add(silence.silent_from)
    assert seen == {H0 + timedelta(hours=1)}


def manifest_of(*keys: str) -> dict:
    return {"hour": H0.isoformat(), "objects": [{"key": key} for key in keys]}


def test_gone_objects_are_the_ledgers_that_the_listing_lacks() -> None:
    assert gone_objects(["a", "b", "c"], manifest_of("a", "c", "d")) == ["b"]  # type: ignore[arg-type]
    assert gone_objects(["a"], manifest_of("a", "b")) == []  # type: ignore[arg-type]


def test_the_refusal_names_the_hour_the_prefix_the_objects_and_the_way_to_force() -> None:
    stream = make_stream()
    gone = [f"{stream.prefix}2026/03/01/00/obj-{n}" for n in range(7)]
    with pytest.raises(ShrinkingListingError) as refused:
        refuse_shrinking_listing(stream, manifest_of(), gone)  # type: ignore[arg-type]
    message = str(refused.value)
    assert H0.isoformat() in message and f"s3://{stream.bucket}/{stream.prefix}" in message
    assert gone[0] in message and gone[4] in message and gone[5] not in message and "and 2 more" in message
    assert "force_relisting" in message and "0 object(s)" in message
