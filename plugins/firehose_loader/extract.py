"""S3 → stage: one hour's objects listed, read at their ETags, decoded, deduplicated and staged.

``extract_hour`` reads the hour's objects and leaves a staged, deduplicated Parquet object
plus quarantine files in S3; it returns a small manifest (XCom) for the load step. A big hour
is split into parts, each extracted apart and then combined.
"""

from __future__ import annotations

import logging
import sys
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from datetime import UTC, datetime
from typing import Any

from firehose_loader.config import Stream
from firehose_loader.faults import failpoint
from firehose_loader.handover import (
    Extracted,
    Manifest,
    ObjectEntry,
    Part,
    PartResult,
    handed_hour,
    listed_at,
    listed_objects,
    make_manifest,
    make_object_entry,
    make_part,
    make_part_result,
)
from firehose_loader.layout import (
    StageWriter,
    hour_start,
    key_file_key,
    key_manifest_key,
    part_stage_key,
    quarantine_key,
    split_stage_key,
    stage_key,
    stream_layout,
)
from firehose_loader.records.coercion import POSTGRES_LIMITS, WarehouseLimits
from firehose_loader.records.decoding import UnreadableObject, decompress
from firehose_loader.records.pool import usable_cpus
from firehose_loader.records.schema import columns_text
from firehose_loader.records.stage import StagedHour, stage_hour, write_key_file
from firehose_loader.records.timing import timed
from firehose_loader.records.validate import QuarantinedRecord, SourceObject
from firehose_loader.s3io import (
    ObjectChangedError,
    ObjectInfo,
    copy_object,
    count_error_objects,
    list_hour_objects,
    read_object,
    write_copy_manifest,
    write_object,
)

log = logging.getLogger(__name__)

# Times a part reads its objects again after one of them changed since the hour was listed.
PART_READ_ATTEMPTS = 3
# How often one extract lists the hour again when a listed object vanished or changed before it was read.
LIST_ATTEMPTS = 3
# Below this many bytes of objects (as stored) an extract decodes in its own process: forking
# workers and passing objects to them would cost more than a second core saves.
PARALLEL_DECODE_MIN_BYTES = 8 << 20


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
                decompressed = decompress(body, stream.compression)
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


def _write_quarantine(client: Any, stream: Stream, hour: datetime, batch: StagedHour) -> dict[str, str]:
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


def extract_hour(
    client: Any, stream: Stream, hour: datetime, writer: StageWriter, limits: WarehouseLimits = POSTGRES_LIMITS
) -> Manifest:
    """Read, validate, dedupe and stage one hour in this process; return the manifest the load step needs.

    Objects are read one ahead and decoded one at a time; the rows wait in a local temporary
    folder until deduplication has chosen the winners (see :func:`~firehose_loader.records.stage.stage_hour`).
    """
    hour = hour_start(hour)
    listed = datetime.now(UTC)
    with timed("list+read"):
        objects = list_hour_objects(client, stream.bucket, stream_layout(stream), hour)
    return _extract_objects(client, stream, hour, writer, objects, listed, limits)


def extract_listing_again(
    client: Any, stream: Stream, hour: datetime, writer: StageWriter, limits: WarehouseLimits = POSTGRES_LIMITS
) -> Extracted:
    """Extract the hour; when a listed object vanished or changed before it was read, list the hour again.

    Nothing is staged before every listed object was read, so starting over is safe. After
    ``LIST_ATTEMPTS`` listings the error (naming the object) fails the try, and Airflow's retry
    lists once more.
    """
    for attempt in range(1, LIST_ATTEMPTS + 1):
        try:
            return extract_or_split(client, stream, hour, writer, limits)
        except ObjectChangedError as exc:
            if attempt == LIST_ATTEMPTS:
                raise
            log.warning(
                "%s; listing %s hour %s again (listing %d of %d)",
                exc,
                stream.name,
                hour.isoformat(),
                attempt + 1,
                LIST_ATTEMPTS,
            )
    raise AssertionError("unreachable")


