"""The audit DAG against injected damage: one run reports exactly what was injected,
per hour, leaves the table equal to the S3 truth, and a second run is clean."""

from __future__ import annotations

import json
import random
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import psycopg
import pytest
from psycopg import sql

from firehose_loader.audit import audit_hour
from firehose_loader.config import load_config
from firehose_loader.extract import extract_hour
from firehose_loader.load import load_and_merge, staged_batch
from firehose_loader.warehouse.postgres import Postgres
from tests.integration.conftest import dump_table, put, run_audit, run_hour

COLUMNS = {"id": "varchar(32)", "seq": "integer", "payload": "text"}
HOURS = [datetime(2026, 4, 1, hour, tzinfo=UTC) for hour in range(6)]
KEYS_PER_HOUR = 50


def hour_records(hour: datetime, rng: random.Random) -> list[dict[str, Any]]:
    return [
        {"id": f"h{hour:%H}-k{number:02d}", "seq": rng.randrange(10, 100), "payload": f"v-{rng.random():.6f}"}
        for number in range(KEYS_PER_HOUR)
    ]


def write_object(s3, bucket: str, hour: datetime, name: str, records: list[dict[str, Any]]) -> str:
    key = f"events/{hour:%Y/%m/%d/%H}/stream-1-{hour:%Y-%m-%d-%H}-{name}"
    put(s3, bucket, key, b"\n".join(orjson.dumps(record) for record in records))
    return key


class Target:
    """The stream's table, written the way the lossy real-time path writes it (no provenance)."""

    def __init__(self, warehouse, table: str) -> None:
        self.warehouse = warehouse
        self.table = sql.Identifier(*table.split("."))

    def rows(self) -> list[tuple]:
        query = sql.SQL("SELECT id, seq, payload FROM {} ORDER BY id, seq, payload").format(self.table)
        return self.warehouse.execute(query).fetchall()

    def insert(self, record: dict[str, Any]) -> None:
        query = sql.SQL("INSERT INTO {} (id, seq, payload) VALUES (%s, %s, %s)").format(self.table)
        self.warehouse.execute(query, (record["id"], record["seq"], record["payload"]))

    def delete(self, key: str) -> None:
        self.warehouse.execute(sql.SQL("DELETE FROM {} WHERE id = %s").format(self.table), (key,))

    def make_stale(self, key: str) -> None:
        query = sql.SQL(
            "UPDATE {} SET seq = seq - 1, payload = 'older', _firehose_object = NULL, _firehose_offset = NULL"
            " WHERE id = %s"
        ).format(self.table)
        self.warehouse.execute(query, (key,))

    def duplicate(self, key: str) -> None:
        query = sql.SQL("INSERT INTO {0} (id, seq, payload) SELECT id, seq, payload FROM {0} WHERE id = %s").format(
            self.table
        )
        self.warehouse.execute(query, (key,))


def results(warehouse, stream: str) -> dict[datetime, dict[str, Any]]:
    cursor = warehouse.execute(
        "SELECT * FROM firehose_loader.audit_results WHERE stream = %s"
        " AND run_id = (SELECT run_id FROM firehose_loader.audit_results WHERE stream = %s"
        "               ORDER BY audited_at DESC LIMIT 1)",
        (stream, stream),
    )
    names = [column.name for column in cursor.description]
    return {row[1].replace(tzinfo=UTC): dict(zip(names, row, strict=True)) for row in cursor.fetchall()}


COUNTED = ("s3_keys", "missing_keys", "duplicate_keys", "stale_keys", "late_objects", "error_objects", "repaired_keys")


def counts(result: dict[str, Any]) -> tuple:
    return (result["status"], *(result[name] for name in COUNTED))


