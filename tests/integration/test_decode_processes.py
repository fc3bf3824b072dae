"""An extract decodes its objects in worker processes (the stream's ``decode_processes``).

Promise: the processes change how fast an hour is decoded, not what is loaded. The same three
hours (duplicates across objects, ties on the order column, bad records, an unreadable object)
go to a stream decoded in the task's process and to one decoded by two workers; both end with
byte-identical tables, the same ledger and load_hours counts, and the same quarantine.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from firehose_loader import extract
from firehose_loader.records import pool as pool_module
from firehose_loader.records.validate import decode_and_validate
from tests.integration.conftest import dump_table, run_hour
from tests.integration.test_ingest import HOURS, rich_stream_fields, table_rows, write_hours
from tests.integration.test_split_hours import ledger, load_hours, quarantine_of, without_stream_name, write_unreadable

# Where decode_in_worker notes which process decoded each object (a forked worker inherits it).
PROCESS_NOTES = Path(os.environ.get("TMPDIR", "/tmp")) / f"firehose-decode-processes-{os.getpid()}"


def decode_in_worker(stream: Any, source: Any, limits: Any) -> Any:
    with open(PROCESS_NOTES, "a") as notes:
        notes.write(f"{stream.name} {os.getpid()}\n")
    return decode_and_validate(stream, source, limits)


@pytest.fixture(scope="module")
def twins(streams, s3):
    alone = streams.declare(s3, "decoded_alone", **rich_stream_fields(), decode_processes=1)
    workers = streams.declare(s3, "decoded_by_workers", **rich_stream_fields(), decode_processes=2)
    expected = write_hours(s3, alone["bucket"], seed=31)
    assert write_hours(s3, workers["bucket"], seed=31).rows() == expected.rows()
    for entry in (alone, workers):
        write_unreadable(s3, entry["bucket"])
    PROCESS_NOTES.unlink(missing_ok=True)
    with pytest.MonkeyPatch.context() as patch:
        # These hours are a few KB: below the size where an extract starts workers.
        patch.setattr(extract, "PARALLEL_DECODE_MIN_BYTES", 0)
        patch.setattr(pool_module, "decode_and_validate", decode_in_worker)
        for hour in HOURS:
            for entry in (alone, workers):
                assert run_hour(entry["name"], hour).state == "success"
    notes = PROCESS_NOTES.read_text().split()
    PROCESS_NOTES.unlink()
    decoders: dict[str, set[int]] = {}
    for name, pid in zip(notes[0::2], notes[1::2], strict=True):
        decoders.setdefault(name, set()).add(int(pid))
    return alone, workers, expected, decoders


def test_objects_are_decoded_in_the_task_process_or_in_workers_as_configured(twins):
    alone, workers, _expected, decoders = twins
    assert decoders[alone["name"]] == {os.getpid()}  # dags test runs tasks in this process
    assert os.getpid() not in decoders[workers["name"]]


def test_workers_load_the_same_table_ledger_counts_and_quarantine(twins, warehouse, s3):
    alone, workers, expected, _decoders = twins
    assert table_rows(warehouse, workers["table"]) == expected.rows()
    assert dump_table(warehouse, workers["table"], "tenant, event_id") == dump_table(
        warehouse, alone["table"], "tenant, event_id"
    )
    assert without_stream_name(ledger(warehouse, workers["name"]), workers["name"]) == without_stream_name(
        ledger(warehouse, alone["name"]), alone["name"]
    )
    assert load_hours(warehouse, workers["name"]) == load_hours(warehouse, alone["name"])
    kept = quarantine_of(s3, workers)
    assert kept == quarantine_of(s3, alone)
    assert any(name.endswith("stream-1-corrupt.gz") for name in kept)
