"""Keys erased on purpose stay erased, and are never counted as drops.

Two keys of a loaded hour are erased (their rows deleted and tombstones recorded in one
transaction); then the hour is rerun, backfilled, audited (on its stage and after a late object
made it re-extract): none of them brings the keys back, and neither audit_results nor
realtime_quality counts them as missing. A version newer than the erased one stays erased by
default, and loads again with ``erased_keys_accept_newer``.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql

from firehose_loader.audit import audit_hours
from firehose_loader.config import Settings, Stream, parse_stream
from firehose_loader.load import ensure_tables, erase_keys, tombstones_table
from firehose_loader.warehouse.postgres import Postgres
from tests.integration.support import SIMPLE, load_in_process, ndjson, object_key, unlisted_stream

HOUR = datetime(2026, 7, 3, 9, tzinfo=UTC)
KEYS = [f"k{n:03d}" for n in range(10)]
ERASED = ["k001", "k002"]


def prepared(s3: Any, name: str, **fields: Any) -> tuple[dict[str, Any], Stream]:
    entry, stream = unlisted_stream(s3, name, **{**SIMPLE, **fields})
    with psycopg.connect(os.environ["WAREHOUSE_URL"]) as conn:
        ensure_tables(conn, stream, Settings(), Postgres())
    s3.put_object(
        Bucket=entry["bucket"],
        Key=object_key(HOUR, "00-a"),
        Body=ndjson([{"id": key, "seq": 5, "note": f"a-{key}"} for key in KEYS]),
    )
    return entry, stream


def erase(stream: Stream, keys: list[Any], reason: str = "gdpr request 42") -> int:
    with psycopg.connect(os.environ["WAREHOUSE_URL"]) as conn:
        return erase_keys(conn, stream, Settings(), Postgres(), keys, reason, "manual__erase")


def audit(s3: Any, stream: Stream, run_id: str) -> dict[str, Any]:
    with psycopg.connect(os.environ["WAREHOUSE_URL"]) as conn:
        (result,) = audit_hours(conn, s3, stream, Settings(), Postgres(), [HOUR], run_id, try_number=1)
    return result


def rows(warehouse: psycopg.Connection, entry: dict[str, Any]) -> dict[str, tuple[int, str]]:
    table = sql.Identifier(*entry["table"].split("."))
    found = warehouse.execute(sql.SQL("SELECT id, seq, note FROM {} ORDER BY id").format(table)).fetchall()
    return {key: (seq, note) for key, seq, note in found}


def tombstones(warehouse: psycopg.Connection, stream: Stream) -> list[tuple]:
    table = sql.Identifier("firehose_loader", tombstones_table(stream))
    return warehouse.execute(
        sql.SQL(
            'SELECT "_firehose_stream", id, "_firehose_erased_version", "_firehose_reason", "_firehose_erased_at",'
            ' "_firehose_erased_by" FROM {} ORDER BY id'
        ).format(table)
    ).fetchall()


def findings(result: dict[str, Any]) -> tuple:
    return (
        result["status"],
        result["s3_keys"],
        result["missing_keys"],
        result["duplicate_keys"],
        result["stale_keys"],
        result["repaired_keys"],
    )


def load_hours_accounting(warehouse: psycopg.Connection, stream: Stream) -> tuple:
    return warehouse.execute(
        "SELECT records_valid, records_inserted + records_updated + records_unchanged + records_superseded"
        " FROM firehose_loader.load_hours WHERE stream = %s AND hour = %s",
        (stream.name, HOUR.replace(tzinfo=None)),
    ).fetchone()


def test_erased_keys_stay_erased_through_reruns_backfills_and_audits_and_are_no_drops(s3, warehouse):
    entry, stream = prepared(s3, "erase_stays")
    load_in_process(entry, HOUR, "scheduled__ingest")
    assert set(rows(warehouse, entry)) == set(KEYS)

    before = datetime.now(UTC).replace(tzinfo=None)
    assert erase(stream, ERASED) == 2
    assert set(rows(warehouse, entry)) == set(KEYS) - set(ERASED)
    stones = tombstones(warehouse, stream)
    assert [stone[:4] for stone in stones] == [(stream.name, key, 5, "gdpr request 42") for key in ERASED]
    assert all(stone[4] >= before and stone[5] == "manual__erase" for stone in stones)

    load_in_process(entry, HOUR, "manual__rerun")
    load_in_process(entry, HOUR, "backfill__2026-07-03T09")
    assert set(rows(warehouse, entry)) == set(KEYS) - set(ERASED)
    # The ledger still accounts for every valid record: the erased ones as superseded.
    assert load_hours_accounting(warehouse, stream) == (10, 10)

    # The audit on the hour's stage: nothing missing, and the erased keys are not S3 keys to judge.
    assert findings(audit(s3, stream, "scheduled__audit")) == ("ok", 8, 0, 0, 0, 0)
    # A late object, with a newer version of an erased key, makes the audit re-extract the hour.
    s3.put_object(
        Bucket=entry["bucket"],
        Key=object_key(HOUR, "30-b"),
        Body=ndjson([{"id": "k001", "seq": 9, "note": "after the erasure"}, {"id": "k100", "seq": 1, "note": "new"}]),
    )
    late = audit(s3, stream, "scheduled__audit_late")
    assert findings(late) == ("loaded", 9, 0, 0, 0, 0) and late["late_objects"] == 1
    assert findings(audit(s3, stream, "scheduled__audit_again")) == ("ok", 9, 0, 0, 0, 0)
    load_in_process(entry, HOUR, "manual__rerun_after_late")
    assert set(rows(warehouse, entry)) == (set(KEYS) - set(ERASED)) | {"k100"}

    # Erasing again is idempotent: one tombstone per key, refreshed.
    assert erase(stream, ["k001"], "second request") == 1
    assert [stone[1:4] for stone in tombstones(warehouse, stream)] == [
        ("k001", 5, "second request"),
        ("k002", 5, "gdpr request 42"),
    ]


def test_keys_erased_before_their_first_load_are_not_real_time_drops(s3, warehouse):
    entry, stream = prepared(s3, "erase_first", realtime_writer=True)
    table = sql.Identifier(*entry["table"].split("."))
    for key in KEYS:  # the real-time writer wrote every key but the two erased ones
        if key not in ERASED:
            warehouse.execute(
                sql.SQL("INSERT INTO {} (id, seq, note) VALUES (%s, 5, %s)").format(table), (key, f"a-{key}")
            )
    assert erase(stream, ERASED, "retention purge") == 2
    assert [stone[1:3] for stone in tombstones(warehouse, stream)] == [("k001", None), ("k002", None)]

    load_in_process(entry, HOUR, "scheduled__ingest")
    measured = warehouse.execute(
        "SELECT s3_keys, missing_keys, duplicate_keys, stale_keys, drop_rate"
        " FROM firehose_loader.realtime_quality WHERE stream = %s AND hour = %s",
        (stream.name, HOUR.replace(tzinfo=None)),
    ).fetchone()
    assert measured == (8, 0, 0, 0, 0.0)
    assert set(rows(warehouse, entry)) == set(KEYS) - set(ERASED)
    assert findings(audit(s3, stream, "scheduled__audit")) == ("ok", 8, 0, 0, 0, 0)


@pytest.mark.parametrize(("accept_newer", "k001"), [(False, None), (True, (9, "after the erasure"))])
def test_a_newer_version_after_the_erasure_is_the_streams_choice(s3, warehouse, accept_newer, k001):
    entry, stream = prepared(s3, f"erase_newer_{str(accept_newer).lower()}", erased_keys_accept_newer=accept_newer)
    load_in_process(entry, HOUR, "scheduled__ingest")
    erase(stream, ERASED)
    # k001 comes back newer than the erased version (seq 9 > 5); k002 only in its erased version.
    s3.put_object(
        Bucket=entry["bucket"],
        Key=object_key(HOUR, "30-b"),
        Body=ndjson([{"id": "k001", "seq": 9, "note": "after the erasure"}, {"id": "k002", "seq": 5, "note": "again"}]),
    )
    for run_id in ("manual__rerun", "manual__rerun_2"):
        load_in_process(entry, HOUR, run_id)
        assert rows(warehouse, entry).get("k001") == k001
        assert "k002" not in rows(warehouse, entry)
    result = audit(s3, stream, "scheduled__audit")
    assert findings(result) == ("ok", 9 if accept_newer else 8, 0, 0, 0, 0)
    assert rows(warehouse, entry).get("k001") == k001


def test_a_composite_typed_key_is_erased_exactly(s3, warehouse):
    fields = {
        "key": ["id", "day"],
        "order_by": "seq",
        "columns": {"id": "bigint", "day": "date", "seq": "integer", "note": "text"},
    }
    entry, stream = unlisted_stream(s3, "erase_composite", **fields)
    s3.put_object(
        Bucket=entry["bucket"],
        Key=object_key(HOUR, "00-a"),
        Body=ndjson(
            [{"id": n, "day": day, "seq": 1, "note": "x"} for n in (1, 2) for day in ("2026-07-01", "2026-07-02")]
        ),
    )
    load_in_process(entry, HOUR, "scheduled__ingest")
    erase(stream, [{"id": 1, "day": "2026-07-02"}, [2, "2026-07-01"]])
    load_in_process(entry, HOUR, "manual__rerun")
    table = sql.Identifier(*entry["table"].split("."))
    left = warehouse.execute(sql.SQL("SELECT id, day::text FROM {} ORDER BY id, day").format(table)).fetchall()
    assert left == [(1, "2026-07-01"), (2, "2026-07-02")]
    assert findings(audit(s3, stream, "scheduled__audit")) == ("ok", 2, 0, 0, 0, 0)


def test_the_audit_dags_erase_task_erases_and_refuses_a_bad_request_at_once(s3, warehouse):
    from airflow.sdk.exceptions import AirflowFailException

    from firehose_loader.airflow.tasks import run_erase

    entry, stream = prepared(s3, "erase_task")
    load_in_process(entry, HOUR, "scheduled__ingest")
    assert run_erase(stream, Settings(), [], "", "scheduled__audit") == 0
    with pytest.raises(AirflowFailException, match="erase_reason"):
        run_erase(stream, Settings(), ["k003"], " ", "manual__erase")
    with pytest.raises(AirflowFailException, match="one scalar value for each key column"):
        run_erase(stream, Settings(), [["k003", 1]], "gdpr", "manual__erase")
    assert tombstones(warehouse, stream) == []
    assert run_erase(stream, Settings(), ["k003", {"id": "k004"}], "gdpr", "manual__erase") == 2
    assert [stone[1] for stone in tombstones(warehouse, stream)] == ["k003", "k004"]
    assert set(rows(warehouse, entry)) == set(KEYS) - {"k003", "k004"}


def test_a_run_of_the_audit_dag_erases_and_the_next_ingest_and_audit_runs_keep_the_keys_erased(streams, s3, warehouse):
    from tests.integration.conftest import run_dag, run_hour

    entry = streams.declare(s3, "erase_dag", **SIMPLE)
    stream = parse_stream(entry, 0)
    s3.put_object(
        Bucket=entry["bucket"],
        Key=object_key(HOUR, "00-a"),
        Body=ndjson([{"id": key, "seq": 5, "note": f"a-{key}"} for key in KEYS]),
    )
    assert run_hour(entry["name"], HOUR).state == "success"
    conf = {"lookback_hours": 1, "erase_keys": ERASED, "erase_reason": "GDPR request 7"}
    assert run_dag(stream.audit_dag_id, HOUR + timedelta(hours=1), conf=conf).state == "success"
    assert [stone[1:4] for stone in tombstones(warehouse, stream)] == [(key, 5, "GDPR request 7") for key in ERASED]
    assert set(rows(warehouse, entry)) == set(KEYS) - set(ERASED)

    assert run_hour(entry["name"], HOUR).state == "success"
    assert run_dag(stream.audit_dag_id, HOUR + timedelta(hours=2), conf={"lookback_hours": 2}).state == "success"
    assert set(rows(warehouse, entry)) == set(KEYS) - set(ERASED)
    missing = warehouse.execute(
        "SELECT COALESCE(SUM(missing_keys), 0) FROM firehose_loader.audit_results WHERE stream = %s",
        (stream.name,),
    ).fetchone()
    assert missing == (0,)


def test_the_late_sweep_never_resurrects_an_erased_key(s3, warehouse):
    """A late object, days after the erasure, holds a newer version of an erased key: the sweep's delta
    merge loads the object's other records and leaves the erased key erased."""
    from firehose_loader.sweep import sweep_hours

    entry, stream = prepared(s3, "erase_sweep")
    load_in_process(entry, HOUR, "scheduled__ingest")
    erase(stream, ERASED)
    s3.put_object(
        Bucket=entry["bucket"],
        Key=object_key(HOUR, "40-retried"),
        Body=ndjson([{"id": "k002", "seq": 9, "note": "retried delivery"}, {"id": "k200", "seq": 1, "note": "late"}]),
    )
    with psycopg.connect(os.environ["WAREHOUSE_URL"]) as conn:
        (finding,) = sweep_hours(conn, s3, stream, Settings(), Postgres(), [HOUR], "scheduled__sweep", try_number=1)
    assert finding.status == "late" and finding.late_keys == (object_key(HOUR, "40-retried"),)
    assert set(rows(warehouse, entry)) == (set(KEYS) - set(ERASED)) | {"k200"}
