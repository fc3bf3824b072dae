"""One hour's objects → validated, deduplicated rows plus an account of every record.

Pure functions: bytes in, an Arrow table and counts out. The accounting holds
per object: ``raw = valid + quarantined`` and ``valid = duplicate + winners``.

Two ways through an hour: :func:`build_hour_batch` keeps the rows in memory (small hours,
tests); :func:`stage_hour` keeps only what deduplication needs (key, order column, object,
offset) and spills each object's validated rows to a local file, then writes the winners to a
Parquet file row group by row group, so its memory grows with the number of keys, not with
the JSON bytes. Both validate column by column and dedupe the same way.
"""

from __future__ import annotations

import base64
import multiprocessing
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import closing, contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field
from functools import lru_cache, partial
from itertools import repeat
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from firehose_loader.coercion import arrow_type, coerce_column, coerce_json_texts
from firehose_loader.config import Stream
from firehose_loader.decoding import (
    BadRecord,
    DecodedObject,
    UnreadableObject,
    decompress,
    split_records_exact,
    uniform_pieces,
)

OBJECT_COLUMN = "_firehose_object"
OFFSET_COLUMN = "_firehose_offset"
# Rows per Parquet row group of a stage.
STAGE_ROW_GROUP = 131_072

_stage_seconds: ContextVar[dict[str, float] | None] = ContextVar("firehose_loader_stage_seconds", default=None)


@contextmanager
def stage_clock() -> Iterator[dict[str, float]]:
    """Collect the wall-clock seconds of each named step inside the block (for ``make bench``)."""
    seconds: dict[str, float] = {}
    token = _stage_seconds.set(seconds)
    try:
        yield seconds
    finally:
        _stage_seconds.reset(token)


@contextmanager
def timed(step: str) -> Iterator[None]:
    """Add the block's wall-clock time to ``step`` when a :func:`stage_clock` is collecting; else nothing."""
    seconds = _stage_seconds.get()
    if seconds is None:
        yield
        return
    started = time.perf_counter()
    try:
        yield
    finally:
        seconds[step] = seconds.get(step, 0.0) + time.perf_counter() - started


@dataclass(frozen=True)
class SourceObject:
    key: str
    etag: str
    size: int
    body: bytes
    # decompress(body), when the reader already did it (ISA-L releases the GIL: a reader thread can)
    decompressed: tuple[bytes, str, str | None] | None = field(default=None, compare=False, repr=False)


@dataclass
class ObjectStats:
    key: str
    etag: str
    size: int
    compression: str = "none"
    records_raw: int = 0
    records_valid: int = 0
    records_quarantined: int = 0
    records_duplicate: int = 0
    # loaded: every record is valid; partial: some quarantined; empty: no records;
    # unreadable: the object could not be decoded at all (kept in quarantine as is).
    status: str = "loaded"
    message: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class QuarantinedRecord:
    object_key: str
    offset: int
    reason: str
    raw: bytes

    def as_json_line(self, stream: str, hour: str) -> bytes:
        entry: dict[str, Any] = {
            "stream": stream,
            "hour": hour,
            "object_key": self.object_key,
            "offset": self.offset,
            "length": len(self.raw),
            "reason": self.reason,
        }
        try:
            entry["raw"] = self.raw.decode("utf-8")
        except UnicodeDecodeError:
            entry["raw_base64"] = base64.b64encode(self.raw).decode("ascii")
        return orjson.dumps(entry) + b"\n"


@dataclass
class HourBatch:
    rows: pa.Table
    objects: list[ObjectStats] = field(default_factory=list)
    quarantined: list[QuarantinedRecord] = field(default_factory=list)
    unreadable: list[SourceObject] = field(default_factory=list)

    @property
    def records_raw(self) -> int:
        return sum(stats.records_raw for stats in self.objects)


def arrow_schema(stream: Stream) -> pa.Schema:
    fields = [pa.field(name, arrow_type(column_type)) for name, column_type in stream.columns.items()]
    fields += [
        pa.field(OBJECT_COLUMN, pa.string(), nullable=False),
        pa.field(OFFSET_COLUMN, pa.int64(), nullable=False),
    ]
    return pa.schema(fields)


