"""The late sweep: objects that land in old hour folders after those hours' last audits.

Firehose retries delivery for up to 24 h (Direct PUT) or the Kinesis stream's retention, and the
retried object lands in its original hour's folder. Objects dropped into an hour 30 h and one
100 h old, after their audits, must be loaded by the next sweep (exactly their records, nothing
else touched), reported with how late they were; a second sweep finds nothing. An hour in the
horizon that was never loaded is a gap: the sweep loads it whole.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from firehose_loader.audit import audit_hour, audit_window
from firehose_loader.config import Settings, Stream, parse_stream
from firehose_loader.layout import hour_start
from firehose_loader.load import ensure_tables
from firehose_loader.sweep import SweepFinding, sweep_hours
from firehose_loader.warehouse.postgres import Postgres
from tests.integration.conftest import run_audit, run_hour
from tests.integration.support import SIMPLE, load_in_process, ndjson, object_key, unlisted_stream

END = hour_start(datetime.now(UTC))
H30, H50, H100 = END - timedelta(hours=30), END - timedelta(hours=50), END - timedelta(hours=100)
GAP = END - timedelta(hours=60)


def records(hour: datetime, keys: range, seq: int, tag: str) -> list[dict[str, Any]]:
    return [{"id": f"{hour:%d%H}-k{n:03d}", "seq": seq, "note": f"{tag}-{n}"} for n in keys]


def put(s3: Any, stream: Stream, hour: datetime, name: str, rows: list[dict[str, Any]]) -> str:
    key = object_key(hour, name)
    s3.put_object(Bucket=stream.bucket, Key=key, Body=ndjson(rows))
    return key


def sweep(s3: Any, stream: Stream, run_id: str) -> list[SweepFinding]:
    """One sweep of the stream's horizon before END, as the audit DAG's late_sweep runs it (after ensure_tables)."""
    with psycopg.connect(os.environ["WAREHOUSE_URL"]) as conn:
        ensure_tables(conn, stream, Settings(), Postgres())
        return sweep_hours(
            conn, s3, stream, Settings(), Postgres(), audit_window(END, stream.late_horizon_hours), run_id, try_number=1
        )


def ledger(warehouse: psycopg.Connection, stream: Stream) -> dict[str, tuple]:
    rows = warehouse.execute(
        "SELECT object_key, etag, run_id, loaded_at, records_inserted, records_updated"
        " FROM firehose_loader.ledger WHERE stream = %s",
        (stream.name,),
    ).fetchall()
    return {row[0]: row[1:] for row in rows}


def table(warehouse: psycopg.Connection, stream: Stream) -> dict[str, tuple]:
    rows = warehouse.execute(f"SELECT id, seq, note FROM {stream.qualified_table}").fetchall()
    return {row[0]: row[1:] for row in rows}


def quality_keys(warehouse: psycopg.Connection, stream: Stream, hour: datetime) -> tuple:
    return warehouse.execute(
        "SELECT s3_keys, missing_keys, measured_by FROM firehose_loader.realtime_quality WHERE stream = %s AND hour = %s",
        (stream.name, hour.replace(tzinfo=None)),
    ).fetchone()


@pytest.fixture(scope="module")
def audited(s3, warehouse):
    """Three hours loaded and audited (30, 50 and 100 h old); then late objects land in two of them."""
    entry, stream = unlisted_stream(s3, "late_sweep", **SIMPLE, realtime_writer=True)
    for hour in (H30, H50, H100):
        put(s3, stream, hour, "00-a", records(hour, range(20), 1, "a"))
        load_in_process(entry, hour, f"ingest-{hour:%d%H}")
        with psycopg.connect(os.environ["WAREHOUSE_URL"]) as conn:
            assert audit_hour(conn, s3, stream, Settings(), Postgres(), hour, "audit-1", try_number=1)["status"] == "ok"
    before = ledger(warehouse, stream), table(warehouse, stream), quality_keys(warehouse, stream, H30)
    dropped = time.time()
    late = {
        # five new keys and a newer version of one already loaded
        H30: [put(s3, stream, H30, "40-late", records(H30, range(18, 25), 2, "late")[1:])],
        # two objects, extracted as two parts (split_above_bytes below)
        H100: [
            put(s3, stream, H100, "50-late", records(H100, range(20, 23), 1, "late")),
            put(s3, stream, H100, "51-late", records(H100, range(23, 24), 1, "later")),
        ],
    }
    split = dataclasses.replace(stream, split_above_bytes=1)
    first = sweep(s3, split, "sweep-1")
    return stream, split, before, late, dropped, first


def test_the_sweep_loads_exactly_the_late_objects_and_reports_how_late(audited, warehouse):
    stream, _, (ledger_before, table_before, quality_before), late, dropped, first = audited
    assert [(finding.hour, finding.status) for finding in first] == [(H100, "late"), (H30, "late")]
    by_hour = {finding.hour: finding for finding in first}
    for hour, keys in late.items():
        assert by_hour[hour].late_keys == tuple(keys)
        expected = dropped - (hour + timedelta(hours=1)).timestamp()
        assert abs(by_hour[hour].max_lateness_seconds - expected) < 120
    assert by_hour[H30].records_loaded == 6 and by_hour[H100].records_loaded == 4

    rows = table(warehouse, stream)
    expected_table = dict(table_before)
    expected_table.update({f"{H30:%d%H}-k{n:03d}": (2, f"late-{n}") for n in range(19, 25)})
    expected_table.update({f"{H100:%d%H}-k{n:03d}": (1, f"late-{n}") for n in range(20, 23)})
    expected_table[f"{H100:%d%H}-k023"] = (1, "later-23")
    assert rows == expected_table

    after = ledger(warehouse, stream)
    late_keys = {key for keys in late.values() for key in keys}
    assert {key: row for key, row in after.items() if key not in late_keys} == ledger_before
    assert {after[key][1] for key in late_keys} == {"sweep-1"}
    assert after[late[H30][0]][3:] == (5, 1)

    hour_row = warehouse.execute(
        "SELECT objects, records_valid, stage_key FROM firehose_loader.load_hours WHERE stream = %s AND hour = %s",
        (stream.name, H30.replace(tzinfo=None)),
    ).fetchone()
    assert hour_row == (2, 26, None)
    # The first merge's account adds only the five keys new to the hour (no real-time writer wrote
    # them: missing); the ingest measured first.
    assert quality_keys(warehouse, stream, H30) == (quality_before[0] + 5, quality_before[1] + 5, "ingest")

    stored = warehouse.execute(
        "SELECT hour, status, late_objects, late_keys, records_loaded FROM firehose_loader.sweep_results"
        " WHERE stream = %s ORDER BY hour",
        (stream.name,),
    ).fetchall()
    assert stored == [
        (H100.replace(tzinfo=None), "late", 2, "\n".join(late[H100]), 4),
        (H30.replace(tzinfo=None), "late", 1, late[H30][0], 6),
    ]


def test_a_second_sweep_finds_nothing_and_an_audit_of_a_swept_hour_finds_no_damage(audited, warehouse, s3):
    stream, split, _, _, _, _ = audited
    ledger_before, table_before = ledger(warehouse, stream), table(warehouse, stream)
    assert sweep(s3, split, "sweep-2") == []
    assert ledger(warehouse, stream) == ledger_before and table(warehouse, stream) == table_before
    with psycopg.connect(os.environ["WAREHOUSE_URL"]) as conn:
        result = audit_hour(conn, s3, stream, Settings(), Postgres(), H30, "audit-2", try_number=1)
    assert (result["status"], result["s3_keys"], result["late_objects"], result["repaired_keys"]) == ("ok", 25, 0, 0)
    assert table(warehouse, stream) == table_before


def test_an_hour_never_loaded_is_a_gap_and_the_sweep_loads_it_whole(s3, warehouse):
    _, stream = unlisted_stream(s3, "sweep_gap", **SIMPLE, realtime_writer=True)
    keys = [put(s3, stream, GAP, "00-a", records(GAP, range(10), 1, "a"))]
    keys.append(put(s3, stream, GAP, "10-b", records(GAP, range(5, 15), 2, "b")))
    (finding,) = sweep(s3, stream, "sweep-gap")
    assert (finding.hour, finding.status, finding.late_keys, finding.records_loaded) == (GAP, "gap", tuple(keys), 15)
    assert len(table(warehouse, stream)) == 15
    hour_row = warehouse.execute(
        "SELECT objects, stage_key IS NOT NULL FROM firehose_loader.load_hours WHERE stream = %s AND hour = %s",
        (stream.name, GAP.replace(tzinfo=None)),
    ).fetchone()
    assert hour_row == (2, True)
    assert quality_keys(warehouse, stream, GAP) == (15, 15, "sweep")
    assert sweep(s3, stream, "sweep-gap-2") == []


def test_an_hour_whose_ingest_is_pending_is_left_to_it(s3, warehouse):
    _, stream = unlisted_stream(s3, "sweep_pending", **SIMPLE)
    put(s3, stream, GAP, "00-a", records(GAP, range(3), 1, "a"))
    with psycopg.connect(os.environ["WAREHOUSE_URL"]) as conn:
        ensure_tables(conn, stream, Settings(), Postgres())
        findings = sweep_hours(
            conn, s3, stream, Settings(), Postgres(), [GAP], "sweep-p", lambda hour: hour == GAP, try_number=1
        )
    assert findings == []
    assert table(warehouse, stream) == {}


def test_the_audit_dags_late_sweep_loads_an_object_beyond_the_lookback_and_alerts(streams, s3, warehouse, tmp_path):
    """The DAG as scheduled: an audit of the last hour only, then its late_sweep over the horizon."""
    alerts = tmp_path / "alerts.jsonl"
    entry = streams.declare(
        s3,
        "sweep_dag",
        **SIMPLE,
        audit_notifier={
            "class": "tests.integration.recording_notifier.RecordingNotifier",
            "kwargs": {"path": str(alerts)},
        },
    )
    stream = parse_stream(entry, 0)
    hour = datetime(2026, 4, 6, 3, tzinfo=UTC)
    put(s3, stream, hour, "00-a", records(hour, range(10), 1, "a"))
    assert run_hour(entry["name"], hour).state == "success"
    late_key = put(s3, stream, hour, "30-late", records(hour, range(10, 13), 1, "late"))

    end = hour + timedelta(hours=31)
    assert run_audit(entry["name"], end, lookback_hours=1).state == "success"
    assert len(table(warehouse, stream)) == 13
    (alert,) = [json.loads(line) for line in alerts.read_text().splitlines()]
    (found,) = alert["hours"]
    assert (found["hour"][:13], found["status"], found["late_keys"], found["records_loaded"]) == (
        "2026-04-06T03",
        "late",
        [late_key],
        3,
    )
    assert "late sweep" in alert["report"]

    assert run_audit(entry["name"], end, lookback_hours=1).state == "success"
    assert len(alerts.read_text().splitlines()) == 1


def test_the_sweep_cost_bench_runs_and_finds_nothing_late(stack_up):
    """`python -m bench.sweep_cost` keeps working (a small horizon here; docs/audit.md has the 168-hour number)."""
    from bench.sweep_cost import main

    assert main(hours=24, per_hour=2) > 0
