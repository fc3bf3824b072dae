"""Data API mode's batches run on the real PostgreSQL server: the same table, ledger and drift as the SQL path, and
a batch sent twice changes nothing.

Redshift and its Data API cannot run here; PostgreSQL stands in for both. ``PostgresDataApi``
answers the ``redshift-data`` calls the loader makes (BatchExecuteStatement, ExecuteStatement,
DescribeStatement, GetStatementResult) by running the statements on PostgreSQL, a batch in one
transaction as Redshift runs it. What only Redshift can do is done the way Redshift does it:
a ``COPY ... FROM 's3://...'`` reads the object from the moto server (JSON lines by column
name, Parquet by position) and inserts its rows, and ``GETDATE()`` is the statement's clock.
The loader's tables are made by the PostgreSQL dialect (Redshift's DDL options do not parse
there); the batches are rendered by the Redshift dialect, as in production.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pyarrow.parquet as pq
import pytest

from firehose_loader.audit import audit_writer
from firehose_loader.config import Settings
from firehose_loader.extract import combine_hour_parts, extract_hour, extract_part
from firehose_loader.handover import make_part
from firehose_loader.layout import StageWriter, stream_layout
from firehose_loader.load import (
    ShrinkingListingError,
    audit_unchanged_without_lock,
    data_api_rows_store,
    ensure_tables,
    load_and_merge,
    staged_batch,
    template_context,
)
from firehose_loader.s3io import list_hour_objects
from firehose_loader.warehouse.data_api import DataApiConnection, DataApiTarget
from firehose_loader.warehouse.postgres import Postgres
from firehose_loader.warehouse.redshift import REDSHIFT_LIMITS, Redshift
from firehose_loader.warehouse.render import render_statements
from tests.integration.support import ndjson, object_key, unlisted_stream, write_two_hours

COPY_ROLE = "arn:aws:iam::123456789012:role/firehose-loader-copy"
REDSHIFT = Redshift(iam_role=COPY_ROLE)
SETTINGS = Settings()
RUN_ID = "scheduled__2026-05-01T12:00:00+00:00"
FIRST = datetime(2026, 5, 1, 10, tzinfo=UTC)
# Text columns: a PostgreSQL text column holds what Redshift's varchar(4 x n) is declared as, so the
# Redshift dialect's type check (run in the Data API path) accepts the PostgreSQL-made table.
STREAM_FIELDS = {"key": ["id"], "order_by": "seq", "columns": {"id": "text", "seq": "integer", "note": "text"}}
COPY_FROM_S3 = re.compile(
    r"COPY (?P<table>\S+)(?: \((?P<columns>[^)]*)\))?\nFROM '(?P<uri>s3://[^']+)'\n.*FORMAT AS (?P<format>JSON|PARQUET)",
    re.DOTALL,
)


class PostgresDataApi:
    """Stands in for the ``redshift-data`` client: each call runs on PostgreSQL (a batch in one transaction)."""

    def __init__(self, s3: Any) -> None:
        self.s3 = s3
        self.ids = (f"statement-{n}" for n in itertools.count(1))
        self.described: dict[str, dict[str, Any]] = {}
        self.results: dict[str, dict[str, Any]] = {}
        self.batches: list[list[str]] = []

    def batch_execute_statement(self, *, Sqls: list[str], **_: Any) -> dict[str, Any]:
        self.batches.append(list(Sqls))
        statement_id = next(self.ids)
        subs = []
        with psycopg.connect(os.environ["WAREHOUSE_URL"]) as conn:
            conn.execute("SET TIME ZONE 'UTC'")
            for index, statement in enumerate(Sqls, start=1):
                try:
                    self._run(conn, statement)
                except psycopg.Error as exc:
                    conn.rollback()
                    subs.append({"Id": f"{statement_id}:{index}", "Status": "FAILED", "Error": f"ERROR: {exc}"})
                    self.described[statement_id] = {"Id": statement_id, "Status": "FAILED", "SubStatements": subs}
                    return {"Id": statement_id}
                subs.append({"Id": f"{statement_id}:{index}", "Status": "FINISHED"})
            conn.commit()
        self.described[statement_id] = {"Id": statement_id, "Status": "FINISHED", "SubStatements": subs}
        return {"Id": statement_id}

    def execute_statement(self, *, Sql: str, **_: Any) -> dict[str, Any]:
        statement_id = next(self.ids)
        with psycopg.connect(os.environ["WAREHOUSE_URL"], autocommit=True) as conn:
            conn.execute("SET TIME ZONE 'UTC'")
            cursor = conn.execute(Sql.encode())
            columns = [(column.name, conn.adapters.types.get(column.type_code).name) for column in cursor.description]
            records = [[field(value) for value in row] for row in cursor.fetchall()]
        self.results[statement_id] = {
            "Records": records,
            "ColumnMetadata": [{"name": name, "typeName": kind} for name, kind in columns],
        }
        self.described[statement_id] = {"Id": statement_id, "Status": "FINISHED", "HasResultSet": True}
        return {"Id": statement_id}

    def describe_statement(self, *, Id: str) -> dict[str, Any]:
        return self.described[Id]

    def get_statement_result(self, *, Id: str, **_: Any) -> dict[str, Any]:
        return self.results[Id]

    def _run(self, conn: psycopg.Connection, statement: str) -> None:
        copy = COPY_FROM_S3.match(statement)
        if copy is None:
            conn.execute(statement.replace("GETDATE()", "(clock_timestamp() AT TIME ZONE 'UTC')").encode())
            return
        body = self._read(copy.group("uri"))
        table = copy.group("table")
        if copy.group("format") == "JSON":
            columns = [column.strip().strip('"') for column in copy.group("columns").split(",")]
            rows = [json.loads(line) for line in body.decode().splitlines()]
            with conn.cursor().copy(f"COPY {table} ({copy.group('columns')}) FROM STDIN") as writer:
                for row in rows:
                    writer.write_row([row.get(column) for column in columns])
        else:
            # A MANIFEST source lists the files ("mandatory": each must be there); else it is the file.
            files = [entry["url"] for entry in json.loads(body)["entries"]] if "\nMANIFEST" in statement else None
            bodies = [body] if files is None else [self._read(url) for url in files]
            with conn.cursor().copy(f"COPY {table} FROM STDIN") as writer:
                for part in bodies:
                    for row in pq.read_table(io.BytesIO(part)).to_pylist():
                        writer.write_row(list(row.values()))  # by position, as Redshift's Parquet COPY

    def _read(self, uri: str) -> bytes:
        bucket, key = uri[len("s3://") :].split("/", 1)
        return self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def field(value: Any) -> dict[str, Any]:
    if value is None:
        return {"isNull": True}
    if isinstance(value, bool):
        return {"booleanValue": value}
    if isinstance(value, int):
        return {"longValue": value}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, datetime):
        return {"stringValue": value.isoformat(sep=" ")}
    return {"stringValue": str(value)}


def data_api(client: PostgresDataApi, s3: Any, stream: Any) -> DataApiConnection:
    return DataApiConnection(
        client,
        DataApiTarget(workgroup_name="stand-in", database="dev"),
        iam_role=COPY_ROLE,
        timeout_seconds=60,
        session_statements=render_statements(
            REDSHIFT.session_timeouts_template(), **template_context(stream, SETTINGS, REDSHIFT)
        ),
        store_rows=data_api_rows_store(s3, stream),
        sleep=lambda seconds: None,
    )


def write_hours(s3: Any, bucket: str) -> tuple[datetime, datetime]:
    first, second = write_two_hours(s3, bucket, FIRST)
    # Schema drift: a field the stream does not declare, counted per object in the batch's drift rows.
    s3.put_object(
        Bucket=bucket,
        Key=object_key(first, "20-c"),
        Body=ndjson([{"id": f"d{n}", "seq": 1, "note": "it's \\ é", "utm_source": "news"} for n in range(4)]),
    )
    return first, second


def state(warehouse: psycopg.Connection, stream: Any) -> dict[str, list[tuple]]:
    """The target's rows and the stream's ledger, load_hours and schema drift, without the stream's own name."""
    target = ".".join(f'"{part}"' for part in (stream.schema, stream.table))
    return {
        "target": warehouse.execute(
            f"SELECT id, seq, note, \"_firehose_offset\", regexp_replace(\"_firehose_object\", '^.*/', '')"
            f" FROM {target} ORDER BY id"
        ).fetchall(),
        "ledger": warehouse.execute(
            "SELECT hour, regexp_replace(object_key, '^.*/', ''), status, records_raw, records_valid, "
            "records_quarantined, records_duplicate, records_inserted, records_updated, records_unchanged, "
            "records_superseded, run_id, message FROM firehose_loader.ledger WHERE stream = %s ORDER BY 1, 2",
            (stream.name,),
        ).fetchall(),
        "load_hours": warehouse.execute(
            "SELECT hour, status, objects, records_raw, records_valid, records_quarantined, records_duplicate, "
            "records_inserted, records_updated, records_unchanged, records_superseded, run_id "
            "FROM firehose_loader.load_hours WHERE stream = %s ORDER BY 1",
            (stream.name,),
        ).fetchall(),
        "schema_drift": warehouse.execute(
            "SELECT hour, regexp_replace(object_key, '^.*/', ''), field, records, json_types, sample, run_id "
            "FROM firehose_loader.schema_drift WHERE stream = %s ORDER BY 1, 2, 3",
            (stream.name,),
        ).fetchall(),
    }


