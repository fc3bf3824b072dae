"""Data API mode: one hour's merge as the exact calls a real boto3 ``redshift-data`` client makes.

These tests stand in for Amazon Redshift and its Data API, which cannot run here: botocore's
Stubber answers a real client's calls (the request is validated against the API's model, then
answered from the test's queue), so what the loader sends is checked call by call: the reads
before the batch, the one BatchExecuteStatement (its statements, at most 40, each under 100 KB,
no list inlined), the polling, the read-back, a lost response sent again, a failed statement.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any

import boto3
import pytest
import sqlglot
from botocore.exceptions import ReadTimeoutError
from botocore.stub import ANY, Stubber
from sqlfluff.core import FluffConfig, Linter

from firehose_loader.load import (
    ShrinkingListingError,
    add_new_columns,
    data_api_rows_store,
    erase_keys,
    load_and_merge,
    merge_hour,
    staged_batch,
    template_context,
)
from firehose_loader.records.schema import columns_text
from firehose_loader.records.validate import ObjectStats
from firehose_loader.warehouse import transactions
from firehose_loader.warehouse.data_api import (
    MAX_STATEMENT_BYTES,
    MAX_STATEMENTS,
    DataApiBatchError,
    DataApiConnection,
    DataApiLimitError,
    DataApiStatementError,
    DataApiTarget,
    DataApiTimeoutError,
)
from firehose_loader.warehouse.render import inline_parameters, render_statements
from tests.redshift.recording import RecordingConnection
from tests.redshift.redshift_setup import COPY_ROLE, DIALECT, SETTINGS, STREAMS
from tests.redshift.test_statement_sequence import (  # noqa: F401 (stage_files: the moto stage, autouse)
    HOUR,
    LEDGER,
    LOAD_HOURS,
    RUN_ID,
    STAGE_FILES,
    STREAM,
    TARGET,
    manifest,
    stage_files,
)
from tests.redshift.test_templates import sqlfluff_errors

pytestmark = pytest.mark.redshift

TARGET_CLUSTER = DataApiTarget(cluster_identifier="analytics", database="dev", db_user="firehose_loader")
WHERE = {"ClusterIdentifier": "analytics", "Database": "dev", "DbUser": "firehose_loader"}
NAME = f"firehose-loader {STREAM.name}"
SUMMARY_COLUMNS = [
    ("status", "varchar"),
    ("objects", "int8"),
    ("objects_unreadable", "int8"),
    ("objects_gone", "int8"),
    ("error_objects", "int8"),
    ("records_raw", "int8"),
    ("records_valid", "int8"),
    ("records_quarantined", "int8"),
    ("records_duplicate", "int8"),
    ("records_inserted", "int8"),
    ("records_updated", "int8"),
    ("records_unchanged", "int8"),
    ("records_superseded", "int8"),
]
SCHEMA_DRIFT = '"firehose_loader"."schema_drift"'
REALTIME_QUALITY = '"firehose_loader"."realtime_quality"'
OBJECT_COMMITS = '"firehose_loader"."object_commits"'
ROWS_URI = re.escape(f"s3://{STREAM.bucket}/{STREAM.staging_prefix}{STREAM.name}/data-api-rows/") + "[0-9a-f]{64}"
# The batch, statement by statement: the session's timeout (no session outlives a call), the
# session-local tables, the hour's objects COPYed from S3 (never inlined), the stage's COPY, the
# lock, the guard that stands for the ledger read, then the merge as merge.sql renders it.
BATCH_SEQUENCE = [
    r"SET statement_timeout TO 3600000$",
    r'DROP TABLE IF EXISTS "firehose_staging"$',
    r'DROP TABLE IF EXISTS "firehose_objects"$',
    r'DROP TABLE IF EXISTS "firehose_plan"$',
    r'CREATE TEMPORARY TABLE "firehose_staging" \(',
    r'CREATE TEMPORARY TABLE "firehose_objects" \(',
    rf"COPY \"firehose_objects\" \(\"object_key\", \"etag\", .*\"landed_at\"\)\nFROM '{ROWS_URI}\.json'\n"
    rf"IAM_ROLE '{re.escape(COPY_ROLE)}'\nFORMAT AS JSON 'auto'\nTIMEFORMAT 'auto'\nTRUNCATECOLUMNS$",
    r'COPY "firehose_staging"\n',
    rf"LOCK {LEDGER}, {LOAD_HOURS}, {SCHEMA_DRIFT}, {OBJECT_COMMITS}, {REALTIME_QUALITY}$",
    r"SELECT CAST\(\n",
    r'CREATE TEMPORARY TABLE "firehose_plan" AS\n',
    rf"UPDATE {REALTIME_QUALITY}\nSET ",
    rf"INSERT INTO {REALTIME_QUALITY} \(",
    rf"INSERT INTO {OBJECT_COMMITS} \(",
    rf"DELETE FROM {TARGET}\nUSING",
    rf"INSERT INTO {TARGET} \(",
    rf"UPDATE {LEDGER}\nSET status = 'gone'",
    rf"DELETE FROM {LEDGER}\n",
    rf"INSERT INTO {LEDGER} \(",
    rf"DELETE FROM {LOAD_HOURS}\n",
    rf"INSERT INTO {LOAD_HOURS} \(",
    rf'DELETE FROM {SCHEMA_DRIFT}\nUSING "firehose_objects" o\n',
]


def rows_written(s3: Any, uri: str) -> bytes:
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


class Calls:
    """The real client, its Stubber, and what the loader sent: every call's parameters, the sleeps."""

    def __init__(self) -> None:
        self.client = boto3.client(
            "redshift-data", region_name="eu-west-1", aws_access_key_id="testing", aws_secret_access_key="testing"
        )
        self.stubber = Stubber(self.client)
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.sleeps: list[float] = []
        self.now = 0.0
        self.client.meta.events.register("provide-client-params.redshift-data.*", self._record)

    def _record(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.sent.append((model.name, copy.deepcopy(params)))

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def connection(self, timeout_seconds: float = 3600) -> DataApiConnection:
        return DataApiConnection(
            self.client,
            TARGET_CLUSTER,
            iam_role=COPY_ROLE,
            timeout_seconds=timeout_seconds,
            session_statements=render_statements(
                DIALECT.session_timeouts_template(), **template_context(STREAM, SETTINGS, DIALECT)
            ),
            store_rows=data_api_rows_store(STAGE_FILES.client, STREAM),
            statement_name=NAME,
            sleep=self.sleep,
            clock=lambda: self.now,
        )

    # --- the answers -----------------------------------------------------------------------------------------

    def read(self, statement_id: str, columns: list[tuple[str, str]], records: list[list[dict[str, Any]]]) -> None:
        self.stubber.add_response(
            "execute_statement", {"Id": statement_id}, {"Sql": ANY, "StatementName": NAME, **WHERE}
        )
        self.stubber.add_response(
            "describe_statement", {"Id": statement_id, "Status": "FINISHED", "HasResultSet": True}, {"Id": statement_id}
        )
        self.stubber.add_response(
            "get_statement_result",
            {
                "Records": records,
                "ColumnMetadata": [{"name": name, "typeName": kind} for name, kind in columns],
                "TotalNumRows": len(records),
            },
            {"Id": statement_id},
        )

    def reads_before_the_batch(self) -> None:
        # The target's columns (none: the table is checked by its statements) and the known fields.
        self.read("read-types", [("column_name", "varchar")], [])
        self.read("read-fields", [("field", "varchar")], [[{"stringValue": "utm_source"}]])

    def batch(self, statement_id: str, *statuses: str, **described: Any) -> None:
        self.stubber.add_response(
            "batch_execute_statement",
            {"Id": statement_id, **WHERE},
            {"Sqls": ANY, "ClientToken": ANY, "StatementName": NAME, **WHERE},
        )
        for status in statuses:
            self.stubber.add_response(
                "describe_statement", {"Id": statement_id, "Status": status, **described}, {"Id": statement_id}
            )

    def summary(self) -> None:
        values = [{"stringValue": "loaded"}] + [
            {"longValue": number} for number in (2, 0, 0, 0, 6, 6, 0, 1, 5, 0, 0, 0)
        ]
        self.read("read-summary", SUMMARY_COLUMNS, [values])

    # --- what was sent ---------------------------------------------------------------------------------------

    def batches(self) -> list[dict[str, Any]]:
        return [params for name, params in self.sent if name == "BatchExecuteStatement"]

    def operations(self) -> list[str]:
        return [name for name, _ in self.sent]


@pytest.fixture
def calls() -> Iterator[Calls]:
    recorded = Calls()
    with recorded.stubber:
        yield recorded
        recorded.stubber.assert_no_pending_responses()


def many_objects(count: int) -> dict[str, Any]:
    hour = manifest()
    objects = []
    for index in range(count):
        key = f"{STREAM.prefix}2026/03/01/10/orders-1-2026-03-01-10-{index % 60:02d}-00-{index:08x}.gz"
        stats = ObjectStats(key, f'"{index:032x}"', 2048, "gzip", 3, 3, 0, 0)
        objects.append({**stats.as_dict(), "quarantine_key": None})
    return {**hour, "objects": objects}


def at_any_moment(statement: str) -> str:
    """The statement with its timestamp literals made one (the two paths' clocks differ)."""
    return re.sub(r"CAST\('[0-9: .-]+' AS timestamp\)", "CAST(NULL AS timestamp)", statement)


def merge_statements_of_the_sql_path(hour: dict[str, Any]) -> list[tuple[str, Any]]:
    """What the Redshift SQL path executes for the hour from the lock on, with its parameters."""
    recording = RecordingConnection(staged_rows=5)
    merge_hour(recording, STREAM, SETTINGS, DIALECT, hour, staged_batch(STAGE_FILES.client, STREAM, hour), RUN_ID)
    (merge,) = recording.transactions()
    executed = [(event.statement, event.parameters) for event in merge if event.kind == "execute"]
    start = next(index for index, (statement, _) in enumerate(executed) if statement.startswith("LOCK "))
    return executed[start:]


def test_one_hour_is_two_reads_one_batch_and_a_read_back(calls: Calls) -> None:
    """Stands in for Redshift: the reads a race cannot harm go before the batch; the summary is read after it."""
    calls.reads_before_the_batch()
    calls.batch("batch-1", "SUBMITTED", "STARTED", "FINISHED")
    calls.summary()
    hour = manifest()
    summary = load_and_merge(
        calls.connection(), STREAM, SETTINGS, DIALECT, hour, staged_batch(STAGE_FILES.client, STREAM, hour), RUN_ID
    )

    assert calls.operations() == [
        *["ExecuteStatement", "DescribeStatement", "GetStatementResult"] * 2,
        "BatchExecuteStatement",
        *["DescribeStatement"] * 3,
        "ExecuteStatement",
        "DescribeStatement",
        "GetStatementResult",
    ]
    reads = [params["Sql"] for name, params in calls.sent if name == "ExecuteStatement"]
    assert (
        reads[0].startswith("SELECT column_name, data_type") and "'sales'" in reads[0] and "'order_lines'" in reads[0]
    )
    assert reads[1].startswith("SELECT DISTINCT field") and f"CAST('{STREAM.name}' AS varchar(64))" in reads[1]
    assert reads[2].startswith("SELECT status, objects") and "CAST('2026-03-01 10:00:00' AS timestamp)" in reads[2]
    # The read-back is the hour's load_hours row, typed as the SQL path's driver would give it.
    assert summary["status"] == "loaded" and summary["records_inserted"] == 5 and summary["objects"] == 2
    assert summary["first_seen_fields"] == []  # the recorded hour has no new field
    # Polled with backoff until FINISHED.
    assert calls.sleeps == [0.5, 1.0]

    (batch,) = calls.batches()
    sqls = batch["Sqls"]
    assert len(sqls) == len(BATCH_SEQUENCE) <= MAX_STATEMENTS, "\n\n".join(sqls)
    for statement, pattern in zip(sqls, BATCH_SEQUENCE, strict=True):
        assert re.match(pattern, statement), (pattern, statement)
    assert all(len(statement.encode()) < MAX_STATEMENT_BYTES for statement in sqls)
    assert not any("%(" in statement for statement in sqls)  # every parameter is a literal
    assert len(batch["ClientToken"]) == 64 and batch["StatementName"] == NAME
    # From the lock on, the merge is the SQL path's, each statement with its parameters as literals
    # (the SQL path's own clock aside: its loaded_at is another moment).
    sql_path = merge_statements_of_the_sql_path(hour)
    lock_index = sqls.index(sql_path[0][0].strip())
    merge = [inline_parameters(statement, parameters).strip() for statement, parameters in sql_path[2:]]
    assert [at_any_moment(statement) for statement in sqls[lock_index + 2 :]] == [
        at_any_moment(statement) for statement in merge
    ]
    # The hour's objects went to S3 as JSON lines, one per object, and the batch COPYs them.
    (rows_copy,) = [statement for statement in sqls if statement.startswith('COPY "firehose_objects"')]
    body = rows_written(STAGE_FILES.client, re.search(r"FROM '([^']+)'", rows_copy).group(1))
    assert [line.split('"object_key":"')[1].split('"')[0] for line in body.decode().splitlines()] == [
        entry["key"] for entry in hour["objects"]
    ]


def test_an_hour_of_500_objects_is_the_same_batch_length(calls: Calls) -> None:
    """Stands in for Redshift: lists travel in S3, so the statement count and sizes do not grow with the objects."""
    for hour in (manifest(), many_objects(500)):
        calls.reads_before_the_batch()
        calls.batch(f"batch-{len(hour['objects'])}", "FINISHED")
        calls.summary()
        load_and_merge(
            calls.connection(), STREAM, SETTINGS, DIALECT, hour, staged_batch(STAGE_FILES.client, STREAM, hour), RUN_ID
        )
    small, large = calls.batches()
    assert len(large["Sqls"]) == len(small["Sqls"]) == len(BATCH_SEQUENCE)
    assert max(len(statement.encode()) for statement in large["Sqls"]) < 20_000
    (rows_copy,) = [statement for statement in large["Sqls"] if statement.startswith('COPY "firehose_objects"')]
    assert rows_written(STAGE_FILES.client, re.search(r"FROM '([^']+)'", rows_copy).group(1)).count(b"\n") == 500


def test_a_lost_response_is_sent_again_with_the_same_token(calls: Calls) -> None:
    """Stands in for Redshift: the first BatchExecuteStatement reached the service, its response did not."""
    lost = []

    def lose_the_first_response(**_: Any) -> None:
        if not lost:
            lost.append(True)
            raise ReadTimeoutError(endpoint_url="https://redshift-data.eu-west-1.amazonaws.com/")

    calls.client.meta.events.register("after-call.redshift-data.BatchExecuteStatement", lose_the_first_response)
    calls.reads_before_the_batch()
    calls.batch("batch-1")  # answered, then lost on the way back
    calls.batch("batch-1", "FINISHED")  # the same token: the same statement
    calls.summary()
    hour = manifest()
    load_and_merge(
        calls.connection(), STREAM, SETTINGS, DIALECT, hour, staged_batch(STAGE_FILES.client, STREAM, hour), RUN_ID
    )
    first, again = calls.batches()
    assert first == again and len(first["ClientToken"]) == 64
    assert len(calls.sleeps) == 1 and 1.0 <= calls.sleeps[0] <= 2.0  # backoff_delay(1)


def test_a_failed_statement_is_named_with_redshifts_message(calls: Calls) -> None:
    """Stands in for Redshift: the error names the statement of the batch that failed, and its text."""
    calls.reads_before_the_batch()
    calls.batch(
        "batch-1",
        "FAILED",
        Error="a sub-statement failed",
        SubStatements=[
            *({"Id": f"batch-1:{n}", "Status": "FINISHED"} for n in range(1, 15)),
            {"Id": "batch-1:15", "Status": "FAILED", "Error": 'ERROR: column "qty" is of type integer'},
            *({"Id": f"batch-1:{n}", "Status": "ABORTED"} for n in range(16, len(BATCH_SEQUENCE) + 1)),
        ],
    )
    hour = manifest()
    with pytest.raises(DataApiStatementError) as failed:
        load_and_merge(
            calls.connection(), STREAM, SETTINGS, DIALECT, hour, staged_batch(STAGE_FILES.client, STREAM, hour), RUN_ID
        )
    assert failed.value.index == 15
    assert str(failed.value) == (
        f'Redshift Data API batch-1: statement 15 of {len(BATCH_SEQUENCE)} failed: ERROR: column "qty" is of type '
        f"integer (DELETE FROM {TARGET})"
    )


@pytest.mark.parametrize(
    "message",
    [
        "ERROR: 1023 DETAIL: Serializable isolation violation on table - 119371, transactions forming the cycle",
        "ERROR: canceling statement due to lock timeout",
    ],
)
def test_a_serialization_or_lock_failure_runs_the_whole_batch_again(
    calls: Calls, monkeypatch: pytest.MonkeyPatch, message: str
) -> None:
    """Stands in for Redshift: the batch rolled back as a whole, and is sent again whole (a new loaded_at)."""
    monkeypatch.setattr(transactions, "sleep", lambda seconds: None)
    calls.reads_before_the_batch()
    calls.batch("batch-1", "FAILED", SubStatements=[{"Id": "batch-1:9", "Status": "FAILED", "Error": message}])
    calls.reads_before_the_batch()
    calls.batch("batch-2", "FINISHED")
    calls.summary()
    hour = manifest()
    load_and_merge(
        calls.connection(), STREAM, SETTINGS, DIALECT, hour, staged_batch(STAGE_FILES.client, STREAM, hour), RUN_ID
    )
    first, second = calls.batches()
    assert len(first["Sqls"]) == len(second["Sqls"]) == len(BATCH_SEQUENCE)


def test_a_shrinking_listing_fails_the_batch_at_its_guard_and_is_refused_as_on_the_sql_path(calls: Calls) -> None:
    """Stands in for Redshift: the guard fails the batch; a read after it names the gone object, as the SQL path does."""
    hour = manifest()
    gone = f"{STREAM.prefix}2026/03/01/10/orders-1-2026-03-01-10-30-00-0badf00d.gz"
    guard_index = next(index for index, pattern in enumerate(BATCH_SEQUENCE, 1) if pattern == r"SELECT CAST\(\n")
    calls.reads_before_the_batch()
    calls.batch(
        "batch-1",
        "FAILED",
        SubStatements=[
            {"Id": f"batch-1:{guard_index}", "Status": "FAILED", "Error": 'ERROR: Invalid digit, Value "t", Pos 0'}
        ],
    )
    calls.read(
        "read-ledger",
        [("object_key", "varchar")],
        [[{"stringValue": entry["key"]}] for entry in hour["objects"]] + [[{"stringValue": gone}]],
    )
    with pytest.raises(ShrinkingListingError) as refused:
        load_and_merge(
            calls.connection(), STREAM, SETTINGS, DIALECT, hour, staged_batch(STAGE_FILES.client, STREAM, hour), RUN_ID
        )
    # The SQL path's refusal of the same ledger, word for word.
    recording = RecordingConnection(
        staged_rows=5,
        answer_rows=lambda statement: (
            [(entry["key"],) for entry in hour["objects"]] + [(gone,)] if "l.object_key" in statement else None
        ),
    )
    with pytest.raises(ShrinkingListingError) as on_the_sql_path:
        merge_hour(recording, STREAM, SETTINGS, DIALECT, hour, staged_batch(STAGE_FILES.client, STREAM, hour), RUN_ID)
    assert str(refused.value) == str(on_the_sql_path.value) and gone in str(refused.value)
    read = [params["Sql"] for name, params in calls.sent if name == "ExecuteStatement"][-1]
    assert read.startswith("SELECT l.object_key") and "%(" not in read


def test_a_batch_still_running_at_the_timeout_is_cancelled(calls: Calls) -> None:
    """Stands in for Redshift: the wait is bounded by the stream's statement_timeout_minutes, then the batch is cancelled."""
    calls.reads_before_the_batch()
    calls.batch("batch-1", *["STARTED"] * 7)
    calls.stubber.add_response("cancel_statement", {"Status": True}, {"Id": "batch-1"})
    hour = manifest()
    with pytest.raises(DataApiTimeoutError, match="still STARTED after 30 s"):
        load_and_merge(
            calls.connection(timeout_seconds=30),
            STREAM,
            SETTINGS,
            DIALECT,
            hour,
            staged_batch(STAGE_FILES.client, STREAM, hour),
            RUN_ID,
        )
    assert calls.sleeps == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0]