def validate_records(
    stream: Stream, object_key: str, decoded: DecodedObject
) -> tuple[pa.Table, list[QuarantinedRecord]]:
    """Coerce every record to the stream's columns; a record that does not fit is quarantined whole.

    Column by column (see :func:`~firehose_loader.coercion.coerce_column`); a record's reason
    names the first of its columns, in declared order, that is missing or does not fit.
    """
    columns = [list(map(dict.get, decoded.values, repeat(name))) for name in stream.columns]
    # A NUL character can only have come from a \u0000 escape in the object's text (when we have it).
    nul_possible = not decoded.data or b"\\u0000" in decoded.data
    return _validate_columns(
        stream, object_key, columns, decoded.starts, decoded.ends, decoded.data, decoded.bad, nul_possible
    )


def _validate_columns(
    stream: Stream,
    object_key: str,
    columns: list[list[Any]],
    starts: Any,
    ends: Any,
    data: bytes,
    bad: list[BadRecord],
    nul_possible: bool = True,
    json_as_text: bool = False,
) -> tuple[pa.Table, list[QuarantinedRecord]]:
    """The records' values column by column → rows + quarantine.

    With ``json_as_text`` a json column holds each value's ``orjson.dumps`` text (``b""`` for a
    missing value) instead of the value.
    """
    required = set(stream.key) | {stream.order_by}
    reasons: dict[int, str] = {}
    arrays: list[pa.Array] = []
    for (name, column_type), values in zip(stream.columns.items(), columns, strict=True):
        if column_type.name == "json" and json_as_text:
            array, errors = coerce_json_texts(values, nul_possible)
        else:
            array, errors = coerce_column(column_type, values, nul_possible)
        for position, message in errors.items():
            reasons.setdefault(position, f"column {name}: {message}")
        if name in required and array.null_count > len(errors):
            missing = f"column {name}: missing (a key or order column must have a value)"
            for position in np.flatnonzero(array.is_null().to_numpy(zero_copy_only=False)).tolist():
                if position not in errors:
                    reasons.setdefault(position, missing)
        arrays.append(array)
    starts = np.asarray(starts, dtype=np.int64)
    quarantined = [QuarantinedRecord(object_key, entry.offset, entry.reason, entry.raw) for entry in bad]
    if reasons:
        ends = np.asarray(ends, dtype=np.int64)
        for position, reason in reasons.items():
            start, end = int(starts[position]), int(ends[position])
            quarantined.append(QuarantinedRecord(object_key, start, reason, data[start:end].strip()))
        keep = np.ones(len(starts), dtype=bool)
        keep[list(reasons)] = False
        mask = pa.array(keep)
        arrays = [array.filter(mask) for array in arrays]
        starts = starts[keep]
    arrays.append(pa.repeat(pa.scalar(object_key, pa.string()), len(starts)))
    arrays.append(pa.array(starts, type=pa.int64()))
    quarantined.sort(key=lambda entry: entry.offset)
    return pa.Table.from_arrays(arrays, schema=arrow_schema(stream)), quarantined


@lru_cache(maxsize=64)
def _record_reader(columns: tuple[tuple[str, bool], ...]) -> Callable[[list[bytes]], list[list[Any]]]:
    """A loop made for one stream's columns: parse a record, keep its columns' values, drop it.

    Dropping each record at once keeps the parsed objects few and warm (parsing into a list of
    records and reading the columns after takes three times as long); a loop written out per
    column (no inner loop over the columns) is what makes it cheap. A json column keeps the
    value's ``orjson.dumps`` text (``b""`` when missing). ``columns`` are (name, is json) pairs of
    checked identifiers.
    """
    count = len(columns)
    lines = ["def read(pieces, loads, dumps):"]
    lines += [f"    c{index} = []" for index in range(count)]
    lines += [f"    a{index} = c{index}.append" for index in range(count)]
    lines += ["    for piece in pieces:", "        get = loads(piece).get"]
    for index, (name, is_json) in enumerate(columns):
        if is_json:
            lines += [f"        v = get({name!r})", f'        a{index}(b"" if v is None else dumps(v))']
        else:
            lines.append(f"        a{index}(get({name!r}))")
    lines.append(f"    return [{', '.join(f'c{index}' for index in range(count))}]")
    namespace: dict[str, Any] = {}
    exec(compile("\n".join(lines), "<firehose_loader record reader>", "exec"), namespace)
    return partial(namespace["read"], loads=orjson.loads, dumps=orjson.dumps)


