"""Stage → warehouse: the loader's tables, and the merge of a stage with its ledger in one transaction.

``load_and_merge`` copies the stage into a session-local staging table and merges it, with the
ledger, in one transaction (see ``warehouse.dialect`` for what each warehouse stages).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import re
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from firehose_loader.config import IDENTIFIER, ColumnType, Settings, Stream, parse_column_type
from firehose_loader.errors import PermanentError
from firehose_loader.extract import extract_chosen, extract_hour
from firehose_loader.faults import failpoint
from firehose_loader.handover import Manifest, ObjectEntry, handed_hour, listed_at
from firehose_loader.layout import (
    StageWriter,
    copy_manifest_key,
    data_api_rows_key,
    is_split_stage,
    key_file_key,
    key_manifest_key,
    naive_utc,
)
from firehose_loader.records.coercion import POSTGRES_LIMITS, WarehouseLimits
from firehose_loader.records.schema import (
    StageColumns,
    columns_text,
    parse_columns_text,
    stage_columns,
    stage_lacks_values,
    stage_misfit,
)
from firehose_loader.records.validate import ObjectStats
from firehose_loader.s3io import copy_manifest_files, object_exists, read_object, write_copy_manifest, write_object
from firehose_loader.warehouse.data_api import BatchCursor, RowsStore
from firehose_loader.warehouse.protocol import Dialect, Stage, StageSchemaError
from firehose_loader.warehouse.render import inline_parameters, render, render_statements
from firehose_loader.warehouse.target_types import check_target_types
from firehose_loader.warehouse.transactions import retry_serialization_failures

log = logging.getLogger(__name__)

STAGING_TABLE = "firehose_staging"
OBJECTS_TABLE = "firehose_objects"
PLAN_TABLE = "firehose_plan"
# A split hour's rows that lose to another part's (dedupe_parts.sql).
LOSERS_TABLE = "firehose_losers"
# Rows decoded from the stage (and encoded for PostgreSQL's binary COPY) at a time: ~50 MB of these events.
STAGE_READ_BATCH_ROWS = 65_536


def staged_batch(client: Any, stream: Stream, manifest: Manifest) -> Stage | None:
    """The run's stage in S3 (one file, or a split hour's part stages), or None when the hour had no valid rows.

    Nothing is read from S3 until the rows are: on Redshift the cluster reads the stage, the worker
    only writes a one-stage COPY manifest beside it (once).
    """
    key = manifest["stage_key"]
    if key is None:
        return None
    split = is_split_stage(key)
    files = functools.cache(lambda: copy_manifest_files(stream.bucket, key, read_object(client, stream.bucket, key)))
    # A split hour's stage is its COPY manifest; one stage file gets one beside it, written once.
    copy_manifest = functools.cache(lambda: key if split else _written_copy_manifest(client, stream.bucket, key))

    @functools.cache
    def key_manifest() -> str | None:
        if split:
            keys = key_manifest_key(key)
            return keys if object_exists(client, stream.bucket, keys) else None
        keys = key_file_key(key)
        return (
            _written_copy_manifest(client, stream.bucket, keys) if object_exists(client, stream.bucket, keys) else None
        )

    # One stage file is fetched once (compressed) and stays in memory while it is read: once for
    # the merge plan's columns, once for the rows. A split hour's parts are read once each, one at
    # a time, so memory holds one part's bytes whatever the size of the hour.
    stage_bytes = functools.cache(lambda: read_object(client, stream.bucket, key))

    def batches(columns: Sequence[str] | None = None) -> Iterator[pa.RecordBatch]:
        for body in (read_object(client, stream.bucket, file) for file in files()) if split else (stage_bytes(),):
            stage_file = pq.ParquetFile(pa.BufferReader(body))
            yield from stage_file.iter_batches(batch_size=STAGE_READ_BATCH_ROWS, columns=columns)

    # The columns the stage was written with: from the manifest (or load_hours), else from the
    # file's own metadata (a manifest from before they were recorded).
    recorded = manifest.get("stage_columns")
    if recorded:
        columns = parse_columns_text(recorded)
    else:
        first = read_object(client, stream.bucket, files()[0]) if split else stage_bytes()
        columns = stage_columns(pq.ParquetFile(pa.BufferReader(first)).schema_arrow, stream)
    return Stage(
        stream.bucket,
        key,
        batches,
        rows=manifest["rows"],
        columns=columns,
        split=split,
        copy_manifest=copy_manifest,
        key_manifest=key_manifest,
    )


def _written_copy_manifest(client: Any, bucket: str, stage_file: str) -> str:
    key = copy_manifest_key(stage_file)
    write_copy_manifest(client, bucket, key, [stage_file])
    return key


def data_api_rows_store(client: Any, stream: Stream) -> RowsStore:
    """Where Data API mode writes the lists of rows its batches COPY: the stream's staging prefix, by digest."""

    def store(body: bytes) -> str:
        key = data_api_rows_key(stream, hashlib.sha256(body).hexdigest())
        write_object(client, stream.bucket, key, body, "application/x-ndjson")
        return f"s3://{stream.bucket}/{key}"

    return store


