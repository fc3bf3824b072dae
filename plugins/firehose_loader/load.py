"""Stage → warehouse: the loader's tables, and the merge of a stage with its ledger in one transaction.

``load_and_merge`` copies the stage into a session-local staging table and merges it, with the
ledger, in one transaction (see ``warehouse.dialect`` for what each warehouse stages).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from firehose_loader.config import Settings, Stream
from firehose_loader.faults import failpoint
from firehose_loader.handover import Manifest, ObjectEntry, handed_hour, listed_at
from firehose_loader.layout import naive_utc
from firehose_loader.records.validate import ObjectStats
from firehose_loader.s3io import (
    read_object,
)
from firehose_loader.warehouse.protocol import Dialect, Stage
from firehose_loader.warehouse.render import render, render_statements
from firehose_loader.warehouse.transactions import retry_serialization_failures

STAGING_TABLE = "firehose_staging"
OBJECTS_TABLE = "firehose_objects"
PLAN_TABLE = "firehose_plan"
# Rows decoded from the stage (and encoded for PostgreSQL's binary COPY) at a time: ~50 MB of these events.
STAGE_READ_BATCH_ROWS = 65_536


def staged_batch(client: Any, stream: Stream, manifest: Manifest) -> Stage | None:
    """The run's stage in S3, or None when the hour had no valid rows."""
    key = manifest["stage_key"]
    if key is None:
        return None

    # The Parquet bytes (compressed) are fetched once and stay in memory while the stage is
    # read (once for the merge plan's columns, once for the rows); rows are decoded a batch at a time.
    stage_bytes = functools.cache(lambda: read_object(client, stream.bucket, key))

    def batches(columns: Sequence[str] | None = None) -> Iterator[pa.RecordBatch]:
        stage_file = pq.ParquetFile(pa.BufferReader(stage_bytes()))
        yield from stage_file.iter_batches(batch_size=STAGE_READ_BATCH_ROWS, columns=columns)

    return Stage(stream.bucket, key, batches, rows=manifest["rows"])


def template_context(stream: Stream, settings: Settings, dialect: Dialect) -> dict[str, Any]:
    columns = [
        {
            "name": name,
            "type": dialect.column_type(kind),
            "staging_type": dialect.staging_type(kind),
            "insert_expression": dialect.insert_expression(name, kind),
        }
        for name, kind in stream.columns.items()
    ]
    plan_columns = {*stream.key, stream.order_by}
    by_name = {column["name"]: column for column in columns}
    return {
        "target": (stream.schema, stream.table),
        "columns": columns,
        "staging_columns": [c for c in columns if dialect.stages_rows or c["name"] in plan_columns],
        "stages_rows": dialect.stages_rows,
        "key": list(stream.key),
        "order_by": stream.order_by,
        "loader_schema": settings.loader_schema,
        "staging": STAGING_TABLE,
        "objects": OBJECTS_TABLE,
        "plan": PLAN_TABLE,
        "index_name": f"{stream.table}__firehose_key"[:63],
        "table_options": dialect.table_options(stream.key, stream.order_by),
        "object_key_type": dialect.object_key_type,
        "clock": dialect.clock,
        "write_ledger": True,
        "delta": False,
        "realtime_writer": stream.realtime_writer,
        "tombstones": (settings.loader_schema, tombstones_table(stream)),
        # A name the streams file did not declare is refused where a template renders it (ident).
        "key_columns": [by_name.get(name, {"name": name, "type": "text"}) for name in stream.key],
        "order_type": by_name.get(stream.order_by, {"type": "text"})["type"],
        "erased_keys_accept_newer": stream.erased_keys_accept_newer,
    }


def tombstones_table(stream: Stream) -> str:
    """The table, in the loader's schema, of the stream's erased keys (see erase_keys)."""
    return f"tombstones_{stream.name}"