def full_state(warehouse: psycopg.Connection, stream: Any) -> dict[str, list[tuple]]:
    """Every column of the stream's rows, loaded_at and all: what a second run of a batch must leave as it was."""
    target = ".".join(f'"{part}"' for part in (stream.schema, stream.table))
    return {
        name: warehouse.execute(query, parameters).fetchall()
        for name, query, parameters in (
            ("target", f"SELECT * FROM {target} ORDER BY id", ()),
            (
                "ledger",
                "SELECT * FROM firehose_loader.ledger WHERE stream = %s ORDER BY hour, object_key",
                (stream.name,),
            ),
            ("load_hours", "SELECT * FROM firehose_loader.load_hours WHERE stream = %s ORDER BY hour", (stream.name,)),
            (
                "schema_drift",
                "SELECT * FROM firehose_loader.schema_drift WHERE stream = %s ORDER BY object_key, field",
                (stream.name,),
            ),
            (
                "object_commits",
                "SELECT * FROM firehose_loader.object_commits WHERE stream = %s ORDER BY 1, 2, 3",
                (stream.name,),
            ),
        )
    }


def load_with_the_sql_path(s3: Any, stream: Any, hours: tuple[datetime, ...]) -> list[dict[str, Any]]:
    summaries = []
    with psycopg.connect(os.environ["WAREHOUSE_URL"]) as conn:
        ensure_tables(conn, stream, SETTINGS, Postgres())
        for hour in hours:
            manifest = extract_hour(s3, stream, hour, StageWriter("ingest", RUN_ID, "extract_hour", 1), REDSHIFT_LIMITS)
            summaries.append(
                load_and_merge(conn, stream, SETTINGS, Postgres(), manifest, staged_batch(s3, stream, manifest), RUN_ID)
            )
    return summaries


