"""The exact statements the loader sends to Redshift for one hour, recorded at the DB-API boundary.

These tests stand in for Amazon Redshift, which cannot run here: ``ensure_tables`` and
``load_and_merge`` run with the Redshift dialect against a recording connection, and the
record is checked for transaction boundaries, the COPY, the lock, bind parameters that
redshift_connector can bind, and the absence of secrets.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlglot
from redshift_connector import ProgrammingError
from redshift_connector.core import convert_paramstyle

from firehose_loader.audit import audit_writer
from firehose_loader.config import parse_column_type
from firehose_loader.layout import StageWriter, key_file_key, part_stage_key, split_stage_key, stage_key
from firehose_loader.load import created_objects, ensure_tables, erase_keys, load_and_merge, merge_hour, staged_batch
from firehose_loader.records.schema import columns_text
from firehose_loader.records.validate import ObjectStats
from firehose_loader.warehouse import transactions
from firehose_loader.warehouse.protocol import StageSchemaError
from tests.redshift.recording import Event, RecordingConnection, serialization_error
from tests.redshift.redshift_setup import COPY_ROLE, DIALECT, SETTINGS, STREAMS

pytestmark = pytest.mark.redshift

STREAM = STREAMS["rich"]
HOUR = datetime(2026, 3, 1, 10, tzinfo=UTC)
RUN_ID = "scheduled__2026-03-01T11:00:00+00:00"
STAGE_KEY = stage_key(STREAM, HOUR, StageWriter("ingest", RUN_ID, "extract_hour", 1))
STAGE_URI = f"s3://{STREAM.bucket}/{STAGE_KEY}"
TARGET = '"sales"."order_lines"'
LEDGER = '"firehose_loader"."ledger"'
LOAD_HOURS = '"firehose_loader"."load_hours"'
REALTIME_QUALITY = '"firehose_loader"."realtime_quality"'
OBJECT_COMMITS = '"firehose_loader"."object_commits"'
AUDIT_RESULTS = '"firehose_loader"."audit_results"'
SCHEMA_DRIFT = '"firehose_loader"."schema_drift"'
STAGED_ROWS = 5
SECRETS = re.compile(
    r"aws_access_key_id|aws_secret_access_key|secret|password|access_key|session_token|credentials|"
    r"AKIA[0-9A-Z]{16}|ASIA[0-9A-Z]{16}",
    re.IGNORECASE,
)

# The merge transaction, statement by statement: session-local tables, the ledger rows of the
# hour's objects, the COPY and its row count, the lock, the plan, the target, the ledger.
MERGE_SEQUENCE = [
    # The target's column types from the catalog, checked before anything else (target_types).
    r"SELECT column_name, data_type, character_maximum_length, numeric_precision, numeric_scale\n",
    # The fields schema drift knows, read before the transaction writes (a Data API batch cannot read mid-way).
    r"SELECT DISTINCT field\n",
    r'DROP TABLE IF EXISTS "firehose_staging"',
    r'DROP TABLE IF EXISTS "firehose_objects"',
    r'DROP TABLE IF EXISTS "firehose_plan"',
    r'CREATE TEMPORARY TABLE "firehose_staging" \(',
    r'CREATE TEMPORARY TABLE "firehose_objects" \(',
    r'INSERT INTO "firehose_objects" \(',
    # The stage by its COPY manifest (exactly its file), so nothing is counted afterwards.
    r'COPY "firehose_staging"\n',
    # The loader's tables, not the target: Redshift's LOCK would block the target's readers.
    rf"LOCK {LEDGER}, {LOAD_HOURS}, {SCHEMA_DRIFT}, {OBJECT_COMMITS}, {REALTIME_QUALITY}$",
    # Under the lock, the hour's ledger objects: a listing that lacks one is refused (load.ShrinkingListingError).
    rf"SELECT l\.object_key\nFROM {LEDGER} l\n",
    r'CREATE TEMPORARY TABLE "firehose_plan" AS\n',
    # The stream has a real-time writer: its first-merge numbers, before any row changes.
    rf"UPDATE {REALTIME_QUALITY}\nSET ",
    rf"INSERT INTO {REALTIME_QUALITY} \(",
    # Each object version's first commit (freshness), inserted where absent under the lock.
    rf"INSERT INTO {OBJECT_COMMITS} \(",
    rf"DELETE FROM {TARGET}\nUSING",
    rf"INSERT INTO {TARGET} \(",
    rf"UPDATE {LEDGER}\nSET status = 'gone'",
    rf"DELETE FROM {LEDGER}\n",
    rf"INSERT INTO {LEDGER} \(",
    rf"DELETE FROM {LOAD_HOURS}\n",
    rf"INSERT INTO {LOAD_HOURS} \(",
    # The objects' schema drift rows replaced with their ledger rows (the hour has no new field).
    rf"DELETE FROM {SCHEMA_DRIFT}\nUSING \"firehose_objects\" o\n",
]


def manifest() -> dict[str, Any]:
    objects = []
    for minute, compression in ((0, "gzip"), (7, "none")):
        key = f"{STREAM.prefix}2026/03/01/10/orders-1-2026-03-01-10-{minute:02d}-00-4f1c2d3e.gz"
        stats = ObjectStats(key, '"9b2cf535f27731c974343645a3985328"', 2048, compression, 3, 3, 0, 1)
        objects.append({**stats.as_dict(), "quarantine_key": None})
    return {
        "stream": STREAM.name,
        "hour": HOUR.isoformat(),
        "stage_key": STAGE_KEY,
        "rows": STAGED_ROWS,
        "objects": objects,
        "error_objects": 0,
        "listed_at": "2026-03-01T11:05:00+00:00",
        "stage_columns": columns_text(STREAM.columns),
    }


def run_hour(connection: RecordingConnection) -> dict[str, Any]:
    ensure_tables(connection, STREAM, SETTINGS, DIALECT)
    # On Redshift the cluster reads the stage; the worker only writes its COPY manifest (moto S3 here).
    stage = staged_batch(STAGE_FILES.client, STREAM, manifest())
    return load_and_merge(connection, STREAM, SETTINGS, DIALECT, manifest(), stage, RUN_ID)


def statement_kinds(events: list[Event]) -> list[str]:
    return [event.statement for event in events if event.kind in ("execute", "executemany")]


def assert_merge_sequence(events: list[Event]) -> None:
    statements = statement_kinds(events)
    assert len(statements) == len(MERGE_SEQUENCE), "\n\n".join(statements)
    for statement, pattern in zip(statements, MERGE_SEQUENCE, strict=True):
        assert re.match(pattern, statement), f"expected {pattern!r}, got:\n{statement}"


class StageFiles:
    """The S3 client the stages are in (the moto server), for staged_batch; set by the stage_files fixture."""

    client: Any = None


STAGE_FILES = StageFiles()


@pytest.fixture(autouse=True)
def stage_files(s3: Any) -> Any:
    """The stage files the extract tasks wrote, in moto S3: the load writes a COPY manifest beside each one."""
    from contextlib import suppress

    with suppress(s3.exceptions.BucketAlreadyOwnedByYou, s3.exceptions.BucketAlreadyExists):
        s3.create_bucket(Bucket=STREAM.bucket)
    for key in (STAGE_KEY, stage_key(STREAM, HOUR, audit_writer(RUN_ID, 1))):
        s3.put_object(Bucket=STREAM.bucket, Key=key, Body=b"PAR1 stands in for the stage's bytes PAR1")
        s3.delete_object(Bucket=STREAM.bucket, Key=key_file_key(key))  # a test that wants one writes it
    STAGE_FILES.client = s3
    return s3


@pytest.fixture
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    delays: list[float] = []
    monkeypatch.setattr(transactions, "sleep", delays.append)
    return delays


def test_one_hour_is_ddl_then_one_merge_transaction_then_a_read(no_sleep: list[float]) -> None:
    """Stands in for Redshift: the whole conversation for one hour, transaction by transaction."""
    connection = RecordingConnection(staged_rows=STAGED_ROWS)
    summary = run_hour(connection)
    ddl, merge, summary_read = connection.transactions()

    assert [event.kind for event in ddl][-1] == "commit"
    assert all(event.kind == "execute" for event in ddl[:-1])
    # Every read before any write (a Data API batch cannot read after its writes): the catalog (the
    # recording has no tables: the DDL runs only because something is missing), then the target's
    # column types against the declared ones (target_types: ensure_tables never alters one). The
    # loader tables made now have every column: no added column is looked up.
    catalog_read, target_check, creates = ddl[0], ddl[1], ddl[2:-1]
    assert re.match(r"SELECT table_schema, table_name\nFROM information_schema\.tables\n", catalog_read.statement)
    assert target_check.parameters == {"schema": "sales", "table": "order_lines"}
    assert re.match(r"SELECT column_name, data_type, ", target_check.statement)
    assert all(re.match(r"CREATE (SCHEMA|TABLE) IF NOT EXISTS ", event.statement) for event in creates)
    (create_target,) = [
        event.statement for event in ddl if event.statement.startswith(f"CREATE TABLE IF NOT EXISTS {TARGET}")
    ]
    assert create_target.endswith('DISTSTYLE KEY DISTKEY ("order_id") COMPOUND SORTKEY ("updated_at")')

    # Everything from the first DROP to the COMMIT is one transaction: one commit, no rollback.
    assert [event.kind for event in merge].count("commit") == 1 and merge[-1].kind == "commit"
    assert "rollback" not in [event.kind for event in connection.events]
    assert_merge_sequence(merge)

    assert [event.kind for event in summary_read] == ["execute", "commit"]
    assert re.match(r"SELECT status, ", summary_read[0].statement) and LOAD_HOURS in summary_read[0].statement
    assert summary["status"] == 0  # the recording connection answers zeros
    assert no_sleep == []


def test_copy_uses_the_iam_role_and_a_manifest_of_exactly_the_stage(s3: Any) -> None:
    """Stands in for Redshift: COPY reads a manifest that lists the stage file alone (mandatory, with its
    size), so no other object under the key prefix is loaded; the IAM role comes from the connection."""
    connection = RecordingConnection()
    run_hour(connection)
    (copy,) = [event for event in connection.events if event.statement.startswith("COPY")]
    assert copy.statement == (
        f"COPY \"firehose_staging\"\nFROM '{STAGE_URI}.manifest'\nIAM_ROLE '{COPY_ROLE}'\nFORMAT AS PARQUET\nMANIFEST"
    )
    assert copy.parameters is None
    assert STAGE_URI == (
        "s3://firehose-orders/firehose-loader/staging/orders/2026/03/01/10/"
        "ingest/scheduled__2026-03-01T11_00_00_00_00/extract_hour.try-0001.parquet"
    )
    written = json.loads(s3.get_object(Bucket=STREAM.bucket, Key=f"{STAGE_KEY}.manifest")["Body"].read())
    size = s3.head_object(Bucket=STREAM.bucket, Key=STAGE_KEY)["ContentLength"]
    assert written == {"entries": [{"url": STAGE_URI, "mandatory": True, "meta": {"content_length": size}}]}


def test_lock_comes_after_the_copy_and_before_any_change_to_the_target_or_ledger() -> None:
    """Stands in for Redshift: the lock is the first statement that touches a permanent table in the transaction."""
    connection = RecordingConnection(staged_rows=STAGED_ROWS)
    run_hour(connection)
    statements = statement_kinds(connection.transactions()[1])
    lock = next(index for index, statement in enumerate(statements) if statement.startswith("LOCK "))
    copy = next(index for index, statement in enumerate(statements) if statement.startswith("COPY "))
    touching = [
        index
        for index, statement in enumerate(statements)
        if any(table in statement for table in (TARGET, LEDGER, LOAD_HOURS))
    ]
    assert copy < lock == touching[0]
    for kind in (f"DELETE FROM {TARGET}", f"INSERT INTO {TARGET}"):
        assert lock < next(index for index, statement in enumerate(statements) if statement.startswith(kind))


def test_every_statement_parses_and_binds_with_redshift_connector() -> None:
    """Stands in for Redshift: each statement parses as Redshift SQL and redshift_connector binds its parameters."""
    connection = RecordingConnection(staged_rows=STAGED_ROWS)
    run_hour(connection)
    for event in connection.events:
        if event.kind not in ("execute", "executemany"):
            continue
        sqlglot.parse_one(event.statement, read="redshift")
        parameter_sets = event.parameters if event.kind == "executemany" else [event.parameters]
        names = re.findall(r"%\((\w+)\)s", event.statement)
        # The driver's own conversion, as a cursor with paramstyle "pyformat" does it: %(name)s becomes $n.
        converted, make_args = convert_paramstyle("pyformat", event.statement)
        assert "%(" not in converted
        for parameters in parameter_sets:
            assert set(names) <= set(parameters or {}), event.statement
            values = make_args(parameters)
            assert values == tuple(parameters[name] for name in dict.fromkeys(names))


def test_no_secret_in_any_statement_or_parameter() -> None:
    """Stands in for Redshift: the COPY authenticates with the role; no key, secret or password is ever sent."""
    connection = RecordingConnection(staged_rows=STAGED_ROWS)
    run_hour(connection)
    for event in connection.events:
        assert not SECRETS.search(event.statement), event.statement
        assert not SECRETS.search(repr(event.parameters)), event.parameters
        assert not re.search(r"\bACCESS_KEY_ID\b|\bSECRET_ACCESS_KEY\b|\bSESSION_TOKEN\b", event.statement)


def test_the_objects_ledger_rows_are_bound_per_object() -> None:
    """Stands in for Redshift: one parameter set per object, values never in the text."""
    connection = RecordingConnection(staged_rows=STAGED_ROWS)
    run_hour(connection)
    (insert_objects,) = [
        event for event in connection.events if event.kind == "executemany" and "firehose_objects" in event.statement
    ]
    assert [row["key"] for row in insert_objects.parameters] == [entry["key"] for entry in manifest()["objects"]]
    assert all(row["key"] not in insert_objects.statement for row in insert_objects.parameters)


def test_serialization_failure_retries_the_whole_transaction_and_commits_once(no_sleep: list[float]) -> None:
    """Stands in for Redshift: error 1023 at the DELETE rolls back, then the transaction runs again from its start."""
    failures = [serialization_error()]

    def fail(statement: str) -> BaseException | None:
        if statement.startswith(f"DELETE FROM {TARGET}") and failures:
            return failures.pop()
        return None

    connection = RecordingConnection(staged_rows=STAGED_ROWS, fail=fail)
    run_hour(connection)
    _ddl, failed, retried, summary_read = connection.transactions()
    assert failed[-1].kind == "rollback"
    assert "commit" not in [event.kind for event in failed]
    assert statement_kinds(failed) == statement_kinds(retried)[: len(statement_kinds(failed))]
    assert retried[-1].kind == "commit"
    assert_merge_sequence(retried)  # COPY and LOCK again: nothing from the failed attempt is reused
    commits_after_ddl = [event for event in failed + retried if event.kind == "commit"]
    assert len(commits_after_ddl) == 1
    assert [event.kind for event in summary_read] == ["execute", "commit"]
    assert len(no_sleep) == 1 and 0 < no_sleep[0] <= transactions.MAX_DELAY_SECONDS


def test_serialization_failure_at_commit_is_retried_too(no_sleep: list[float]) -> None:
    """Stands in for Redshift: a conflict can surface at COMMIT; the transaction runs again and commits once."""

    class FailingFirstMergeCommit(RecordingConnection):
        commits = 0

        def commit(self) -> None:
            self.commits += 1
            if self.commits == 2:  # the first commit after ensure_tables
                self.events.append(Event("commit-failed"))
                raise serialization_error()
            super().commit()

    connection = FailingFirstMergeCommit(staged_rows=STAGED_ROWS)
    run_hour(connection)
    kinds = [event.kind for event in connection.events]
    assert kinds.count("commit-failed") == 1 and kinds.count("rollback") == 1
    assert kinds.count("commit") == 3  # DDL, the retried merge, the summary read
    assert len(no_sleep) == 1


def test_other_errors_are_not_retried(no_sleep: list[float]) -> None:
    """Stands in for Redshift: a COPY that fails for any other reason rolls back and fails the task at once."""
    denied = ProgrammingError({"S": "ERROR", "C": "XX000", "M": "S3ServiceException:Access Denied,Status 403"})
    connection = RecordingConnection(
        staged_rows=STAGED_ROWS, fail=lambda statement: denied if statement.startswith("COPY") else None
    )
    with pytest.raises(ProgrammingError, match="Access Denied"):
        run_hour(connection)
    assert [event.kind for event in connection.events].count("rollback") == 1
    assert [event.statement for event in connection.events].count(connection.statements()[-1]) == 1
    assert no_sleep == []


def test_serialization_failures_that_persist_give_up_after_the_last_attempt(no_sleep: list[float]) -> None:
    """Stands in for Redshift: the retry is bounded; the last error is raised for Airflow's own retry."""
    connection = RecordingConnection(
        staged_rows=STAGED_ROWS,
        fail=lambda statement: serialization_error() if statement.startswith("LOCK") else None,
    )
    with pytest.raises(ProgrammingError, match="1023"):
        run_hour(connection)
    kinds = [event.kind for event in connection.events]
    assert kinds.count("rollback") == transactions.ATTEMPTS
    assert kinds.count("commit") == 1  # only the DDL
    assert len(no_sleep) == transactions.ATTEMPTS - 1


