"""One hour's objects → validated, deduplicated rows plus an account of every record.

Pure functions: bytes in, an Arrow table and counts out. The accounting holds
per object: ``raw = valid + quarantined`` and ``valid = duplicate + winners``.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson
import pandas as pd
import pyarrow as pa

from firehose_loader.coercion import CoercionError, arrow_type, coercer
from firehose_loader.config import Stream
from firehose_loader.decoding import DecodedObject, UnreadableObject, decode_object

OBJECT_COLUMN = "_firehose_object"
OFFSET_COLUMN = "_firehose_offset"


@dataclass(frozen=True)
class SourceObject:
    key: str
    etag: str
    size: int
    body: bytes


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
    """Coerce every record to the stream's columns; a record that does not fit is quarantined whole."""
    coercers = {name: coercer(column_type) for name, column_type in stream.columns.items()}
    required = set(stream.key) | {stream.order_by}
    values: dict[str, list[Any]] = {name: [] for name in stream.columns}
    offsets: list[int] = []
    quarantined = [QuarantinedRecord(object_key, bad.offset, bad.reason, bad.raw) for bad in decoded.bad]
    for start, end, record in decoded.records:
        row: dict[str, Any] = {}
        reason = None
        for name, coerce in coercers.items():
            value = record.get(name)
            if value is None:
                if name in required:
                    reason = f"column {name}: missing (a key or order column must have a value)"
                    break
                row[name] = None
                continue
            try:
                row[name] = coerce(value)
            except CoercionError as exc:
                reason = f"column {name}: {exc}"
                break
        if reason is not None:
            quarantined.append(QuarantinedRecord(object_key, start, reason, decoded.data[start:end].strip()))
            continue
        for name in stream.columns:
            values[name].append(row[name])
        offsets.append(start)
    schema = arrow_schema(stream)
    arrays = [pa.array(values[name], type=schema.field(name).type) for name in stream.columns]
    arrays.append(pa.array([object_key] * len(offsets), type=pa.string()))
    arrays.append(pa.array(offsets, type=pa.int64()))
    quarantined.sort(key=lambda entry: entry.offset)
    return pa.Table.from_arrays(arrays, schema=schema), quarantined


def dedupe(stream: Stream, rows: pa.Table) -> tuple[pa.Table, dict[str, int]]:
    """Keep one row per key: the greatest (order_by, object key, offset) wins.

    Object key and offset break ties between equal ``order_by`` values, so the
    winner does not depend on listing order or on which run saw the rows first.
    Returns the winners sorted by key and the number of losing rows per object.
    """
    sort_columns = [*stream.key, stream.order_by, OBJECT_COLUMN, OFFSET_COLUMN]
    frame = rows.select(sort_columns).to_pandas(types_mapper=pd.ArrowDtype)
    frame["_row"] = range(len(frame))
    ordered = frame.sort_values(sort_columns, kind="stable")
    is_winner = ~ordered.duplicated(subset=list(stream.key), keep="last")
    winners = ordered.loc[is_winner, "_row"].to_numpy()
    losers = ordered.loc[~is_winner, OBJECT_COLUMN]
    duplicates = {str(key): int(count) for key, count in losers.value_counts().items()}
    return rows.take(pa.array(winners, type=pa.int64())), duplicates


def build_hour_batch(stream: Stream, objects: Iterable[SourceObject]) -> HourBatch:
    """Decode, validate and dedupe one hour's objects, keeping count of every record.

    ``objects`` may be a generator that reads each body on demand: one body is in
    memory at a time, beside the validated columns of the objects before it.
    """
    tables: list[pa.Table] = []
    batch = HourBatch(rows=arrow_schema(stream).empty_table())
    for source in objects:
        stats = ObjectStats(key=source.key, etag=source.etag, size=source.size)
        batch.objects.append(stats)
        try:
            decoded = decode_object(source.body, stream.max_record_bytes)
        except UnreadableObject as exc:
            stats.status = "unreadable"
            stats.message = str(exc)
            batch.unreadable.append(source)
            continue
        stats.compression = decoded.compression
        table, quarantined = validate_records(stream, source.key, decoded)
        stats.records_raw = decoded.raw_count
        stats.records_valid = table.num_rows
        stats.records_quarantined = len(quarantined)
        stats.message = decoded.warning
        if stats.records_raw == 0:
            stats.status = "empty"
        elif quarantined or decoded.warning:
            stats.status = "partial"
        tables.append(table)
        batch.quarantined.extend(quarantined)
    if tables:
        rows = pa.concat_tables(tables)
        batch.rows, duplicates = dedupe(stream, rows)
        for stats in batch.objects:
            stats.records_duplicate = duplicates.get(stats.key, 0)
    return batch
