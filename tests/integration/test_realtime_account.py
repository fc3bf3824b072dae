"""The real-time path's account: measured at each key's first merge, exactly, and never again.

A real-time writer (the Lambda path) writes the hour into the table *before* the ingest, with
drops, duplicates and older versions (by delete + insert, and by an in-place UPDATE). The
ingest's merge repairs all of it, so the only place that damage can be seen is that first
merge: ``realtime_quality`` must hold exactly what was injected, and nothing that runs later
(a rerun, a clear of the merge, a backfill in reverse order, an audit and its retry) may change
it. Damage done after the load is the audit's to find, count and repair, separately.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

from firehose_loader.audit import audit_hour, audit_hours, needs_alert
from firehose_loader.config import Settings, Stream
from firehose_loader.extract import extract_hour
from firehose_loader.layout import StageWriter
from firehose_loader.load import ensure_tables, load_and_merge, staged_batch
from firehose_loader.warehouse.postgres import Postgres
from tests.integration.support import SIMPLE, load_in_process, ndjson, object_key, unlisted_stream

HOUR = datetime(2026, 6, 2, 14, tzinfo=UTC)
KEYS = [f"k{n:03d}" for n in range(100)]


def truth_of(hour: datetime) -> dict[str, tuple[int, str]]:
    """S3's newest version of each key: k090-k099 have a newer version in the second object."""
    tag = hour.strftime("%H")
    versions = {key: (5, f"{tag}-a-{key}") for key in KEYS}
    versions.update({key: (6, f"{tag}-b-{key}") for key in KEYS[90:]})
    return versions


def write_hour(s3: Any, bucket: str, hour: datetime) -> dict[str, tuple[int, str]]:
    tag = hour.strftime("%H")
    first = [{"id": key, "seq": 5, "note": f"{tag}-a-{key}"} for key in KEYS]
    second = [{"id": key, "seq": 6, "note": f"{tag}-b-{key}"} for key in KEYS[90:]]
    s3.put_object(Bucket=bucket, Key=object_key(hour, "00-a"), Body=ndjson(first))
    s3.put_object(Bucket=bucket, Key=object_key(hour, "20-b"), Body=ndjson(second))
    return truth_of(hour)


class Target:
    def __init__(self, warehouse: psycopg.Connection, table: str) -> None:
        self.warehouse, self.table = warehouse, sql.Identifier(*table.split("."))

    def write(self, key: str, seq: int, note: str) -> None:
        """A row as the real-time writer writes it: no provenance (it knows nothing of S3)."""
        self.warehouse.execute(
            sql.SQL("INSERT INTO {} (id, seq, note) VALUES (%s, %s, %s)").format(self.table), (key, seq, note)
        )

    def execute(self, statement: str, keys: list[str]) -> None:
        self.warehouse.execute(sql.SQL(statement).format(self.table), (keys,))

    def rows(self) -> list[tuple]:
        return self.warehouse.execute(
            sql.SQL("SELECT id, seq, note FROM {} ORDER BY id, seq").format(self.table)
        ).fetchall()


def realtime_writes_before_the_load(target: Target, truth: dict[str, tuple[int, str]]) -> tuple[int, int, int, int]:
    """The Lambda path writes the hour first: 5 keys never arrive, 3 arrive twice, 4 only in an
    older version (delete + insert), 2 are updated in place to an older version, and one of the
    keys that S3 has twice only in its first version. Returns (keys, missing, duplicate, stale)."""
    dropped, doubled, older, updated_in_place = KEYS[0:5], KEYS[10:13], KEYS[20:24], KEYS[30:32]
    for key, (seq, note) in truth.items():
        if key in dropped:
            continue
        if key in older:
            target.write(key, seq - 1, "older")
        elif key == "k090":
            target.write(key, 5, "first version only")
        else:
            target.write(key, seq, note)
        if key in doubled:
            target.write(key, seq, note)
    target.execute("UPDATE {} SET seq = seq - 1, note = 'older in place' WHERE id = ANY(%s)", updated_in_place)
    return len(truth), len(dropped), len(doubled), len(older) + len(updated_in_place) + 1


