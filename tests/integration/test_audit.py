"""The audit DAG against injected damage: one run reports exactly what was injected,
per hour, leaves the table equal to the S3 truth, and a second run is clean."""

from __future__ import annotations

import json
import os
import random
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import psycopg
import pytest
from psycopg import sql

from firehose_loader.audit import audit_hour, audit_hours, needs_alert
from firehose_loader.config import Settings, Stream, load_config
from firehose_loader.extract import extract_hour
from firehose_loader.layout import StageWriter
from firehose_loader.load import load_and_merge, staged_batch
from firehose_loader.warehouse.postgres import Postgres
from tests.integration.conftest import dump_table, put, run_audit, run_hour
from tests.integration.support import (
    SIMPLE,
    load_in_process,
    ndjson,
    object_key,
    snapshot,
    table_gate,
    unlisted_stream,
    wait_for,
    waiting_on,
)

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


def realtime_quality(warehouse: Any, stream: str) -> dict[datetime, tuple]:
    rows = warehouse.execute(
        "SELECT hour, s3_keys, missing_keys, duplicate_keys, stale_keys, measured_by"
        " FROM firehose_loader.realtime_quality WHERE stream = %s ORDER BY hour",
        (stream,),
    ).fetchall()
    return {row[0].replace(tzinfo=UTC): tuple(row[1:]) for row in rows}


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
    # What the audit reports is damage after the load. Hour 01's five new keys are the late object's
    # first merge (realtime_quality), its newer version of a loaded key new data, not damage; hour 02 was never
    # loaded, so all of it is a first merge, which the audit loads and reports as such.
    expected = {
        HOURS[0]: ("repaired", 50, 3, 2, 4, 0, 0, 9),
        HOURS[1]: ("loaded", 55, 0, 0, 0, 1, 0, 0),
        HOURS[2]: ("loaded", 50, 0, 0, 0, 2, 0, 0),
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

    # Hour 00 (9 repaired) exceeds the threshold of 8; hours 01 (1 late object) and 02 (2 late objects) do not.
    alerted = [json.loads(line) for line in alerts.read_text().splitlines()]
    assert len(alerted) == 1
    assert [hour["hour"][:13] for hour in alerted[0]["hours"]] == ["2026-04-01T00"]

    # The stream declares no real-time writer: there is no drop rate to measure, only completeness.
    assert realtime_quality(warehouse, entry["name"]) == {}
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
        manifest = extract_hour(s3, stream, hour, StageWriter("ingest", "ingest_run", "extract_hour", 1))
        load_and_merge(
            conn, stream, config.settings, Postgres(), manifest, staged_batch(s3, stream, manifest), "ingest_run"
        )

    def audit(conn) -> None:
        audit_hour(conn, s3, stream, config.settings, Postgres(), hour, "audit_run", try_number=1)

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


# --- audit and repair repeated, and concurrent with an ingest -------------------------------------------------------
# Audit and repair are idempotent under repetition and under concurrent runs of the same hour. The tests above
# prove that one audit run repairs exactly the injected damage, that a second run finds nothing and that an
# audit and an ingest of a never-loaded hour double nothing. Here a damaged hour with a late object meets two
# audits and a re-ingest at the same moment (the test holds the table lock until all three wait for it), and
# the result must equal a clean load of the same objects, byte for byte; then more audits find nothing and
# change nothing.


HOUR = datetime(2026, 5, 8, 4, tzinfo=UTC)


def write_objects(s3, bucket: str, late: bool) -> None:
    s3.put_object(
        Bucket=bucket,
        Key=object_key(HOUR, "00-a"),
        Body=ndjson([{"id": f"k{n:03d}", "seq": n % 4, "note": f"a{n}"} for n in range(120)]),
    )
    s3.put_object(
        Bucket=bucket,
        Key=object_key(HOUR, "10-b"),
        Body=ndjson([{"id": f"k{n:03d}", "seq": n % 4, "note": f"b{n}"} for n in range(100, 150)]),
    )
    if late:  # delivered after the hour was loaded: new keys and newer versions of old ones
        s3.put_object(
            Bucket=bucket,
            Key=object_key(HOUR, "50-late"),
            Body=ndjson([{"id": f"k{n:03d}", "seq": 9, "note": f"late{n}"} for n in range(140, 160)]),
        )


def damage(warehouse: psycopg.Connection, table: str) -> None:
    """What the lossy real-time path does: lose rows, write some twice, leave older versions."""
    target = sql.Identifier(*table.split("."))
    warehouse.execute(sql.SQL("DELETE FROM {} WHERE id IN ('k000', 'k001', 'k002')").format(target))
    warehouse.execute(
        sql.SQL("INSERT INTO {0} (id, seq, note) SELECT id, seq, note FROM {0} WHERE id IN ('k010', 'k011')").format(
            target
        )
    )
    warehouse.execute(
        sql.SQL(
            "UPDATE {} SET seq = seq - 1, note = 'older', _firehose_object = NULL, _firehose_offset = NULL"
            " WHERE id IN ('k023', 'k027')"
        ).format(target)
    )


def in_threads(works: list[Callable[[psycopg.Connection], Any]]) -> tuple[list[threading.Thread], list[BaseException]]:
    """Start each work in a thread with its own warehouse connection; errors are collected, not raised."""
    errors: list[BaseException] = []

    def run(work: Callable[[psycopg.Connection], Any]) -> None:
        try:
            with psycopg.connect(os.environ["WAREHOUSE_URL"]) as conn:
                work(conn)
        except BaseException as exc:  # surfaced by the caller
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(work,)) for work in works]
    for thread in threads:
        thread.start()
    return threads, errors