def load_with_the_data_api(
    s3: Any, client: PostgresDataApi, stream: Any, hours: tuple[datetime, ...]
) -> list[dict[str, Any]]:
    with psycopg.connect(os.environ["WAREHOUSE_URL"]) as conn:
        ensure_tables(conn, stream, SETTINGS, Postgres())  # PostgreSQL's DDL: Redshift's would not parse here
    summaries = []
    for hour in hours:
        manifest = extract_hour(s3, stream, hour, StageWriter("ingest", RUN_ID, "extract_hour", 1), REDSHIFT_LIMITS)
        summaries.append(
            load_and_merge(
                data_api(client, s3, stream),
                stream,
                SETTINGS,
                REDSHIFT,
                manifest,
                staged_batch(s3, stream, manifest),
                RUN_ID,
            )
        )
    return summaries


def test_two_hours_through_the_data_api_leave_what_the_sql_path_leaves(stack_up, s3, warehouse) -> None:
    """Stands in for Redshift: the same objects loaded both ways give the same rows, ledger, hours and drift."""
    _, sql_stream = unlisted_stream(s3, "dataapi_sql", **STREAM_FIELDS)
    _, api_stream = unlisted_stream(s3, "dataapi_batch", **STREAM_FIELDS)
    hours = write_hours(s3, sql_stream.bucket)
    write_hours(s3, api_stream.bucket)
    client = PostgresDataApi(s3)

    by_sql = load_with_the_sql_path(s3, sql_stream, hours)
    by_api = load_with_the_data_api(s3, client, api_stream, hours)

    assert len(client.batches) == 2  # one batch per hour
    # Each hour's objects, and the first hour's schema drift rows, are COPYed from S3.
    copies = [
        [statement.split("\n")[0].split(" (")[0] for statement in batch if COPY_FROM_S3.match(statement)]
        for batch in client.batches
    ]
    assert copies == [
        ['COPY "firehose_objects"', 'COPY "firehose_staging"', 'COPY "firehose_loader"."schema_drift"'],
        ['COPY "firehose_objects"', 'COPY "firehose_staging"'],
    ]
    sql_state, api_state = state(warehouse, sql_stream), state(warehouse, api_stream)
    assert api_state == sql_state
    assert len(api_state["target"]) == 65 and api_state["schema_drift"]  # k000..k059, poison, d0..d3; utm_source
    assert any(row[5] for row in api_state["ledger"])  # the bad record is quarantined and counted
    strip = ("loaded_at",)
    assert [{k: v for k, v in s.items() if k not in strip} for s in by_api] == [
        {k: v for k, v in s.items() if k not in strip} for s in by_sql
    ]
    assert by_api[0]["first_seen_fields"] and by_api[0]["first_seen_fields"] == by_sql[0]["first_seen_fields"]