def _validate_plain(stream: Stream, object_key: str, data: bytes) -> tuple[pa.Table, list[QuarantinedRecord], int]:
    """Split and validate one object's decompressed bytes: (valid rows, quarantined records, raw record count).

    The common layouts go through :func:`_record_reader`; an object where a piece does not parse
    as a whole record is read again record by record (:func:`split_records_exact`).
    """
    uniform = uniform_pieces(data)
    if uniform is not None:
        reader = _record_reader(tuple((name, kind.name == "json") for name, kind in stream.columns.items()))
        try:
            columns = reader(uniform.pieces)
        except (orjson.JSONDecodeError, orjson.JSONEncodeError):
            pass  # a piece that is not one record, or a value that cannot be written back as JSON
        else:
            starts, ends = uniform.offsets()
            nul_possible = b"\\u0000" in data  # JSON text has no other way to write a NUL character
            table, quarantined = _validate_columns(
                stream, object_key, columns, starts, ends, data, [], nul_possible, json_as_text=True
            )
            return table, quarantined, len(uniform.pieces)
    decoded = split_records_exact(data, stream.max_record_bytes)
    decoded.data = data
    table, quarantined = validate_records(stream, object_key, decoded)
    return table, quarantined, decoded.raw_count


def _winners(stream: Stream, keys: pa.Table, object_rank: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dedupe in pandas: positions of the winning rows (ascending) and of the losing rows.

    ``keys`` holds the key columns, the order column and the offset; ``object_rank`` each row's
    object key as its rank among the hour's object keys (the same order as the keys' text).
    Per key the greatest (order_by, object key, offset) wins: sorted by those, the last row of
    each key is its winner.
    """
    import pandas as pd

    frame = keys.select([*stream.key, stream.order_by, OFFSET_COLUMN]).to_pandas(types_mapper=pd.ArrowDtype)
    frame[OBJECT_COLUMN] = object_rank
    frame[OFFSET_COLUMN] = frame[OFFSET_COLUMN].to_numpy(dtype=np.int64)
    ordered = frame.sort_values([stream.order_by, OBJECT_COLUMN, OFFSET_COLUMN], kind="stable")
    is_winner = ~ordered.duplicated(subset=list(stream.key), keep="last").to_numpy()
    positions = ordered.index.to_numpy()
    return np.sort(positions[is_winner]), positions[~is_winner]


def _object_ranks(object_keys: pa.Array) -> tuple[np.ndarray, list[str]]:
    """Each row's object key as its rank in code-point order, and the keys by rank."""
    encoded = object_keys.dictionary_encode()
    names = encoded.dictionary.to_pylist()
    order = sorted(range(len(names)), key=names.__getitem__)
    rank = np.empty(len(names), dtype=np.int64)
    rank[order] = np.arange(len(names))
    return rank[encoded.indices.to_numpy()], [names[index] for index in order]


def dedupe(stream: Stream, rows: pa.Table) -> tuple[pa.Table, dict[str, int]]:
    """Keep one row per key: the greatest (order_by, object key, offset) wins.

    Object key and offset break ties between equal ``order_by`` values, so the
    winner does not depend on listing order or on which run saw the rows first.
    Returns the winners sorted by key and the number of losing rows per object.
    """
    import pandas as pd

    object_rank, names = _object_ranks(rows.column(OBJECT_COLUMN).combine_chunks())
    winners, losers = _winners(stream, rows, object_rank)
    duplicates = _count_losers(object_rank[losers], names)
    chosen = rows.take(pa.array(winners, type=pa.int64()))
    by_key = chosen.select(list(stream.key)).to_pandas(types_mapper=pd.ArrowDtype)
    order = by_key.sort_values(list(stream.key), kind="stable").index.to_numpy()
    return chosen.take(pa.array(order, type=pa.int64())), duplicates


