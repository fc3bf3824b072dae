"""An hour's validated rows → its stage: the winners in a local Parquet file, written a row group at a time.

:func:`stage_hour` keeps only what deduplication needs (key, order column, object, offset) and
spills each object's validated rows to a local file, then writes the winners row group by row
group, so its memory grows with the number of keys, not with the JSON bytes. A split hour's
parts are each staged so, and deduplicated across parts in the warehouse (dedupe_parts.sql).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from firehose_loader.config import Stream
from firehose_loader.records.coercion import POSTGRES_LIMITS, WarehouseLimits
from firehose_loader.records.dedupe import choose_winners, count_losers
from firehose_loader.records.pool import decoded_objects
from firehose_loader.records.schema import OFFSET_COLUMN, PROVENANCE_COLUMNS, arrow_schema
from firehose_loader.records.timing import timed
from firehose_loader.records.validate import ObjectRows, ObjectStats, QuarantinedRecord, SourceObject

# Rows per Parquet row group of a stage.
STAGE_ROW_GROUP = 131_072


class HourAccount(Protocol):
    """Where an hour's objects are accounted for as they are decoded."""

    objects: list[ObjectStats]
    quarantined: list[QuarantinedRecord]
    unreadable: list[SourceObject]


def add_object(batch: HourAccount, decoded: ObjectRows) -> pa.Table | None:
    """Record one decoded object in ``batch``'s accounting; its valid rows, or None if unreadable."""
    batch.objects.append(decoded.stats)
    batch.quarantined.extend(decoded.quarantined)
    if decoded.unreadable is not None:
        batch.unreadable.append(decoded.unreadable)
    return decoded.rows


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
    stream: Stream,
    objects: Iterable[SourceObject],
    directory: Path | str,
    *,
    decode_processes: int = 1,
    limits: WarehouseLimits = POSTGRES_LIMITS,
) -> StagedHour:
    """Decode, validate and dedupe one hour's objects into ``directory``/stage.parquet, in bounded memory.

    The same rows and counts as deduplicating all the rows at once (the stage's rows are in the order the
    objects were read, not sorted by key), with ``decode_processes`` decoding side by side. Memory
    holds the objects being decoded (one, or ``decode_processes + 1``) and the key, order column
    and offset of every valid row; the rows themselves wait in a local Arrow file until
    deduplication has chosen the winners. ``limits`` are the warehouse's (a value beyond one is quarantined).
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
        closing(decoded_objects(stream, objects, decode_processes, limits)) as decoded,
    ):
        while True:
            with timed("decode+validate"):
                next_object = next(decoded, None)
            if next_object is None:
                break
            table = add_object(batch, next_object)
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
        winners, losers = choose_winners(stream, pa.concat_tables(keys), object_rank)
        del keys
        duplicates = count_losers(object_rank[losers], [names[index] for index in order])
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


def write_key_file(stream: Stream, stage_path: Path, keys_path: Path) -> None:
    """The stage's key, order_by and provenance columns (in the stage's order) as a Parquet file of their own.

    A lock-free audit COPYs only these into the warehouse to plan the hour (on Redshift a COPY
    fills every column of the file, so the stage itself would bring its whole rows).
    """
    plan = {*stream.key, stream.order_by}
    names = [name for name in arrow_schema(stream).names if name in plan or name in PROVENANCE_COLUMNS]
    with timed("stage write"):
        pq.write_table(pq.read_table(stage_path, columns=names), keys_path, compression="zstd")


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