def test_a_batch_over_the_limits_is_refused_before_it_is_sent(calls: Calls) -> None:
    """Stands in for Redshift: nothing is sent (the Stubber has no answer queued, any call would fail)."""
    connection = calls.connection()
    with connection.cursor() as cursor:
        for index in range(MAX_STATEMENTS):
            cursor.execute(f"DELETE FROM t WHERE id = {index}")
    with pytest.raises(DataApiLimitError, match="this transaction has 41"):
        connection.commit()  # 40 statements and the session's SET
    assert calls.sent == []


def test_a_read_in_the_middle_of_a_transaction_is_refused(calls: Calls) -> None:
    """Stands in for Redshift: the batch cannot answer a read between its statements."""
    connection = calls.connection()
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM t")
        with pytest.raises(DataApiBatchError, match="cannot be read in the middle; this read comes after 1"):
            cursor.execute("SELECT COUNT(*) FROM t")
    connection.rollback()
    connection.commit()
    assert calls.sent == []


@pytest.fixture(scope="module")
def redshift_grammar() -> Linter:
    return Linter(config=FluffConfig(overrides={"dialect": "redshift", "templater": "raw"}))


@pytest.mark.parametrize("stream_name", list(STREAMS))
def test_every_statement_of_the_batch_parses_as_redshift(
    calls: Calls, stream_name: str, redshift_grammar: Linter
) -> None:
    """Stands in for Redshift: sqlglot's and sqlfluff's Redshift grammars accept every statement the batch sends,
    the inlined literals, the rows' COPY and the guard included (a stream whose every name is a keyword too)."""
    stream = STREAMS[stream_name]
    hour = {**manifest(), "stream": stream.name, "stage_columns": columns_text(stream.columns)}
    calls.reads_before_the_batch()
    calls.batch("batch-1", "FINISHED")
    calls.summary()
    connection = calls.connection()
    load_and_merge(connection, stream, SETTINGS, DIALECT, hour, staged_batch(STAGE_FILES.client, stream, hour), RUN_ID)
    ((_, batch),) = [(name, params) for name, params in calls.sent if name == "BatchExecuteStatement"]
    reads = [params["Sql"] for name, params in calls.sent if name == "ExecuteStatement"]
    for statement in [*batch["Sqls"], *reads]:
        sqlglot.parse_one(statement, read="redshift")
        assert not sqlfluff_errors(redshift_grammar, statement), statement