def quality(warehouse: psycopg.Connection, stream: Stream, hour: datetime = HOUR) -> tuple | None:
    return warehouse.execute(
        "SELECT s3_keys, missing_keys, duplicate_keys, stale_keys, drop_rate, measured_by, run_id, measured_at"
        " FROM firehose_loader.realtime_quality WHERE stream = %s AND hour = %s",
        (stream.name, hour.replace(tzinfo=None)),
    ).fetchone()


def audit_now(s3: Any, stream: Stream, run_id: str, hour: datetime = HOUR, try_number: int = 1) -> dict[str, Any]:
    with psycopg.connect(os.environ["WAREHOUSE_URL"]) as conn:
        return audit_hour(conn, s3, stream, Settings(), Postgres(), hour, run_id, try_number=try_number)


def post_load(result: dict[str, Any]) -> tuple:
    return (
        result["status"],
        result["missing_keys"],
        result["duplicate_keys"],
        result["stale_keys"],
        result["repaired_keys"],
    )


def prepared(s3: Any, warehouse: psycopg.Connection, name: str) -> tuple[dict[str, Any], Stream, Target]:
    entry, stream = unlisted_stream(s3, name, **SIMPLE, realtime_writer=True)
    with psycopg.connect(os.environ["WAREHOUSE_URL"]) as conn:
        ensure_tables(conn, stream, Settings(), Postgres())
    return entry, stream, Target(warehouse, entry["table"])


def expected_rows(*truths: dict[str, tuple[int, str]]) -> list[tuple]:
    return sorted((key, seq, note) for truth in truths for key, (seq, note) in truth.items())


def test_the_first_merge_measures_exactly_what_the_real_time_writer_did_before_the_load(s3, warehouse):
    entry, stream, target = prepared(s3, warehouse, "rt_first_merge")
    truth = write_hour(s3, entry["bucket"], HOUR)
    keys, missing, duplicate, stale = realtime_writes_before_the_load(target, truth)
    assert (keys, missing, duplicate, stale) == (100, 5, 3, 7)

    load_in_process(entry, HOUR, "scheduled__ingest")
    assert quality(warehouse, stream)[:6] == (100, 5, 3, 7, 0.05, "ingest")
    assert target.rows() == expected_rows(truth)

    # The audit that follows finds no damage after the load: the ingest repaired what it measured.
    assert post_load(audit_now(s3, stream, "scheduled__audit")) == ("ok", 0, 0, 0, 0)


def test_reruns_clears_audits_and_their_retries_neither_overwrite_nor_double_the_measurement(s3, warehouse):
    entry, stream, target = prepared(s3, warehouse, "rt_repeat")
    truth = write_hour(s3, entry["bucket"], HOUR)
    realtime_writes_before_the_load(target, truth)
    manifest = extract_hour(s3, stream, HOUR, StageWriter("ingest", "scheduled__ingest", "extract_hour", 1))
    with psycopg.connect(os.environ["WAREHOUSE_URL"]) as conn:
        load_and_merge(
            conn, stream, Settings(), Postgres(), manifest, staged_batch(s3, stream, manifest), "scheduled__ingest"
        )
    measured = quality(warehouse, stream)
    assert measured[:6] == (100, 5, 3, 7, 0.05, "ingest") and measured[6] == "scheduled__ingest"

    with psycopg.connect(os.environ["WAREHOUSE_URL"]) as conn:  # a clear of load_and_merge alone: the same stage
        load_and_merge(
            conn, stream, Settings(), Postgres(), manifest, staged_batch(s3, stream, manifest), "scheduled__ingest"
        )
    load_in_process(entry, HOUR, "manual__rerun")  # a rerun of the whole DAG
    for run_id, try_number in (("scheduled__audit", 1), ("scheduled__audit", 2), ("scheduled__next_audit", 1)):
        assert post_load(audit_now(s3, stream, run_id, try_number=try_number)) == ("ok", 0, 0, 0, 0)
    assert quality(warehouse, stream) == measured
    assert target.rows() == expected_rows(truth)


