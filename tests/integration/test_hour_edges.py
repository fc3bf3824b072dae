"""What an hour can look like besides ordinary data: neighbours that share its
prefix, Firehose error output, no objects at all, an object nobody can read, a
bucket that does not exist, and two loads of the same hour at once."""

from __future__ import annotations

import gzip
import os
import threading
from datetime import UTC, datetime

import orjson
import psycopg
import pytest
from psycopg import sql

from firehose_loader.airflow.tasks import run_extract
from firehose_loader.config import load_config
from firehose_loader.extract import extract_hour
from firehose_loader.layout import StageWriter
from firehose_loader.load import ensure_tables, load_and_merge, staged_batch
from firehose_loader.warehouse.postgres import Postgres
from tests.integration.conftest import put, run_hour

SIMPLE = {"key": ["id"], "order_by": "seq", "columns": {"id": "varchar(32)", "seq": "integer", "note": "text"}}
HOUR_01 = datetime(2026, 3, 1, 1, tzinfo=UTC)


def record(identifier: str, seq: int = 1) -> bytes:
    return orjson.dumps({"id": identifier, "seq": seq})


def ids(warehouse, table: str) -> list[str]:
    query = sql.SQL("SELECT id FROM {} ORDER BY id").format(sql.Identifier(*table.split(".")))
    rows = warehouse.execute(query).fetchall()
    return [row[0] for row in rows]


def load_hour_row(warehouse, stream: str, hour: datetime) -> dict:
    cursor = warehouse.execute(
        "SELECT * FROM firehose_loader.load_hours WHERE stream = %s AND hour = %s",
        (stream, hour.replace(tzinfo=None)),
    )
    names = [column.name for column in cursor.description]
    row = cursor.fetchone()
    return dict(zip(names, row, strict=True)) if row else {}


def test_hour_01_loads_only_its_own_folder(streams, s3, warehouse):
    entry = streams.declare(s3, "prefixes", **SIMPLE)
    bucket = entry["bucket"]
    put(s3, bucket, "events/2026/03/01/01/events-1-a", record("in-hour-01"))
    for hour in range(10, 20):  # every one of these keys starts with events/2026/03/01/1
        put(s3, bucket, f"events/2026/03/01/{hour}/events-1-b", record(f"hour-{hour}"))
    put(s3, bucket, "events/2026/03/01/01/nested/events-1-c", record("sub-folder"))
    put(s3, bucket, "events/2026/03/01/01/", b"")  # a folder marker some tools create
    put(s3, bucket, "other/2026/03/01/01/events-1-d", record("other-prefix"))
    put(s3, bucket, "events/2026/03/01/010/events-1-e", record("look-alike"))
    put(s3, bucket, "processing-failed/2026/03/01/01/events-1-f", b'{"rawData": "e30=", "errorCode": "Lambda.X"}')
    put(s3, bucket, "format-conversion-failed/2026/03/01/01/events-1-g", b"{}")
    put(s3, bucket, "processing-failed/2026/03/01/10/events-1-h", b"{}")

    assert run_hour(entry["name"], HOUR_01).state == "success"
    assert ids(warehouse, entry["table"]) == ["in-hour-01"]
    summary = load_hour_row(warehouse, entry["name"], HOUR_01)
    assert summary["objects"] == 1
    assert summary["error_objects"] == 2  # counted and reported, never loaded
    assert summary["status"] == "loaded"


def test_hour_without_objects_is_a_recorded_empty_load(streams, s3, warehouse):
    entry = streams.declare(s3, "empty_hour", **SIMPLE)
    hour = datetime(2026, 3, 2, 5, tzinfo=UTC)
    assert run_hour(entry["name"], hour).state == "success"
    summary = load_hour_row(warehouse, entry["name"], hour)
    assert summary["status"] == "empty"
    assert (summary["objects"], summary["records_raw"], summary["stage_key"]) == (0, 0, None)
    assert ids(warehouse, entry["table"]) == []