def extract_chosen(
    client: Any,
    stream: Stream,
    hour: datetime,
    writer: StageWriter,
    choose: Callable[[list[ObjectInfo]], list[ObjectInfo]],
    limits: WarehouseLimits = POSTGRES_LIMITS,
) -> tuple[Manifest | None, list[ObjectInfo]]:
    """Extract only the objects ``choose`` picks from the hour's listing: (their manifest, the objects).

    The late sweep's extract: its manifest's ``objects`` are the chosen ones alone (None when it
    picks none). As the ingest does, it lists the hour again when a chosen object vanished or
    changed before it was read (at most ``LIST_ATTEMPTS`` listings), and chosen objects totalling
    more than ``stream.split_above_bytes`` are extracted part by part (one after another, here)
    and combined, so no read holds more than a part.
    """
    hour = hour_start(hour)
    for attempt in range(1, LIST_ATTEMPTS + 1):
        listed = datetime.now(UTC)
        with timed("list+read"):
            objects = choose(list_hour_objects(client, stream.bucket, stream_layout(stream), hour))
        if not objects:
            return None, []
        try:
            if sum(item.size for item in objects) <= stream.split_above_bytes:
                return _extract_objects(client, stream, hour, writer, objects, listed, limits), objects
            groups = split_into_parts(objects, stream.split_above_bytes)
            planned = [make_part(index, hour, group, listed) for index, group in enumerate(groups)]
            results = [extract_part(client, stream, part, writer, limits) for part in planned]
            return combine_hour_parts(lambda: client, stream, None, planned, results, writer), objects
        except ObjectChangedError as exc:
            if attempt == LIST_ATTEMPTS:
                raise
            log.warning("%s; listing %s hour %s again", exc, stream.name, hour.isoformat())
    raise AssertionError("unreachable")


def extract_or_split(
    client: Any, stream: Stream, hour: datetime, writer: StageWriter, limits: WarehouseLimits = POSTGRES_LIMITS
) -> Extracted:
    """The ingest DAG's extract step: the hour's manifest, or for a big hour the parts to extract apart.

    An hour whose objects total at most ``stream.split_above_bytes`` is extracted here, as
    :func:`extract_hour` does, and has no parts. A bigger one is only listed (no manifest yet):
    its ``parts`` group its objects (in key order) into parts of at most that many bytes, each
    extracted by :func:`extract_part` in a task of its own, and :func:`combine_hour_parts`
    dedupes across them.
    """
    hour = hour_start(hour)
    listed = datetime.now(UTC)
    with timed("list+read"):
        objects = list_hour_objects(client, stream.bucket, stream_layout(stream), hour)
    if sum(item.size for item in objects) <= stream.split_above_bytes:
        return Extracted(manifest=_extract_objects(client, stream, hour, writer, objects, listed, limits), parts=[])
    groups = split_into_parts(objects, stream.split_above_bytes)
    parts = [make_part(index, hour, group, listed) for index, group in enumerate(groups)]
    return Extracted(manifest=None, parts=parts)


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


def extract_part(
    client: Any, stream: Stream, planned: Part, writer: StageWriter, limits: WarehouseLimits = POSTGRES_LIMITS
) -> PartResult:
    """Read, validate, dedupe and stage one part of a split hour; its stage holds the part's winners.

    An object rewritten or deleted since the hour was listed is taken as it is now (its new
    version, or not at all); an object that arrived since is not in any part: the audit finds it.
    """
    hour = hour_start(handed_hour(planned))
    objects = listed_objects(planned)
    key = part_stage_key(stream, hour, writer, planned["index"])
    for attempt in range(1, PART_READ_ATTEMPTS + 1):
        try:
            rows, staged_key, objects_out = _stage_objects(client, stream, hour, objects, key, limits)
            break
        except ObjectChangedError:
            if attempt == PART_READ_ATTEMPTS:
                raise
            current = {item.key: item for item in list_hour_objects(client, stream.bucket, stream_layout(stream), hour)}
            objects = [current[item.key] for item in objects if item.key in current]
    return make_part_result(planned["index"], staged_key, rows, objects_out)