def _count_losers(loser_ranks: np.ndarray, names: list[str]) -> dict[str, int]:
    counts = np.bincount(loser_ranks, minlength=len(names)) if len(loser_ranks) else np.zeros(len(names), np.int64)
    return {names[rank]: int(count) for rank, count in enumerate(counts) if count}


@dataclass
class ObjectRows:
    """One object decoded and validated: its account, its valid rows and its bad records."""

    stats: ObjectStats
    rows: pa.Table | None  # None when the object is unreadable
    quarantined: list[QuarantinedRecord]
    unreadable: SourceObject | None = None


def decode_and_validate(stream: Stream, source: SourceObject) -> ObjectRows:
    """Decompress, decode and validate one object (pure: runs in a decode process as well as here)."""
    stats = ObjectStats(key=source.key, etag=source.etag, size=source.size)
    try:
        decompressed = source.decompressed
        plain, compression, warning = decompressed if decompressed is not None else decompress(source.body)
    except UnreadableObject as exc:
        stats.status = "unreadable"
        stats.message = str(exc)
        return ObjectRows(stats, None, [], unreadable=source)
    stats.compression = compression
    table, quarantined, stats.records_raw = _validate_plain(stream, source.key, plain)
    stats.records_valid = table.num_rows
    stats.records_quarantined = len(quarantined)
    stats.message = warning
    if stats.records_raw == 0:
        stats.status = "empty"
    elif quarantined or warning:
        stats.status = "partial"
    return ObjectRows(stats, table, quarantined)


def decoded_objects(stream: Stream, objects: Iterable[SourceObject], processes: int = 1) -> Iterator[ObjectRows]:
    """The objects decoded, in their order; with ``processes`` > 1 that many worker processes decode side by side.

    Decoding holds the GIL, so threads would not help. The workers are forked, which starts
    them at once without importing anything again, and before ``objects`` is first read, so
    before the reader thread behind it exists (forking a process with threads can copy a
    lock some thread holds). At most ``processes + 1`` objects are out at a time, so memory
    stays bounded as in one process.
    """
    if processes <= 1:
        for source in objects:
            yield decode_and_validate(stream, source)
        return
    with ProcessPoolExecutor(max_workers=processes, mp_context=multiprocessing.get_context("fork")) as pool:
        # Submitting forks every worker now, before the reader thread exists.
        for started in [pool.submit(os.getpid) for _ in range(processes)]:
            started.result()
        pending: deque[Future[ObjectRows]] = deque()
        try:
            for source in objects:
                pending.append(pool.submit(decode_and_validate, stream, source))
                del source
                if len(pending) > processes:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity, which container CPU sets narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _add_object(batch: HourBatch | StagedHour, decoded: ObjectRows) -> pa.Table | None:
    """Record one decoded object in ``batch``'s accounting; its valid rows, or None if unreadable."""
    batch.objects.append(decoded.stats)
    batch.quarantined.extend(decoded.quarantined)
    if decoded.unreadable is not None:
        batch.unreadable.append(decoded.unreadable)
    return decoded.rows


def build_hour_batch(stream: Stream, objects: Iterable[SourceObject]) -> HourBatch:
    """Decode, validate and dedupe one hour's objects, keeping count of every record.

    ``objects`` may be a generator that reads each body on demand: one body is in
    memory at a time, beside the validated columns of the objects before it.
    """
    tables: list[pa.Table] = []
    batch = HourBatch(rows=arrow_schema(stream).empty_table())
    for decoded in decoded_objects(stream, objects):
        table = _add_object(batch, decoded)
        if table is not None:
            tables.append(table)
    if tables:
        rows = pa.concat_tables(tables)
        batch.rows, duplicates = dedupe(stream, rows)
        for stats in batch.objects:
            stats.records_duplicate = duplicates.get(stats.key, 0)
    return batch