def test_a_backfill_in_reverse_order_measures_each_hour_exactly(s3, warehouse):
    entry, stream, target = prepared(s3, warehouse, "rt_backfill")
    later = HOUR + timedelta(hours=1)
    truths = {}
    for hour in (HOUR, later):
        truths[hour] = write_hour(s3, entry["bucket"], hour)
    # Both hours' keys are the same ids (k000-k099): a key's newest version is in the later hour.
    newest = {**truths[HOUR], **truths[later]}
    for key, (seq, note) in newest.items():
        if key not in KEYS[:7]:  # the real-time path lost 7 keys of the later hour (so of both)
            target.write(key, seq, note)
    load_in_process(entry, later, "backfill__later")
    load_in_process(entry, HOUR, "backfill__earlier")
    assert quality(warehouse, stream, later)[:4] == (100, 7, 0, 0)
    # The earlier hour's keys all exist by the time it loads (its versions are older than the
    # later hour's, which the table already holds): nothing was missing or stale for it.
    assert quality(warehouse, stream, HOUR)[:4] == (100, 0, 0, 0)
    assert target.rows() == expected_rows(truths[later])
    load_in_process(entry, later, "manual__again")
    assert quality(warehouse, stream, later)[:4] == (100, 7, 0, 0)


def test_damage_after_the_load_is_the_audits_to_find_count_and_repair(s3, warehouse):
    entry, stream, target = prepared(s3, warehouse, "rt_after_load")
    truth = write_hour(s3, entry["bucket"], HOUR)
    realtime_writes_before_the_load(target, truth)
    load_in_process(entry, HOUR, "scheduled__ingest")
    measured = quality(warehouse, stream)

    # After the load the real-time writer loses a row, doubles one, updates one in place to an older
    # version (the loader's provenance stays on the row) and rewrites one older by delete + insert.
    target.execute("DELETE FROM {} WHERE id = ANY(%s)", ["k050"])
    target.execute("INSERT INTO {0} (id, seq, note) SELECT id, seq, note FROM {0} WHERE id = ANY(%s)", ["k051"])
    target.execute("UPDATE {} SET seq = seq - 1, note = 'older in place' WHERE id = ANY(%s)", ["k052"])
    target.execute("DELETE FROM {} WHERE id = ANY(%s)", ["k053"])
    target.write("k053", 4, "older again")

    found = audit_now(s3, stream, "scheduled__audit")
    assert post_load(found) == ("repaired", 1, 1, 2, 4)
    assert found["drop_rate"] == 1 / 100
    assert target.rows() == expected_rows(truth)
    assert post_load(audit_now(s3, stream, "scheduled__audit_2")) == ("ok", 0, 0, 0, 0)
    assert quality(warehouse, stream) == measured  # the first-merge numbers are not the audit's


def test_a_late_object_adds_only_the_keys_new_to_the_hour(s3, warehouse):
    entry, stream, target = prepared(s3, warehouse, "rt_late")
    truth = write_hour(s3, entry["bucket"], HOUR)
    realtime_writes_before_the_load(target, truth)
    load_in_process(entry, HOUR, "scheduled__ingest")
    # A late object: 10 keys new to the hour (the real-time path wrote 8 of them) and a newer
    # version of a key already loaded.
    late = [{"id": f"late{n}", "seq": 1, "note": "late"} for n in range(10)]
    late.append({"id": "k060", "seq": 7, "note": "newest"})
    s3.put_object(Bucket=entry["bucket"], Key=object_key(HOUR, "50-late"), Body=ndjson(late))
    for record in late[2:10]:
        target.write(record["id"], record["seq"], record["note"])

    found = audit_now(s3, stream, "scheduled__audit")
    assert found["late_objects"] == 1
    assert quality(warehouse, stream)[:5] == (110, 7, 3, 7, 7 / 110)
    truth.update({record["id"]: (record["seq"], record["note"]) for record in late})
    assert target.rows() == expected_rows(truth)


