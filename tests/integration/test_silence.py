"""A stream that goes silent alerts once through its notifier, not every hour, and not on a rerun.

Firehose writes at least one object per buffer interval while records flow; hours that load no
object after hours that did mean the delivery stopped or the prefix changed, while the ingest
and the audit both say the hours are fine (empty, 0 keys).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta

import psycopg

from firehose_loader.config import Settings, parse_stream
from firehose_loader.dashboard.queries import query_stream
from tests.integration.conftest import run_hour
from tests.integration.support import SIMPLE, ndjson, object_key

FIRST = datetime(2026, 5, 6, 0, tzinfo=UTC)


def test_a_stream_going_silent_alerts_once_and_a_quiet_setting_stays_quiet(streams, s3, warehouse, tmp_path) -> None:
    alerts = tmp_path / "alerts.jsonl"
    notifier = {"class": "tests.integration.recording_notifier.RecordingNotifier", "kwargs": {"path": str(alerts)}}
    entry = streams.declare(s3, "silent", **SIMPLE, audit_notifier=notifier, silence_alert_hours=2)
    quiet = streams.declare(s3, "quiet_at_night", **SIMPLE, audit_notifier=notifier, silence_alert_hours=4)
    for declared in (entry, quiet):
        stream = parse_stream(declared, 0)
        s3.put_object(
            Bucket=stream.bucket,
            Key=object_key(FIRST, "00-a"),
            Body=ndjson([{"id": f"k{n}", "seq": 1, "note": "busy"} for n in range(3)]),
        )

    def alerted() -> list[dict]:
        return [json.loads(line) for line in alerts.read_text().splitlines()] if alerts.exists() else []

    hours = [FIRST + timedelta(hours=n) for n in range(4)]  # one busy hour, then three empty ones
    for hour in hours:
        assert run_hour(entry["name"], hour).state == "success"
        assert run_hour(quiet["name"], hour).state == "success"
        if hour == hours[1]:
            assert alerted() == []  # one empty hour is not yet a silence of two
    (alert,) = alerted()
    assert alert["stream"] == entry["name"]
    assert "went silent" in alert["summary"] and "2026-05-06 01:00" in alert["summary"]
    assert [item["hour"][:13] for item in alert["hours"]] == ["2026-05-06T01", "2026-05-06T02"]

    # A rerun of the hour that completed the silence (a clear from the UI) does not alert again.
    assert run_hour(entry["name"], hours[2]).state == "success"
    assert len(alerted()) == 1
    (recorded,) = warehouse.execute(
        "SELECT count(*) FROM firehose_loader.silences WHERE stream = %s", (entry["name"],)
    ).fetchone()
    assert recorded == 1
    # The dashboard shows it, under its first empty hour.
    with psycopg.connect(os.environ["WAREHOUSE_URL"]) as conn:
        board = query_stream(conn, parse_stream(entry, 0), Settings(), FIRST, FIRST + timedelta(hours=6))
    assert [(silence["silent_from"], silence["empty_hours"]) for silence in board.silences] == [(hours[1], 2)]
