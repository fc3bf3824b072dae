"""Micro-batches (freshness mode poll): objects merged as they land, then the hourly settle pass.

Objects land one after another in the previous hour's folder (the micro-batch lists the current
and the previous hour); after each, a whole run of microbatch_<stream> merges what is new. Then
ingest_<stream> settles the hour. The table, the ledger and load_hours must then equal those of
a stream that loaded the same objects hourly only, and a rerun of a micro-batch must change
nothing (it is skipped: no object is new). A micro-batch, the settle pass and an audit of the
same hour, let go at the same moment, must double nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from psycopg import sql

from firehose_loader.airflow.tasks import run_ensure_tables
from firehose_loader.config import Settings
from firehose_loader.layout import hour_start
from tests.integration.conftest import ROOT, run_dag, run_hour
from tests.integration.support import (
    SIMPLE,
    child_env,
    ndjson,
    object_key,
    snapshot,
    start_worker,
    table_gate,
    unlisted_stream,
    wait_for,
    waiting_on,
)

POLL = {"freshness": {"mode": "poll", "interval_minutes": 1}}


def previous_hour() -> datetime:
    """The hour before the current one; near an hour's end, wait for the next (the test must stay in one hour)."""
    now = datetime.now(UTC)
    if now.minute >= 57:
        time.sleep((hour_start(now) + timedelta(hours=1) - now).total_seconds() + 2)
    return hour_start(datetime.now(UTC)) - timedelta(hours=1)


def landing(hour: datetime) -> list[tuple[str, bytes]]:
    """Objects in landing order: new keys, newer versions in a later object, an older version that must lose,
    at-least-once duplicates inside one object and across objects, and a bad record."""
    return [
        (object_key(hour, "00-a"), ndjson([{"id": f"k{n:03d}", "seq": 1, "note": f"a{n}"} for n in range(10)])),
        (
            object_key(hour, "01-b"),
            ndjson(
                [{"id": f"k{n:03d}", "seq": 2, "note": f"b{n}"} for n in range(5, 15)]
                + [{"id": "k005", "seq": 2, "note": "b5"}, b'{"id": "bad", "seq": }']
            ),
        ),
        (object_key(hour, "02-c"), ndjson([{"id": f"k{n:03d}", "seq": 0, "note": f"c{n}"} for n in range(3)])),
        (object_key(hour, "03-d"), ndjson([{"id": f"k{n:03d}", "seq": 3, "note": f"d{n}"} for n in range(12, 20)])),
    ]


def microbatch(stream_name: str):
    return run_dag(f"microbatch_{stream_name}", datetime.now(UTC))


def states(dag_run) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}


@pytest.fixture(scope="module")
def settled(s3, warehouse, streams):
    hour = previous_hour()
    micro = streams.declare(s3, "micro", **SIMPLE, **POLL)
    hourly = streams.declare(s3, "micro_ref", **SIMPLE)
    snapshots, runs = [], []
    for key, body in landing(hour):
        s3.put_object(Bucket=micro["bucket"], Key=key, Body=body)
        s3.put_object(Bucket=hourly["bucket"], Key=key, Body=body)
        runs.append(states(microbatch(micro["name"])))
        snapshots.append(snapshot(warehouse, micro))
    rerun = states(microbatch(micro["name"]))
    after_rerun = snapshot(warehouse, micro)
    assert states(run_hour(micro["name"], hour))["load_and_merge"] == "success"
    assert states(run_hour(hourly["name"], hour))["load_and_merge"] == "success"
    return micro, hourly, hour, runs, snapshots, rerun, after_rerun


def test_each_micro_batch_merges_the_new_object_and_a_rerun_changes_nothing(settled, warehouse):
    micro, _, _, runs, snapshots, rerun, after_rerun = settled
    assert [run["merge_new_objects"] for run in runs] == ["success"] * 4
    # One more object in the ledger after each run, and the table holds its newest versions at once.
    assert [len(shot.ledger) for shot in snapshots] == [1, 2, 3, 4]
    table = sql.Identifier(*micro["table"].split("."))
    rows = dict(warehouse.execute(sql.SQL("SELECT id, seq FROM {}").format(table)).fetchall())
    assert rows == {**{f"k{n:03d}": 1 for n in range(5)}, **{f"k{n:03d}": 2 for n in range(5, 12)}} | {
        f"k{n:03d}": 3 for n in range(12, 20)
    }
    # Nothing new: the run is skipped (no event on the table's asset) and nothing changed.
    assert rerun == {"merge_new_objects": "skipped"}
    assert after_rerun == snapshots[-1]


def test_after_the_settle_pass_the_hour_equals_a_purely_hourly_load(settled, warehouse):
    micro, hourly, _, _, _, _, _ = settled
    after, reference = snapshot(warehouse, micro), snapshot(warehouse, hourly)
    assert after.table == reference.table
    # Equal but for how the merged rows split into inserted/updated/unchanged (the micro-batches
    # had merged them already): duplicates, quarantined records and every object's account agree.
    assert after.accounting() == reference.accounting()
    inserted, unchanged = after.load_hours[0][9], after.load_hours[0][11]
    assert (inserted, unchanged) == (0, reference.load_hours[0][9])


def commits(warehouse, entry: dict[str, Any]) -> dict[str, tuple]:
    rows = warehouse.execute(
        "SELECT object_key, landed_at, committed_at, committed_by, run_id FROM firehose_loader.object_commits"
        " WHERE stream = %s",
        (entry["name"],),
    ).fetchall()
    return {row[0]: row[1:] for row in rows}