def fitting_stage(
    client: Any, stream: Stream, manifest: Manifest, writer: StageWriter, limits: WarehouseLimits = POSTGRES_LIMITS
) -> tuple[Manifest, Stage | None]:
    """The manifest and its stage, or, when the stage's columns no longer fit the stream's (a type
    changed since it was written), a fresh extract of the hour from S3 staged by ``writer``.

    A stage that only lacks a column, or has one the stream no longer declares, fits: it loads by
    name, the column it lacks as NULL, unless the manifest's schema drift says the hour's records
    carry that field (then it is extracted again too). A big hour is extracted part after part
    here (``extract_chosen``), never all at once.
    """
    stage = staged_batch(client, stream, manifest)
    if stage is None:
        return manifest, stage
    columns = stage.columns or stream.columns
    seen = {field["name"] for field in new_fields_of_manifest(manifest)}
    misfit = stage_misfit(columns, stream) or stage_lacks_values(columns, stream, seen)
    if misfit is None:
        return manifest, stage
    hour = handed_hour(manifest)
    log.warning("%s hour %s: %s; extracting the hour again from S3", stream.name, hour.isoformat(), misfit)
    extracted, _objects = extract_chosen(client, stream, hour, writer, lambda objects: objects, limits)
    fresh = extracted if extracted is not None else extract_hour(client, stream, hour, writer, limits)
    return fresh, staged_batch(client, stream, fresh)


def template_context(
    stream: Stream,
    settings: Settings,
    dialect: Dialect,
    staged: StageColumns | None = None,
    *,
    split: bool = False,
    keys_only: bool = False,
) -> dict[str, Any]:
    """What the templates render with; ``staged``: the columns of the stage being loaded (default: the stream's).

    ``columns`` are the target's (the stream's as declared now); ``insert_columns`` those of them
    the stage has, which the merge writes by name (the others stay NULL); ``staging_columns`` the
    staging table's: where whole rows are staged (the dialect's way, or a ``split`` hour's parts,
    deduplicated in the warehouse), every column of the stage in the file's order (a Parquet COPY
    fills columns by position), else only the merge plan's, in the same order. ``keys_only``: the
    plan's columns alone even where whole rows are staged (a lock-free audit COPYs the stage's key file).
    """
    staged = stream.columns if staged is None else staged
    stages_rows = (dialect.stages_rows or split) and not keys_only
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
    staging_columns = [
        {"name": name, "staging_type": dialect.staging_type(stream.columns.get(name, kind))}
        for name, kind in staged.items()
        if stages_rows or name in plan_columns
    ]
    return {
        "target": (stream.schema, stream.table),
        "columns": columns,
        "insert_columns": [column for column in columns if column["name"] in staged],
        "staging_columns": staging_columns,
        "stages_rows": stages_rows,
        "split": split,
        "keys_only": keys_only,
        "losers": LOSERS_TABLE,
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
        "plan_only": False,
        "realtime_writer": stream.realtime_writer,
        "tombstones": (settings.loader_schema, tombstones_table(stream)),
        # A name the streams file did not declare is refused where a template renders it (ident).
        "key_columns": [by_name.get(name, {"name": name, "type": "text"}) for name in stream.key],
        "order_type": by_name.get(stream.order_by, {"type": "text"})["type"],
        # A text order_by is compared by code point, as the deduplication compares it (Dialect.text_collation).
        "order_collation": dialect.text_collation
        if stream.columns.get(stream.order_by, ColumnType("text")).name in ("varchar", "text")
        else "",
        "erased_keys_accept_newer": stream.erased_keys_accept_newer,
        "lock_timeout_ms": stream.lock_timeout_seconds * 1000,
        "statement_timeout_ms": stream.statement_timeout_minutes * 60_000,
    }


