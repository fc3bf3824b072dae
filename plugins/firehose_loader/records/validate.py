"""One object's bytes → typed Arrow rows, and an account of every record.

Pure functions. The accounting holds per object: ``raw = valid + quarantined``; a record that
does not fit the stream's columns is quarantined whole with its object key, byte offset and reason.
A Parquet or ORC object's rows go through the same coercion, column by column; a row's index
in the file stands where a JSON record's byte offset does (in the stage's ``_firehose_offset``
and in the quarantine, as ``row``).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, time
from decimal import Decimal
from functools import lru_cache, partial
from itertools import repeat
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from firehose_loader.config import Stream
from firehose_loader.records.coercion import POSTGRES_LIMITS, WarehouseLimits, coerce_column, coerce_json_texts
from firehose_loader.records.decoding import (
    BadRecord,
    DecodedObject,
    UnreadableObject,
    columnar_format,
    decompress,
    read_columnar,
    split_records_exact,
    uniform_pieces,
)
from firehose_loader.records.schema import arrow_schema


@dataclass(frozen=True)
class SourceObject:
    key: str
    etag: str
    size: int
    body: bytes
    # decompress(body), when the reader already did it (ISA-L releases the GIL: a reader thread can)
    decompressed: tuple[bytes, str, str | None] | None = field(default=None, compare=False, repr=False)


# A new field's sample value is kept as compact JSON text, cut to this many characters.
SAMPLE_CHARS = 200
JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "object"}


@dataclass
class NewField:
    """A field that records of one object carry but the stream does not declare: how many, which JSON types, an example."""

    name: str
    records: int = 0
    json_types: list[str] = field(default_factory=list)
    sample: str | None = None

    def add(self, value: Any) -> None:
        self.records += 1
        kind = "null" if value is None else JSON_TYPES.get(type(value), type(value).__name__)
        if kind not in self.json_types:
            self.json_types.append(kind)
        if self.sample is None and value is not None:
            self.sample = orjson.dumps(value).decode()[:SAMPLE_CHARS]


def new_fields_of(records: Any, declared: Any) -> list[NewField]:
    """The fields of ``records`` (parsed JSON objects) not in ``declared``, in order of first appearance."""
    found: dict[str, NewField] = {}
    for record in records:
        if not isinstance(record, dict):
            continue
        for name, value in record.items():
            if name not in declared:
                found.setdefault(name, NewField(name)).add(value)
    return list(found.values())


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
    # Fields of the object's records that are not among the stream's columns (schema drift).
    new_fields: list[NewField] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class QuarantinedRecord:
    object_key: str
    offset: int  # the byte offset in the decompressed object, or for a Parquet/ORC object the row index
    reason: str
    raw: bytes
    # "offset" for a JSON record; "row" for a row of a columnar file (its raw is the row as JSON).
    position: str = "offset"

    def as_json_line(self, stream: str, hour: str) -> bytes:
        entry: dict[str, Any] = {
            "stream": stream,
            "hour": hour,
            "object_key": self.object_key,
            self.position: self.offset,
            "length": len(self.raw),
            "reason": self.reason,
        }
        try:
            entry["raw"] = self.raw.decode("utf-8")
        except UnicodeDecodeError:
            entry["raw_base64"] = base64.b64encode(self.raw).decode("ascii")
        return orjson.dumps(entry) + b"\n"


def validate_records(
    stream: Stream, object_key: str, decoded: DecodedObject, limits: WarehouseLimits = POSTGRES_LIMITS
) -> tuple[pa.Table, list[QuarantinedRecord]]:
    """Coerce every record to the stream's columns; a record that does not fit is quarantined whole.

    Column by column (see :func:`~firehose_loader.records.coercion.coerce_column`); a record's reason
    names the first of its columns, in declared order, that is missing or does not fit.
    """
    table, quarantined, _new_fields = _validate_decoded(stream, object_key, decoded, limits)
    return table, quarantined


def _validate_decoded(
    stream: Stream, object_key: str, decoded: DecodedObject, limits: WarehouseLimits = POSTGRES_LIMITS
) -> tuple[pa.Table, list[QuarantinedRecord], list[NewField]]:
    """:func:`validate_records`, and the records' fields that are not among the stream's columns."""
    columns = [list(map(dict.get, decoded.values, repeat(name))) for name in stream.columns]
    # A NUL character can only have come from a \u0000 escape in the object's text (when we have it).
    nul_possible = not decoded.data or b"\\u0000" in decoded.data
    table, quarantined, present = _validate_columns(
        stream,
        object_key,
        columns,
        decoded.starts,
        decoded.ends,
        decoded.data,
        decoded.bad,
        nul_possible,
        limits=limits,
    )
    field_counts = np.fromiter(map(len, decoded.values), dtype=np.int64, count=len(decoded.values))
    flagged = np.flatnonzero(field_counts > present).tolist()
    return table, quarantined, new_fields_of((decoded.values[index] for index in flagged), stream.columns)


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
    row_raw: Callable[[int], bytes] | None = None,
    limits: WarehouseLimits = POSTGRES_LIMITS,
) -> tuple[pa.Table, list[QuarantinedRecord], np.ndarray]:
    """The records' values column by column → rows + quarantine, and per record how many declared fields it has.

    With ``json_as_text`` a json column holds each value's ``orjson.dumps`` text (``b""`` for a
    missing value) instead of the value. With ``row_raw`` (a columnar file) ``starts`` are row
    indexes and a quarantined row's raw bytes are ``row_raw(index)``. ``limits`` are the
    warehouse's (see WarehouseLimits).
    """
    required = set(stream.key) | {stream.order_by}
    reasons: dict[int, str] = {}
    arrays: list[pa.Array] = []
    # Per record, how many declared fields it has with a value (valid, or bad and quarantined): a
    # record with more fields than that has a new field, or a declared one set to null.
    present = np.zeros(len(starts), dtype=np.int64)
    for (name, column_type), values in zip(stream.columns.items(), columns, strict=True):
        if column_type.name == "json" and json_as_text:
            array, errors = coerce_json_texts(values, nul_possible, limits)
        else:
            exact = partial(_exact_value, data, starts, ends, name) if data else None
            array, errors = coerce_column(column_type, values, nul_possible, limits, exact)
        if name in required and limits.ignores_trailing_blanks and pa.types.is_string(array.type):
            errors = {**errors, **_trailing_blank_errors(array, limits)}
        present += array.is_valid().to_numpy(zero_copy_only=False)
        if errors:
            present[list(errors)] += 1
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
            if row_raw is not None:
                quarantined.append(
                    QuarantinedRecord(object_key, start, f"row {start}: {reason}", row_raw(position), "row")
                )
            else:
                quarantined.append(QuarantinedRecord(object_key, start, reason, data[start:end].strip()))
        keep = np.ones(len(starts), dtype=bool)
        keep[list(reasons)] = False
        mask = pa.array(keep)
        arrays = [array.filter(mask) for array in arrays]
        starts = starts[keep]
    arrays.append(pa.repeat(pa.scalar(object_key, pa.string()), len(starts)))
    arrays.append(pa.array(starts, type=pa.int64()))
    quarantined.sort(key=lambda entry: entry.offset)
    return pa.Table.from_arrays(arrays, schema=arrow_schema(stream)), quarantined, present


def _exact_value(data: bytes, starts: Any, ends: Any, name: str, position: int) -> Any:
    """A field of one record as its text holds it: integers of any size, fractions as Decimal.

    Only for the few numbers a double could not hold exactly (orjson reads every number into a
    double or a 64-bit integer); a record that does not read back as an object gives None.
    """
    raw = data[int(starts[position]) : int(ends[position])]
    try:
        record = json.loads(raw, parse_float=Decimal)
    except ValueError:
        return None
    return record.get(name) if isinstance(record, dict) else None


def _trailing_blank_errors(array: pa.Array, limits: WarehouseLimits) -> dict[int, str]:
    """Key and order_by values ending in a blank, where the warehouse compares varchar without trailing blanks.

    Redshift takes 'a1' and 'a1 ' as equal: two keys would merge into one there while the
    deduplication (and PostgreSQL) keeps them apart, and an order_by would tie. Such a record is
    quarantined rather than loaded under a changed key.
    """
    ends_blank = pc.fill_null(pc.ends_with(array, " "), False)
    if not ends_blank.true_count:
        return {}
    return {
        position: (
            f"{array[position].as_py()[-40:]!r} ends in a blank, which {limits.warehouse} ignores when it compares "
            "text ('a1' = 'a1 '); send it without trailing blanks"
        )
        for position in np.flatnonzero(ends_blank.to_numpy(zero_copy_only=False)).tolist()
    }


@lru_cache(maxsize=64)
def _record_reader(columns: tuple[tuple[str, bool], ...]) -> Callable[[list[bytes]], list[list[Any]]]:
    """A loop made for one stream's columns: parse a record, keep its columns' values, drop it.

    Dropping each record at once keeps the parsed objects few and warm (parsing into a list of
    records and reading the columns after takes three times as long); a loop written out per
    column (no inner loop over the columns) is what makes it cheap. A json column keeps the
    value's ``orjson.dumps`` text (``b""`` when missing). ``columns`` are (name, is json) pairs of
    checked identifiers. After the columns comes one more list: each record's number of fields.
    """
    count = len(columns)
    lines = ["def read(pieces, loads, dumps):"]
    lines += [f"    c{index} = []" for index in range(count)]
    lines += [f"    a{index} = c{index}.append" for index in range(count)]
    lines += ["    n = []", "    an = n.append"]
    lines += [
        "    for piece in pieces:",
        "        record = loads(piece)",
        "        get = record.get",
        "        an(len(record))",
    ]
    for index, (name, is_json) in enumerate(columns):
        if is_json:
            lines += [f"        v = get({name!r})", f'        a{index}(b"" if v is None else dumps(v))']
        else:
            lines.append(f"        a{index}(get({name!r}))")
    # The columns, then each record's number of fields (how schema drift is found cheaply).
    lines.append(f"    return [{', '.join(f'c{index}' for index in range(count))}, n]")
    namespace: dict[str, Any] = {}
    exec(compile("\n".join(lines), "<firehose_loader record reader>", "exec"), namespace)
    return partial(namespace["read"], loads=orjson.loads, dumps=orjson.dumps)


def _validate_plain(
    stream: Stream, object_key: str, data: bytes, limits: WarehouseLimits = POSTGRES_LIMITS
) -> tuple[pa.Table, list[QuarantinedRecord], int]:
    """Split and validate one object's decompressed bytes: (valid rows, quarantined records, raw record count)."""
    table, quarantined, raw_count, _new_fields = _validate_plain_and_drift(stream, object_key, data, limits)
    return table, quarantined, raw_count


