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
from tests.integration.support import SIMPLE, ndjson, object_key

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
