"""records/pool.py: decode worker processes stage what one process stages."""

from __future__ import annotations

from typing import Any

import pytest

from firehose_loader.config import Stream
from firehose_loader.records.decoding import SNAPPY_FRAMED_MAGIC
from firehose_loader.records.validate import SourceObject, decode_and_validate
from tests.unit.order_records import DEDUPE_OBJECTS, STREAM, rec, source

# --- decode worker processes ----------------------------------------------------------------------------------------


def decode_in_worker(stream: Stream, source: SourceObject, limits: Any) -> Any:
    """decode_and_validate, noting in the object's message which process ran it."""
    import os

    decoded = decode_and_validate(stream, source, limits)
    decoded.stats.message = f"{decoded.stats.message}|pid={os.getpid()}"
    return decoded


def test_decode_processes_stage_what_one_process_stages(tmp_path: Any, monkeypatch: Any) -> None:
    """Worker processes decode side by side; the stage, counts, quarantine and order are those of one process."""
    import os

    import pyarrow.parquet as pq

    from firehose_loader.records import pool as pool_module
    from firehose_loader.records.stage import stage_hour

    objects = [
        *DEDUPE_OBJECTS,
        source("orders/2026/01/01/00/obj-bad", [rec(6, "eu", 1, amount="lots"), b"[1]", rec(2, "eu", 9)]),
        SourceObject("orders/2026/01/01/00/obj-snappy", "e", 9, SNAPPY_FRAMED_MAGIC + b"garbage"),
        SourceObject("orders/2026/01/01/00/obj-empty", "e", 0, b""),
        *(source(f"orders/2026/01/01/00/obj-{n:02d}", [rec(n % 7, "us", n, note=str(n))]) for n in range(12)),
    ]
    for folder in ("one", "two"):
        (tmp_path / folder).mkdir()
    alone = stage_hour(STREAM, objects, tmp_path / "one", decode_processes=1)
    monkeypatch.setattr(pool_module, "decode_and_validate", decode_in_worker)
    side_by_side = stage_hour(STREAM, objects, tmp_path / "two", decode_processes=2)

    assert alone.path is not None and side_by_side.path is not None
    assert pq.read_table(side_by_side.path) == pq.read_table(alone.path)
    workers = {stats.message.rpartition("|pid=")[2] for stats in side_by_side.objects}
    assert str(os.getpid()) not in workers  # every object was decoded in a worker process
    for stats in side_by_side.objects:
        stats.message = stats.message.rpartition("|pid=")[0]
        stats.message = None if stats.message == "None" else stats.message
    assert [stats.as_dict() for stats in side_by_side.objects] == [stats.as_dict() for stats in alone.objects]
    assert side_by_side.quarantined == alone.quarantined and len(alone.quarantined) == 2
    assert side_by_side.unreadable == alone.unreadable and len(alone.unreadable) == 1


def test_a_failure_in_a_decode_process_fails_the_stage(tmp_path: Any, monkeypatch: Any) -> None:
    from firehose_loader.records import pool as pool_module
    from firehose_loader.records.stage import stage_hour

    monkeypatch.setattr(pool_module, "decode_and_validate", fail_on_object_3)
    objects = [source(f"h/obj-{index}", [rec(index, "eu", 1)]) for index in range(6)]
    with pytest.raises(RuntimeError, match="h/obj-3"):
        stage_hour(STREAM, objects, tmp_path, decode_processes=2)


def fail_on_object_3(stream: Stream, source: SourceObject, limits: Any) -> Any:
    if source.key == "h/obj-3":
        raise RuntimeError(f"cannot decode {source.key}")
    return decode_and_validate(stream, source, limits)