def _validate_plain_and_drift(
    stream: Stream, object_key: str, data: bytes, limits: WarehouseLimits = POSTGRES_LIMITS
) -> tuple[pa.Table, list[QuarantinedRecord], int, list[NewField]]:
    """:func:`_validate_plain`, and the fields of the records that are not among the stream's columns.

    The common layouts go through :func:`_record_reader`; an object where a piece does not parse
    as a whole record is read again record by record (:func:`split_records_exact`). Only records
    with more fields than declared fields with a value are parsed again to name their new fields.
    """
    uniform = uniform_pieces(data)
    if uniform is not None:
        reader = _record_reader(tuple((name, kind.name == "json") for name, kind in stream.columns.items()))
        try:
            *columns, field_counts = reader(uniform.pieces)
        except (orjson.JSONDecodeError, orjson.JSONEncodeError):
            pass  # a piece that is not one record, or a value that cannot be written back as JSON
        else:
            starts, ends = uniform.offsets()
            nul_possible = b"\\u0000" in data  # JSON text has no other way to write a NUL character
            table, quarantined, present = _validate_columns(
                stream, object_key, columns, starts, ends, data, [], nul_possible, json_as_text=True, limits=limits
            )
            flagged = np.flatnonzero(np.asarray(field_counts, dtype=np.int64) > present).tolist()
            pieces = uniform.pieces
            new_fields = new_fields_of((orjson.loads(pieces[index]) for index in flagged), stream.columns)
            return table, quarantined, len(uniform.pieces), new_fields
    decoded = split_records_exact(data, stream.max_record_bytes)
    decoded.data = data
    table, quarantined, new_fields = _validate_decoded(stream, object_key, decoded, limits)
    return table, quarantined, decoded.raw_count, new_fields