def test_a_batch_run_twice_changes_nothing(stack_up, s3, warehouse) -> None:
    """Stands in for Redshift: were a lost response's batch run again (its token expired), the ledger makes it harmless.

    Every row of the target, the drift and the commits stays as it was, loaded_at and all; the
    ledger and load_hours keep the hour's account and their action counts say what the second
    run did, exactly as after a rerun of the same hours by the SQL path.
    """
    _, stream = unlisted_stream(s3, "dataapi_twice", **STREAM_FIELDS)
    _, sql_stream = unlisted_stream(s3, "dataapi_rerun", **STREAM_FIELDS)
    hours = write_hours(s3, stream.bucket)
    write_hours(s3, sql_stream.bucket)
    client = PostgresDataApi(s3)
    load_with_the_data_api(s3, client, stream, hours)
    before = full_state(warehouse, stream)
    for batch in list(client.batches):
        client.batch_execute_statement(Sqls=batch)
    assert len(client.batches) == 4 and all(d["Status"] == "FINISHED" for d in client.described.values())
    after = full_state(warehouse, stream)
    for name in ("target", "schema_drift", "object_commits"):
        assert after[name] == before[name], name
    assert len(before["target"]) == 65 and before["schema_drift"] and before["object_commits"]
    load_with_the_sql_path(s3, sql_stream, hours)
    load_with_the_sql_path(s3, sql_stream, hours)  # a rerun of both hours
    assert state(warehouse, stream) == state(warehouse, sql_stream)


