"""No hour is skipped, and a late object costs what the object costs.

The ingest "down" for 30 hours (its runs for those intervals never created: Airflow stopped, the
DAG paused) and resumed with ``catchup: false``: the audit DAG's late sweep finds every settled
hour in its horizon that no load committed, reports it as a gap and loads it whole. The result
is the same table as an uninterrupted run of every hour. A late object in an hour bigger than the
split size is merged as a delta: the sweep reads that object from the stream's folder, nothing
else, and stages its records alone.
"""

from __future__ import annotations

import dataclasses
import os
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import psycopg

from firehose_loader.audit import audit_window
from firehose_loader.config import Settings, Stream
from firehose_loader.dashboard.queries import query_hour
from firehose_loader.layout import hour_start
from firehose_loader.load import ensure_tables
from firehose_loader.sweep import SweepFinding, sweep_hours
from firehose_loader.warehouse.postgres import Postgres
from tests.integration.support import SIMPLE, load_in_process, ndjson, object_key, snapshot, unlisted_stream

END = hour_start(datetime.now(UTC))
HOURS = [END - timedelta(hours=32 - n) for n in range(32)]  # 32 settled hours, the oldest first


def hour_records(index: int) -> list[dict[str, Any]]:
    """Each hour re-sends keys of the hours before it with newer versions, and one record twice."""
    rows = [{"id": f"k{(index * 3 + n) % 40:02d}", "seq": index, "note": f"hour {index} record {n}"} for n in range(6)]
    return [*rows, rows[0]]


def sweep(client: Any, stream: Stream, run_id: str) -> list[SweepFinding]:
    with psycopg.connect(os.environ["WAREHOUSE_URL"]) as conn:
        ensure_tables(conn, stream, Settings(), Postgres())
        window = audit_window(END, stream.late_horizon_hours)
        return sweep_hours(conn, client, stream, Settings(), Postgres(), window, run_id, try_number=1)


def test_an_ingest_down_for_30_hours_ends_with_every_hour_loaded_the_gap_reported_and_the_same_table(
    s3, warehouse
) -> None:
    steady, steady_stream = unlisted_stream(s3, "outage_steady", **SIMPLE)
    resumed, resumed_stream = unlisted_stream(s3, "outage_resumed", **SIMPLE)
    for index, hour in enumerate(HOURS):
        for stream in (steady_stream, resumed_stream):
            s3.put_object(Bucket=stream.bucket, Key=object_key(hour, "00-a"), Body=ndjson(hour_records(index)))
    for hour in HOURS:
        load_in_process(steady, hour, f"ingest-{hour:%d%H}")
    # Down from the second hour to the thirty-first: on resume only the latest hour runs.
    for hour in (HOURS[0], HOURS[-1]):
        load_in_process(resumed, hour, f"ingest-{hour:%d%H}")

    findings = sweep(s3, resumed_stream, "sweep-1")
    assert [(finding.hour, finding.status) for finding in findings] == [(hour, "gap") for hour in HOURS[1:-1]]
    assert all(finding.records_loaded is not None for finding in findings)
    reported = warehouse.execute(
        "SELECT count(*) FROM firehose_loader.sweep_results WHERE stream = %s AND status = 'gap'",
        (resumed_stream.name,),
    ).fetchone()
    assert reported == (30,)

    # Every hour loaded, and the same table and accounts (but how each merge split its rows into
    # inserted / updated / superseded, which depends on the order the hours were loaded in).
    loaded_hours = warehouse.execute(
        "SELECT count(*) FROM firehose_loader.load_hours WHERE stream = %s", (resumed_stream.name,)
    ).fetchone()
    assert loaded_hours == (32,)
    steady_state, resumed_state = snapshot(warehouse, steady).accounting(), snapshot(warehouse, resumed).accounting()
    assert resumed_state.table == steady_state.table
    assert resumed_state.ledger == steady_state.ledger
    assert resumed_state.load_hours == steady_state.load_hours
    assert sweep(s3, resumed_stream, "sweep-2") == []


def test_a_late_object_in_an_hour_over_the_split_size_is_read_and_staged_alone(s3, warehouse) -> None:
    entry, stream = unlisted_stream(s3, "outage_delta", **SIMPLE)
    hour = END - timedelta(hours=40)
    for minute in range(6):
        rows = [{"id": f"m{minute}-{n:03d}", "seq": 1, "note": "x" * 200} for n in range(200)]
        s3.put_object(Bucket=stream.bucket, Key=object_key(hour, f"{minute:02d}-a"), Body=ndjson(rows))
    load_in_process(entry, hour, "ingest-1")
    late_key = object_key(hour, "45-late")
    s3.put_object(
        Bucket=stream.bucket,
        Key=late_key,
        Body=ndjson([{"id": f"late-{n}", "seq": 1, "note": "late"} for n in range(7)]),
    )
    hour_bytes = sum(
        item["Size"]
        for item in s3.list_objects_v2(Bucket=stream.bucket, Prefix=f"events/{hour:%Y/%m/%d/%H}/")["Contents"]
    )
    # The hour is now over the split size: a whole-hour extract of it would split into parts.
    split = dataclasses.replace(stream, split_above_bytes=hour_bytes // 4)

    client = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1")
    read: list[str] = []
    client.meta.events.register("before-parameter-build.s3.GetObject", lambda params, **_: read.append(params["Key"]))
    (finding,) = sweep(client, split, "sweep-1")

    assert (finding.status, finding.late_keys, finding.records_loaded) == ("late", (late_key,), 7)
    assert [key for key in read if key.startswith(stream.prefix)] == [late_key]
    (staged,) = warehouse.execute(
        "SELECT records_valid FROM firehose_loader.ledger WHERE stream = %s AND object_key = %s",
        (stream.name, late_key),
    ).fetchone()
    assert staged == 7
    assert warehouse.execute(f"SELECT count(*) FROM {stream.qualified_table}").fetchone() == (6 * 200 + 7,)
    # The hour's page on the dashboard says what the sweep found.
    with psycopg.connect(os.environ["WAREHOUSE_URL"]) as conn:
        (swept,) = query_hour(conn, stream, Settings(), hour).sweeps
    assert (swept["status"], swept["late_keys"], swept["records_loaded"]) == ("late", late_key, 7)