def _as_json_value(value: Any) -> Any:
    """A value read from a columnar file as the JSON value the coercion rules read (ISO text for
    times and dates, exact text for decimals, text for binary that is UTF-8)."""
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return base64.b64encode(value).decode("ascii")
    if isinstance(value, list):
        return [_as_json_value(item) for item in value]
    if isinstance(value, dict):
        return {str(name): _as_json_value(item) for name, item in value.items()}
    return value


def _validate_columnar(
    stream: Stream, object_key: str, data: bytes, file_format: str, limits: WarehouseLimits = POSTGRES_LIMITS
) -> tuple[pa.Table, list[QuarantinedRecord], int]:
    """A Parquet or ORC object's rows, each stream column coerced by the JSON rules: (rows, quarantined, row count).

    A column the file does not have is missing in every row, as a field a JSON record leaves out.
    """
    table = read_columnar(data, file_format)
    count = table.num_rows
    present = set(table.column_names)
    columns = [
        [_as_json_value(value) for value in table.column(name).to_pylist()] if name in present else [None] * count
        for name in stream.columns
    ]
    starts = np.arange(count, dtype=np.int64)

    def row_raw(position: int) -> bytes:
        row = {name: _as_json_value(table.column(name)[position].as_py()) for name in table.column_names}
        return orjson.dumps(row, default=str)

    rows, quarantined, _present = _validate_columns(
        stream, object_key, columns, starts, starts + 1, b"", [], row_raw=row_raw, limits=limits
    )
    return rows, quarantined, count


