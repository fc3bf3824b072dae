"""Audit and repair: idempotent under repetition and under concurrent runs of the same hour.

test_audit.py proves that one audit run repairs exactly the injected damage, that a second run
finds nothing (test_a_second_audit_run_finds_nothing_and_changes_nothing) and that an audit and
an ingest of a never-loaded hour double nothing (test_audit_overlapping_an_ingest_of_the_same_hour_doubles_nothing).
Here a damaged hour with a late object meets two audits and a re-ingest at the same moment (the
test holds the table lock until all three wait for it), and the result must equal a clean load
of the same objects, byte for byte; then more audits find nothing and change nothing.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql

from firehose_loader.audit import audit_hour
from firehose_loader.config import Settings, Stream
from firehose_loader.extract import extract_hour
from firehose_loader.load import load_and_merge, staged_batch
from firehose_loader.warehouse.postgres import Postgres
from tests.integration.support import (
    SIMPLE,
    load_in_process,
    ndjson,
    object_key,
    snapshot,
    table_gate,
    unlisted_stream,
    wait_for,
    waiting_on,
)

HOUR = datetime(2026, 5, 8, 4, tzinfo=UTC)


def write_objects(s3, bucket: str, late: bool) -> None:
    s3.put_object(
        Bucket=bucket,
        Key=object_key(HOUR, "00-a"),
        Body=ndjson([{"id": f"k{n:03d}", "seq": n % 4, "note": f"a{n}"} for n in range(120)]),
    )
    s3.put_object(
        Bucket=bucket,
        Key=object_key(HOUR, "10-b"),
        Body=ndjson([{"id": f"k{n:03d}", "seq": n % 4, "note": f"b{n}"} for n in range(100, 150)]),
    )
    if late:  # delivered after the hour was loaded: new keys and newer versions of old ones
        s3.put_object(
            Bucket=bucket,
            Key=object_key(HOUR, "50-late"),
            Body=ndjson([{"id": f"k{n:03d}", "seq": 9, "note": f"late{n}"} for n in range(140, 160)]),
        )


def damage(warehouse: psycopg.Connection, table: str) -> None:
    """What the lossy real-time path does: lose rows, write some twice, leave older versions."""
    target = sql.Identifier(*table.split("."))
    warehouse.execute(sql.SQL("DELETE FROM {} WHERE id IN ('k000', 'k001', 'k002')").format(target))
    warehouse.execute(
        sql.SQL("INSERT INTO {0} (id, seq, note) SELECT id, seq, note FROM {0} WHERE id IN ('k010', 'k011')").format(
            target
        )
    )
    warehouse.execute(
        sql.SQL(
            "UPDATE {} SET seq = seq - 1, note = 'older', _firehose_object = NULL, _firehose_offset = NULL"
            " WHERE id IN ('k023', 'k027')"
        ).format(target)
    )


def in_threads(works: list[Callable[[psycopg.Connection], Any]]) -> tuple[list[threading.Thread], list[BaseException]]:
    """Start each work in a thread with its own warehouse connection; errors are collected, not raised."""
    errors: list[BaseException] = []

    def run(work: Callable[[psycopg.Connection], Any]) -> None:
        try:
            with psycopg.connect(os.environ["WAREHOUSE_URL"]) as conn:
                work(conn)
        except BaseException as exc:  # surfaced by the caller
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(work,)) for work in works]
    for thread in threads:
        thread.start()
    return threads, errors


def audit(s3, stream: Stream, run_id: str) -> Callable[[psycopg.Connection], dict[str, Any]]:
    return lambda conn: audit_hour(conn, s3, stream, Settings(), Postgres(), HOUR, run_id)


def ingest(s3, stream: Stream, run_id: str) -> Callable[[psycopg.Connection], dict[str, Any]]:
    def work(conn: psycopg.Connection) -> dict[str, Any]:
        manifest = extract_hour(s3, stream, HOUR, run_id)
        return load_and_merge(
            conn, stream, Settings(), Postgres(), manifest, staged_batch(s3, stream, manifest), run_id
        )

    return work


def audit_rows(warehouse: psycopg.Connection, stream: Stream) -> list[tuple]:
    return warehouse.execute(
        "SELECT run_id, status, s3_keys, missing_keys, duplicate_keys, stale_keys, late_objects, repaired_keys"
        " FROM firehose_loader.audit_results WHERE stream = %s ORDER BY audited_at, run_id",
        (stream.name,),
    ).fetchall()


def test_two_audits_and_an_ingest_of_a_damaged_hour_at_once_end_as_a_clean_load_and_audits_then_change_nothing(
    s3, warehouse
):
    clean, _ = unlisted_stream(s3, "rel_audit_clean", **SIMPLE)
    write_objects(s3, clean["bucket"], late=True)
    load_in_process(clean, HOUR, "scheduled__clean")
    expected = snapshot(warehouse, clean)

    entry, stream = unlisted_stream(s3, "rel_audit_busy", **SIMPLE)
    write_objects(s3, entry["bucket"], late=False)
    load_in_process(entry, HOUR, "scheduled__first")
    write_objects(s3, entry["bucket"], late=True)
    damage(warehouse, entry["table"])

    with table_gate(entry["table"]):
        threads, errors = in_threads(
            [audit(s3, stream, "audit__1"), audit(s3, stream, "audit__2"), ingest(s3, stream, "manual__rerun")]
        )
        wait_for(lambda: waiting_on(warehouse, entry["table"]) == 3, "two audits and an ingest to wait for the lock")
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []

    after = snapshot(warehouse, entry)
    assert after.table == expected.table
    assert after.accounting() == expected.accounting()
    concurrent = audit_rows(warehouse, stream)
    assert [row[1] for row in concurrent] == ["repaired", "repaired"]  # both saw the late object
    assert all(row[2] == 160 for row in concurrent)

    # Repetition: every further audit finds nothing and changes nothing, table and ledger alike.
    for number in range(3):
        with psycopg.connect(os.environ["WAREHOUSE_URL"]) as conn:
            result = audit(s3, stream, f"audit__again_{number}")(conn)
        assert (result["status"], result["s3_keys"], result["repaired_keys"]) == ("ok", 160, 0)
        assert (result["missing_keys"], result["duplicate_keys"], result["stale_keys"], result["late_objects"]) == (
            0,
            0,
            0,
            0,
        )
        assert snapshot(warehouse, entry) == after


def test_a_retried_audit_keeps_what_its_first_try_repaired(s3, warehouse):
    """Airflow retries (or a user clears) audit_and_repair under the same run id: the second try finds the
    hour clean because the first try repaired it, and must not record "ok" over those findings."""
    entry, stream = unlisted_stream(s3, "rel_audit_retry", **SIMPLE)
    write_objects(s3, entry["bucket"], late=False)
    load_in_process(entry, HOUR, "scheduled__load")
    damage(warehouse, entry["table"])

    def audit_now(run_id: str) -> dict[str, Any]:
        with psycopg.connect(os.environ["WAREHOUSE_URL"]) as conn:
            return audit(s3, stream, run_id)(conn)

    first = audit_now("scheduled__audit")
    found = (first["status"], first["missing_keys"], first["duplicate_keys"], first["stale_keys"])
    assert found == ("repaired", 3, 2, 2)

    retried = audit_now("scheduled__audit")
    assert (retried["status"], retried["missing_keys"], retried["duplicate_keys"], retried["stale_keys"]) == found
    assert [row[:2] for row in audit_rows(warehouse, stream)] == [("scheduled__audit", "repaired")]

    # New damage before a further try: that try's findings replace the row of the run.
    target = sql.Identifier(*entry["table"].split("."))
    warehouse.execute(sql.SQL("DELETE FROM {} WHERE id = 'k100'").format(target))
    again = audit_now("scheduled__audit")
    assert (again["status"], again["missing_keys"], again["duplicate_keys"], again["stale_keys"]) == (
        "repaired",
        1,
        0,
        0,
    )

    # Another run finds nothing and says so.
    assert audit_now("scheduled__next")["status"] == "ok"
    assert [row[:2] for row in audit_rows(warehouse, stream)] == [
        ("scheduled__audit", "repaired"),
        ("scheduled__next", "ok"),
    ]