@pytest.fixture(scope="module")
def damaged(streams, s3, warehouse, tmp_path_factory):
    alerts = tmp_path_factory.mktemp("alerts") / "alerts.jsonl"
    entry = streams.declare(
        s3,
        "audited",
        key=["id"],
        order_by="seq",
        columns=COLUMNS,
        audit_alert_threshold=8,
        audit_notifier={
            "class": "tests.integration.recording_notifier.RecordingNotifier",
            "kwargs": {"path": str(alerts)},
        },
    )
    bucket, rng = entry["bucket"], random.Random(3)
    truth: dict[str, dict[str, Any]] = {}
    for index, hour in enumerate(HOURS):
        if index == 3:
            continue  # an hour with no data at all
        records = hour_records(hour, rng)
        write_object(s3, bucket, hour, "00-a", records[:30])
        write_object(s3, bucket, hour, "10-b", records[30:] + records[:2])  # two at-least-once duplicates
        truth.update({record["id"]: record for record in records})
    put(s3, bucket, "processing-failed/2026/04/01/05/stream-1-error", b'{"errorCode": "Lambda.FunctionError"}')
    for index, hour in enumerate(HOURS):
        if index != 2:  # hour 02 is never ingested: only the real-time path wrote it
            assert run_hour(entry["name"], hour).state == "success"
    target = Target(warehouse, entry["table"])

    # Hour 00: the real-time path lost 3 rows, doubled 2 and left 4 older versions.
    for number in range(3):
        target.delete(f"h00-k{number:02d}")
    for number in range(3, 5):
        target.duplicate(f"h00-k{number:02d}")
    for number in range(5, 9):
        target.make_stale(f"h00-k{number:02d}")
    # Hour 01: an object arrives after the hour was loaded: 5 new keys and a newer version of one.
    late = [{"id": f"h01-late{number}", "seq": 1, "payload": "late"} for number in range(5)]
    late.append({**truth["h01-k10"], "seq": truth["h01-k10"]["seq"] + 100, "payload": "newest"})
    write_object(s3, bucket, HOURS[1], "50-late", late)
    truth.update({record["id"]: record for record in late})
    # Hour 02: only the real-time path: 40 of 50 keys, 3 of them twice, 2 of them older.
    for number in range(40):
        record = truth[f"h02-k{number:02d}"]
        target.insert({**record, "seq": record["seq"] - 1} if number in (10, 11) else record)
        if number < 3:
            target.insert(record)
    expected = {
        HOURS[0]: ("repaired", 50, 3, 2, 4, 0, 0, 9),
        HOURS[1]: ("repaired", 55, 5, 0, 1, 1, 0, 6),
        HOURS[2]: ("repaired", 50, 10, 3, 2, 2, 0, 15),
        HOURS[3]: ("ok", 0, 0, 0, 0, 0, 0, 0),
        HOURS[4]: ("ok", 50, 0, 0, 0, 0, 0, 0),
        HOURS[5]: ("ok", 50, 0, 0, 0, 0, 1, 0),
    }
    return entry, truth, target, expected, alerts


def test_one_audit_run_reports_exactly_the_injected_damage_and_repairs_it(damaged, warehouse):
    entry, truth, target, expected, alerts = damaged
    end = HOURS[-1] + timedelta(hours=1)
    assert run_audit(entry["name"], end, lookback_hours=len(HOURS)).state == "success"

    found = results(warehouse, entry["name"])
    assert {hour: counts(result) for hour, result in found.items()} == expected
    assert found[HOURS[0]]["drop_rate"] == pytest.approx(3 / 50)
    assert found[HOURS[3]]["drop_rate"] is None
    assert target.rows() == sorted((record["id"], record["seq"], record["payload"]) for record in truth.values())

    # Hours 00 (9 repaired) and 02 (15 + 2 late objects) exceed the threshold of 8; hour 01 (6 + 1) does not.
    alerted = [json.loads(line) for line in alerts.read_text().splitlines()]
    assert len(alerted) == 1
    assert [hour["hour"][:13] for hour in alerted[0]["hours"]] == ["2026-04-01T00", "2026-04-01T02"]
    assert entry["name"] in alerted[0]["summary"]


def test_a_second_audit_run_finds_nothing_and_changes_nothing(damaged, warehouse):
    entry, _truth, _target, expected, _alerts = damaged
    before = dump_table(warehouse, entry["table"], "id, seq, payload")
    ledger_before = warehouse.execute(
        "SELECT * FROM firehose_loader.ledger WHERE stream = %s ORDER BY object_key", (entry["name"],)
    ).fetchall()
    end = HOURS[-1] + timedelta(hours=1)
    assert run_audit(entry["name"], end, lookback_hours=len(HOURS)).state == "success"
    found = results(warehouse, entry["name"])
    assert {hour: result["status"] for hour, result in found.items()} == dict.fromkeys(HOURS, "ok")
    for hour, result in found.items():
        assert (result["missing_keys"], result["duplicate_keys"], result["stale_keys"]) == (0, 0, 0)
        assert (result["late_objects"], result["repaired_keys"]) == (0, 0)
        assert result["s3_keys"] == expected[hour][1]
    assert dump_table(warehouse, entry["table"], "id, seq, payload") == before
    assert (
        warehouse.execute(
            "SELECT * FROM firehose_loader.ledger WHERE stream = %s ORDER BY object_key", (entry["name"],)
        ).fetchall()
        == ledger_before
    )