def stage_context(
    stream: Stream, settings: Settings, dialect: Dialect, stage: Stage | None, *, keys_only: bool = False
) -> dict[str, Any]:
    """The template context of a merge of ``stage``: its recorded columns, and whether it is a split hour's."""
    return template_context(
        stream,
        settings,
        dialect,
        None if stage is None else stage.columns,
        split=stage is not None and stage.split,
        keys_only=keys_only,
    )


def tombstones_table(stream: Stream) -> str:
    """The table, in the loader's schema, of the stream's erased keys (see erase_keys)."""
    return f"tombstones_{stream.name}"


def ensure_tables(conn: Any, stream: Stream, settings: Settings, dialect: Dialect) -> None:
    """Create the loader's tables and the stream's table if missing, and add the loader's newer columns (idempotent).

    The catalog is read first, and the DDL runs only when a table, an index or a column is
    missing: ``CREATE INDEX IF NOT EXISTS`` takes a lock on the table even when the index
    exists, which would queue the hour's readers and writers behind this task every hour.
    """
    context = template_context(stream, settings, dialect)
    statements = render_statements("create_loader_tables.sql", **context)
    statements += render_statements("create_target.sql", **context)
    statements += render_statements("create_tombstones.sql", **context)
    for template in dialect.extra_ddl_templates():
        statements += render_statements(template, **context)
    with conn.cursor() as cursor:
        try:
            # Every read before any write: a Data API batch cannot read after its writes.
            missing = missing_objects(cursor, context, dialect, statements)
            # A table made by an earlier release, or by hand, whose columns differ from the
            # declared ones fails here, before any extract, with the ALTER to run.
            check_target_types(cursor, context, dialect)
            additions = _missing_columns(cursor, context, created=missing)
            if missing:
                for statement in statements:
                    cursor.execute(statement)
            for template in additions:
                for statement in render_statements(template, **context):
                    cursor.execute(statement)
            conn.commit()
        except Exception:
            conn.rollback()
            raise


CREATED = re.compile(
    r'\s*CREATE (TABLE|INDEX) IF NOT EXISTS ("(?:[^"]|"")+")(?:\.("(?:[^"]|"")+"))?(?: ON ("(?:[^"]|"")+"))?'
)


def created_objects(statements: Sequence[str]) -> set[tuple[str, str]]:
    """The (schema, name) of every table and index the DDL statements create (an index in its table's schema)."""
    found = set()
    for statement in statements:
        match = CREATED.match(statement)
        if match is None:
            continue
        kind, first, second, on_table = match.groups()
        if kind == "TABLE":
            found.add((unquote_identifier(first), unquote_identifier(second)))
        else:
            found.add((unquote_identifier(on_table), unquote_identifier(first)))
    return found


def unquote_identifier(quoted: str) -> str:
    return quoted[1:-1].replace('""', '"')


def missing_objects(
    cursor: Any, context: dict[str, Any], dialect: Dialect, statements: Sequence[str]
) -> set[tuple[str, str]]:
    """The tables and indexes of ``statements`` that the catalog does not have."""
    wanted = created_objects(statements)
    cursor.execute(
        render(dialect.catalog_template(), **context),
        {"loader_schema": context["loader_schema"], "target_schema": context["target"][0]},
    )
    return wanted - {(schema, name) for schema, name in cursor.fetchall()}


# Columns added to the loader's tables after their first release: (table, column, template that adds it).
# A deployment whose table predates one gets it from ensure_tables; the catalog is read first, because
# Redshift has no ADD COLUMN IF NOT EXISTS.
ADDED_COLUMNS = (
    ("load_hours", "listed_at", "add_listed_at.sql"),
    ("audit_results", "try_number", "add_audit_try_number.sql"),
    ("load_hours", "objects_gone", "add_objects_gone.sql"),
    ("load_hours", "stage_columns", "add_stage_columns.sql"),
)


def _missing_columns(cursor: Any, context: dict[str, Any], created: set[tuple[str, str]]) -> list[str]:
    """The templates that add the ADDED_COLUMNS an existing loader table lacks (a table made now has them all)."""
    missing = []
    for table, column, template in ADDED_COLUMNS:
        if (context["loader_schema"], table) in created:
            continue
        cursor.execute(
            render("loader_column_exists.sql", **context),
            {"schema": context["loader_schema"], "table": table, "column": column},
        )
        row = cursor.fetchone()
        if not (row and row[0]):
            missing.append(template)
    return missing