def test_each_objects_first_commit_and_landing_are_recorded_once(settled, warehouse, s3):
    micro, hourly, _, _, _, _, _ = settled
    first = commits(warehouse, micro)
    assert sorted(first) == sorted(key for key, _ in landing(settled[2]))
    for key, (landed_at, committed_at, committed_by, run_id) in first.items():
        listed = s3.head_object(Bucket=micro["bucket"], Key=key)["LastModified"]
        assert (
            landed_at.replace(tzinfo=UTC) == listed.replace(microsecond=0)
            or abs((landed_at.replace(tzinfo=UTC) - listed).total_seconds()) < 1
        )
        # The micro-batch's commit, not the settle pass's (which found every object committed).
        assert committed_by == "microbatch" and run_id.startswith("manual__")
        assert landed_at <= committed_at
    assert {row[2] for row in commits(warehouse, hourly).values()} == {"ingest"}


def test_the_dashboard_shows_the_micro_batches_freshness(settled):
    from firehose_loader.airflow.connections import warehouse_connection
    from firehose_loader.config import parse_stream
    from firehose_loader.dashboard.model import window
    from firehose_loader.dashboard.queries import query_stream

    micro, _, _, _, _, _, _ = settled
    now = datetime.now(UTC)
    start, end = window(None, now, hours=3)
    conn, _ = warehouse_connection(Settings())
    try:
        board = query_stream(conn, parse_stream(micro, 0), Settings(), start, end, now)
    finally:
        conn.close()
    freshness = board.freshness
    assert (board.freshness_mode, freshness.objects) == ("poll", 4)
    # Each object was committed by the whole DAG run that followed its PUT: seconds, not the hour's end.
    assert freshness.max is not None and freshness.max < 600
    assert freshness.lag_seconds is not None and 0 <= freshness.lag_seconds < 3600


def test_a_micro_batch_after_the_settle_pass_changes_nothing(settled, warehouse):
    micro, _, _, _, _, _, _ = settled
    before = snapshot(warehouse, micro)
    assert states(microbatch(micro["name"])) == {"merge_new_objects": "skipped"}
    assert snapshot(warehouse, micro) == before


MICRO_WORKER = """
import json, sys
from datetime import datetime
from firehose_loader.airflow.connections import s3_client, warehouse_connection
from firehose_loader.config import Settings, parse_stream
from firehose_loader.microbatch import run_microbatch
stream, settings = parse_stream(json.loads(sys.argv[1]), 0), Settings()
conn, dialect = warehouse_connection(settings)
results = run_microbatch(conn, s3_client(settings), stream, settings, dialect, datetime.fromisoformat(sys.argv[2]), [], sys.argv[3], try_number=1)
print("MERGED", [len(result.keys) for result in results], flush=True)
"""

AUDIT_WORKER = """
import json, sys
from datetime import datetime
from firehose_loader.airflow.connections import s3_client, warehouse_connection
from firehose_loader.audit import audit_hours
from firehose_loader.config import Settings, parse_stream
stream, settings = parse_stream(json.loads(sys.argv[1]), 0), Settings()
conn, dialect = warehouse_connection(settings)
print("AUDIT", audit_hours(conn, s3_client(settings), stream, settings, dialect, [datetime.fromisoformat(sys.argv[2])], sys.argv[3], try_number=1), flush=True)
"""


def start(script: str, entry: dict[str, Any], moment: datetime, run_id: str, log) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", script, json.dumps(entry), moment.isoformat(), run_id],
        cwd=ROOT,
        env=child_env(),
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def test_a_micro_batch_the_settle_pass_and_an_audit_at_once_double_nothing(s3, warehouse, tmp_path):
    hour = datetime(2026, 5, 3, 7, tzinfo=UTC)
    reference, _ = unlisted_stream(s3, "micro_once", **SIMPLE)
    entry, stream = unlisted_stream(s3, "micro_three", **SIMPLE, **POLL)
    for target in (reference, entry):
        for key, body in landing(hour):
            s3.put_object(Bucket=target["bucket"], Key=key, Body=body)
    from tests.integration.support import load_in_process

    load_in_process(reference, hour, "scheduled__once")
    run_ensure_tables(stream, Settings())
    logs = [tmp_path / name for name in ("micro.log", "settle.log", "audit.log")]
    with table_gate(entry["table"]):
        workers = [
            # "now" in the hour after: the micro-batch lists this hour as the previous one.
            start(MICRO_WORKER, entry, hour + timedelta(hours=1, minutes=5), "scheduled__micro", logs[0]),
            start_worker(entry, hour, "scheduled__2026-05-03T08:00:00+00:00", logs[1]),
            start(AUDIT_WORKER, entry, hour, "scheduled__audit", logs[2]),
        ]
        wait_for(lambda: waiting_on(warehouse, entry["table"]) == 3, "the three merges to wait for the lock", 180)
    for worker, log in zip(workers, logs, strict=True):
        assert worker.wait(timeout=180) == 0, log.read_text()[-3000:]

    table = sql.Identifier(*entry["table"].split("."))
    assert warehouse.execute(sql.SQL("SELECT COUNT(*), COUNT(DISTINCT id) FROM {}").format(table)).fetchone() == (
        20,
        20,
    )
    after, clean = snapshot(warehouse, entry), snapshot(warehouse, reference)
    assert after.table == clean.table
    # Whichever merged last, the hour has one account: one ledger row per object, one load_hours row.
    assert [row[0] for row in after.ledger] == [row[0] for row in clean.ledger]
    assert [row[1:9] for row in after.load_hours] == [row[1:9] for row in clean.load_hours]