def existing_tables() -> Any:
    """An answer to the catalog read: every table and index ensure_tables makes is there."""
    first = RecordingConnection()
    ensure_tables(first, STREAM, SETTINGS, DIALECT)
    present = sorted(created_objects(first.statements()))
    return lambda statement: present if "FROM information_schema.tables" in statement else None


def test_ensure_tables_adds_the_columns_a_table_from_an_earlier_release_lacks_after_every_read() -> None:
    """Stands in for Redshift: for each column added since the first release, the catalog read (the recording
    answers 0, as a table from before it would), and then, after every read, the ALTERs that add them: Redshift
    has no ADD COLUMN IF NOT EXISTS. audit_results' try joins its key: its history keeps one row per try."""
    connection = RecordingConnection(answer_rows=existing_tables())
    ensure_tables(connection, STREAM, SETTINGS, DIALECT)
    (ddl,) = connection.transactions()
    statements = [event.statement for event in ddl if event.kind == "execute"]
    catalog = r"SELECT COUNT\(\*\)\nFROM information_schema\.columns\n"
    assert re.match(r"SELECT table_schema, table_name\n", statements[0])
    assert re.match(r"SELECT column_name, data_type, ", statements[1])
    assert all(re.match(catalog, statement) for statement in statements[2:6])
    assert statements[6:] == [
        f"ALTER TABLE {LOAD_HOURS} ADD COLUMN listed_at timestamp",
        f"ALTER TABLE {AUDIT_RESULTS} ADD COLUMN try_number bigint DEFAULT 1 NOT NULL",
        f"ALTER TABLE {AUDIT_RESULTS} DROP CONSTRAINT audit_results_pkey",
        f"ALTER TABLE {AUDIT_RESULTS} ADD PRIMARY KEY (stream, hour, run_id, try_number)",
        f"ALTER TABLE {LOAD_HOURS} ADD COLUMN objects_gone bigint DEFAULT 0 NOT NULL",
        f"ALTER TABLE {LOAD_HOURS} ADD COLUMN stage_columns varchar(65535)",
    ]
    assert ddl[-1].kind == "commit"