def audit_window_now(s3: Any, stream: Stream, run_id: str, pending: bool) -> dict[str, Any]:
    with psycopg.connect(os.environ["WAREHOUSE_URL"]) as conn:
        (result,) = audit_hours(
            conn, s3, stream, Settings(), Postgres(), [HOUR], run_id, lambda hour: pending, try_number=1
        )
    return result


def test_an_hour_whose_ingest_has_not_committed_waits_and_is_judged_once_it_has(s3, warehouse):
    """The audit reaches the newest hour while its ingest still runs (retrying, waiting for a pool slot,
    behind a lock): no drop, no alert, nothing changed. Once the ingest commits, the numbers are right."""
    entry, stream, target = prepared(s3, warehouse, "rt_slow_ingest")
    truth = write_hour(s3, entry["bucket"], HOUR)
    realtime_writes_before_the_load(target, truth)
    before = target.rows()

    waiting = audit_window_now(s3, stream, "scheduled__early_audit", pending=True)
    assert waiting["status"] == "waiting" and waiting["missing_keys"] is None and waiting["drop_rate"] is None
    assert not needs_alert(waiting, stream.audit_alert_threshold)
    assert target.rows() == before and quality(warehouse, stream) is None

    load_in_process(entry, HOUR, "scheduled__ingest")
    assert quality(warehouse, stream)[:6] == (100, 5, 3, 7, 0.05, "ingest")
    # The next audit judges the hour, even if the scheduler still counts the ingest's run as running.
    assert post_load(audit_window_now(s3, stream, "scheduled__next_audit", pending=True)) == ("ok", 0, 0, 0, 0)


def test_an_hour_no_ingest_will_load_is_loaded_by_the_audit_and_measured_as_its_first_merge(s3, warehouse):
    """The ingest run failed, its DAG is paused, or the run was never created: the audit loads the hour,
    says so, and what the real-time writer did is a first-merge measurement, not damage after a load."""
    entry, stream, target = prepared(s3, warehouse, "rt_no_ingest")
    truth = write_hour(s3, entry["bucket"], HOUR)
    realtime_writes_before_the_load(target, truth)

    loaded = audit_window_now(s3, stream, "scheduled__audit", pending=False)
    assert post_load(loaded) == ("loaded", 0, 0, 0, 0) and loaded["late_objects"] == 2
    assert quality(warehouse, stream)[:6] == (100, 5, 3, 7, 0.05, "audit")
    assert target.rows() == expected_rows(truth)


def test_a_key_column_named_like_the_ledgers_own_columns_merges(s3, warehouse):
    """The plan joins the hour's ledger (object_key, ...): a stream whose key is named object_key still merges."""
    fields = {"key": ["object_key"], "order_by": "seq", "columns": {"object_key": "varchar(32)", "seq": "integer"}}
    entry, stream = unlisted_stream(s3, "rt_named_like_ledger", **fields, realtime_writer=True)
    s3.put_object(
        Bucket=entry["bucket"],
        Key=object_key(HOUR, "00-a"),
        Body=ndjson([{"object_key": f"o{n}", "seq": 1} for n in range(5)]),
    )
    load_in_process(entry, HOUR, "scheduled__ingest")
    load_in_process(entry, HOUR, "manual__rerun")
    assert quality(warehouse, stream)[:4] == (5, 5, 0, 0)
    table = sql.Identifier(*entry["table"].split("."))
    assert warehouse.execute(sql.SQL("SELECT count(*) FROM {}").format(table)).fetchone() == (5,)