def combine_hour_parts(
    s3: Callable[[], Any],
    stream: Stream,
    manifest: Manifest | None,
    planned: Sequence[Part],
    parts: Sequence[PartResult],
    writer: StageWriter,
) -> Manifest:
    """The manifest of a split hour: a COPY manifest of its parts' stages, and their objects' accounts.

    Nothing is read: the load step COPYs the part stages and dedupes across them in the warehouse
    (dedupe_parts.sql), so no task holds the hour's keys, and adds each object's cross-part
    duplicates to its count there; ``rows`` is None until then. Only the parts of successful
    tries are listed (the results Airflow hands over), each once and mandatory.
    For an hour that was not split (its ``manifest`` is already made) this returns it unchanged,
    without calling ``s3`` for a client (making one costs about a second).
    """
    if manifest is not None:
        return manifest
    client = s3()
    hour = hour_start(handed_hour(planned[0]))
    parts = sorted(parts, key=lambda result: result["index"])
    if [result["index"] for result in parts] != list(range(len(planned))):
        raise ValueError(f"hour {hour.isoformat()} was split into {len(planned)} parts but got {len(parts)}")
    files = [part["stage_key"] for part in parts if part["stage_key"] is not None]
    staged_key = None
    if files:
        staged_key = split_stage_key(stream, hour, writer)
        with timed("stage write"):
            write_copy_manifest(client, stream.bucket, staged_key, files)
            try:
                keys = [key_file_key(file) for file in files]
                write_copy_manifest(client, stream.bucket, key_manifest_key(staged_key), keys)
            except ObjectChangedError:
                # A part staged by a release before key files: the audit COPYs the parts' whole rows.
                log.info("hour %s: a part has no key file; the hour's audits read its whole rows", hour.isoformat())
    return make_manifest(
        stream.name,
        hour,
        staged_key,
        None,
        [entry for part in parts for entry in part["objects"]],
        count_error_objects(client, stream.bucket, stream_layout(stream), hour),
        [result["stage_key"] for result in parts],
        listed_at=listed_at(planned[0]),
        stage_columns=None if staged_key is None else columns_text(stream.columns),
    )


def _extract_objects(
    client: Any,
    stream: Stream,
    hour: datetime,
    writer: StageWriter,
    objects: list[ObjectInfo],
    listed: datetime,
    limits: WarehouseLimits = POSTGRES_LIMITS,
) -> Manifest:
    key = stage_key(stream, hour, writer)
    rows, staged_key, objects_out = _stage_objects(client, stream, hour, objects, key, limits)
    error_objects = count_error_objects(client, stream.bucket, stream_layout(stream), hour)
    return make_manifest(
        stream.name,
        hour,
        staged_key,
        rows,
        objects_out,
        error_objects,
        listed_at=listed,
        stage_columns=None if staged_key is None else columns_text(stream.columns),
    )


def decode_processes(stream: Stream, objects: Sequence[ObjectInfo]) -> int:
    """How many processes decode these objects: the stream's ``decode_processes``, at most one per
    usable CPU and per object; one for a small batch (workers would cost more than they save), and
    one off Linux (the workers are forked, which macOS does not support once its system frameworks
    have been used, as a proxy lookup does)."""
    if sys.platform != "linux" or sum(item.size for item in objects) < PARALLEL_DECODE_MIN_BYTES:
        return 1
    return max(1, min(stream.decode_processes, usable_cpus(), len(objects)))


def _stage_objects(
    client: Any,
    stream: Stream,
    hour: datetime,
    objects: list[ObjectInfo],
    key: str,
    limits: WarehouseLimits = POSTGRES_LIMITS,
) -> tuple[int, str | None, list[ObjectEntry]]:
    """Stage the objects' deduplicated rows at ``key`` and quarantine their bad records: (rows, stage key or None, object entries)."""
    with tempfile.TemporaryDirectory(prefix="firehose-loader-") as workdir:
        processes = decode_processes(stream, objects)
        sources = _read_sources(client, stream, objects, decompress_here=processes == 1)
        batch = stage_hour(stream, sources, workdir, decode_processes=processes, limits=limits)
        with timed("quarantine write"):
            quarantine_keys = _write_quarantine(client, stream, hour, batch)
        staged_key = None
        if batch.path is not None:
            staged_key = key
            with timed("stage write"), open(batch.path, "rb") as body:
                write_object(client, stream.bucket, staged_key, body, "application/vnd.apache.parquet")
            keys_path = batch.path.with_name("keys.parquet")
            write_key_file(stream, batch.path, keys_path)
            with timed("stage write"), open(keys_path, "rb") as body:
                write_object(client, stream.bucket, key_file_key(staged_key), body, "application/vnd.apache.parquet")
    failpoint("after_stage")
    landed = {item.key: item.last_modified for item in objects}
    objects_out = [
        make_object_entry(stats, quarantine_keys.get(stats.key), landed.get(stats.key)) for stats in batch.objects
    ]
    return batch.rows, staged_key, objects_out