def test_ensure_tables_adds_no_column_the_catalog_already_has() -> None:
    """Stands in for Redshift: when information_schema.columns has the added columns, no ALTER is sent."""
    connection = RecordingConnection(
        answer=lambda statement: (
            (1,) if statement.startswith("SELECT COUNT(*)\nFROM information_schema.columns") else None
        ),
        answer_rows=existing_tables(),
    )
    ensure_tables(connection, STREAM, SETTINGS, DIALECT)
    (ddl,) = connection.transactions()
    catalog = [event.parameters for event in ddl if "information_schema.columns" in event.statement]
    assert catalog == [
        {"schema": "sales", "table": "order_lines"},
        {"schema": "firehose_loader", "table": "load_hours", "column": "listed_at"},
        {"schema": "firehose_loader", "table": "audit_results", "column": "try_number"},
        {"schema": "firehose_loader", "table": "load_hours", "column": "objects_gone"},
        {"schema": "firehose_loader", "table": "load_hours", "column": "stage_columns"},
    ]
    assert not any(event.statement.startswith(("ALTER", "CREATE")) for event in ddl)
    assert ddl[-1].kind == "commit"


def test_ensure_tables_sends_no_ddl_when_the_catalog_has_every_table() -> None:
    """Stands in for Redshift: the tables are read from information_schema.tables first; with all of
    them there, ensure_tables sends no CREATE (no lock on a table its readers use), only the reads."""
    first = RecordingConnection()
    ensure_tables(first, STREAM, SETTINGS, DIALECT)
    created = [
        tuple(part.strip('"') for part in match.groups())
        for statement in first.statements()
        if (match := re.match(r'CREATE TABLE IF NOT EXISTS ("[^"]+")\.("[^"]+")', statement))
    ]
    assert (STREAM.schema, STREAM.table) in created and ("firehose_loader", "ledger") in created

    def catalog(statement: str) -> list[tuple[Any, ...]] | None:
        return created if "information_schema.tables" in statement else None

    existing = RecordingConnection(
        answer=lambda statement: (
            (1,) if statement.startswith("SELECT COUNT(*)\nFROM information_schema.columns") else None
        ),
        answer_rows=catalog,
    )
    ensure_tables(existing, STREAM, SETTINGS, DIALECT)
    assert [statement.split("\n")[0] for statement in existing.statements() if not statement.startswith("SELECT")] == []

    one_missing = RecordingConnection(answer_rows=lambda statement: catalog(statement) and created[1:])
    ensure_tables(one_missing, STREAM, SETTINGS, DIALECT)
    assert sum(statement.startswith("CREATE TABLE IF NOT EXISTS") for statement in one_missing.statements()) == len(
        created
    )