def test_a_listing_that_lost_an_object_is_refused_by_the_guard_and_nothing_changes(stack_up, s3, warehouse) -> None:
    """Stands in for Redshift: the guard fails the batch on PostgreSQL too; the refusal names the gone object."""
    _, stream = unlisted_stream(s3, "dataapi_gone", **STREAM_FIELDS)
    first, _ = write_hours(s3, stream.bucket)
    client = PostgresDataApi(s3)
    load_with_the_data_api(s3, client, stream, (first,))
    before = full_state(warehouse, stream)
    s3.delete_object(Bucket=stream.bucket, Key=object_key(first, "10-b"))
    with pytest.raises(
        ShrinkingListingError, match=r"no longer there \(events/2026/05/01/10/stream-1-2026-05-01-10-10-b\)"
    ):
        load_with_the_data_api(s3, client, stream, (first,))
    assert client.described[f"statement-{len(client.described)}"]["Status"] == "FINISHED"  # the read after it
    assert full_state(warehouse, stream) == before


def test_a_lock_free_audit_records_a_healthy_hour_in_one_batch_and_leaves_a_damaged_one_to_the_lock(
    stack_up, s3, warehouse
) -> None:
    """Stands in for Redshift: the plan is built without LOCK and a guard stands for the plan_changes read; a healthy
    hour's findings commit with the batch, a damaged hour's batch fails at the guard and writes nothing."""
    _, stream = unlisted_stream(s3, "dataapi_audit", **STREAM_FIELDS)
    first, _ = write_hours(s3, stream.bucket)
    client = PostgresDataApi(s3)
    load_with_the_data_api(s3, client, stream, (first,))
    audits = (
        "SELECT status, s3_keys, missing_keys FROM firehose_loader.audit_results WHERE stream = %s ORDER BY try_number"
    )

    def audit(try_number: int) -> bool:
        manifest = extract_hour(s3, stream, first, audit_writer(RUN_ID, try_number), REDSHIFT_LIMITS)
        findings = {"late_objects": 0, "audited_at": datetime(2026, 5, 1, 13, try_number), "try_number": try_number}
        return audit_unchanged_without_lock(
            data_api(client, s3, stream),
            stream,
            SETTINGS,
            REDSHIFT,
            manifest,
            staged_batch(s3, stream, manifest),
            "audit__" + RUN_ID,
            [("audit/record_result.sql", findings)],
        )

    assert audit(1) is True
    healthy = client.batches[-1]
    assert not any(statement.startswith("LOCK") for statement in healthy)
    assert warehouse.execute(audits, (stream.name,)).fetchall() == [("ok", 54, 0)]
    target = ".".join(f'"{part}"' for part in (stream.schema, stream.table))
    warehouse.execute(f"DELETE FROM {target} WHERE id = 'k007'")  # damage after the load
    assert audit(2) is False
    (failed,) = [d for d in client.described.values() if d["Status"] == "FAILED"]
    guard = next(index for index, statement in enumerate(client.batches[-1], 1) if "AS refused" in statement)
    assert failed["SubStatements"][-1]["Id"].endswith(f":{guard}")
    assert warehouse.execute(audits, (stream.name,)).fetchall() == [("ok", 54, 0)]  # nothing written


def test_a_split_hour_through_the_data_api_leaves_what_one_extract_leaves(stack_up, s3, warehouse) -> None:
    """Stands in for Redshift: a split hour's part stages are COPYed into the parts table and deduplicated with
    ROW_NUMBER inside the same one batch; the result is the whole-hour extract's, loaded by the SQL path."""
    _, sql_stream = unlisted_stream(s3, "dataapi_whole", **STREAM_FIELDS)
    _, api_stream = unlisted_stream(s3, "dataapi_split", **STREAM_FIELDS)
    first, _ = write_hours(s3, sql_stream.bucket)
    write_hours(s3, api_stream.bucket)
    load_with_the_sql_path(s3, sql_stream, (first,))

    with psycopg.connect(os.environ["WAREHOUSE_URL"]) as conn:
        ensure_tables(conn, api_stream, SETTINGS, Postgres())
    objects = list_hour_objects(s3, api_stream.bucket, stream_layout(api_stream), first)
    assert len(objects) == 3
    now = datetime.now(UTC)
    planned = [make_part(index, first, [item], now) for index, item in enumerate(objects)]  # one object a part
    results = [
        extract_part(s3, api_stream, part, StageWriter("ingest", RUN_ID, "extract_part", 1), REDSHIFT_LIMITS)
        for part in planned
    ]
    manifest = combine_hour_parts(
        lambda: s3, api_stream, None, planned, results, StageWriter("ingest", RUN_ID, "combine_parts", 1)
    )
    stage = staged_batch(s3, api_stream, manifest)
    assert stage is not None and stage.split
    client = PostgresDataApi(s3)
    load_and_merge(data_api(client, s3, api_stream), api_stream, SETTINGS, REDSHIFT, manifest, stage, RUN_ID)

    (batch,) = client.batches
    assert any(statement.startswith('DELETE FROM "firehose_staging"\nUSING "firehose_losers"') for statement in batch)
    assert any("ROW_NUMBER() OVER" in statement for statement in batch)
    assert state(warehouse, api_stream) == state(warehouse, sql_stream)


