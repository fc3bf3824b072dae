"""The dashboard's queries against PostgreSQL: after loads, real-time damage and one audit, every number
it shows equals what the loader's tables (audit_results, load_hours, ledger) and the target hold."""

from __future__ import annotations

import os
import random
from datetime import UTC, datetime, timedelta

import boto3
import psycopg
import pytest
from psycopg import sql

from firehose_loader.audit import audit_hours
from firehose_loader.config import load_config
from firehose_loader.dashboard.model import hour_key, jsonable, window
from firehose_loader.dashboard.queries import query_hour, query_stream
from firehose_loader.extract import extract_hour
from firehose_loader.layout import StageWriter
from firehose_loader.load import ensure_tables, load_and_merge, staged_batch
from firehose_loader.warehouse.postgres import Postgres
from tools.simulate import PRODUCT_EVENT_COLUMNS, lossy_realtime_path, make_object, product_hour

pytestmark = pytest.mark.integration

EXAMPLE_COLUMNS = PRODUCT_EVENT_COLUMNS
HOURS = [datetime(2026, 5, 1, 10, tzinfo=UTC), datetime(2026, 5, 1, 11, tzinfo=UTC)]


@pytest.fixture(scope="module")
def loaded(streams, s3):
    entry = streams.declare(s3, "dash", key=["event_id"], order_by="received_at", columns=EXAMPLE_COLUMNS)
    idle = streams.declare(s3, "dash_idle", key=["event_id"], order_by="received_at", columns=EXAMPLE_COLUMNS)
    config = load_config()
    stream, settings = config.stream(entry["name"]), config.settings
    rng = random.Random(5)
    for hour in HOURS:
        objects = product_hour(stream.prefix, stream.name, hour, 300, rng)
        objects.append(make_object(stream.prefix, stream.name, hour, 58, [b'{"event_id": "x", '], "ndjson", rng))
        for item in objects:
            s3.put_object(Bucket=stream.bucket, Key=item.key, Body=item.body)
    client = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1")
    with psycopg.connect(os.environ["WAREHOUSE_URL"]) as conn:
        ensure_tables(conn, stream, settings, Postgres())
        for hour in HOURS:
            manifest = extract_hour(client, stream, hour, StageWriter("ingest", f"load-{hour:%H}", "extract_hour", 1))
            load_and_merge(
                conn, stream, settings, Postgres(), manifest, staged_batch(client, stream, manifest), f"load-{hour:%H}"
            )
        lossy_realtime_path(conn, stream, settings, HOURS[1], drops=6, duplicates=3, stale=2)
        audit_hours(conn, client, stream, settings, Postgres(), HOURS, "audit-1", try_number=1)
    return stream, config.stream(idle["name"]), settings


def audit_results(warehouse, stream_name: str) -> dict[datetime, dict]:
    cursor = warehouse.execute(
        "SELECT * FROM firehose_loader.audit_results WHERE stream = %s ORDER BY hour", (stream_name,)
    )
    names = [column.name for column in cursor.description]
    return {row[1].replace(tzinfo=UTC): dict(zip(names, row, strict=True)) for row in cursor.fetchall()}


def provenance_rows(warehouse, stream, hour: datetime) -> int:
    query = sql.SQL('SELECT COUNT(*) FROM {} WHERE "_firehose_object" LIKE %s').format(
        sql.Identifier(stream.schema, stream.table)
    )
    return warehouse.execute(query, (f"{stream.prefix}{hour:%Y/%m/%d/%H}/%",)).fetchone()[0]


def read_only_connection() -> psycopg.Connection:
    conn = psycopg.connect(os.environ["WAREHOUSE_URL"])
    conn.read_only = True
    return conn


def test_the_window_shows_what_the_audit_recorded(loaded, warehouse):
    stream, _idle, settings = loaded
    start, end = window(HOURS[-1], datetime.now(UTC), hours=4)
    with read_only_connection() as conn:
        board = query_stream(conn, stream, settings, start, end)
    recorded = audit_results(warehouse, stream.name)
    assert board.ready and board.missing_tables == ()
    by_hour = {point.hour: point for point in board.hours}
    assert [hour_key(point.hour) for point in board.hours] == [
        "2026-05-01T08:00",
        "2026-05-01T09:00",
        *map(hour_key, HOURS),
    ]
    for hour in HOURS:
        point, row = by_hour[hour], recorded[hour]
        assert point.audits == 1 and point.audit_status == row["status"]
        assert (point.s3_keys, point.s3_keys_source) == (row["s3_keys"], "audit")
        assert (
            point.missing_keys,
            point.duplicate_keys,
            point.stale_keys,
            point.late_objects,
            point.repaired_keys,
        ) == (
            row["missing_keys"],
            row["duplicate_keys"],
            row["stale_keys"],
            row["late_objects"],
            row["repaired_keys"],
        )
        assert point.drop_rate == pytest.approx(row["drop_rate"])
        assert point.warehouse_rows == provenance_rows(warehouse, stream, hour)
        assert point.load_status == "partial" and point.records_quarantined == 1
    damaged = by_hour[HOURS[1]]
    assert (damaged.missing_keys, damaged.duplicate_keys, damaged.stale_keys) == (6, 3, 2)
    assert damaged.has_drops and not by_hour[HOURS[0]].has_drops
    assert board.summary.missing_keys == 6
    assert board.summary.drop_rate == pytest.approx(6 / sum(recorded[hour]["s3_keys"] for hour in HOURS))
    assert by_hour[start].load_status is None and by_hour[start].audits == 0


def test_an_hour_shows_its_ledger(loaded, warehouse):
    stream, _idle, settings = loaded
    with read_only_connection() as conn:
        detail = query_hour(conn, stream, settings, HOURS[1])
    ledger = warehouse.execute(
        "SELECT object_key, records_raw, records_quarantined FROM firehose_loader.ledger"
        " WHERE stream = %s AND hour = %s ORDER BY object_key",
        (stream.name, HOURS[1].replace(tzinfo=None)),
    ).fetchall()
    assert [(row["object_key"], row["records_raw"], row["records_quarantined"]) for row in detail.objects] == ledger
    assert detail.totals["records_raw"] == sum(row[1] for row in ledger)
    assert detail.totals["records_quarantined"] == 1
    assert detail.load["status"] == "partial" and detail.load["batch_keys"] == detail.audits[0]["s3_keys"]
    assert [audit["run_id"] for audit in detail.audits] == ["audit-1"]
    assert jsonable(detail)["hour"] == "2026-05-01T11:00:00+00:00"


def test_a_stream_that_never_ran_is_empty_not_an_error(loaded):
    _stream, idle, settings = loaded
    start, end = window(HOURS[-1], datetime.now(UTC), hours=4)
    with read_only_connection() as conn:
        board = query_stream(conn, idle, settings, start, end)
        detail = query_hour(conn, idle, settings, HOURS[0])
    assert "target" in board.missing_tables and not board.ready
    assert all(not point.has_data for point in board.hours)
    assert board.summary.drop_rate is None
    assert detail.load is None and detail.objects == () and detail.audits == ()


def test_the_queries_write_nothing(loaded):
    stream, _idle, settings = loaded
    start, end = window(HOURS[-1] + timedelta(hours=1), datetime.now(UTC))
    with read_only_connection() as conn:
        query_stream(conn, stream, settings, start, end)
        query_hour(conn, stream, settings, HOURS[0])
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
