"""Objects that have gone from S3: a listing that would shrink an hour's account is refused unless forced.

Objects expire under a lifecycle rule, are deleted by hand, or stop matching when someone edits
the prefix. A clear, rerun or backfill of such an hour (or an audit that re-lists it) must not
replace its ledger with a smaller one while the rows stay in the table: it is refused with a
clear message and changes nothing. A run asked to force it loads the hour as it is listed now
and keeps the missing objects in the ledger, marked gone, with their counts.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from airflow.sdk.exceptions import AirflowFailException

from firehose_loader.airflow.tasks import run_ensure_tables, run_extract, run_load_and_merge
from firehose_loader.audit import audit_hours
from firehose_loader.config import Settings, Stream, parse_stream
from firehose_loader.sweep import sweep_hours
from firehose_loader.warehouse.postgres import Postgres
from tests.integration.conftest import run_dag
from tests.integration.support import SIMPLE, load_in_process, ndjson, object_key, unlisted_stream

HOUR = datetime(2026, 5, 3, 7, tzinfo=UTC)


def put(s3: Any, stream: Stream, name: str, keys: range) -> str:
    key = object_key(HOUR, name)
    s3.put_object(
        Bucket=stream.bucket, Key=key, Body=ndjson([{"id": f"k{n:03d}", "seq": 1, "note": name} for n in keys])
    )
    return key


def load(entry: dict[str, Any], run_id: str, *, force: bool = False) -> dict[str, Any]:
    stream, settings = parse_stream(entry, 0), Settings()
    run_ensure_tables(stream, settings)
    manifest = run_extract(stream, settings, HOUR, HOUR + timedelta(hours=1), run_id, 1)["manifest"]
    assert manifest is not None
    return run_load_and_merge(stream, settings, manifest, run_id, force_relisting=force)


def audit(stream: Stream, run_id: str, *, force: bool = False) -> dict[str, Any]:
    with psycopg.connect(os.environ["WAREHOUSE_URL"]) as conn:
        (result,) = audit_hours(
            conn, boto_client(), stream, Settings(), Postgres(), [HOUR], run_id, try_number=1, force_relisting=force
        )
    return result


def boto_client() -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1")


def account(warehouse: psycopg.Connection, stream: Stream) -> tuple[dict[str, tuple], tuple, dict[str, tuple]]:
    """The hour's ledger (object -> status, records), its load_hours counts, and the table's rows."""
    ledger = warehouse.execute(
        "SELECT object_key, status, records_valid FROM firehose_loader.ledger WHERE stream = %s", (stream.name,)
    ).fetchall()
    hour = warehouse.execute(
        "SELECT status, objects, objects_gone, records_valid FROM firehose_loader.load_hours"
        " WHERE stream = %s AND hour = %s",
        (stream.name, HOUR.replace(tzinfo=None)),
    ).fetchone()
    rows = warehouse.execute(f"SELECT id, seq, note FROM {stream.qualified_table}").fetchall()
    return {key: rest for key, *rest in ledger}, hour, {key: tuple(rest) for key, *rest in rows}


@pytest.fixture
def loaded(s3: Any, warehouse: psycopg.Connection) -> tuple[dict[str, Any], Stream, str, str]:
    entry, stream = unlisted_stream(s3, f"gone_{os.urandom(3).hex()}", **SIMPLE)
    first, second = put(s3, stream, "00-a", range(10)), put(s3, stream, "30-b", range(10, 15))
    load_in_process(entry, HOUR, "ingest-1")
    return entry, stream, first, second


def test_an_unforced_relisting_that_lost_an_object_is_refused_and_changes_nothing(loaded, s3, warehouse) -> None:
    entry, stream, first, second = loaded
    before = account(warehouse, stream)
    assert before[1] == ("loaded", 2, 0, 15) and len(before[2]) == 15
    s3.delete_object(Bucket=stream.bucket, Key=second)  # expired under a lifecycle rule

    with pytest.raises(AirflowFailException) as refused:  # permanent: no retries
        load(entry, "rerun-1")
    message = str(refused.value)
    assert "1 that are no longer there" in message and second in message and first not in message
    assert "force_relisting" in message and HOUR.isoformat() in message
    assert account(warehouse, stream) == before

    result = audit(stream, "audit-1")
    assert result["status"] == "failed" and "force_relisting" in result["message"]
    assert account(warehouse, stream) == before


def test_a_forced_relisting_keeps_the_gone_objects_in_the_account_and_later_runs_accept_it(
    loaded, s3, warehouse
) -> None:
    entry, stream, first, second = loaded
    s3.delete_object(Bucket=stream.bucket, Key=second)

    summary = load(entry, "rerun-forced", force=True)
    ledger, hour, rows = account(warehouse, stream)
    assert ledger == {first: ["loaded", 10], second: ["gone", 5]}
    # The hour's account still holds the gone object's records: its rows stay in the table.
    assert hour == ("loaded", 2, 1, 15) and summary["objects_gone"] == 1 and len(rows) == 15
    (message,) = warehouse.execute(
        "SELECT message FROM firehose_loader.ledger WHERE stream = %s AND object_key = %s", (stream.name, second)
    ).fetchone()
    assert "rerun-forced" in message

    # Once marked, nothing refuses the hour any more, and nothing counts the object as new.
    after = account(warehouse, stream)
    load(entry, "rerun-2")
    assert account(warehouse, stream) == after
    assert audit(stream, "audit-2")["status"] == "ok"
    with psycopg.connect(os.environ["WAREHOUSE_URL"]) as conn:
        assert sweep_hours(conn, s3, stream, Settings(), Postgres(), [HOUR], "sweep-1", try_number=1) == []
    assert account(warehouse, stream) == after

    # Everything expired: still refused unforced (the hour would lose its last object), and forced it
    # is an hour of two gone objects, not an empty one.
    s3.delete_object(Bucket=stream.bucket, Key=first)
    with pytest.raises(AirflowFailException):
        load(entry, "rerun-3")
    assert audit(stream, "audit-3", force=True)["status"] in {"ok", "repaired"}
    ledger, hour, rows = account(warehouse, stream)
    assert ledger == {first: ["gone", 10], second: ["gone", 5]} and hour == ("loaded", 2, 2, 15) and len(rows) == 15

    # An object that comes back is new to the account again: the sweep loads it (its rows are unchanged).
    put(s3, stream, "30-b", range(10, 15))
    with psycopg.connect(os.environ["WAREHOUSE_URL"]) as conn:
        (finding,) = sweep_hours(conn, s3, stream, Settings(), Postgres(), [HOUR], "sweep-2", try_number=1)
    assert finding.late_keys == (second,)
    ledger, hour, rows = account(warehouse, stream)
    assert ledger == {first: ["gone", 10], second: ["loaded", 5]} and hour == ("loaded", 2, 1, 15) and len(rows) == 15


def test_the_ingest_dag_refuses_then_a_run_with_force_relisting_loads(streams, s3, warehouse) -> None:
    """The DAG's param, as a clear or a triggered run with conf {"force_relisting": true} passes it."""
    entry = streams.declare(s3, "gone_dag", **SIMPLE)
    stream = parse_stream(entry, 0)
    keep, lose = put(s3, stream, "00-a", range(4)), put(s3, stream, "30-b", range(4, 6))
    assert run_dag(stream.ingest_dag_id, HOUR + timedelta(hours=1)).state == "success"
    s3.delete_object(Bucket=stream.bucket, Key=lose)

    refused = run_dag(stream.ingest_dag_id, HOUR + timedelta(hours=1))
    assert refused.state == "failed"
    assert account(warehouse, stream)[0] == {keep: ["loaded", 4], lose: ["loaded", 2]}
    forced = run_dag(stream.ingest_dag_id, HOUR + timedelta(hours=1), conf={"force_relisting": True})
    assert forced.state == "success"
    assert account(warehouse, stream)[0] == {keep: ["loaded", 4], lose: ["gone", 2]}
