"""A streams file edited between hours: every reload of an older stage puts S3's values in the right columns.

Between hour A and hour B the stream gains a column, two columns of one type change places, and a
varchar is widened (with the ALTERs the loader names when it refuses the old table). A rerun of
hour A, a clear of its load_and_merge alone (with hour A's manifest and stage) and an audit that
repairs hour A must each leave exactly the values S3 holds, column by column. A type that changed
(a numeric's scale) makes hour A's stage unfit: it is extracted again from S3, never loaded as it
was. Everything runs through the functions the DAG tasks call, on moto S3 and PostgreSQL.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from airflow.sdk.exceptions import AirflowFailException
from psycopg import sql

from firehose_loader.airflow.tasks import run_ensure_tables, run_extract, run_load_and_merge
from firehose_loader.audit import audit_hour
from firehose_loader.config import Settings, parse_stream
from firehose_loader.warehouse.postgres import Postgres
from tests.integration.support import ndjson, object_key, unlisted_stream

HOUR_A = datetime(2026, 5, 1, 10, tzinfo=UTC)
HOUR_B = HOUR_A + timedelta(hours=1)
BEFORE = {
    "id": "varchar(32)",
    "seq": "integer",
    "city": "varchar(16)",
    "country": "varchar(16)",
    "amount": "numeric(10,2)",
}
# plan is new, country and city changed places, city is wider.
AFTER = {
    "id": "varchar(32)",
    "seq": "integer",
    "country": "varchar(16)",
    "city": "varchar(64)",
    "amount": "numeric(10,2)",
    "plan": "varchar(8)",
}
# The same, and amount keeps more decimals: a change no stage written before can satisfy.
AFTER_SCALE = {**AFTER, "amount": "numeric(12,4)"}
NAMES = ("id", "seq", "city", "country", "amount", "plan")


def hour_a_records(plan_sent: bool = False) -> list[dict[str, Any]]:
    """No plan yet (the producer starts sending it in hour B), unless ``plan_sent``: then every third record
    has one before the column is declared. amount has 4 decimals; numeric(10,2) rounds them."""
    records = [
        {"id": f"a{n:02d}", "seq": 1, "city": f"Lyon-{n}", "country": f"France-{n}", "amount": f"{n}.1234"}
        for n in range(20)
    ]
    if plan_sent:
        for record in records[::3]:
            record["plan"] = "early"
    return records


def hour_b_records() -> list[dict[str, Any]]:
    long_city = "Llanfairpwllgwyngyll-" * 2  # 42 characters: fits only the widened city
    return [
        {
            "id": f"b{n:02d}",
            "seq": 1,
            "city": f"{long_city}{n:02d}"[:64],
            "country": "Wales",
            "amount": "7.5",
            "plan": "pro",
        }
        for n in range(10)
    ] + [{"id": "a00", "seq": 2, "city": "Paris", "country": "France", "amount": "1.0009", "plan": "free"}]


def expected_rows(amount_scale: int, plan_sent: bool = False) -> list[tuple]:
    """The S3 truth: per key its greatest seq, each field in its own column (a missing field is NULL)."""
    quantum = Decimal(1).scaleb(-amount_scale)
    winners: dict[str, dict[str, Any]] = {}
    for record in hour_a_records(plan_sent) + hour_b_records():
        if record["id"] not in winners or record["seq"] > winners[record["id"]]["seq"]:
            winners[record["id"]] = record
    return [
        tuple(Decimal(record["amount"]).quantize(quantum) if name == "amount" else record.get(name) for name in NAMES)
        for _key, record in sorted(winners.items())
    ]


def table_rows(entry: dict[str, Any]) -> list[tuple]:
    with psycopg.connect(os.environ["WAREHOUSE_URL"]) as conn:
        statement = sql.SQL("SELECT {} FROM {} ORDER BY id").format(
            sql.SQL(", ").join(map(sql.Identifier, NAMES)), sql.Identifier(*entry["table"].split("."))
        )
        return conn.execute(statement).fetchall()


def run_alters_named_in(message: str) -> list[str]:
    """Run the statements a TargetTypeError names, as an operator would paste them; return them."""
    statements = re.findall(r"\((ALTER TABLE .*?)\) or (?:recreate|the streams file)", message)
    with psycopg.connect(os.environ["WAREHOUSE_URL"]) as conn:
        for statement in statements:
            conn.execute(statement)
    return statements


def load(entry: dict[str, Any], hour: datetime, run_id: str) -> dict[str, Any]:
    """The ingest DAG's tasks for one hour: ensure_tables, extract_hour, load_and_merge; the manifest."""
    stream, settings = parse_stream(entry, 0), Settings()
    run_ensure_tables(stream, settings)
    manifest = run_extract(stream, settings, hour, hour + timedelta(hours=1), run_id, 1)["manifest"]
    assert manifest is not None
    run_load_and_merge(stream, settings, manifest, run_id)
    return manifest


