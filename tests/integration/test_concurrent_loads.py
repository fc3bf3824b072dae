"""The same hour loaded twice at the same moment, by two separate processes (a backfill and a clear).

test_hour_edges.py::test_two_merges_of_the_same_hour_at_once_double_nothing runs two merges in
threads of one process; here two processes run the ingest tasks' code end to end (their own
Airflow connections, extract, stage, COPY, merge), and the test makes sure their merges really
meet: it holds the table lock itself until both wait for it, then lets them go together.
"""

from __future__ import annotations

from datetime import UTC, datetime

from psycopg import sql

from firehose_loader.airflow.tasks import run_ensure_tables
from firehose_loader.config import Settings
from tests.integration.support import (
    SIMPLE,
    load_in_process,
    ndjson,
    object_key,
    snapshot,
    start_worker,
    table_gate,
    unlisted_stream,
    wait_for,
    waiting_on,
)

HOUR = datetime(2026, 5, 2, 7, tzinfo=UTC)


def write_hour(s3, bucket: str) -> None:
    records = [{"id": f"k{n:05d}", "seq": n % 5, "note": f"v{n}"} for n in range(3000)]
    s3.put_object(Bucket=bucket, Key=object_key(HOUR, "00-a"), Body=ndjson(records[:2000]))
    # at-least-once delivery and newer versions of some keys in a second object
    later = records[1500:] + [{**record, "seq": record["seq"] + 1} for record in records[:100]]
    s3.put_object(Bucket=bucket, Key=object_key(HOUR, "10-b"), Body=ndjson(later))


def test_two_processes_loading_the_same_hour_at_once_double_nothing(s3, warehouse, tmp_path):
    reference, _ = unlisted_stream(s3, "rel_once", **SIMPLE)
    write_hour(s3, reference["bucket"])
    load_in_process(reference, HOUR, "scheduled__once")

    entry, stream = unlisted_stream(s3, "rel_twice", **SIMPLE)
    write_hour(s3, entry["bucket"])
    run_ensure_tables(stream, Settings())
    logs = [tmp_path / "backfill.log", tmp_path / "clear.log"]
    with table_gate(entry["table"]):
        workers = [
            start_worker(entry, HOUR, "backfill__2026-05-02T08:00:00+00:00", logs[0]),
            start_worker(entry, HOUR, "manual__2026-05-02T08:00:00+00:00", logs[1]),
        ]
        # Both have extracted, staged and COPYed the hour, and wait for the lock to merge it.
        wait_for(lambda: waiting_on(warehouse, entry["table"]) == 2, "both merges to wait for the lock", 120)
    for worker, log in zip(workers, logs, strict=True):
        assert worker.wait(timeout=120) == 0, log.read_text()[-3000:]

    query = sql.SQL("SELECT COUNT(*), COUNT(DISTINCT id) FROM {}").format(sql.Identifier(*entry["table"].split(".")))
    assert warehouse.execute(query).fetchone() == (3000, 3000)
    after, clean = snapshot(warehouse, entry), snapshot(warehouse, reference)
    assert after.table == clean.table
    assert after.accounting() == clean.accounting()
    # The ledger is the last merge's: it waited for the first and found every row already there.
    inserted, updated, unchanged = after.load_hours[0][9], after.load_hours[0][10], after.load_hours[0][11]
    assert (inserted, updated, unchanged) == (0, 0, 3000)