def audit(s3, stream: Stream, run_id: str, try_number: int = 1) -> Callable[[psycopg.Connection], dict[str, Any]]:
    return lambda conn: audit_hour(conn, s3, stream, Settings(), Postgres(), HOUR, run_id, try_number=try_number)


def ingest(s3, stream: Stream, run_id: str) -> Callable[[psycopg.Connection], dict[str, Any]]:
    def work(conn: psycopg.Connection) -> dict[str, Any]:
        manifest = extract_hour(s3, stream, HOUR, StageWriter("ingest", run_id, "extract_hour", 1))
        return load_and_merge(
            conn, stream, Settings(), Postgres(), manifest, staged_batch(s3, stream, manifest), run_id
        )

    return work


def audit_rows(warehouse: psycopg.Connection, stream: Stream) -> list[tuple]:
    return warehouse.execute(
        "SELECT run_id, status, s3_keys, missing_keys, duplicate_keys, stale_keys, late_objects, repaired_keys, try_number"
        " FROM firehose_loader.audit_results WHERE stream = %s ORDER BY audited_at, run_id, try_number",
        (stream.name,),
    ).fetchall()


def test_two_audits_and_an_ingest_of_a_damaged_hour_at_once_end_as_a_clean_load_and_audits_then_change_nothing(
    s3, warehouse
):
    clean, _ = unlisted_stream(s3, "rel_audit_clean", **SIMPLE)
    write_objects(s3, clean["bucket"], late=True)
    load_in_process(clean, HOUR, "scheduled__clean")
    expected = snapshot(warehouse, clean)

    entry, stream = unlisted_stream(s3, "rel_audit_busy", **SIMPLE)
    write_objects(s3, entry["bucket"], late=False)
    load_in_process(entry, HOUR, "scheduled__first")
    write_objects(s3, entry["bucket"], late=True)
    damage(warehouse, entry["table"])

    with table_gate(entry["table"]):
        threads, errors = in_threads(
            [audit(s3, stream, "audit__1"), audit(s3, stream, "audit__2"), ingest(s3, stream, "manual__rerun")]
        )
        wait_for(lambda: waiting_on(warehouse, entry["table"]) == 3, "two audits and an ingest to wait for the lock")
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []

    after = snapshot(warehouse, entry)
    assert after.table == expected.table
    assert after.accounting() == expected.accounting()
    concurrent = audit_rows(warehouse, stream)
    assert [row[6] for row in concurrent] == [1, 1]  # both saw the late object
    assert all(row[2] == 160 for row in concurrent)
    # Which of the three repaired the damage depends on who took the lock first; an audit says
    # 'repaired' only if it repaired a key itself.
    assert all(status == "ok" or (status == "repaired" and repaired > 0) for _, status, *_, repaired in concurrent)

    # Repetition: every further audit finds nothing and changes nothing, table and ledger alike.
    for number in range(3):
        with psycopg.connect(os.environ["WAREHOUSE_URL"]) as conn:
            result = audit(s3, stream, f"audit__again_{number}")(conn)
        assert (result["status"], result["s3_keys"], result["repaired_keys"]) == ("ok", 160, 0)
        assert (result["missing_keys"], result["duplicate_keys"], result["stale_keys"], result["late_objects"]) == (
            0,
            0,
            0,
            0,
        )
        assert snapshot(warehouse, entry) == after