@pytest.mark.parametrize("key_file", [True, False], ids=["key file", "stage from before key files"])
@pytest.mark.parametrize("changes", [0, 3])
def test_an_audit_judges_a_healthy_hour_without_any_lock(changes: int, key_file: bool, s3: Any) -> None:
    """Stands in for Redshift: the stage's key file (whole rows for a stage written before key files) is
    COPYed and the plan built without LOCK; with no change to make the findings are written and
    committed, lock-free; otherwise nothing is written (the caller merges)."""
    from firehose_loader.load import audit_unchanged_without_lock

    if key_file:
        s3.put_object(Bucket=STREAM.bucket, Key=key_file_key(STAGE_KEY), Body=b"PAR1 keys PAR1")

    connection = RecordingConnection(
        staged_rows=STAGED_ROWS,
        answer=lambda statement: (
            (changes,) if statement.startswith('SELECT COUNT(*) AS changed\nFROM "firehose_plan"') else None
        ),
    )
    stage = staged_batch(STAGE_FILES.client, STREAM, manifest())
    findings = [
        ("audit/record_result.sql", {"late_objects": 0, "audited_at": HOUR.replace(tzinfo=None), "try_number": 1})
    ]
    judged = audit_unchanged_without_lock(connection, STREAM, SETTINGS, DIALECT, manifest(), stage, RUN_ID, findings)
    statements = connection.statements()
    assert judged is (changes == 0)
    assert not any(statement.startswith("LOCK") for statement in statements)
    (copy,) = [statement for statement in statements if statement.startswith("COPY")]
    (staging,) = [s for s in statements if s.startswith('CREATE TEMPORARY TABLE "firehose_staging"')]
    staged = re.findall(r'^\s+"([a-z_]+)" ', staging, re.MULTILINE)
    if key_file:
        assert f"FROM 's3://{STREAM.bucket}/{key_file_key(STAGE_KEY)}.manifest'" in copy
        assert staged == [*STREAM.key, STREAM.order_by, "_firehose_object", "_firehose_offset"]
    else:
        assert f"FROM '{STAGE_URI}.manifest'" in copy
        assert staged == [*STREAM.columns, "_firehose_object", "_firehose_offset"]
    assert any(statement.startswith('CREATE TEMPORARY TABLE "firehose_plan" AS') for statement in statements)
    assert not any(
        re.match(rf"(DELETE FROM|UPDATE|INSERT INTO) ({TARGET}|{LEDGER}|{LOAD_HOURS})", s) for s in statements
    )
    wrote_findings = any(statement.startswith(f"INSERT INTO {AUDIT_RESULTS} (") for statement in statements)
    assert wrote_findings is judged
    assert connection.events[-1].kind == ("commit" if judged else "rollback")