def test_a_read_back_follows_next_token_and_types_its_values(calls: Calls) -> None:
    """Stands in for Redshift: GetStatementResult pages are joined; values come typed as a driver gives them."""
    calls.stubber.add_response(
        "execute_statement", {"Id": "read-1"}, {"Sql": "SELECT 1", "StatementName": NAME, **WHERE}
    )
    calls.stubber.add_response(
        "describe_statement", {"Id": "read-1", "Status": "FINISHED", "HasResultSet": True}, {"Id": "read-1"}
    )
    columns = [
        {"name": name, "typeName": kind}
        for name, kind in (("at", "timestamp"), ("n", "numeric"), ("s", "varchar"), ("b", "bool"))
    ]
    first = [
        [
            {"stringValue": "2026-03-01 10:00:00.5"},
            {"stringValue": "12.50"},
            {"stringValue": "x"},
            {"booleanValue": True},
        ]
    ]
    second = [[{"isNull": True}, {"stringValue": "-1"}, {"stringValue": "it's"}, {"booleanValue": False}]]
    calls.stubber.add_response(
        "get_statement_result", {"Records": first, "ColumnMetadata": columns, "NextToken": "page-2"}, {"Id": "read-1"}
    )
    calls.stubber.add_response(
        "get_statement_result", {"Records": second, "ColumnMetadata": columns}, {"Id": "read-1", "NextToken": "page-2"}
    )
    result = calls.connection().read("SELECT 1")
    assert result.columns == ["at", "n", "s", "b"]
    assert result.rows == [
        (datetime(2026, 3, 1, 10, 0, 0, 500000), Decimal("12.50"), "x", True),
        (None, Decimal("-1"), "it's", False),
    ]


def test_what_this_mode_cannot_send_is_refused_before_anything_is_sent(calls: Calls) -> None:
    """Stands in for Redshift: add_columns reads the target's columns under the lock, and an erasure sends a list
    of keys that is no INSERT: both are refused with what they need, and nothing reaches the Data API."""
    fields = [{"name": "utm_source", "records": 3, "json_types": ["string"], "sample": "news"}]
    with pytest.raises(DataApiBatchError, match="cannot be read in the middle"):
        add_new_columns(calls.connection(), STREAM, SETTINGS, DIALECT, fields, HOUR, RUN_ID)
    with pytest.raises(DataApiBatchError, match=r"needs an INSERT \.\.\. VALUES"):
        erase_keys(calls.connection(), STREAM, SETTINGS, DIALECT, [[1, 2]], "GDPR request 42", "dpo")
    assert calls.sent == []
