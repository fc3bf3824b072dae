"""Loads that never block readers, never hang, and never hold up other writers for ever (PostgreSQL).

A reader of the target is not blocked while a merge holds its lock (PostgreSQL's SHARE ROW
EXCLUSIVE; on Redshift the merge locks the loader's tables only, see tests/redshift).

A merge queued behind an idle-in-transaction writer used to wait for ever, and PostgreSQL queues
every later lock request (a real-time writer's plain INSERT) behind the waiting merge. With the
stream's ``lock_timeout_seconds`` the merge gives up, is rolled back and retried, and the writers
behind it go on. ``ensure_tables`` runs its DDL only when something is missing: ``CREATE INDEX IF
NOT EXISTS`` would otherwise take a lock on the table every hour.
"""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

from firehose_loader.airflow.tasks import run_ensure_tables, run_extract, run_load_and_merge
from firehose_loader.audit import audit_hour
from firehose_loader.config import Settings, parse_stream
from firehose_loader.warehouse import transactions
from firehose_loader.warehouse.postgres import Postgres
from tests.integration.support import (
    SIMPLE,
    load_in_process,
    ndjson,
    object_key,
    start_worker,
    target_locks,
    unlisted_stream,
    wait_for,
    waiting_on,
)

HOUR = datetime(2026, 5, 9, 4, tzinfo=UTC)


def idle_writer(table: str) -> psycopg.Connection:
    """A session that updated a row of the table and went idle in its transaction (a stuck writer)."""
    conn = psycopg.connect(os.environ["WAREHOUSE_URL"])
    conn.execute(sql.SQL("UPDATE {} SET note = note WHERE id = 'k0'").format(sql.Identifier(*table.split("."))))
    return conn


def test_a_merge_behind_an_idle_writer_times_out_is_retried_and_does_not_queue_the_real_time_writer(
    s3, warehouse, monkeypatch
) -> None:
    entry, stream = unlisted_stream(s3, "lock_timeout", **SIMPLE, lock_timeout_seconds=1)
    s3.put_object(
        Bucket=stream.bucket,
        Key=object_key(HOUR, "00-a"),
        Body=ndjson([{"id": f"k{n}", "seq": 1, "note": "a"} for n in range(5)]),
    )
    load_in_process(entry, HOUR, "ingest-1")
    s3.put_object(
        Bucket=stream.bucket,
        Key=object_key(HOUR, "30-late"),
        Body=ndjson([{"id": f"k{n}", "seq": 2, "note": "late"} for n in range(3)]),
    )
    settings = Settings()
    manifest = run_extract(stream, settings, HOUR, HOUR + timedelta(hours=1), "rerun-1", 1)["manifest"]
    retries: list[float] = []
    monkeypatch.setattr(transactions, "sleep", lambda delay: (retries.append(delay), time.sleep(0.5)))

    stuck = idle_writer(stream.qualified_table)
    outcome: dict[str, Any] = {}

    def merge() -> None:
        try:
            outcome["summary"] = run_load_and_merge(stream, settings, manifest, "rerun-1")
        except Exception as exc:  # reported below
            outcome["error"] = exc

    merging = threading.Thread(target=merge)
    merging.start()
    try:
        wait_for(lambda: waiting_on(warehouse, stream.qualified_table), "the merge waiting for its lock", timeout=30)
        # The real-time writer: a plain INSERT, whose lock PostgreSQL would queue behind the waiting merge.
        with psycopg.connect(os.environ["WAREHOUSE_URL"]) as realtime:
            realtime.execute("SET statement_timeout = '15s'")
            realtime.execute(
                sql.SQL("INSERT INTO {} (id, seq, note) VALUES ('rt-1', 1, 'lambda')").format(
                    sql.Identifier(*stream.qualified_table.split("."))
                )
            )
        # It got through while the stuck writer still holds its transaction open.
        assert stuck.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        # The merge gave up waiting (that let the insert through) and goes to its retry.
        wait_for(lambda: retries, "the merge to give up waiting and retry", timeout=30)
    finally:
        stuck.rollback()
        stuck.close()
        merging.join(timeout=120)
    assert "error" not in outcome, outcome.get("error")
    rows = dict(warehouse.execute(f"SELECT id, seq FROM {stream.qualified_table}").fetchall())
    assert rows == {"k0": 2, "k1": 2, "k2": 2, "k3": 1, "k4": 1, "rt-1": 1}


