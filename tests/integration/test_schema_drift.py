"""Schema drift: a field the columns lack is counted per object and hour, logged, and alerted once.

Whole ingest DAG runs on moto S3 and PostgreSQL: a new field appears in hour 2 of 3. Its count,
JSON types and a sample are recorded with the ledger (schema_drift) for hours 2 and 3; the stream's
notifier is called once for it, not again for hour 3 nor for a rerun of hour 2; with
``new_fields: ignore`` it is counted and never alerted. The rows themselves load as before.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime

import psycopg
import pytest

from firehose_loader.config import Settings, parse_stream
from firehose_loader.dashboard.page import render_page
from firehose_loader.dashboard.queries import query_hour, query_stream
from tests.integration.conftest import run_hour
from tests.integration.support import SIMPLE, load_in_process, ndjson, object_key, unlisted_stream

HOURS = [datetime(2026, 7, 1, hour, tzinfo=UTC) for hour in (3, 4, 5)]


def write_hours(s3, bucket: str) -> None:
    first, second, third = HOURS
    s3.put_object(
        Bucket=bucket,
        Key=object_key(first, "00-a"),
        Body=ndjson([{"id": f"a{n}", "seq": 1, "note": "x"} for n in range(5)]),
    )
    # Hour 2: 7 of its 10 records carry utm_source (a string), 2 of them a campaign (an object or null).
    records = [{"id": f"b{n}", "seq": 1, "note": "y", "utm_source": f"google-{n}"} for n in range(7)]
    records += [{"id": f"b{n}", "seq": 1} for n in range(7, 10)]
    records[0]["campaign"] = {"name": "spring"}
    records[1]["campaign"] = None
    s3.put_object(Bucket=bucket, Key=object_key(second, "00-a"), Body=ndjson(records))
    s3.put_object(
        Bucket=bucket,
        Key=object_key(third, "00-a"),
        Body=ndjson([{"id": f"c{n}", "seq": 1, "utm_source": "bing"} for n in range(3)]),
    )


def drift(warehouse, stream: str) -> list[tuple]:
    return warehouse.execute(
        "SELECT hour, field, records, json_types, sample FROM firehose_loader.schema_drift"
        " WHERE stream = %s ORDER BY hour, field",
        (stream,),
    ).fetchall()


@pytest.mark.parametrize("setting", ["report", "ignore"])
def test_a_new_field_in_hour_2_of_3_is_counted_per_hour_and_alerted_once(streams, s3, warehouse, tmp_path, setting):
    alerts = tmp_path / "alerts.jsonl"
    entry = streams.declare(
        s3,
        f"drift_{setting}",
        **SIMPLE,
        new_fields=setting,
        audit_notifier={
            "class": "tests.integration.recording_notifier.RecordingNotifier",
            "kwargs": {"path": str(alerts)},
        },
    )
    write_hours(s3, entry["bucket"])
    for hour in (*HOURS, HOURS[1]):  # the three hours, then a rerun of hour 2
        assert run_hour(entry["name"], hour).state == "success"

    assert drift(warehouse, entry["name"]) == [
        (HOURS[1].replace(tzinfo=None), "campaign", 2, "object,null", '{"name":"spring"}'),
        (HOURS[1].replace(tzinfo=None), "utm_source", 7, "string", '"google-0"'),
        (HOURS[2].replace(tzinfo=None), "utm_source", 3, "string", '"bing"'),
    ]
    # The records load as before: the new fields are not in the table.
    rows = warehouse.execute(f"SELECT count(*) FROM {entry['table']}").fetchone()
    assert rows == (18,)
    # The dashboard's hour shows the drift (its API returns the same HourDetail).
    stream = parse_stream(entry, 0)
    with psycopg.connect(os.environ["WAREHOUSE_URL"]) as conn:
        detail = query_hour(conn, stream, Settings(), HOURS[1])
        dashboard = query_stream(conn, stream, Settings(), HOURS[0], HOURS[2])
    assert [(field["field"], field["records"], field["json_types"]) for field in detail.new_fields] == [
        ("campaign", 2, "object,null"),
        ("utm_source", 7, "string"),
    ]
    page = render_page([dashboard], now=HOURS[2], selected_stream=entry["name"], detail=detail)
    assert '<table class="drift">' in page and "utm_source" in page and "&#34;google-0&#34;" in page
    sent = [json.loads(line) for line in alerts.read_text().splitlines()] if alerts.exists() else []
    if setting == "ignore":
        assert sent == []
        return
    (alert,) = sent
    assert (
        alert["summary"]
        == f"{entry['name']}: new field(s) campaign, utm_source in hour {HOURS[1].isoformat()}, not among the columns"
    )
    assert "'utm_source': 7 record(s), JSON string, e.g. \"google-0\"" in alert["report"]


def test_add_columns_adds_the_field_as_a_column_from_its_hour_on_and_a_backfill_fills_older_hours(s3, warehouse):
    """Hour 1 was loaded with new_fields: report; then the stream opted into add_columns.

    Hour 2's load adds plan (text: its records sent strings) and tier (bigint), records them in
    schema_history, extracts hour 2 again and loads them; hour 3 loads them as declared columns. Hour
    1's rows keep NULL until a plain rerun of hour 1 (the documented backfill) rewrites them from S3.
    """
    entry, _stream = unlisted_stream(s3, "drift_add", **SIMPLE, new_fields="report")
    for index, hour in enumerate(HOURS):
        records = [{"id": f"h{index}-{n}", "seq": 1, "plan": f"plan-{index}-{n}", "tier": n} for n in range(4)]
        s3.put_object(Bucket=entry["bucket"], Key=object_key(hour, "00-a"), Body=ndjson(records))
    load_in_process(entry, HOURS[0], "drift_add_1")
    entry = {**entry, "new_fields": "add_columns"}
    load_in_process(entry, HOURS[1], "drift_add_2")
    load_in_process(entry, HOURS[2], "drift_add_3")

    history = warehouse.execute(
        "SELECT column_name, column_type, json_types, hour FROM firehose_loader.schema_history WHERE stream = %s"
        " ORDER BY column_name",
        (entry["name"],),
    ).fetchall()
    assert history == [
        ("plan", "text", "string", HOURS[1].replace(tzinfo=None)),
        ("tier", "bigint", "integer", HOURS[1].replace(tzinfo=None)),
    ]

    def table() -> list[tuple]:
        return warehouse.execute(f"SELECT id, plan, tier FROM {entry['table']} ORDER BY id").fetchall()

    expected = {f"h{index}-{n}": (f"h{index}-{n}", f"plan-{index}-{n}", n) for index in range(3) for n in range(4)}
    assert table() == [(key, None, None) if key.startswith("h0-") else row for key, row in sorted(expected.items())]
    load_in_process(entry, HOURS[0], "drift_add_backfill")  # the backfill of hour 1: a plain rerun
    assert table() == [row for _key, row in sorted(expected.items())]