def test_every_session_sets_the_streams_statement_timeout() -> None:
    """Stands in for Redshift: no lock_timeout there; statement_timeout (milliseconds) bounds the LOCK's wait too."""
    from firehose_loader.load import set_session_timeouts

    connection = RecordingConnection()
    set_session_timeouts(connection, STREAM, SETTINGS, DIALECT)
    assert connection.statements() == [f"SET statement_timeout TO {STREAM.statement_timeout_minutes * 60_000}"]
    assert connection.events[-1].kind == "commit"


def test_an_ingest_and_an_audit_of_one_interval_copy_their_own_stages_and_a_cleared_merge_too(
    no_sleep: list[float],
) -> None:
    """Stands in for Redshift: the ingest and the audit of one interval (one run id) stage the hour under
    different keys, each COPYed by its own manifest: the ingest's merge, the audit's (a late object
    arrived: 7 rows), and the ingest's merge cleared alone afterwards with its original manifest, whose
    older listed_at the ledger statements bind."""
    ingest_key = STAGE_KEY
    audit_key = stage_key(STREAM, HOUR, audit_writer(RUN_ID, 1))
    assert audit_key != ingest_key
    assert not audit_key.startswith(ingest_key.removesuffix(".parquet"))
    assert not ingest_key.startswith(audit_key.removesuffix(".parquet"))
    bucket = f"s3://{STREAM.bucket}/"
    connection = RecordingConnection()

    ingest = manifest()
    late = ObjectStats(
        f"{STREAM.prefix}2026/03/01/10/orders-1-2026-03-01-10-58-00-77aa.gz", '"aa"', 512, "gzip", 2, 2, 0, 0
    )
    audit = {
        **manifest(),
        "stage_key": audit_key,
        "rows": STAGED_ROWS + 2,
        "objects": [*manifest()["objects"], {**late.as_dict(), "quarantine_key": None}],
        "listed_at": "2026-03-01T12:10:00+00:00",
    }
    ensure_tables(connection, STREAM, SETTINGS, DIALECT)
    load_and_merge(
        connection, STREAM, SETTINGS, DIALECT, ingest, staged_batch(STAGE_FILES.client, STREAM, ingest), RUN_ID
    )
    merge_hour(connection, STREAM, SETTINGS, DIALECT, audit, staged_batch(STAGE_FILES.client, STREAM, audit), RUN_ID)
    load_and_merge(
        connection, STREAM, SETTINGS, DIALECT, ingest, staged_batch(STAGE_FILES.client, STREAM, ingest), RUN_ID
    )

    assert "rollback" not in [event.kind for event in connection.events]
    _ddl, first, _read, repair, cleared, _read_again = connection.transactions()
    for merge, key in ((first, ingest_key), (repair, audit_key), (cleared, ingest_key)):
        assert_merge_sequence(merge)
        assert merge[-1].kind == "commit"
        (copy,) = [event for event in merge if event.statement.startswith("COPY")]
        assert f"FROM '{bucket}{key}.manifest'\n" in copy.statement
    # The ledger statements of the cleared merge bind its manifest's listing (older than the audit's):
    # merge.sql leaves the audit's ledger and load_hours rows when load_hours holds a later one.
    ledger_writes = [event for event in cleared if LEDGER in event.statement or LOAD_HOURS in event.statement]
    ledger_writes = [event for event in ledger_writes if event.statement.startswith(("DELETE", "INSERT"))]
    assert len(ledger_writes) == 4
    for event in ledger_writes:
        assert event.parameters["listed_at"] == datetime(2026, 3, 1, 11, 5)
        assert "listed_at" in event.statement
    (repair_load_hours,) = [event for event in repair if event.statement.startswith(f"INSERT INTO {LOAD_HOURS}")]
    assert repair_load_hours.parameters["listed_at"] == datetime(2026, 3, 1, 12, 10)
    assert repair_load_hours.parameters["stage_key"] == audit_key
    assert no_sleep == []


