"""extract.py: how an hour is cut into parts and how many decode processes it gets."""

from __future__ import annotations

from typing import Any

from tests.unit.order_records import STREAM


def test_an_hour_is_split_into_consecutive_parts_of_at_most_the_limit() -> None:
    from firehose_loader.extract import split_into_parts
    from firehose_loader.s3io import ObjectInfo

    objects = [ObjectInfo(f"k{index}", "e", size) for index, size in enumerate([4, 3, 3, 9, 1, 12, 2, 2])]
    parts = split_into_parts(objects, 10)
    assert [[item.key for item in part] for part in parts] == [
        ["k0", "k1", "k2"],
        ["k3", "k4"],
        ["k5"],  # bigger than a part: a part of its own
        ["k6", "k7"],
    ]
    assert [item for part in parts for item in part] == objects
    assert split_into_parts([], 10) == []


def test_decode_processes_follow_the_stream_the_cpus_the_objects_and_the_platform(monkeypatch: Any) -> None:
    import sys
    from dataclasses import replace

    from firehose_loader import extract
    from firehose_loader.extract import PARALLEL_DECODE_MIN_BYTES, decode_processes
    from firehose_loader.s3io import ObjectInfo

    stream = replace(STREAM, decode_processes=3)
    big = [ObjectInfo(f"k{index}", "e", PARALLEL_DECODE_MIN_BYTES // 2) for index in range(4)]
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(extract, "usable_cpus", lambda: 8)
    assert decode_processes(stream, big) == 3
    assert decode_processes(stream, big[:2]) == 2  # one object per worker at most
    assert decode_processes(stream, big[:1]) == 1  # under the size where workers pay off
    monkeypatch.setattr(extract, "usable_cpus", lambda: 2)
    assert decode_processes(stream, big) == 2
    assert decode_processes(replace(stream, decode_processes=1), big) == 1
    monkeypatch.setattr(sys, "platform", "darwin")  # workers are forked: Linux only
    assert decode_processes(stream, big) == 1