@dataclass
class ObjectRows:
    """One object decoded and validated: its account, its valid rows and its bad records."""

    stats: ObjectStats
    rows: pa.Table | None  # None when the object is unreadable
    quarantined: list[QuarantinedRecord]
    unreadable: SourceObject | None = None


def decode_and_validate(stream: Stream, source: SourceObject, limits: WarehouseLimits = POSTGRES_LIMITS) -> ObjectRows:
    """Decompress, decode and validate one object (pure: runs in a decode process as well as here)."""
    stats = ObjectStats(key=source.key, etag=source.etag, size=source.size)
    try:
        decompressed = source.decompressed
        plain, compression, warning = (
            decompressed if decompressed is not None else decompress(source.body, stream.compression)
        )
        file_format = columnar_format(plain)
        if file_format is not None:
            compression = file_format
            table, quarantined, stats.records_raw = _validate_columnar(stream, source.key, plain, file_format, limits)
    except UnreadableObject as exc:
        stats.status = "unreadable"
        stats.message = str(exc)
        return ObjectRows(stats, None, [], unreadable=source)
    stats.compression = compression
    if file_format is None:
        table, quarantined, stats.records_raw, stats.new_fields = _validate_plain_and_drift(
            stream, source.key, plain, limits
        )
    stats.records_valid = table.num_rows
    stats.records_quarantined = len(quarantined)
    stats.message = warning
    if stats.records_raw == 0:
        stats.status = "empty"
    elif quarantined or warning:
        stats.status = "partial"
    return ObjectRows(stats, table, quarantined)