@dataclass
class StagedHour:
    """What :func:`stage_hour` leaves: the deduplicated rows in a local Parquet file, and the accounting."""

    path: Path | None = None  # None when the hour has no valid rows
    rows: int = 0
    objects: list[ObjectStats] = field(default_factory=list)
    quarantined: list[QuarantinedRecord] = field(default_factory=list)
    unreadable: list[SourceObject] = field(default_factory=list)

    @property
    def records_raw(self) -> int:
        return sum(stats.records_raw for stats in self.objects)


def stage_hour(
    stream: Stream, objects: Iterable[SourceObject], directory: Path | str, *, decode_processes: int = 1
) -> StagedHour:
    """Decode, validate and dedupe one hour's objects into ``directory``/stage.parquet, in bounded memory.

    The same rows and counts as :func:`build_hour_batch` (the stage's rows are in the order the
    objects were read, not sorted by key), with ``decode_processes`` decoding side by side. Memory
    holds the objects being decoded (one, or ``decode_processes + 1``) and the key, order column
    and offset of every valid row; the rows themselves wait in a local Arrow file until
    deduplication has chosen the winners.
    """
    directory = Path(directory)
    schema = arrow_schema(stream)
    batch = StagedHour()
    spill_path = directory / "rows.arrows"
    key_columns = [*stream.key, stream.order_by, OFFSET_COLUMN]
    keys: list[pa.Table] = []
    object_rows: list[tuple[str, int]] = []
    with (
        pa.OSFile(str(spill_path), "wb") as sink,
        pa.ipc.new_file(sink, schema) as spill,
        closing(decoded_objects(stream, objects, decode_processes)) as decoded,
    ):
        while True:
            with timed("decode+validate"):
                next_object = next(decoded, None)
            if next_object is None:
                break
            table = _add_object(batch, next_object)
            source_key = next_object.stats.key
            del next_object
            if table is None or table.num_rows == 0:
                continue
            with timed("spill"):
                spill.write_table(table, max_chunksize=STAGE_ROW_GROUP)
                keys.append(table.select(key_columns))
                object_rows.append((source_key, table.num_rows))
    if not keys:
        return batch
    with timed("dedupe"):
        names = [name for name, _ in object_rows]
        order = sorted(range(len(names)), key=names.__getitem__)
        rank_of = np.empty(len(names), dtype=np.int64)
        rank_of[order] = np.arange(len(names))
        object_rank = np.repeat(rank_of, [count for _, count in object_rows])
        winners, losers = _winners(stream, pa.concat_tables(keys), object_rank)
        del keys
        duplicates = _count_losers(object_rank[losers], [names[index] for index in order])
        for stats in batch.objects:
            stats.records_duplicate = duplicates.get(stats.key, 0)
        keep = np.zeros(len(object_rank), dtype=bool)
        keep[winners] = True
    with timed("stage write"):
        batch.path = directory / "stage.parquet"
        batch.rows = len(winners)
        _write_winners(_spilled_batches(spill_path), keep, batch.path, schema)
    spill_path.unlink()
    return batch


@dataclass
class CombinedParts:
    """What :func:`combine_parts` leaves: the hour's stage file and the rows each object lost across parts."""

    path: Path | None
    rows: int
    cross_part_duplicates: dict[str, int]