def test_the_ingest_tasks_run_in_data_api_mode_through_the_providers_hook(
    stack_up, s3, warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stands in for Redshift: the ingest DAG's task functions, on a warehouse connection with a data_api extra, for
    two busy hours and two silent ones: every call goes to RedshiftDataHook's client (the stand-in here), each
    hour's merge is one batch, the silence is recorded once, and the table is the SQL path's."""
    from airflow.providers.amazon.aws.hooks.redshift_data import RedshiftDataHook

    from firehose_loader.airflow.tasks import run_ensure_tables, run_extract, run_load_and_merge

    _, sql_stream = unlisted_stream(s3, "dataapi_tasks_sql", **STREAM_FIELDS)
    _, stream = unlisted_stream(s3, "dataapi_tasks", **STREAM_FIELDS)
    hours = write_hours(s3, sql_stream.bucket)
    write_hours(s3, stream.bucket)
    by_sql = load_with_the_sql_path(s3, sql_stream, hours)
    client = PostgresDataApi(s3)
    monkeypatch.setattr(RedshiftDataHook, "conn", property(lambda hook: client))
    monkeypatch.setenv(
        "AIRFLOW_CONN_WAREHOUSE_DATA_API",
        json.dumps(
            {
                "conn_type": "redshift",
                "extra": {
                    "iam_role": COPY_ROLE,
                    "data_api": {"workgroup_name": "stand-in", "database": "dev", "aws_conn_id": "firehose_s3"},
                },
            }
        ),
    )
    settings = Settings(warehouse_conn_id="warehouse_data_api")
    with psycopg.connect(os.environ["WAREHOUSE_URL"]) as conn:
        ensure_tables(conn, stream, SETTINGS, Postgres())  # PostgreSQL's DDL: Redshift's would not parse here
    run_ensure_tables(stream, settings)  # reads the catalog: nothing is missing, nothing is sent
    assert client.batches == []
    summaries = []
    for hour in [*hours, hours[-1] + timedelta(hours=1), hours[-1] + timedelta(hours=2)]:
        manifest = run_extract(stream, settings, hour, hour + timedelta(hours=1), RUN_ID, 1)["manifest"]
        summaries.append(run_load_and_merge(stream, settings, manifest, RUN_ID))

    # A bad record in each busy hour makes it partial (quarantined), as on the SQL path.
    assert [summary["status"] for summary in summaries] == [
        *(summary["status"] for summary in by_sql),
        "empty",
        "empty",
    ]
    assert [summary["records_quarantined"] for summary in summaries[:2]] == [1, 1]
    assert len([batch for batch in client.batches if any(s.startswith("LOCK ") for s in batch)]) == 4
    assert all(batch[0] == "SET statement_timeout TO 3600000" for batch in client.batches)
    silences = warehouse.execute(
        "SELECT empty_hours, last_objects, run_id FROM firehose_loader.silences WHERE stream = %s", (stream.name,)
    ).fetchall()
    assert silences == [(2, 2, RUN_ID)]
    assert state(warehouse, stream)["target"] == state(warehouse, sql_stream)["target"]