def test_lookback_param_sets_the_window(damaged, warehouse):
    entry, *_ = damaged
    end = HOURS[-1] + timedelta(hours=1)
    assert run_audit(entry["name"], end, lookback_hours=2).state == "success"
    assert sorted(results(warehouse, entry["name"])) == HOURS[-2:]


def test_audit_overlapping_an_ingest_of_the_same_hour_doubles_nothing(streams, s3, warehouse):
    entry = streams.declare(s3, "audit_overlap", key=["id"], order_by="seq", columns=COLUMNS)
    hour = datetime(2026, 4, 2, 6, tzinfo=UTC)
    records = hour_records(hour, random.Random(5))
    write_object(s3, entry["bucket"], hour, "00-a", records)
    config = load_config()
    stream = config.stream(entry["name"])
    assert run_hour(entry["name"], hour - timedelta(hours=1)).state == "success"  # creates the tables
    errors: list[BaseException] = []

    def in_thread(work) -> None:
        try:
            with psycopg.connect(warehouse.info.dsn) as conn:
                work(conn)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    def ingest(conn) -> None:
        manifest = extract_hour(s3, stream, hour, "ingest_run")
        load_and_merge(
            conn, stream, config.settings, Postgres(), manifest, staged_batch(s3, stream, manifest), "ingest_run"
        )

    def audit(conn) -> None:
        audit_hour(conn, s3, stream, config.settings, Postgres(), hour, "audit_run")

    threads = [threading.Thread(target=in_thread, args=(work,)) for work in (ingest, audit)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert Target(warehouse, entry["table"]).rows() == sorted(
        (record["id"], record["seq"], record["payload"]) for record in records
    )


def test_an_hour_that_cannot_be_repaired_is_failed_alerted_and_the_others_still_repaired(
    streams, s3, warehouse, tmp_path
):
    alerts = tmp_path / "alerts.jsonl"
    entry = streams.declare(
        s3,
        "audit_failing",
        key=["id"],
        order_by="seq",
        columns=COLUMNS,
        audit_notifier={
            "class": "tests.integration.recording_notifier.RecordingNotifier",
            "kwargs": {"path": str(alerts)},
        },
    )
    hours = [datetime(2026, 4, 3, hour, tzinfo=UTC) for hour in (1, 2)]
    rng = random.Random(9)
    truth = {}
    for hour in hours:
        records = hour_records(hour, rng)
        write_object(s3, entry["bucket"], hour, "00-a", records)
        truth.update({record["id"]: record for record in records})
    assert run_hour(entry["name"], hours[0]).state == "success"  # creates the table; hour 02 is never loaded
    target = Target(warehouse, entry["table"])
    target.delete("h01-k00")
    # A constraint the repair of hour 02 breaks, as a misbehaving warehouse would.
    schema, table = entry["table"].split(".")
    warehouse.execute(
        sql.SQL("ALTER TABLE {} ADD CONSTRAINT refuse_h02 CHECK (id NOT LIKE 'h02-k07%%')").format(
            sql.Identifier(schema, table)
        )
    )

    run = run_audit(entry["name"], hours[-1] + timedelta(hours=1), lookback_hours=2)
    assert run.state == "failed"
    found = results(warehouse, entry["name"])
    assert found[hours[0]]["status"] == "repaired" and found[hours[0]]["missing_keys"] == 1
    assert found[hours[1]]["status"] == "failed"
    assert "refuse_h02" in found[hours[1]]["message"]
    assert found[hours[1]]["s3_keys"] is None
    # The failed hour's transaction left nothing behind; the repaired one is complete.
    assert [row[0] for row in target.rows()] == sorted(key for key in truth if key.startswith("h01"))
    alerted = [json.loads(line) for line in alerts.read_text().splitlines()]
    assert [hour["status"] for hour in alerted[0]["hours"]] == ["repaired", "failed"]
