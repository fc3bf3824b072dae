"""The two halves of an hourly load, free of Airflow: extract to S3, then load and merge.

``extract_hour`` reads the hour's objects and leaves a staged, deduplicated
Parquet object plus quarantine files in S3; it returns a small manifest (XCom).
``load_and_merge`` copies the stage into a session-local staging table and
merges it, with the ledger, in one transaction (see dialects for what each
warehouse stages).
"""

from __future__ import annotations

import functools
import re
import sys
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from firehose_loader.batch import (
    HourBatch,
    ObjectStats,
    QuarantinedRecord,
    SourceObject,
    StagedHour,
    combine_parts,
    stage_hour,
    timed,
    usable_cpus,
)
from firehose_loader.config import Settings, Stream
from firehose_loader.decoding import UnreadableObject, decompress
from firehose_loader.dialects import Dialect, Stage
from firehose_loader.faults import failpoint
from firehose_loader.partitions import hour_folder, hour_start, object_basename
from firehose_loader.s3io import (
    ObjectChangedError,
    ObjectInfo,
    copy_object,
    count_error_objects,
    list_hour_objects,
    read_object,
    write_object,
)
from firehose_loader.sql import render, render_statements
from firehose_loader.transactions import retry_serialization_failures

STAGING_TABLE = "firehose_staging"
OBJECTS_TABLE = "firehose_objects"
PLAN_TABLE = "firehose_plan"
# Rows decoded from the stage (and encoded for PostgreSQL's binary COPY) at a time: ~50 MB of these events.
STAGE_READ_BATCH_ROWS = 65_536
# Times a part reads its objects again after one of them changed since the hour was listed.
PART_READ_ATTEMPTS = 3
# Below this many bytes of objects (as stored) an extract decodes in its own process: forking
# workers and passing objects to them would cost more than a second core saves.
PARALLEL_DECODE_MIN_BYTES = 8 << 20