class ShrinkingListingError(PermanentError, RuntimeError):
    """A listing of an hour lacks objects its ledger loaded: refused unless the run forces it."""


# A refusal names this many of the missing objects (and how many there are).
GONE_KEYS_NAMED = 5


def gone_objects(ledger_keys: Sequence[str], manifest: Manifest) -> list[str]:
    """The objects the hour's ledger accounts for that the manifest's listing no longer holds."""
    listed = {entry["key"] for entry in manifest["objects"]}
    return sorted(key for key in ledger_keys if key not in listed)


def refuse_shrinking_listing(stream: Stream, manifest: Manifest, gone: Sequence[str]) -> None:
    """Raise the refusal of a listing that would drop ``gone`` from the hour's account."""
    raise shrinking_listing_error(stream, manifest, gone)


def shrinking_listing_error(stream: Stream, manifest: Manifest, gone: Sequence[str]) -> ShrinkingListingError:
    """The refusal of a listing that would drop ``gone`` from the hour's account."""
    named = ", ".join(gone[:GONE_KEYS_NAMED]) + (
        f" and {len(gone) - GONE_KEYS_NAMED} more" if len(gone) > GONE_KEYS_NAMED else ""
    )
    return ShrinkingListingError(
        f"{stream.name} hour {manifest['hour']}: the listing of s3://{stream.bucket}/{stream.prefix} finds "
        f"{len(manifest['objects'])} object(s), but the ledger loaded {len(gone)} that are no longer there ({named}). "
        "Objects deleted or expired under a lifecycle rule, or a changed prefix? Nothing was changed. "
        "To load the hour as it is listed now and mark those objects as gone in the ledger (their rows stay "
        "in the table), run again with the param force_relisting set to true (docs/operations.md#objects-that-are-gone)."
    )


def set_session_timeouts(conn: Any, stream: Stream, settings: Settings, dialect: Dialect) -> None:
    """The stream's lock and statement timeouts, for the rest of the session (committed: a rollback keeps them)."""
    with conn.cursor() as cursor:
        for statement in render_statements(
            dialect.session_timeouts_template(), **template_context(stream, settings, dialect)
        ):
            cursor.execute(statement)
    conn.commit()