def ensure_tables(conn: Any, stream: Stream, settings: Settings, dialect: Dialect) -> None:
    """Create the loader's tables and the stream's table if missing, and add the loader's newer columns (idempotent)."""
    context = template_context(stream, settings, dialect)
    statements = render_statements("create_loader_tables.sql", **context)
    statements += render_statements("create_target.sql", **context)
    statements += render_statements("create_tombstones.sql", **context)
    for template in dialect.extra_ddl_templates():
        statements += render_statements(template, **context)
    with conn.cursor() as cursor:
        try:
            for statement in statements:
                cursor.execute(statement)
            _add_missing_columns(cursor, context)
            conn.commit()
        except Exception:
            conn.rollback()
            raise


# Columns added to the loader's tables after their first release: (table, column, template that adds it).
# A deployment whose table predates one gets it from ensure_tables; the catalog is read first, because
# Redshift has no ADD COLUMN IF NOT EXISTS.
ADDED_COLUMNS = (
    ("load_hours", "listed_at", "add_listed_at.sql"),
    ("audit_results", "try_number", "add_audit_try_number.sql"),
)


def _add_missing_columns(cursor: Any, context: dict[str, Any]) -> None:
    for table, column, template in ADDED_COLUMNS:
        cursor.execute(
            render("loader_column_exists.sql", **context),
            {"schema": context["loader_schema"], "table": table, "column": column},
        )
        row = cursor.fetchone()
        if not (row and row[0]):
            for statement in render_statements(template, **context):
                cursor.execute(statement)


@retry_serialization_failures
def merge_hour(
    conn: Any,
    stream: Stream,
    settings: Settings,
    dialect: Dialect,
    manifest: Manifest,
    stage: Stage | None,
    run_id: str,
    *,
    write_ledger: bool = True,
    delta: bool = False,
    measured_by: str = "ingest",
    then: Sequence[tuple[str, dict[str, Any]]] = (),
) -> None:
    """COPY the stage into a temporary table and merge it, in one transaction.

    What the temporary table holds and where the winning rows come from is the dialect's
    (``stages_rows``, ``insert_winners``).

    With ``write_ledger`` the hour's ledger and load_hours rows are replaced in the
    same transaction, unless load_hours says they came from a later listing of the hour than
    the manifest's (an ingest's merge cleared after an audit re-extracted the hour): then the
    rows are still merged (the winner rule makes that harmless) and the newer ledger stays. ``then`` lists further templates (with their parameters) that
    must commit or fail together with the merge, such as an audit's findings.
    With ``delta`` (the late sweep) the manifest holds some of the hour's objects only: their
    ledger rows are added, replacing only rows of the same object keys, and load_hours is
    recomputed from the hour's whole ledger.
    ``measured_by`` names the DAG or task whose merge it is (ingest, audit, sweep) in realtime_quality,
    where a key's first merge records what a real-time writer had done to it.
    """
    context = {**template_context(stream, settings, dialect), "write_ledger": write_ledger, "delta": delta}
    parameters = {
        "stream": stream.name,
        "hour": naive_utc(handed_hour(manifest)),
        "run_id": run_id,
        "stage_key": manifest["stage_key"],
        "error_objects": manifest["error_objects"],
        "loaded_at": naive_utc(datetime.now(UTC)),
        "measured_by": measured_by,
        "listed_at": None if (listed := listed_at(manifest)) is None else naive_utc(listed),
    }
    with conn.cursor() as cursor:
        try:
            for statement in render_statements("create_staging.sql", **context):
                cursor.execute(statement)
            insert_object = render("insert_object.sql", **context)
            cursor.executemany(insert_object, [_object_row(entry) for entry in manifest["objects"]])
            if stage is not None:
                dialect.copy_into_staging(cursor, context, stage)
            failpoint("after_copy")
            merge_context = {**context, "lock_statement": dialect.lock_statement(context)}
            for statement in render_statements("merge.sql", **merge_context):
                cursor.execute(statement, parameters)
            if stage is not None:
                dialect.insert_winners(cursor, context, stage)
            for template, extra in then:
                for statement in render_statements(template, **context):
                    cursor.execute(statement, {**parameters, **extra})
            failpoint("before_commit")
            conn.commit()
        except Exception:
            conn.rollback()
            raise