def test_every_try_of_an_audit_keeps_its_own_findings(s3, warehouse):
    """Airflow retries (or a user clears) audit_and_repair under the same run id: the second try finds the
    hour clean because the first try repaired it. Its 'ok' is added beside the first try's 'repaired',
    never over it, and a later try that finds new damage adds its own row too."""
    entry, stream = unlisted_stream(s3, "rel_audit_retry", **SIMPLE)
    write_objects(s3, entry["bucket"], late=False)
    load_in_process(entry, HOUR, "scheduled__load")
    damage(warehouse, entry["table"])

    def audit_now(run_id: str, try_number: int) -> dict[str, Any]:
        with psycopg.connect(os.environ["WAREHOUSE_URL"]) as conn:
            return audit(s3, stream, run_id, try_number)(conn)

    first = audit_now("scheduled__audit", 1)
    assert (first["status"], first["missing_keys"], first["duplicate_keys"], first["stale_keys"]) == (
        "repaired",
        3,
        2,
        2,
    )
    retried = audit_now("scheduled__audit", 2)
    assert (retried["status"], retried["repaired_keys"]) == ("ok", 0)

    target = sql.Identifier(*entry["table"].split("."))
    warehouse.execute(sql.SQL("DELETE FROM {} WHERE id = 'k100'").format(target))
    again = audit_now("scheduled__audit", 3)
    assert (again["status"], again["missing_keys"], again["repaired_keys"]) == ("repaired", 1, 1)
    assert audit_now("scheduled__next", 1)["status"] == "ok"
    assert [(row[0], row[8], row[1], row[7]) for row in audit_rows(warehouse, stream)] == [
        ("scheduled__audit", 1, "repaired", 7),
        ("scheduled__audit", 2, "ok", 0),
        ("scheduled__audit", 3, "repaired", 1),
        ("scheduled__next", 1, "ok", 0),
    ]


def test_a_try_that_repaired_then_one_that_failed_then_one_that_succeeded_all_stay_in_the_history(
    s3, warehouse, monkeypatch
):
    """repaired -> failed -> ok: the failure and the clean try never erase what the first try found and fixed."""
    entry, stream = unlisted_stream(s3, "rel_audit_history", **SIMPLE)
    write_objects(s3, entry["bucket"], late=False)
    load_in_process(entry, HOUR, "scheduled__load")
    damage(warehouse, entry["table"])

    def audit_try(try_number: int) -> dict[str, Any]:
        with psycopg.connect(os.environ["WAREHOUSE_URL"]) as conn:
            (result,) = audit_hours(
                conn, s3, stream, Settings(), Postgres(), [HOUR], "scheduled__audit", try_number=try_number
            )
        return result

    assert audit_try(1)["status"] == "repaired"
    damage(warehouse, entry["table"])  # damaged again, but the second try fails before it commits
    monkeypatch.setenv("FIREHOSE_LOADER_FAILPOINTS", "after_copy:raise")
    failed = audit_try(2)
    assert failed["status"] == "failed" and "after_copy" in failed["message"]
    monkeypatch.delenv("FIREHOSE_LOADER_FAILPOINTS")
    assert audit_try(3)["status"] == "repaired"
    assert [(row[8], row[1], row[3], row[4], row[5], row[7]) for row in audit_rows(warehouse, stream)] == [
        (1, "repaired", 3, 2, 2, 7),
        (2, "failed", None, None, None, None),
        (3, "repaired", 3, 2, 2, 7),
    ]
    assert needs_alert(failed, stream.audit_alert_threshold)


# --- an ingest run and an audit run of the same interval both stage the hour -------------------------------
#
# Both DAGs share a timetable, so their runs of one interval have the same run id. The ingest stages
# the hour, a late object arrives, the audit re-extracts the hour; then the ingest's load_and_merge is
# cleared alone and merges its original manifest (the XCom) again.