def check_listing_keeps_the_ledger(
    cursor: Any, stream: Stream, context: dict[str, Any], manifest: Manifest, parameters: dict[str, Any], *, force: bool
) -> None:
    """Refuse a whole-hour ledger write whose listing lacks objects of the hour's current ledger.

    A ledger from a later listing than the manifest's is kept by the merge anyway (merge.sql), so
    it is not compared. Objects already marked gone are not expected in any listing.
    """
    if force:
        return
    if isinstance(cursor, BatchCursor):
        # A Data API batch cannot read in the middle: a guard fails it instead, and the refusal
        # names the gone objects from a read after the rollback (None: the ledger changed since).
        def refusal(read: Callable[[str], list[tuple[Any, ...]]]) -> Exception | None:
            listed = inline_parameters(render("ledger_objects_listed_before.sql", **context), parameters)
            gone = gone_objects([key for (key,) in read(listed)], manifest)
            return shrinking_listing_error(stream, manifest, gone) if gone else None

        cursor.guard(render("guard_listing_keeps_ledger.sql", **context), parameters, refusal)
        return
    cursor.execute(render("ledger_objects_listed_before.sql", **context), parameters)
    gone = gone_objects([key for (key,) in cursor.fetchall()], manifest)
    if gone:
        refuse_shrinking_listing(stream, manifest, gone)


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
    force_relisting: bool = False,
    then: Sequence[tuple[str, dict[str, Any]]] = (),
) -> list[dict[str, Any]]:
    """COPY the stage into a temporary table and merge it, in one transaction; return the new fields first seen.

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
    With the ledger, each object's schema drift (fields its records carry that the stream does not
    declare) replaces the object's rows in ``schema_drift``; the fields the stream never had in
    ``schema_drift`` before are returned (what is alerted once).

    A whole-hour ledger write whose listing lacks objects the hour's ledger loaded (deleted,
    expired, or a changed prefix) is refused with ShrinkingListingError before any row changes;
    with ``force_relisting`` it goes ahead and those objects stay in the ledger marked ``gone``,
    so the hour's account keeps them (merge.sql).
    """
    if stage is not None and (misfit := stage_misfit(stage.columns or stream.columns, stream)):
        raise StageSchemaError(f"stage {stage.uri} no longer fits the stream's columns: {misfit}")
    context = {
        **stage_context(stream, settings, dialect, stage),
        "write_ledger": write_ledger,
        "delta": delta,
    }
    parameters = {
        "stream": stream.name,
        "hour": naive_utc(handed_hour(manifest)),
        "run_id": run_id,
        "stage_key": manifest["stage_key"],
        "error_objects": manifest["error_objects"],
        "loaded_at": naive_utc(datetime.now(UTC)),
        "measured_by": measured_by,
        "listed_at": None if (listed := listed_at(manifest)) is None else naive_utc(listed),
        "gone_message": f"gone: not in the listing of the hour by run {run_id}; its rows stay in the table"[:1024],
        "stage_columns": None if stage is None else columns_text(stage.columns or stream.columns),
    }
    merge_statements = render_statements("merge.sql", **context, lock_statement=dialect.lock_statement(context))
    with conn.cursor() as cursor:
        try:
            # Before any row changes: a target column that cannot hold its declared type fails here.
            check_target_types(cursor, context, dialect)
            # Read before the transaction writes (a Data API batch cannot read in the middle): a
            # field first seen by two loads at once is then alerted by both, which is harmless.
            known = known_fields(cursor, context, stream) if write_ledger else set()
            _stage_in_session(cursor, context, dialect, manifest, stage)
            failpoint("after_copy")
            lock, *merge = merge_statements
            cursor.execute(lock, parameters)
            # Under the lock: no other merge of the hour changes its ledger between the check and the merge.
            if write_ledger and not delta:
                check_listing_keeps_the_ledger(cursor, stream, context, manifest, parameters, force=force_relisting)
            for statement in merge:
                cursor.execute(statement, parameters)
            if stage is not None:
                dialect.insert_winners(cursor, context, stage)
            first_seen = _write_schema_drift(cursor, context, manifest, parameters, known) if write_ledger else []
            for template, extra in then:
                for statement in render_statements(template, **context):
                    cursor.execute(statement, {**parameters, **extra})
            failpoint("before_commit")
            conn.commit()
        except Exception:
            conn.rollback()
            raise
    return first_seen


def new_fields_of_manifest(manifest: Manifest) -> list[dict[str, Any]]:
    """The hour's schema drift over its objects: per field the records, JSON types and a sample, by name."""
    fields: dict[str, dict[str, Any]] = {}
    for entry in manifest["objects"]:
        for new in entry.get("new_fields") or []:
            total = fields.setdefault(
                new["name"], {"name": new["name"], "records": 0, "json_types": [], "sample": None}
            )
            total["records"] += new["records"]
            total["json_types"] += [kind for kind in new["json_types"] if kind not in total["json_types"]]
            total["sample"] = total["sample"] if total["sample"] is not None else new["sample"]
    return [fields[name] for name in sorted(fields)]


def known_fields(cursor: Any, context: dict[str, Any], stream: Stream) -> set[str]:
    """The fields schema drift has recorded for the stream before (a field not among them is alerted once)."""
    cursor.execute(render("schema_drift/known_fields.sql", **context), {"stream": stream.name})
    return {row[0] for row in cursor.fetchall()}


def _write_schema_drift(
    cursor: Any, context: dict[str, Any], manifest: Manifest, parameters: dict[str, Any], known: set[str]
) -> list[dict[str, Any]]:
    """Replace the manifest's objects' schema drift rows; return the hour's fields not in ``known`` (never recorded)."""
    common = {name: parameters[name] for name in ("stream", "hour", "run_id", "loaded_at")}
    # The objects table holds the manifest's objects (_stage_in_session): one statement, whatever their number.
    cursor.execute(render("schema_drift/delete_objects.sql", **context), {"stream": parameters["stream"]})
    rows = [
        {
            **common,
            "object_key": entry["key"],
            "field": new["name"][:256],
            "records": new["records"],
            "json_types": ",".join(new["json_types"])[:256],
            "sample": None if new["sample"] is None else new["sample"][:1024],
        }
        for entry in manifest["objects"]
        for new in entry.get("new_fields") or []
    ]
    if rows:
        cursor.executemany(render("schema_drift/insert_field.sql", **context), rows)
    return [field for field in new_fields_of_manifest(manifest) if field["name"][:256] not in known]