def load_and_merge(
    conn: Any,
    stream: Stream,
    settings: Settings,
    dialect: Dialect,
    manifest: Manifest,
    stage: Stage | None,
    run_id: str,
) -> dict[str, Any]:
    """Merge the hour with its ledger rows and return the hour's load_hours row."""
    merge_hour(conn, stream, settings, dialect, manifest, stage, run_id)
    failpoint("after_commit")
    summary = query_one(
        conn,
        "hour_summary.sql",
        template_context(stream, settings, dialect),
        stream.name,
        naive_utc(handed_hour(manifest)),
    )
    assert summary is not None, "the merge commits a load_hours row"
    return summary


def query_one(
    conn: Any, template: str, context: dict[str, Any], stream: str, hour: datetime, **parameters: Any
) -> dict[str, Any] | None:
    """One row of a read-only template about a stream's hour, as a dict (None if no row)."""
    with conn.cursor() as cursor:
        cursor.execute(render(template, **context), {"stream": stream, "hour": hour, **parameters})
        names = [column[0] for column in cursor.description]
        row = cursor.fetchone()
    conn.commit()
    return None if row is None else dict(zip(names, row, strict=True))


def _object_row(entry: ObjectEntry) -> dict[str, Any]:
    fields = ObjectStats.__dataclass_fields__
    row: dict[str, Any] = {name: value for name, value in entry.items() if name in fields}
    row["message"] = (row["message"] or None) and str(row["message"])[:1024]
    row["quarantine_key"] = entry.get("quarantine_key")
    landed = entry.get("landed_at")
    row["landed_at"] = None if landed is None else naive_utc(datetime.fromisoformat(landed))
    return row


KeyValues = Sequence[Any] | dict[str, Any] | str | int | float | bool


def key_parameters(stream: Stream, key: KeyValues) -> dict[str, str]:
    """One key as erase_key.sql binds it: its values as text, key_0, key_1, ... in the stream's key order.

    A key is a mapping of the key columns to their values, a list of the values in key order, or
    (for a one-column key) the value alone.
    """
    if isinstance(key, dict):
        if set(key) != set(stream.key):
            raise ValueError(f"key {key!r}: must name exactly the key columns {list(stream.key)}")
        values = [key[name] for name in stream.key]
    elif isinstance(key, list | tuple):
        values = list(key)
    else:
        values = [key]
    if len(values) != len(stream.key) or any(value is None or isinstance(value, dict | list) for value in values):
        raise ValueError(f"key {key!r}: must give one scalar value for each key column {list(stream.key)}")
    return {f"key_{index}": _key_text(value) for index, value in enumerate(values)}


def _key_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@retry_serialization_failures
def erase_keys(
    conn: Any,
    stream: Stream,
    settings: Settings,
    dialect: Dialect,
    keys: Sequence[KeyValues],
    reason: str,
    erased_by: str,
) -> int:
    """Erase keys on purpose (GDPR erasure, retention purges), in one transaction; return how many.

    Every row of each key is deleted from the target, whoever wrote it, and the key gets a
    tombstone (stream, key, reason, erased_at, erased_by, and the greatest order_by deleted) in
    the stream's tombstones table. The merge never inserts a tombstoned key again (ingest, rerun,
    backfill, audit), nor counts it as missing; with ``erased_keys_accept_newer`` a version with a
    greater order_by than the erased one loads again. Erasing a key again refreshes its tombstone
    and deletes whatever version came back since: the call is idempotent.
    """
    if not reason.strip():
        raise ValueError("an erasure needs a reason")
    rows = [key_parameters(stream, key) for key in keys]
    if not rows:
        return 0
    context = template_context(stream, settings, dialect)
    common = {
        "stream": stream.name,
        "reason": reason[:1024],
        "erased_at": naive_utc(datetime.now(UTC)),
        "erased_by": erased_by[:256],
    }
    statements = render_statements("erase/erase_key.sql", **context)
    with conn.cursor() as cursor:
        try:
            # The merge's lock: an erasure and a merge of the stream never interleave.
            cursor.execute(dialect.lock_statement(context))
            for statement in statements:
                cursor.executemany(statement, [{**common, **row} for row in rows])
            conn.commit()
        except Exception:
            conn.rollback()
            raise
    return len(rows)