def changed_stream(
    s3, name: str, after: dict[str, str], plan_sent: bool = False
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Hour A loaded with BEFORE; the streams file edited to ``after``, its ALTERs run; hour B loaded.

    Returns the edited entry and hour A's manifest (what a clear of load_and_merge merges again).
    """
    entry, _stream = unlisted_stream(s3, name, key=["id"], order_by="seq", columns=BEFORE)
    s3.put_object(Bucket=entry["bucket"], Key=object_key(HOUR_A, "00-a"), Body=ndjson(hour_a_records(plan_sent)))
    s3.put_object(Bucket=entry["bucket"], Key=object_key(HOUR_B, "00-b"), Body=ndjson(hour_b_records()))
    manifest_a = load(entry, HOUR_A, "scheduled__a")
    entry = {**entry, "columns": after}
    before_alter = table_rows_raw(entry)
    # The old table no longer holds what the streams file declares: refused before any row changes,
    # with the exact ALTERs to run (the loader never changes a type itself).
    with pytest.raises(AirflowFailException) as refused:  # a PermanentError: no retry
        run_ensure_tables(parse_stream(entry, 0), Settings())
    assert table_rows_raw(entry) == before_alter
    alters = run_alters_named_in(str(refused.value))
    assert any('ADD COLUMN "plan" varchar(8)' in statement for statement in alters), alters
    assert any('ALTER COLUMN "city" TYPE varchar(64)' in statement for statement in alters), alters
    load(entry, HOUR_B, "scheduled__b")
    return entry, manifest_a


def table_rows_raw(entry: dict[str, Any]) -> list[tuple]:
    with psycopg.connect(os.environ["WAREHOUSE_URL"]) as conn:
        statement = sql.SQL("SELECT * FROM {} ORDER BY id").format(sql.Identifier(*entry["table"].split(".")))
        return conn.execute(statement).fetchall()


def damage(entry: dict[str, Any], keys: list[str]) -> None:
    """Damage after the load: rows of hour A lost, so a reload must write them from hour A's stage."""
    with psycopg.connect(os.environ["WAREHOUSE_URL"]) as conn:
        conn.execute(
            sql.SQL("DELETE FROM {} WHERE id = ANY(%s)").format(sql.Identifier(*entry["table"].split("."))), (keys,)
        )


def test_hour_b_loads_its_new_wider_and_reordered_columns(s3) -> None:
    entry, _manifest = changed_stream(s3, "schema_b", AFTER)
    assert table_rows(entry) == expected_rows(amount_scale=2)


def test_a_cleared_load_and_merge_of_a_pre_change_hour_reads_its_stage_by_name(s3) -> None:
    entry, manifest_a = changed_stream(s3, "schema_clear", AFTER)
    damage(entry, ["a03", "a07", "a11"])
    # The old stage fits (only added, moved and widened columns): it is merged again, by name.
    run_load_and_merge(parse_stream(entry, 0), Settings(), manifest_a, "scheduled__a")
    assert table_rows(entry) == expected_rows(amount_scale=2)


def test_a_rerun_of_a_pre_change_hour_gives_the_values_s3_holds(s3) -> None:
    entry, _manifest = changed_stream(s3, "schema_rerun", AFTER)
    damage(entry, ["a05"])
    load(entry, HOUR_A, "scheduled__a")
    assert table_rows(entry) == expected_rows(amount_scale=2)


def test_an_audit_repair_of_a_pre_change_hour_reuses_its_stage_by_name(s3) -> None:
    entry, _manifest = changed_stream(s3, "schema_audit", AFTER)
    damage(entry, ["a01", "a02", "a19"])
    stream = parse_stream(entry, 0)
    with psycopg.connect(os.environ["WAREHOUSE_URL"]) as conn:
        result = audit_hour(conn, s3, stream, Settings(), Postgres(), HOUR_A, "scheduled__audit", try_number=1)
    assert (result["status"], result["missing_keys"], result["repaired_keys"]) == ("repaired", 3, 3)
    assert table_rows(entry) == expected_rows(amount_scale=2)


@pytest.mark.parametrize("path", ["clear", "rerun", "audit"])
def test_a_changed_scale_extracts_the_pre_change_hour_again(s3, path: str) -> None:
    """numeric(10,2) → numeric(12,4) with its ALTER: hour A's stage holds rounded amounts and does not fit.

    Every path extracts hour A again from S3 and rewrites its rows (same versions, other values), so
    the table ends with S3's four decimals; nothing is loaded from the old stage, nothing fails.
    """
    entry, manifest_a = changed_stream(s3, f"schema_scale_{path}", AFTER_SCALE)
    assert table_rows(entry) != expected_rows(amount_scale=4)  # hour A's rows still hold the rounded amounts
    stream, settings = parse_stream(entry, 0), Settings()
    if path == "clear":
        run_load_and_merge(stream, settings, manifest_a, "scheduled__a", 2)
    elif path == "rerun":
        load(entry, HOUR_A, "scheduled__a")
    else:
        with psycopg.connect(os.environ["WAREHOUSE_URL"]) as conn:
            result = audit_hour(conn, s3, stream, settings, Postgres(), HOUR_A, "scheduled__audit", try_number=1)
        assert result["status"] == "ok"  # rewritten values are no damage: the keys were all there
    assert table_rows(entry) == expected_rows(amount_scale=4)


@pytest.mark.parametrize("path", ["clear", "rerun", "audit"])
def test_a_column_declared_after_its_field_arrived_is_filled_from_s3_for_the_pre_change_hour(s3, path: str) -> None:
    """Hour A's records already carried plan (counted as schema drift) before the column was declared.

    Its old stage lacks the column, so loading it by name would leave NULL where S3 holds "early":
    every path extracts hour A again instead, and the table ends with S3's values.
    """
    entry, manifest_a = changed_stream(s3, f"schema_early_{path}", AFTER, plan_sent=True)
    stream, settings = parse_stream(entry, 0), Settings()
    if path == "clear":
        run_load_and_merge(stream, settings, manifest_a, "scheduled__a", 2)
    elif path == "rerun":
        load(entry, HOUR_A, "scheduled__a")
    else:
        with psycopg.connect(os.environ["WAREHOUSE_URL"]) as conn:
            audit_hour(conn, s3, stream, settings, Postgres(), HOUR_A, "scheduled__audit", try_number=1)
    assert table_rows(entry) == expected_rows(amount_scale=2, plan_sent=True)