def _stage_in_session(
    cursor: Any, context: dict[str, Any], dialect: Dialect, manifest: Manifest, stage: Stage | None
) -> None:
    """The session-local tables of a merge: the manifest's objects, and the stage COPYed into staging.

    A split hour's part stages are all COPYed into staging and deduplicated across parts there
    (dedupe_parts.sql), which also adds the rows each object lost to another part to its
    duplicate count, as one extract of the whole hour would have counted them.
    """
    for statement in render_statements("create_staging.sql", **context):
        cursor.execute(statement)
    insert_object = render("insert_object.sql", **context)
    cursor.executemany(insert_object, [_object_row(entry) for entry in manifest["objects"]])
    if stage is None:
        return
    dialect.copy_into_staging(cursor, context, stage)
    if stage.split:
        for statement in render_statements("dedupe_parts.sql", **context):
            cursor.execute(statement)


@retry_serialization_failures
def audit_unchanged_without_lock(
    conn: Any,
    stream: Stream,
    settings: Settings,
    dialect: Dialect,
    manifest: Manifest,
    stage: Stage | None,
    run_id: str,
    findings: Sequence[tuple[str, dict[str, Any]]],
) -> bool:
    """Record an audit's findings without any lock when the merge would change nothing; return whether it did.

    For an hour whose ledger matches S3: the stage is COPYed and the merge plan built as the
    merge builds it, but without the lock (merge.sql with plan_only). When no key is missing,
    doubled, older than the stage or new to the loader's account, the ``findings`` templates
    (audit/record_result.sql) are written from that plan and committed, and no lock was taken,
    so a healthy hour never waits for, nor holds up, the target's writers and readers (on Redshift
    the loader tables' lock). Otherwise nothing is written and the caller merges under the lock.
    A writer that damages the hour after this read is the next audit's finding.
    """
    if stage is not None and stage_misfit(stage.columns or stream.columns, stream):
        return False  # the locked merge refuses it with the reason
    # The plan needs the staged rows' keys, versions and provenance only: where the dialect would
    # COPY whole rows, the stage's key files are COPYed instead when it has them.
    keys_only = not dialect.stages_rows or (
        stage is not None and stage.key_manifest is not None and stage.key_manifest() is not None
    )
    context = {
        **stage_context(stream, settings, dialect, stage, keys_only=keys_only),
        "write_ledger": False,
        "plan_only": True,
    }
    parameters = {
        "stream": stream.name,
        "hour": naive_utc(handed_hour(manifest)),
        "run_id": run_id,
        "stage_columns": None if stage is None else columns_text(stage.columns or stream.columns),
    }
    with conn.cursor() as cursor:
        try:
            _stage_in_session(cursor, context, dialect, manifest, stage)
            for statement in render_statements("merge.sql", **context):
                cursor.execute(statement, parameters)
            if isinstance(cursor, BatchCursor):
                # A Data API batch cannot read the plan in the middle: a guard fails the batch when
                # the plan changes something, so the findings after it commit only for a healthy hour.
                cursor.guard(render("guard_plan_unchanged.sql", **context), {}, lambda read: PlanChangesError())
            else:
                cursor.execute(render("plan_changes.sql", **context))
                row = cursor.fetchone()
                if row and row[0]:
                    conn.rollback()
                    return False
            for template, extra in findings:
                for statement in render_statements(template, **context):
                    cursor.execute(statement, {**parameters, "error_objects": manifest["error_objects"], **extra})
            conn.commit()
        except PlanChangesError:
            return False  # the batch was rolled back; the caller merges under the lock
        except Exception:
            conn.rollback()
            raise
    return True


class PlanChangesError(RuntimeError):
    """A lock-free audit's plan would change the hour (Data API mode's guard failed): merge under the lock."""