def test_an_erasure_is_one_transaction_under_the_merges_lock_and_binds_with_redshift_connector() -> None:
    """Stands in for Redshift: LOCK, then per key the tombstone and the DELETE of every row, one commit."""
    connection = RecordingConnection()
    keys = [{"order_id": 7, "line_no": 1}, [8, 2]]
    assert erase_keys(connection, STREAM, SETTINGS, DIALECT, keys, "GDPR request", "manual__erase") == 2
    (transaction,) = connection.transactions()
    assert [event.kind for event in transaction] == ["execute", "executemany", "executemany", "executemany", "commit"]
    lock, update, insert, delete = (event.statement for event in transaction[:-1])
    assert lock.startswith(f"LOCK {LEDGER}, {LOAD_HOURS}") and TARGET not in lock
    tombstones = '"firehose_loader"."tombstones_orders"'
    assert update.startswith(f"UPDATE {tombstones}\n") and insert.startswith(f"INSERT INTO {tombstones} (")
    assert delete.startswith(f"DELETE FROM {TARGET}\nWHERE ")
    for event in transaction[1:-1]:
        sqlglot.parse_one(event.statement, read="redshift")
        _, make_args = convert_paramstyle("pyformat", event.statement)
        assert [row["key_0"] for row in event.parameters] == ["7", "8"]
        assert [row["key_1"] for row in event.parameters] == ["1", "2"]
        for parameters in event.parameters:
            make_args(parameters)