def test_an_ingest_and_an_audit_of_one_interval_stage_apart_and_a_cleared_merge_keeps_the_newer_ledger(s3, warehouse):
    from firehose_loader.airflow.tasks import run_ensure_tables, run_extract, run_load_and_merge
    from firehose_loader.audit import audit_hours

    entry, stream = unlisted_stream(s3, "shared_run_id", **SIMPLE)
    settings = Settings()
    run_id = f"scheduled__{HOUR + timedelta(hours=1):%Y-%m-%dT%H:%M:%S}+00:00"
    write_objects(s3, entry["bucket"], late=False)
    run_ensure_tables(stream, settings)
    extracted = run_extract(stream, settings, HOUR, HOUR + timedelta(hours=1), run_id, 1)
    # Through JSON, as the XCom hands it to load_and_merge.
    ingest_manifest = json.loads(json.dumps(extracted["manifest"]))
    run_load_and_merge(stream, settings, ingest_manifest, run_id)

    write_objects(s3, entry["bucket"], late=True)
    with psycopg.connect(os.environ["WAREHOUSE_URL"]) as conn:
        (result,) = audit_hours(conn, s3, stream, settings, Postgres(), [HOUR], run_id, try_number=1)
    assert (result["status"], result["late_objects"]) == ("loaded", 1)  # the late object is new data, not damage

    all_objects = sorted(object_key(HOUR, name) for name in ("00-a", "10-b", "50-late"))

    def ledger_keys() -> list[str]:
        rows = warehouse.execute(
            "SELECT object_key FROM firehose_loader.ledger WHERE stream = %s ORDER BY object_key", (entry["name"],)
        ).fetchall()
        return [key for (key,) in rows]

    (audit_stage,) = warehouse.execute(
        "SELECT stage_key FROM firehose_loader.load_hours WHERE stream = %s", (entry["name"],)
    ).fetchone()
    assert audit_stage != ingest_manifest["stage_key"]
    assert "/audit/" in audit_stage and "/ingest/" in ingest_manifest["stage_key"]
    assert not audit_stage.startswith(ingest_manifest["stage_key"].removesuffix(".parquet"))
    assert not ingest_manifest["stage_key"].startswith(audit_stage.removesuffix(".parquet"))
    # The ingest's stage is still the one it wrote: the audit did not overwrite it.
    assert s3.head_object(Bucket=entry["bucket"], Key=ingest_manifest["stage_key"])["ContentLength"] > 0
    assert ledger_keys() == all_objects
    after_audit = snapshot(warehouse, entry)
    load_hours_after_audit = warehouse.execute(
        "SELECT stage_key, run_id, listed_at FROM firehose_loader.load_hours WHERE stream = %s", (entry["name"],)
    ).fetchall()
    assert load_hours_after_audit[0][2] is not None

    # The ingest's load_and_merge cleared alone: the same (older) manifest, the same stage.
    run_load_and_merge(stream, settings, ingest_manifest, run_id)
    assert ledger_keys() == all_objects
    assert snapshot(warehouse, entry) == after_audit  # table byte for byte, ledger and load_hours
    assert (
        warehouse.execute(
            "SELECT stage_key, run_id, listed_at FROM firehose_loader.load_hours WHERE stream = %s", (entry["name"],)
        ).fetchall()
        == load_hours_after_audit
    )

    # An ingest of the hour listed after the audit's listing does replace the ledger (same objects).
    newer = run_extract(stream, settings, HOUR, HOUR + timedelta(hours=1), run_id, 2)["manifest"]
    assert newer is not None and newer["stage_key"] not in (ingest_manifest["stage_key"], audit_stage)
    run_load_and_merge(stream, settings, newer, run_id)
    assert ledger_keys() == all_objects
    assert snapshot(warehouse, entry).table == after_audit.table
    (stage_now,) = warehouse.execute(
        "SELECT stage_key FROM firehose_loader.load_hours WHERE stream = %s", (entry["name"],)
    ).fetchone()
    assert stage_now == newer["stage_key"]


def test_ensure_tables_adds_listed_at_to_a_load_hours_from_before_it(s3, warehouse):
    """An existing deployment's load_hours has no listed_at: ensure_tables adds it, once, and keeps its rows."""
    from firehose_loader.load import ensure_tables

    _entry, stream = unlisted_stream(s3, "old_load_hours", **SIMPLE)
    settings = Settings(loader_schema=f"old_loader_{stream.name}"[:63])
    with psycopg.connect(os.environ["WAREHOUSE_URL"]) as conn:
        ensure_tables(conn, stream, settings, Postgres())
        schema = sql.Identifier(settings.loader_schema)
        conn.execute(sql.SQL("ALTER TABLE {}.load_hours DROP COLUMN listed_at").format(schema))
        conn.execute(
            sql.SQL(
                "INSERT INTO {}.load_hours (stream, hour, status, objects, objects_unreadable, error_objects,"
                " records_raw, records_valid, records_quarantined, records_duplicate, records_inserted,"
                " records_updated, records_unchanged, records_superseded, stage_key, run_id, loaded_at)"
                " VALUES ('s', '2026-05-08 04:00', 'loaded', 1, 0, 0, 1, 1, 0, 0, 1, 0, 0, 0, NULL, 'r', now())"
            ).format(schema)
        )
        conn.commit()
        for _ in range(2):
            ensure_tables(conn, stream, settings, Postgres())
        columns = conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = 'load_hours'",
            (settings.loader_schema,),
        ).fetchall()
        assert ("listed_at",) in columns
        assert conn.execute(sql.SQL("SELECT run_id, listed_at FROM {}.load_hours").format(schema)).fetchall() == [
            ("r", None)
        ]
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(schema))
        conn.commit()