def run_token(run_id: str) -> str:
    """A run id made safe for an S3 key."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", run_id)


def quarantine_key(stream: Stream, hour: datetime, object_key: str, suffix: str = ".jsonl") -> str:
    return f"{stream.quarantine_prefix}{stream.name}/{hour_folder(hour)}{object_basename(object_key)}{suffix}"


def stage_key(stream: Stream, hour: datetime, run_id: str) -> str:
    return f"{stream.staging_prefix}{stream.name}/{hour_folder(hour)}{run_token(run_id)}.parquet"


def part_stage_key(stream: Stream, hour: datetime, run_id: str, index: int) -> str:
    # Not under the stage key as a prefix: Redshift's COPY would load the parts with the stage.
    return f"{stream.staging_prefix}{stream.name}/{hour_folder(hour)}{run_token(run_id)}.part-{index:04d}.parquet"


def _read_sources(
    client: Any, stream: Stream, objects: list[ObjectInfo], *, decompress_here: bool = True
) -> Iterator[SourceObject]:
    """The objects in order, each read (and decompressed) in a thread while the one before it is parsed.

    The reader holds one object ahead. Decompression releases the GIL, so it overlaps the parse;
    without ``decompress_here`` the decode processes decompress what they decode.
    """

    def read(item: ObjectInfo) -> SourceObject:
        body = read_object(client, stream.bucket, item.key, item.etag)
        decompressed = None
        if decompress_here:
            with suppress(UnreadableObject):  # decoding reports it
                decompressed = decompress(body)
        return SourceObject(item.key, item.etag, item.size, body, decompressed)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="firehose-read") as reader:
        upcoming = reader.submit(read, objects[0]) if objects else None
        for index in range(len(objects)):
            assert upcoming is not None
            with timed("list+read"):
                source = upcoming.result()
            upcoming = reader.submit(read, objects[index + 1]) if index + 1 < len(objects) else None
            yield source
            del source


def _write_quarantine(client: Any, stream: Stream, hour: datetime, batch: HourBatch | StagedHour) -> dict[str, str]:
    """Write one JSON-lines file per object with bad records; keys are per hour and object, so a rerun overwrites."""
    hour_text = hour.isoformat()
    by_object: dict[str, list[QuarantinedRecord]] = defaultdict(list)
    for record in batch.quarantined:
        by_object[record.object_key].append(record)
    for source in batch.unreadable:
        stats = next(item for item in batch.objects if item.key == source.key)
        copy_key = quarantine_key(stream, hour, source.key, suffix="")
        copy_object(client, stream.bucket, source.key, copy_key)
        reason = f"unreadable object ({stats.message}); original bytes copied to s3://{stream.bucket}/{copy_key}"
        by_object[source.key].append(QuarantinedRecord(source.key, 0, reason, b""))
    written: dict[str, str] = {}
    for object_key, records in sorted(by_object.items()):
        key = quarantine_key(stream, hour, object_key)
        body = b"".join(record.as_json_line(stream.name, hour_text) for record in records)
        write_object(client, stream.bucket, key, body, "application/x-ndjson")
        written[object_key] = key
    return written


def extract_hour(client: Any, stream: Stream, hour: datetime, run_id: str) -> dict[str, Any]:
    """Read, validate, dedupe and stage one hour in this process; return the manifest the load step needs.

    Objects are read one ahead and decoded one at a time; the rows wait in a local temporary
    folder until deduplication has chosen the winners (see :func:`~firehose_loader.batch.stage_hour`).
    """
    hour = hour_start(hour)
    with timed("list+read"):
        objects = list_hour_objects(client, stream.bucket, stream.prefix, hour)
    return _extract_objects(client, stream, hour, run_id, objects)


def extract_or_split(client: Any, stream: Stream, hour: datetime, run_id: str) -> dict[str, Any]:
    """The ingest DAG's extract step: the hour's manifest, or for a big hour the parts to extract apart.

    An hour whose objects total at most ``stream.split_above_bytes`` is extracted here, as
    :func:`extract_hour` does, and its manifest has no parts. A bigger one is only listed: the
    manifest's ``parts`` group its objects (in key order) into parts of at most that many bytes,
    each extracted by :func:`extract_part` in a task of its own, and :func:`combine_hour_parts`
    dedupes across them.
    """
    hour = hour_start(hour)
    with timed("list+read"):
        objects = list_hour_objects(client, stream.bucket, stream.prefix, hour)
    if sum(item.size for item in objects) <= stream.split_above_bytes:
        return {**_extract_objects(client, stream, hour, run_id, objects), "parts": []}
    parts = split_into_parts(objects, stream.split_above_bytes)
    return {
        "stream": stream.name,
        "hour": hour.isoformat(),
        "parts": [
            {"index": index, "hour": hour.isoformat(), "objects": [asdict(item) for item in part]}
            for index, part in enumerate(parts)
        ],
    }


def split_into_parts(objects: Sequence[ObjectInfo], part_bytes: int) -> list[list[ObjectInfo]]:
    """Consecutive groups of the objects of at most ``part_bytes`` each (an object bigger than that is a part alone)."""
    parts: list[list[ObjectInfo]] = []
    size = 0
    for item in objects:
        if not parts or size + item.size > part_bytes:
            parts.append([])
            size = 0
        parts[-1].append(item)
        size += item.size
    return parts


def extract_part(client: Any, stream: Stream, part: dict[str, Any], run_id: str) -> dict[str, Any]:
    """Read, validate, dedupe and stage one part of a split hour; its stage holds the part's winners.

    An object rewritten or deleted since the hour was listed is taken as it is now (its new
    version, or not at all); an object that arrived since is not in any part: the audit finds it.
    """
    hour = hour_start(datetime.fromisoformat(part["hour"]))
    objects = [ObjectInfo(**item) for item in part["objects"]]
    key = part_stage_key(stream, hour, run_id, part["index"])
    for attempt in range(1, PART_READ_ATTEMPTS + 1):
        try:
            rows, staged_key, objects_out = _stage_objects(client, stream, hour, objects, key)
            break
        except ObjectChangedError:
            if attempt == PART_READ_ATTEMPTS:
                raise
            current = {item.key: item for item in list_hour_objects(client, stream.bucket, stream.prefix, hour)}
            objects = [current[item.key] for item in objects if item.key in current]
    return {"index": part["index"], "stage_key": staged_key, "rows": rows, "objects": objects_out}


def combine_hour_parts(
    s3: Callable[[], Any], stream: Stream, split: dict[str, Any], parts: Sequence[dict[str, Any]], run_id: str
) -> dict[str, Any]:
    """The manifest of a split hour: its parts' stages deduplicated into one stage, their counts summed.

    For an hour that was not split (``split`` is already the manifest) this returns it unchanged,
    without calling ``s3`` for a client (making one costs about a second).
    """
    if not split["parts"]:
        return split
    client = s3()
    hour = hour_start(datetime.fromisoformat(split["hour"]))
    parts = sorted(parts, key=lambda part: part["index"])
    if [part["index"] for part in parts] != list(range(len(split["parts"]))):
        raise ValueError(f"hour {hour.isoformat()} was split into {len(split['parts'])} parts but got {len(parts)}")
    objects_out = [entry for part in parts for entry in part["objects"]]
    staged_key = None
    with tempfile.TemporaryDirectory(prefix="firehose-loader-") as workdir:
        part_paths = []
        for part in parts:
            if part["stage_key"] is not None:
                path = Path(workdir) / f"part-{part['index']}.parquet"
                with timed("list+read"):
                    path.write_bytes(read_object(client, stream.bucket, part["stage_key"]))
                part_paths.append(path)
        combined = combine_parts(stream, part_paths, Path(workdir) / "stage.parquet")
        for entry in objects_out:
            entry["records_duplicate"] += combined.cross_part_duplicates.get(entry["key"], 0)
        if combined.path is not None:
            staged_key = stage_key(stream, hour, run_id)
            with timed("stage write"), open(combined.path, "rb") as body:
                write_object(client, stream.bucket, staged_key, body, "application/vnd.apache.parquet")
    return {
        "stream": stream.name,
        "hour": hour.isoformat(),
        "stage_key": staged_key,
        "rows": combined.rows,
        "objects": objects_out,
        "error_objects": count_error_objects(client, stream.bucket, stream.error_prefix, hour),
        "parts": [part["stage_key"] for part in parts],
    }


def _extract_objects(
    client: Any, stream: Stream, hour: datetime, run_id: str, objects: list[ObjectInfo]
) -> dict[str, Any]:
    rows, staged_key, objects_out = _stage_objects(client, stream, hour, objects, stage_key(stream, hour, run_id))
    return {
        "stream": stream.name,
        "hour": hour.isoformat(),
        "stage_key": staged_key,
        "rows": rows,
        "objects": objects_out,
        "error_objects": count_error_objects(client, stream.bucket, stream.error_prefix, hour),
    }


def decode_processes(stream: Stream, objects: Sequence[ObjectInfo]) -> int:
    """How many processes decode these objects: the stream's ``decode_processes``, at most one per
    usable CPU and per object; one for a small batch (workers would cost more than they save), and
    one off Linux (the workers are forked, which macOS does not support once its system frameworks
    have been used, as a proxy lookup does)."""
    if sys.platform != "linux" or sum(item.size for item in objects) < PARALLEL_DECODE_MIN_BYTES:
        return 1
    return max(1, min(stream.decode_processes, usable_cpus(), len(objects)))


def _stage_objects(
    client: Any, stream: Stream, hour: datetime, objects: list[ObjectInfo], key: str
) -> tuple[int, str | None, list[dict[str, Any]]]:
    """Stage the objects' deduplicated rows at ``key`` and quarantine their bad records: (rows, stage key or None, object entries)."""
    with tempfile.TemporaryDirectory(prefix="firehose-loader-") as workdir:
        processes = decode_processes(stream, objects)
        sources = _read_sources(client, stream, objects, decompress_here=processes == 1)
        batch = stage_hour(stream, sources, workdir, decode_processes=processes)
        with timed("quarantine write"):
            quarantine_keys = _write_quarantine(client, stream, hour, batch)
        staged_key = None
        if batch.path is not None:
            staged_key = key
            with timed("stage write"), open(batch.path, "rb") as body:
                write_object(client, stream.bucket, staged_key, body, "application/vnd.apache.parquet")
    failpoint("after_stage")
    objects_out = []
    for stats in batch.objects:
        entry = stats.as_dict()
        entry["quarantine_key"] = quarantine_keys.get(stats.key)
        objects_out.append(entry)
    return batch.rows, staged_key, objects_out