def test_an_older_stage_is_copied_into_a_staging_table_of_its_own_columns_and_merged_by_name() -> None:
    """Stands in for Redshift: a Parquet COPY fills columns by position, so the staging table follows the stage.

    The stage was written before the streams file moved sku ahead of qty, widened sku and added
    note: the staging table lists the stage's columns in the file's order (sku staged at its new
    width), and the INSERT into the target names only the stage's columns, so note stays NULL.
    """
    older = {name: kind for name, kind in STREAM.columns.items() if name not in ("note", "sku")}
    older = (
        {"order_id": older.pop("order_id"), "line_no": older.pop("line_no")}
        | {"sku": parse_column_type("varchar(16)")}
        | older
    )
    stage_manifest = {**manifest(), "stage_columns": columns_text(older)}
    connection = RecordingConnection(staged_rows=STAGED_ROWS)
    ensure_tables(connection, STREAM, SETTINGS, DIALECT)
    load_and_merge(
        connection,
        STREAM,
        SETTINGS,
        DIALECT,
        stage_manifest,
        staged_batch(STAGE_FILES.client, STREAM, stage_manifest),
        RUN_ID,
    )
    (create,) = [s for s in connection.statements() if s.startswith('CREATE TEMPORARY TABLE "firehose_staging"')]
    staged = re.findall(r'^\s+"([a-z_]+)" (\S+(?: precision)?)', create, re.MULTILINE)
    assert [name for name, _type in staged] == [*older, "_firehose_object", "_firehose_offset"]
    assert dict(staged)["sku"] == "varchar(128),"  # declared varchar(32) now: 4 bytes a character
    (insert,) = [s for s in connection.statements() if s.startswith(f"INSERT INTO {TARGET} (")]
    listed = re.findall(r'"([a-z_]+)"', insert.split(" (", 1)[1].split(")", 1)[0])
    assert listed == [name for name in STREAM.columns if name in older] + ["_firehose_object", "_firehose_offset"]
    assert "note" not in insert


