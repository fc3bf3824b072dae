"""The dashboard's queries against PostgreSQL: the real-time writer writes two hours before their load
(drops, duplicates, older versions), the ingest loads them, the real-time path damages one hour after
its load, one audit repairs it. Every number the dashboard shows equals what the simulator injected:
the first merge's account (realtime_quality) and the damage after the load (audit_results)."""

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
from tools.simulate import (
    PRODUCT_EVENT_COLUMNS,
    Injected,
    lossy_realtime_path,
    make_object,
    product_hour,
    realtime_write,
)

pytestmark = pytest.mark.integration

EXAMPLE_COLUMNS = PRODUCT_EVENT_COLUMNS
HOURS = [datetime(2026, 5, 1, 10, tzinfo=UTC), datetime(2026, 5, 1, 11, tzinfo=UTC)]
# What the real-time writer does to each hour before its load: drops, duplicates, older (delete + insert), in place.
BEFORE_LOAD = {HOURS[0]: (5, 2, 3, 1), HOURS[1]: (9, 4, 0, 2)}
# What it does to the second hour after its load: lost, doubled, older without provenance, older in place.
AFTER_LOAD = {"drops": 6, "duplicates": 3, "stale": 2, "stale_in_place": 1}


@pytest.fixture(scope="module")
def loaded(streams, s3):
    entry = streams.declare(
        s3, "dash", key=["event_id"], order_by="received_at", columns=EXAMPLE_COLUMNS, realtime_writer=True
    )
    idle = streams.declare(s3, "dash_idle", key=["event_id"], order_by="received_at", columns=EXAMPLE_COLUMNS)
    config = load_config()
    stream, settings = config.stream(entry["name"]), config.settings
    rng = random.Random(5)
    client = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1")
    injected: dict[datetime, Injected] = {}
    with psycopg.connect(os.environ["WAREHOUSE_URL"]) as conn:
        ensure_tables(conn, stream, settings, Postgres())
        for hour in HOURS:
            objects = product_hour(stream.prefix, stream.name, hour, 300, rng)
            objects.append(make_object(stream.prefix, stream.name, hour, 58, [b'{"event_id": "x", '], "ndjson", rng))
            for item in objects:
                s3.put_object(Bucket=stream.bucket, Key=item.key, Body=item.body)
            drops, duplicates, older, in_place = BEFORE_LOAD[hour]
            injected[hour] = realtime_write(
                conn,
                stream,
                settings,
                objects,
                drops=drops,
                duplicates=duplicates,
                older=older,
                older_in_place=in_place,
                seed=hour.hour,
            )
        for hour in HOURS:
            manifest = extract_hour(client, stream, hour, StageWriter("ingest", f"load-{hour:%H}", "extract_hour", 1))
            load_and_merge(
                conn, stream, settings, Postgres(), manifest, staged_batch(client, stream, manifest), f"load-{hour:%H}"
            )
        after = lossy_realtime_path(conn, stream, settings, HOURS[1], **AFTER_LOAD)
        audit_hours(conn, client, stream, settings, Postgres(), HOURS, "audit-1", try_number=1)
    return stream, config.stream(idle["name"]), settings, injected, after


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


def test_the_simulated_real_time_writer_writes_exactly_what_it_reports(loaded, warehouse):
    """realtime_quality, measured by the ingest's first merge, holds what realtime_write returned."""
    stream, _idle, _settings, injected, _after = loaded
    assert {hour: want.counts() for hour, want in injected.items()} == {
        HOURS[0]: (300, 5, 2, 4),
        HOURS[1]: (300, 9, 4, 2),
    }
    for hour, want in injected.items():
        row = warehouse.execute(
            "SELECT s3_keys, missing_keys, duplicate_keys, stale_keys, drop_rate, measured_by"
            " FROM firehose_loader.realtime_quality WHERE stream = %s AND hour = %s",
            (stream.name, hour.replace(tzinfo=None)),
        ).fetchone()
        assert row == (*want.counts(), pytest.approx(want.missing / want.keys), "ingest")


def test_the_window_shows_both_accounts(loaded, warehouse):
    stream, _idle, settings, injected, after = loaded
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
        assert point.warehouse_rows == provenance_rows(warehouse, stream, hour)
        assert point.load_status == "partial" and point.records_quarantined == 1
        # The real-time path at first merge: exactly what the simulator injected before the load.
        want = injected[hour]
        assert (point.realtime_keys, point.realtime_missing, point.realtime_duplicate, point.realtime_stale) == (
            want.counts()
        )
        assert point.drop_rate == pytest.approx(want.missing / want.keys) and point.realtime_measured_by == "ingest"
        assert point.has_drops
    # Damage after the load: exactly what the simulator injected after it, in the damaged hour only.
    damaged, clean = by_hour[HOURS[1]], by_hour[HOURS[0]]
    assert (damaged.missing_keys, damaged.duplicate_keys, damaged.stale_keys, damaged.repaired_keys) == (6, 3, 3, 12)
    assert (after.missing, after.duplicate, after.stale, after.stale_in_place) == (6, 3, 3, 1)
    assert damaged.has_damage and damaged.audit_status == "repaired"
    assert (clean.missing_keys, clean.duplicate_keys, clean.stale_keys, clean.has_damage) == (0, 0, 0, False)
    summary = board.summary
    assert (summary.missing_keys, summary.duplicate_keys, summary.stale_keys, summary.hours_damaged) == (6, 3, 3, 1)
    assert (summary.realtime_missing, summary.realtime_duplicate, summary.realtime_stale) == (14, 6, 6)
    assert summary.drop_rate == pytest.approx(14 / sum(want.keys for want in injected.values()))
    assert by_hour[start].load_status is None and by_hour[start].audits == 0
    assert jsonable(board)["summary"]["realtime_missing"] == 14


def test_an_hour_shows_its_ledger(loaded, warehouse):
    stream, _idle, settings, *_ = loaded
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
    _stream, idle, settings, *_ = loaded
    start, end = window(HOURS[-1], datetime.now(UTC), hours=4)
    with read_only_connection() as conn:
        board = query_stream(conn, idle, settings, start, end)
        detail = query_hour(conn, idle, settings, HOURS[0])
    assert "target" in board.missing_tables and not board.ready
    assert all(not point.has_data for point in board.hours)
    assert board.summary.drop_rate is None
    assert detail.load is None and detail.objects == () and detail.audits == ()


def test_the_queries_write_nothing(loaded):
    stream, _idle, settings, *_ = loaded
    start, end = window(HOURS[-1] + timedelta(hours=1), datetime.now(UTC))
    with read_only_connection() as conn:
        query_stream(conn, stream, settings, start, end)
        query_hour(conn, stream, settings, HOURS[0])
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