def staged_batch(client: Any, stream: Stream, manifest: dict[str, Any]) -> Stage | None:
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

    return Stage(stream.bucket, key, batches, rows=manifest.get("rows"))


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
        "write_ledger": True,
    }


def ensure_tables(conn: Any, stream: Stream, settings: Settings, dialect: Dialect) -> None:
    """Create the loader's tables and the stream's table if missing (idempotent)."""
    context = template_context(stream, settings, dialect)
    statements = render_statements("create_loader_tables.sql", **context)
    statements += render_statements("create_target.sql", **context)
    for template in dialect.extra_ddl_templates():
        statements += render_statements(template, **context)
    with conn.cursor() as cursor:
        try:
            for statement in statements:
                cursor.execute(statement)
            conn.commit()
        except Exception:
            conn.rollback()
            raise


@retry_serialization_failures
def merge_hour(
    conn: Any,
    stream: Stream,
    settings: Settings,
    dialect: Dialect,
    manifest: dict[str, Any],
    stage: Stage | None,
    run_id: str,
    *,
    write_ledger: bool = True,
    then: Sequence[tuple[str, dict[str, Any]]] = (),
) -> None:
    """COPY the stage into a temporary table and merge it, in one transaction.

    What the temporary table holds and where the winning rows come from is the dialect's
    (``stages_rows``, ``insert_winners``).

    With ``write_ledger`` the hour's ledger and load_hours rows are replaced in the
    same transaction; ``then`` lists further templates (with their parameters) that
    must commit or fail together with the merge, such as an audit's findings.
    """
    context = {**template_context(stream, settings, dialect), "write_ledger": write_ledger}
    parameters = {
        "stream": stream.name,
        "hour": manifest_hour(manifest),
        "run_id": run_id,
        "stage_key": manifest["stage_key"],
        "error_objects": manifest["error_objects"],
        "loaded_at": datetime.now(UTC).replace(tzinfo=None),
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
    manifest: dict[str, Any],
    stage: Stage | None,
    run_id: str,
) -> dict[str, Any]:
    """Merge the hour with its ledger rows and return the hour's load_hours row."""
    merge_hour(conn, stream, settings, dialect, manifest, stage, run_id)
    failpoint("after_commit")
    summary = query_one(
        conn, "hour_summary.sql", template_context(stream, settings, dialect), stream.name, manifest_hour(manifest)
    )
    assert summary is not None, "the merge commits a load_hours row"
    return summary


def manifest_hour(manifest: dict[str, Any]) -> datetime:
    """The manifest's hour as the naive UTC timestamp the loader tables store."""
    return datetime.fromisoformat(manifest["hour"]).astimezone(UTC).replace(tzinfo=None)


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


def _object_row(entry: dict[str, Any]) -> dict[str, Any]:
    fields = ObjectStats.__dataclass_fields__
    row = {name: entry[name] for name in fields}
    row["message"] = (row["message"] or None) and str(row["message"])[:1024]
    row["quarantine_key"] = entry.get("quarantine_key")
    return row