def test_ensure_tables_gives_an_audit_results_from_before_the_history_one_row_per_try(s3, warehouse):
    """An existing deployment's audit_results keeps one row per run: ensure_tables adds try_number (its rows
    become first tries) and puts it into the key, once, so a retry's row sits beside its first try's."""
    from firehose_loader.load import ensure_tables

    _entry, stream = unlisted_stream(s3, "old_audit_results", **SIMPLE)
    settings = Settings(loader_schema=f"old_audits_{stream.name}"[:63])
    with psycopg.connect(os.environ["WAREHOUSE_URL"]) as conn:
        ensure_tables(conn, stream, settings, Postgres())
        schema = sql.Identifier(settings.loader_schema)
        conn.execute(sql.SQL("DROP TABLE {}.audit_results").format(schema))
        conn.execute(
            sql.SQL(
                "CREATE TABLE {}.audit_results (stream varchar(64) NOT NULL, hour timestamp NOT NULL,"
                " run_id varchar(256) NOT NULL, audited_at timestamp NOT NULL, status varchar(16) NOT NULL,"
                " s3_keys bigint, missing_keys bigint, duplicate_keys bigint, stale_keys bigint, late_objects bigint,"
                " error_objects bigint, repaired_keys bigint, drop_rate double precision, message varchar(1024),"
                " PRIMARY KEY (stream, hour, run_id))"
            ).format(schema)
        )
        insert = sql.SQL(
            "INSERT INTO {}.audit_results (stream, hour, run_id, {}audited_at, status)"
            " VALUES ('s', '2026-05-08 04:00', 'r', {}now(), %s)"
        )
        conn.execute(insert.format(schema, sql.SQL(""), sql.SQL("")), ("repaired",))
        conn.commit()
        for _ in range(2):
            ensure_tables(conn, stream, settings, Postgres())
        conn.execute(insert.format(schema, sql.SQL("try_number, "), sql.SQL("2, ")), ("ok",))
        rows = conn.execute(
            sql.SQL("SELECT run_id, try_number, status FROM {}.audit_results ORDER BY try_number").format(schema)
        ).fetchall()
        assert rows == [("r", 1, "repaired"), ("r", 2, "ok")]
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(schema))
        conn.commit()


def test_a_try_that_committed_its_findings_and_then_failed_keeps_them(s3, warehouse, monkeypatch):
    """The repair commits its audit_results row, then reading it back fails: the failure is not recorded
    over the committed findings (nor as a second row of the same try), and the other hours go on."""
    from firehose_loader import audit as audit_module

    entry, stream = unlisted_stream(s3, "rel_audit_read_back", **SIMPLE)
    write_objects(s3, entry["bucket"], late=False)
    load_in_process(entry, HOUR, "scheduled__load")
    damage(warehouse, entry["table"])
    read_result = audit_module.read_result
    calls = {"n": 0}

    def failing_once(*args: Any, **kwargs: Any) -> dict[str, Any]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise ConnectionResetError("the connection dropped after the commit")
        return read_result(*args, **kwargs)

    monkeypatch.setattr(audit_module, "read_result", failing_once)
    with psycopg.connect(os.environ["WAREHOUSE_URL"]) as conn:
        (result,) = audit_hours(conn, s3, stream, Settings(), Postgres(), [HOUR], "scheduled__audit", try_number=1)
    assert (result["status"], result["missing_keys"], result["repaired_keys"]) == ("repaired", 3, 7)
    assert [(row[0], row[8], row[1]) for row in audit_rows(warehouse, stream)] == [("scheduled__audit", 1, "repaired")]