def test_ensure_tables_on_existing_tables_takes_no_lock(s3, warehouse) -> None:
    """With the tables, the index and the columns there, it only reads the catalog: it does not wait
    behind a writer holding the table (CREATE INDEX IF NOT EXISTS would, and time out)."""
    entry, stream = unlisted_stream(s3, "no_ddl", **SIMPLE, lock_timeout_seconds=1)
    s3.put_object(
        Bucket=stream.bucket, Key=object_key(HOUR, "00-a"), Body=ndjson([{"id": "k0", "seq": 1, "note": "a"}])
    )
    load_in_process(entry, HOUR, "ingest-1")
    stuck = idle_writer(stream.qualified_table)
    try:
        run_ensure_tables(stream, Settings())  # no lock wait, so no lock_timeout error
        # A missing index is still created (here after the writer is gone).
        index = f"{stream.table}__firehose_key"
        schema = stream.schema
    finally:
        stuck.rollback()
        stuck.close()
    warehouse.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(schema, index)))
    run_ensure_tables(parse_stream(entry, 0), Settings())
    assert warehouse.execute(
        "SELECT count(*) FROM pg_indexes WHERE schemaname = %s AND indexname = %s", (schema, index)
    ).fetchone() == (1,)


def test_a_reader_of_the_target_is_not_blocked_while_a_merge_holds_its_lock(s3, warehouse, tmp_path) -> None:
    entry, stream = unlisted_stream(s3, "reader", **SIMPLE)
    s3.put_object(
        Bucket=stream.bucket,
        Key=object_key(HOUR, "00-a"),
        Body=ndjson([{"id": f"k{n}", "seq": 1, "note": "a"} for n in range(4)]),
    )
    load_in_process(entry, HOUR, "ingest-1")
    s3.put_object(
        Bucket=stream.bucket,
        Key=object_key(HOUR, "30-b"),
        Body=ndjson([{"id": f"k{n}", "seq": 2, "note": "b"} for n in range(4, 6)]),
    )
    log = tmp_path / "worker.log"
    worker = start_worker(entry, HOUR, "rerun-1", log, FIREHOSE_LOADER_FAILPOINTS="before_commit:pause")
    try:
        # The merge has written its rows and holds the lock, its transaction open.
        wait_for(lambda: "paused" in log.read_text(), "the merge to pause before its commit", timeout=120)
        assert any(granted for _pid, _mode, granted, _state in target_locks(warehouse, stream.qualified_table))
        with psycopg.connect(os.environ["WAREHOUSE_URL"]) as reader:
            reader.execute("SET statement_timeout = '5s'")  # blocked, it would fail here
            rows = reader.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(*stream.qualified_table.split(".")))
            ).fetchone()
        assert rows == (4,)  # the committed rows, not the merge's uncommitted ones
    finally:
        worker.kill()
        worker.wait(timeout=60)


def test_an_audit_of_a_healthy_hour_takes_no_lock_and_a_damaged_one_still_repairs(s3, warehouse) -> None:
    """A healthy hour is judged from the plan alone: while a writer holds the table, its audit says
    ok at once (the merge's lock would wait and time out); a damaged hour locks and is repaired."""
    entry, stream = unlisted_stream(s3, "audit_no_lock", **SIMPLE, lock_timeout_seconds=1)
    s3.put_object(
        Bucket=stream.bucket,
        Key=object_key(HOUR, "00-a"),
        Body=ndjson([{"id": f"k{n}", "seq": 1, "note": "a"} for n in range(6)]),
    )
    load_in_process(entry, HOUR, "ingest-1")
    stuck = idle_writer(stream.qualified_table)
    try:
        with psycopg.connect(os.environ["WAREHOUSE_URL"]) as conn:
            result = audit_hour(conn, s3, stream, Settings(), Postgres(), HOUR, "audit-1", try_number=1)
        assert (result["status"], result["s3_keys"], result["missing_keys"]) == ("ok", 6, 0)
        assert stuck.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
    finally:
        stuck.rollback()
        stuck.close()
    table = sql.Identifier(*stream.qualified_table.split("."))
    warehouse.execute(sql.SQL("DELETE FROM {} WHERE id = 'k3'").format(table))
    with psycopg.connect(os.environ["WAREHOUSE_URL"]) as conn:
        result = audit_hour(conn, s3, stream, Settings(), Postgres(), HOUR, "audit-2", try_number=1)
    assert (result["status"], result["missing_keys"], result["repaired_keys"]) == ("repaired", 1, 1)
    assert warehouse.execute(sql.SQL("SELECT count(*) FROM {}").format(table)).fetchone() == (6,)