def load_and_merge(
    conn: Any,
    stream: Stream,
    settings: Settings,
    dialect: Dialect,
    manifest: Manifest,
    stage: Stage | None,
    run_id: str,
    *,
    force_relisting: bool = False,
) -> dict[str, Any]:
    """Merge the hour with its ledger rows and return the hour's load_hours row, with ``new_fields``
    (the hour's schema drift) and ``first_seen_fields`` (the drift's fields never seen before)."""
    first_seen = merge_hour(conn, stream, settings, dialect, manifest, stage, run_id, force_relisting=force_relisting)
    failpoint("after_commit")
    summary = query_one(
        conn,
        "hour_summary.sql",
        template_context(stream, settings, dialect),
        stream.name,
        naive_utc(handed_hour(manifest)),
    )
    assert summary is not None, "the merge commits a load_hours row"
    return {**summary, "new_fields": new_fields_of_manifest(manifest), "first_seen_fields": first_seen}


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
    row: dict[str, Any] = {name: value for name, value in entry.items() if name in fields and name != "new_fields"}
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


# --- new_fields: add_columns -----------------------------------------------------------------------------------------

# The column type a new field gets from the JSON types its records had (null aside): one kind of
# number or a string keeps its type; numbers of both kinds are double precision; anything else
# (objects, arrays, mixed kinds) is json, which holds any value.
INFERRED_TYPES = {
    frozenset({"integer"}): "bigint",
    frozenset({"number"}): "double precision",
    frozenset({"integer", "number"}): "double precision",
    frozenset({"boolean"}): "boolean",
    frozenset({"string"}): "text",
}


def inferred_type(json_types: Sequence[str]) -> ColumnType | None:
    """The type of a column added for a field with these JSON types; None when only nulls were seen."""
    kinds = frozenset(json_types) - {"null"}
    if not kinds:
        return None
    return parse_column_type(INFERRED_TYPES.get(kinds, "json"))


def addable(name: str, stream: Stream) -> bool:
    """Whether a new field can become a column: an accepted identifier, not the loader's, not declared."""
    return bool(IDENTIFIER.fullmatch(name)) and not name.startswith("_firehose_") and name not in stream.columns


def added_columns(conn: Any, stream: Stream, settings: Settings, dialect: Dialect) -> dict[str, ColumnType]:
    """The columns the loader added to the stream's table (schema_history), none before ensure_tables made it."""
    context = template_context(stream, settings, dialect)
    with conn.cursor() as cursor:
        cursor.execute(render("schema_history/exists.sql", **context), {"schema": settings.loader_schema})
        (exists,) = cursor.fetchone()
        rows = []
        if exists:
            cursor.execute(render("schema_history/columns.sql", **context), {"stream": stream.name})
            rows = cursor.fetchall()
    conn.commit()
    return {name: parse_column_type(kind) for name, kind in rows}


def with_added_columns(stream: Stream, added: dict[str, ColumnType]) -> Stream:
    """The stream with the columns the loader added after its declared ones (a declared column wins)."""
    extra = {name: kind for name, kind in added.items() if name not in stream.columns}
    return dataclasses.replace(stream, columns={**stream.columns, **extra}) if extra else stream


@retry_serialization_failures
def add_new_columns(
    conn: Any,
    stream: Stream,
    settings: Settings,
    dialect: Dialect,
    fields: Sequence[dict[str, Any]],
    hour: datetime,
    run_id: str,
) -> dict[str, ColumnType]:
    """Add a nullable column for each new field that can be one, and record it in schema_history, in one transaction.

    Under the merge's lock, so two loads do not add the same column; a column the table already
    has (another load added it) is not added again. Returns the columns added now.
    """
    wanted = {
        field["name"]: kind
        for field in fields
        if addable(field["name"], stream) and (kind := inferred_type(field["json_types"])) is not None
    }
    if not wanted:
        return {}
    context = template_context(stream, settings, dialect)
    types = {field["name"]: ",".join(field["json_types"])[:256] for field in fields}
    added: dict[str, ColumnType] = {}
    with conn.cursor() as cursor:
        try:
            cursor.execute(dialect.lock_statement(context))
            cursor.execute(render("target_columns.sql"), {"schema": stream.schema, "table": stream.table})
            present = {row[0] for row in cursor.fetchall()}
            for name, kind in wanted.items():
                if name in present:
                    continue
                cursor.execute(dialect.add_column_statement(context["target"], name, dialect.column_type(kind)))
                cursor.execute(
                    render("schema_history/record_column.sql", **context),
                    {
                        "stream": stream.name,
                        "column_name": name,
                        "column_type": str(kind),
                        "json_types": types[name],
                        "hour": naive_utc(hour),
                        "run_id": run_id,
                        "added_at": naive_utc(datetime.now(UTC)),
                    },
                )
                added[name] = kind
            conn.commit()
        except Exception:
            conn.rollback()
            raise
    return added