def test_a_stage_whose_type_changed_is_never_copied() -> None:
    """Stands in for Redshift: a stage with price at another scale is refused before any statement of the merge."""
    changed = {**STREAM.columns, "price": parse_column_type("numeric(12,4)")}
    stage_manifest = {**manifest(), "stage_columns": columns_text(changed)}
    connection = RecordingConnection(staged_rows=STAGED_ROWS)
    with pytest.raises(
        StageSchemaError, match="column 'price' is staged as numeric\\(12,4\\) but is declared numeric\\(12,2\\)"
    ):
        merge_hour(
            connection,
            STREAM,
            SETTINGS,
            DIALECT,
            stage_manifest,
            staged_batch(STAGE_FILES.client, STREAM, stage_manifest),
            RUN_ID,
        )
    assert connection.events == []


def test_a_split_hour_copies_its_parts_by_manifest_and_dedupes_them_in_the_merge_transaction(s3: Any) -> None:
    """Stands in for Redshift: the parts' stages reach the staging table by one COPY of the hour's manifest
    (each part once, mandatory, with its size), and the rows ROW_NUMBER ranks below a key's winner are
    deleted before the lock; the rest of the merge is the one-stage hour's, in the same transaction."""
    from firehose_loader.extract import combine_hour_parts
    from firehose_loader.handover import make_part, make_part_result
    from firehose_loader.s3io import ObjectInfo

    part_writer = StageWriter("ingest", RUN_ID, "extract_part", 1)
    parts = [part_stage_key(STREAM, HOUR, part_writer, index) for index in range(3)]
    for key in parts[:2]:
        s3.put_object(Bucket=STREAM.bucket, Key=key, Body=b"PAR1 a part PAR1")
    objects = manifest()["objects"]
    listed = [ObjectInfo(entry["key"], entry["etag"], entry["size"]) for entry in objects]
    planned = [make_part(index, HOUR, [listed[index]] if index < 2 else [], HOUR) for index in range(3)]
    # The third part's objects had no valid record: it staged nothing and is not in the manifest.
    results = [make_part_result(0, parts[0], 3, [objects[0]]), make_part_result(1, parts[1], 3, [objects[1]])]
    results.append(make_part_result(2, None, 0, []))
    combine_writer = StageWriter("ingest", RUN_ID, "combine_parts", 1)
    split = combine_hour_parts(lambda: s3, STREAM, None, planned, results, combine_writer)
    assert split["stage_key"] == split_stage_key(STREAM, HOUR, combine_writer) and split["rows"] is None
    written = json.loads(s3.get_object(Bucket=STREAM.bucket, Key=split["stage_key"])["Body"].read())
    assert written["entries"] == [
        {"url": f"s3://{STREAM.bucket}/{key}", "mandatory": True, "meta": {"content_length": 16}} for key in parts[:2]
    ]

    connection = RecordingConnection()
    ensure_tables(connection, STREAM, SETTINGS, DIALECT)
    load_and_merge(connection, STREAM, SETTINGS, DIALECT, split, staged_batch(s3, STREAM, split), RUN_ID)
    _ddl, merge, _read = connection.transactions()
    statements = statement_kinds(merge)
    copy = statements.index(next(s for s in statements if s.startswith("COPY")))
    assert statements[copy] == (
        f"COPY \"firehose_staging\"\nFROM 's3://{STREAM.bucket}/{split['stage_key']}'\n"
        f"IAM_ROLE '{COPY_ROLE}'\nFORMAT AS PARQUET\nMANIFEST"
    )
    losers, duplicates, delete, drop_losers, lock = statements[copy + 1 : copy + 6]
    assert losers.startswith('CREATE TEMPORARY TABLE "firehose_losers" AS')
    # Ranked on the key, order and provenance columns only: the whole rows are never sorted.
    assert 'ROW_NUMBER() OVER (\n            PARTITION BY s."order_id", s."line_no"' in losers
    assert 'ORDER BY s."updated_at" DESC, s."_firehose_object" DESC, s."_firehose_offset" DESC' in losers
    assert 'WHERE ranked."_firehose_position" > 1' in losers
    assert duplicates.startswith('UPDATE "firehose_objects"\nSET records_duplicate = records_duplicate + d.losers')
    assert delete.startswith('DELETE FROM "firehose_staging"\nUSING "firehose_losers" l')
    assert drop_losers == 'DROP TABLE "firehose_losers"'
    assert lock.startswith(f"LOCK {LEDGER}")
    # From the lock on, the same statements as a one-stage hour's merge.
    one_stage = RecordingConnection()
    run_hour(one_stage)
    single = statement_kinds(one_stage.transactions()[1])
    assert statements[copy + 5 :] == single[single.index(lock) :]
    for statement in statements:
        sqlglot.parse_one(statement, read="redshift")