def test_unreadable_object_is_kept_and_counted_while_the_rest_loads(streams, s3, warehouse):
    entry = streams.declare(s3, "unreadable", **SIMPLE)
    bucket = entry["bucket"]
    hour = datetime(2026, 3, 3, 7, tzinfo=UTC)
    folder = "events/2026/03/03/07/"
    snappy = b"\xff\x06\x00\x00sNaPpY" + b"\x00" * 20
    put(s3, bucket, folder + "events-1-snappy", snappy)
    truncated = gzip.compress(record("t1") + b"\n" + record("t2") + b"\n" + record("t3"))[:-12]
    put(s3, bucket, folder + "events-1-truncated", truncated)
    put(s3, bucket, folder + "events-1-good", record("good-1") + record("good-2"))

    assert run_hour(entry["name"], hour).state == "success"
    loaded = ids(warehouse, entry["table"])
    assert {"good-1", "good-2"} <= set(loaded)
    ledger = dict(
        warehouse.execute(
            "SELECT object_key, status FROM firehose_loader.ledger WHERE stream = %s", (entry["name"],)
        ).fetchall()
    )
    assert ledger[folder + "events-1-snappy"] == "unreadable"
    assert ledger[folder + "events-1-truncated"] == "partial"
    assert ledger[folder + "events-1-good"] == "loaded"
    kept = f"firehose-loader/quarantine/{entry['name']}/2026/03/03/07/events-1-snappy"
    assert s3.get_object(Bucket=bucket, Key=kept)["Body"].read() == snappy
    notes = s3.get_object(Bucket=bucket, Key=kept + ".jsonl")["Body"].read()
    assert b"Snappy" in notes and kept.encode() in notes
    assert load_hour_row(warehouse, entry["name"], hour)["objects_unreadable"] == 1


def test_missing_bucket_fails_fast_with_a_message_naming_it(streams, s3):
    entry = streams.declare(s3, "nobucket", **SIMPLE)
    s3.delete_bucket(Bucket=entry["bucket"])
    config = load_config()
    stream = config.stream(entry["name"])
    from airflow.sdk.exceptions import AirflowFailException

    with pytest.raises(AirflowFailException, match=entry["bucket"]) as caught:
        run_extract(stream, config.settings, HOUR_01, datetime(2026, 3, 1, 2, tzinfo=UTC), "manual__x", 1)
    assert "does not exist" in str(caught.value)


def test_run_refuses_a_data_interval_that_is_not_one_hour(streams, s3):
    entry = streams.declare(s3, "interval", **SIMPLE)
    config = load_config()
    with pytest.raises(ValueError, match="one whole UTC hour"):
        run_extract(
            config.stream(entry["name"]),
            config.settings,
            HOUR_01,
            datetime(2026, 3, 1, 3, tzinfo=UTC),
            "manual__x",
            1,
        )


def test_two_merges_of_the_same_hour_at_once_double_nothing(streams, s3, warehouse):
    entry = streams.declare(s3, "concurrent", **SIMPLE)
    hour = datetime(2026, 3, 4, 8, tzinfo=UTC)
    body = b"\n".join(record(f"k{number:04d}", seq=number % 7) for number in range(2000))
    put(s3, entry["bucket"], "events/2026/03/04/08/events-1-a", body)
    config = load_config()
    stream = config.stream(entry["name"])
    with psycopg.connect(os.environ["WAREHOUSE_URL"]) as conn:
        ensure_tables(conn, stream, config.settings, Postgres())
    manifests = [
        extract_hour(s3, stream, hour, StageWriter("ingest", f"run_{index}", "extract_hour", 1)) for index in range(2)
    ]
    errors: list[BaseException] = []

    def merge(manifest: dict) -> None:
        try:
            with psycopg.connect(os.environ["WAREHOUSE_URL"]) as conn:
                load_and_merge(
                    conn,
                    stream,
                    config.settings,
                    Postgres(),
                    manifest,
                    staged_batch(s3, stream, manifest),
                    manifest["stage_key"],
                )
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=merge, args=(manifest,)) for manifest in manifests]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    query = sql.SQL("SELECT COUNT(*), COUNT(DISTINCT id) FROM {}").format(sql.Identifier(*entry["table"].split(".")))
    total, distinct = warehouse.execute(query).fetchone()
    assert total == distinct == 2000
    ledger = warehouse.execute(
        "SELECT records_inserted, records_unchanged FROM firehose_loader.ledger WHERE stream = %s",
        (entry["name"],),
    ).fetchall()
    # The second merge waited for the first and then found every row already there.
    assert ledger == [(0, 2000)]


def test_warehouse_login_that_cannot_work_fails_fast(stack_up, monkeypatch):
    import json

    from airflow.sdk.exceptions import AirflowFailException

    from firehose_loader.airflow.tasks import run_ensure_tables

    connection = json.loads(os.environ["AIRFLOW_CONN_WAREHOUSE"])
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", json.dumps({**connection, "schema": "no_such_database"}))
    config = load_config()
    with pytest.raises(AirflowFailException, match="no_such_database") as caught:
        run_ensure_tables(config.streams[0], config.settings)
    assert "retrying will not help" in str(caught.value)