def combine_parts(stream: Stream, part_paths: Sequence[Path], stage_path: Path) -> CombinedParts:
    """Dedupe the stages of an hour's parts (each deduplicated on its own) into one stage file.

    A key's winner over the hour is the greatest (order_by, object key, offset) among the parts'
    winners, so the result is the one :func:`stage_hour` gives for all the objects at once. Only
    the key, order, object and offset columns of every row are in memory, then one row group.
    """
    if not part_paths:
        return CombinedParts(None, 0, {})
    schema = arrow_schema(stream)
    key_columns = [*stream.key, stream.order_by, OFFSET_COLUMN]
    with timed("dedupe"):
        # The object column is read as a dictionary and turned into ranks part by part: as text it
        # would hold a copy of an object key per row (~70 bytes, more than the rest of the row here).
        objects = [
            chunk
            for path in part_paths
            for chunk in pq.read_table(path, columns=[OBJECT_COLUMN], read_dictionary=[OBJECT_COLUMN]).column(0).chunks
        ]
        names = sorted({name for chunk in objects for name in chunk.dictionary.to_pylist()})
        rank_of_name = {name: rank for rank, name in enumerate(names)}
        object_rank = np.concatenate(
            [
                np.array([rank_of_name[name] for name in chunk.dictionary.to_pylist()], dtype=np.int64)[
                    chunk.indices.to_numpy(zero_copy_only=False)
                ]
                for chunk in objects
            ]
            or [np.empty(0, dtype=np.int64)]
        )
        del objects
        keys = pa.concat_tables([pq.read_table(path, columns=key_columns, schema=schema) for path in part_paths])
        if keys.num_rows == 0:
            return CombinedParts(None, 0, {})
        winners, losers = _winners(stream, keys, object_rank)
        del keys
        cross_part_duplicates = _count_losers(object_rank[losers], names)
        keep = np.zeros(len(object_rank), dtype=bool)
        keep[winners] = True
    with timed("stage write"):
        batches = (
            batch
            for path in part_paths
            for batch in pq.ParquetFile(path).iter_batches(batch_size=STAGE_ROW_GROUP, use_threads=False)
        )
        _write_winners(batches, keep, stage_path, schema)
    return CombinedParts(stage_path, len(winners), cross_part_duplicates)


def _spilled_batches(spill_path: Path) -> Iterator[pa.RecordBatch]:
    with pa.OSFile(str(spill_path), "rb") as source:
        reader = pa.ipc.open_file(source)
        for index in range(reader.num_record_batches):
            yield reader.get_batch(index)


def _write_winners(batches: Iterable[pa.RecordBatch], keep: np.ndarray, stage_path: Path, schema: pa.Schema) -> None:
    """Copy the kept rows of ``batches`` (in order, ``keep`` one flag per row) into a zstd Parquet file, a row group at a time."""
    writer: pq.ParquetWriter | None = None
    pending: list[pa.RecordBatch] = []
    pending_rows = 0
    position = 0

    def flush() -> None:
        nonlocal writer, pending, pending_rows
        table = pa.Table.from_batches(pending, schema)
        if writer is None:
            writer = pq.ParquetWriter(
                str(stage_path),
                schema,
                compression="zstd",
                use_dictionary=_dictionary_columns(table),
                write_statistics=False,  # min/max of long JSON strings cost a third of the write; nothing reads them
            )
        writer.write_table(table)
        pending, pending_rows = [], 0

    try:
        for record_batch in batches:
            mask = keep[position : position + record_batch.num_rows]
            position += record_batch.num_rows
            chosen = record_batch.filter(pa.array(mask))
            if chosen.num_rows:
                pending.append(chosen)
                pending_rows += chosen.num_rows
            if pending_rows >= STAGE_ROW_GROUP:
                flush()
        if pending:
            flush()
    finally:
        if writer is not None:
            writer.close()
    assert position == len(keep), "every row was seen once"


def _dictionary_columns(table: pa.Table, sample_rows: int = 10_000) -> list[str]:
    """Columns worth dictionary-encoding: few distinct values in a sample (the object key, an event type).

    Trying a dictionary on a column of unique values (ids, timestamps, JSON) costs more time than
    the whole zstd compression and then falls back to plain encoding anyway.
    """
    sample = table.slice(0, sample_rows)
    return [
        name
        for name in sample.column_names
        if pc.count_distinct(sample.column(name)).as_py() * 10 <= max(sample.num_rows, 1)
    ]
