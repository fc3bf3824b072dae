"""Turn one Firehose object's bytes into JSON records with their byte offsets.

Firehose concatenates records as the producer sent them: newline-delimited,
with no delimiter at all (``{...}{...}``), or a mix, sometimes with CRLF or
spaces between records. Compression is detected by magic bytes, never by the
key's suffix: gzip, zip and Snappy's framing format have them. Hadoop's Snappy
block format has none, so an object is read as that only when the stream
declares ``compression: HADOOP_SNAPPY``. Offsets are positions in the
decompressed stream, so a quarantined record can be found again with
``zcat | tail -c +OFFSET``. Parquet and ORC objects (Firehose's record format
conversion) are columnar files, not JSON: :func:`columnar_format` tells them by
their magic bytes and :func:`read_columnar` reads them.
"""

from __future__ import annotations

import re
import zipfile
import zlib
from bisect import bisect_right
from dataclasses import dataclass, field
from io import BytesIO
from typing import Any, cast

import cramjam
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from isal import isal_zlib

GZIP_MAGIC = b"\x1f\x8b"
# isal declares its error class in a way type checkers do not take for an exception class.
ISAL_ERROR = cast(type[Exception], isal_zlib.error)
ZIP_MAGIC = b"PK\x03\x04"
SNAPPY_FRAMED_MAGIC = b"\xff\x06\x00\x00sNaPpY"
PARQUET_MAGIC = b"PAR1"
ORC_MAGIC = b"ORC"
# cramjam's error class, declared in a way type checkers do not take for an exception class.
CRAMJAM_ERROR = cast(type[Exception], cramjam.DecompressionError)
WHITESPACE = b" \t\r\n"
# A place where one record may end and the next begin: a closing brace, optional
# whitespace, an opening brace. Inside a string this is only a candidate; the parse decides.
RECORD_BOUNDARY = re.compile(rb"\}[ \t\r\n]*(?=\{)")
LINE_END = re.compile(rb"\n")


class UnreadableObject(ValueError):
    """The object as a whole cannot be decoded (corrupt or unsupported compression)."""


@dataclass(frozen=True)
class BadRecord:
    offset: int
    raw: bytes
    reason: str


@dataclass
class DecodedObject:
    """The records of one object, column-wise: ``values[i]`` spans ``data[starts[i]:ends[i]]``.

    ``starts`` and ``ends`` are lists or int64 arrays; ``records`` gives the same as
    (start offset, end offset, record) tuples. The raw bytes stay addressable for quarantine.
    """

    values: list[dict[str, Any]] = field(default_factory=list)
    starts: Any = field(default_factory=list)
    ends: Any = field(default_factory=list)
    bad: list[BadRecord] = field(default_factory=list)
    compression: str = "none"
    warning: str | None = None
    data: bytes = b""

    @property
    def records(self) -> list[tuple[int, int, dict[str, Any]]]:
        return [
            (int(start), int(end), value) for start, end, value in zip(self.starts, self.ends, self.values, strict=True)
        ]

    def add(self, start: int, end: int, value: dict[str, Any]) -> None:
        self.starts.append(start)
        self.ends.append(end)
        self.values.append(value)

    @property
    def raw_count(self) -> int:
        return len(self.values) + len(self.bad)


def _gunzip_isal(body: bytes) -> bytes | None:
    """Every gzip member with ISA-L (about twice zlib's speed); None at the first irregularity.

    Only a stream that zlib reads whole in the same way is accepted here: anything else
    (corrupt, truncated, trailing bytes) goes to :func:`_gunzip_zlib`, whose warnings say where.
    """
    chunks: list[bytes] = []
    remaining = body
    while remaining:
        decompressor = isal_zlib.decompressobj(wbits=31)
        try:
            chunks.append(decompressor.decompress(remaining))
            chunks.append(decompressor.flush())
        except ISAL_ERROR:
            return None
        if not decompressor.eof:
            return None
        remaining = decompressor.unused_data.lstrip(b"\x00")
        if remaining and not remaining.startswith(GZIP_MAGIC):
            return None
    return chunks[0] if len(chunks) == 2 and not chunks[1] else b"".join(chunks)


def _gunzip(body: bytes) -> tuple[bytes, str | None]:
    """Decompress every gzip member; keep what was readable before a corrupt or truncated tail."""
    plain = _gunzip_isal(body)
    if plain is not None:
        return plain, None
    return _gunzip_zlib(body)


def _gunzip_zlib(body: bytes) -> tuple[bytes, str | None]:
    chunks: list[bytes] = []
    remaining = body
    consumed = 0
    while remaining:
        decompressor = zlib.decompressobj(wbits=31)
        try:
            chunks.append(decompressor.decompress(remaining))
            chunks.append(decompressor.flush())
        except zlib.error as exc:
            return b"".join(chunks), f"gzip stream corrupt after compressed byte {consumed}: {exc}"
        if not decompressor.eof:
            return b"".join(chunks), f"gzip stream truncated at compressed byte {len(body)}"
        consumed += len(remaining) - len(decompressor.unused_data)
        remaining = decompressor.unused_data.lstrip(b"\x00")
        if remaining and not remaining.startswith(GZIP_MAGIC):
            return b"".join(chunks), f"unexpected bytes after gzip member at compressed byte {consumed}"
    return b"".join(chunks), None


def _hadoop_snappy(body: bytes) -> tuple[bytes, str | None]:
    """Hadoop's Snappy block format: blocks of <uncompressed length> then chunks of <compressed length><raw Snappy>.

    Every length is 4 bytes big-endian; a block's chunks decompress to its uncompressed length.
    What was readable before a damaged or truncated block is kept, with a warning saying where.
    """
    chunks: list[bytes] = []
    position = 0
    total = len(body)
    while position < total:
        block_start = position
        if position + 4 > total:
            return b"".join(chunks), f"Hadoop Snappy stream truncated at compressed byte {block_start}"
        expected = int.from_bytes(body[position : position + 4], "big")
        position += 4
        produced = 0
        block: list[bytes] = []
        while produced < expected:
            if position + 4 > total:
                return b"".join(chunks), f"Hadoop Snappy block at compressed byte {block_start} is truncated"
            length = int.from_bytes(body[position : position + 4], "big")
            position += 4
            if length == 0 or position + length > total:
                return b"".join(chunks), f"Hadoop Snappy block at compressed byte {block_start} is truncated"
            try:
                chunk = bytes(cramjam.snappy.decompress_raw(body[position : position + length]))
            except CRAMJAM_ERROR as exc:
                return b"".join(chunks), f"Hadoop Snappy block at compressed byte {block_start} is corrupt: {exc}"
            position += length
            produced += len(chunk)
            block.append(chunk)
        if produced != expected:
            return b"".join(chunks), (
                f"Hadoop Snappy block at compressed byte {block_start} holds {produced} bytes, not {expected}"
            )
        chunks += block
    return b"".join(chunks), None


def decompress(body: bytes, declared: str = "auto") -> tuple[bytes, str, str | None]:
    """Return (plain bytes, compression name, warning about a damaged tail or None).

    ``declared`` is the stream's ``compression``: it matters only for an object without magic
    bytes, which is Hadoop Snappy when the stream says ``HADOOP_SNAPPY`` and is not plain JSON
    (no Hadoop Snappy object starts with ``{``: its first 4 bytes would declare a 2 GB block).
    """
    if body.startswith(GZIP_MAGIC):
        plain, warning = _gunzip(body)
        if warning and not plain:
            raise UnreadableObject(warning)
        return plain, "gzip", warning
    if body.startswith(ZIP_MAGIC):
        try:
            with zipfile.ZipFile(BytesIO(body)) as archive:
                return b"".join(archive.read(name) for name in archive.namelist()), "zip", None
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
            raise UnreadableObject(f"corrupt zip archive: {exc}") from None
    if body.startswith(SNAPPY_FRAMED_MAGIC):
        try:
            return bytes(cramjam.snappy.decompress(body)), "snappy", None
        except CRAMJAM_ERROR as exc:
            raise UnreadableObject(f"corrupt Snappy (framing format) stream: {exc}") from None
    if declared == "HADOOP_SNAPPY" and body and not body.lstrip(WHITESPACE).startswith(b"{"):
        plain, warning = _hadoop_snappy(body)
        if warning and not plain:
            raise UnreadableObject(f"{warning} (the stream declares compression HADOOP_SNAPPY)")
        return plain, "hadoop-snappy", warning
    return body, "none", None


def columnar_format(data: bytes) -> str | None:
    """``parquet`` or ``orc`` for a columnar file (by its magic bytes), else None."""
    if data.startswith(PARQUET_MAGIC):
        return "parquet"
    if data.startswith(ORC_MAGIC):
        return "orc"
    return None


def read_columnar(data: bytes, file_format: str) -> pa.Table:
    """A Parquet or ORC object as an Arrow table; :class:`UnreadableObject` if it is not one."""
    try:
        if file_format == "parquet":
            return pq.read_table(pa.BufferReader(data))
        import pyarrow.orc  # only here: few streams convert to ORC, and it is slower to import

        return pyarrow.orc.ORCFile(pa.BufferReader(data)).read()
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise UnreadableObject(f"corrupt {file_format} file: {exc}") from None


def _skip_whitespace(data: bytes, position: int) -> int:
    end = len(data)
    while position < end and data[position] in WHITESPACE:
        position += 1
    return position


def _as_record(value: Any) -> dict[str, Any] | None:
    return value if isinstance(value, dict) else None


def _candidate_ends(data: bytes, start: int) -> list[int]:
    """Where a record may end: after a ``}`` that a ``{`` follows, and at every line end."""
    ends = {match.start() + 1 for match in RECORD_BOUNDARY.finditer(data, start)}
    ends.update(match.start() for match in LINE_END.finditer(data, start))
    ends.add(len(data))
    return sorted(ends)


def _scan_concatenated(data: bytes, start: int, max_record_bytes: int, out: DecodedObject) -> None:
    """Split records that may have no delimiter between them, from ``start`` to the end.

    A record is tried up to its nearest candidate end; a cut that leaves it unfinished
    ("unexpected end of data": a ``}{`` inside a string, a pretty-printed record) is widened
    to the next candidate, up to the record size limit. A piece that fails otherwise is
    quarantined alone, up to its nearest candidate end, so one bad line never takes the
    records after it along.
    """
    ends = _candidate_ends(data, start)
    position = _skip_whitespace(data, start)
    while position < len(data):
        index = bisect_right(ends, position)
        first_end = ends[index]
        reason = None
        while index < len(ends):
            end = ends[index]
            try:
                value = orjson.loads(data[position:end])
            except orjson.JSONDecodeError as exc:
                reason = f"invalid JSON: {exc.msg}"
                widen = "end of data" in exc.msg
                if widen and index + 1 < len(ends) and ends[index + 1] - position <= max_record_bytes:
                    index += 1
                    continue
                break
            record = _as_record(value)
            if record is None:
                reason = f"a JSON {type(value).__name__} is not a record (expected an object)"
                first_end = end
                break
            out.add(position, end, record)
            position = _skip_whitespace(data, end)
            reason = None
            break
        if reason is not None:
            out.bad.append(BadRecord(position, data[position:first_end].rstrip(b"\r\n"), reason))
            position = _skip_whitespace(data, first_end)


@dataclass
class UniformPieces:
    """An object in one of the common layouts, cut into the pieces that should each be one record.

    ``pieces[i]`` is ``data[starts[i]:ends[i]]``; every piece starts with ``{``. If every piece
    parses whole as JSON, the pieces are exactly the records :func:`split_records_exact` finds,
    with the same offsets; if one does not, the object needs that record-by-record reader.
    """

    pieces: list[bytes]
    separator: int  # bytes between two pieces (1 for a newline, 0 for none)

    def offsets(self) -> tuple[np.ndarray, np.ndarray]:
        lengths = np.fromiter(map(len, self.pieces), dtype=np.int64, count=len(self.pieces))
        ends = np.cumsum(lengths + self.separator) - self.separator
        return ends - lengths, ends


def uniform_pieces(data: bytes) -> UniformPieces | None:
    """Cut newline-delimited (LF or CRLF, every line an object) or delimiter-less records; None otherwise."""
    if not data:
        return None
    pieces = data.split(b"\n")
    if len(pieces) > 2 or (len(pieces) == 2 and pieces[1]):
        if not pieces[-1]:
            pieces.pop()
        # Every line must start with "{" (so no blank line, no leading whitespace, no continuation):
        # the least and the greatest line start with it exactly when all of them do.
        if not (min(pieces).startswith(b"{") and max(pieces).startswith(b"{")):
            return None
        return UniformPieces(pieces, 1)
    body = pieces[0]  # no newline, or one at the very end
    if not body.startswith(b"{") or not body.endswith(b"}"):
        return None
    # No newline inside: mark each "}{" with one and split there (as fast as a plain split).
    return UniformPieces(body.replace(b"}{", b"}\n{").split(b"\n"), 0)


def split_records(data: bytes, max_record_bytes: int = 1_048_576) -> DecodedObject:
    """Split an object's records: the common layouts in one pass, anything else record by record."""
    uniform = uniform_pieces(data)
    if uniform is not None:
        try:
            values = list(map(orjson.loads, uniform.pieces))
        except orjson.JSONDecodeError:
            pass
        else:
            starts, ends = uniform.offsets()
            return DecodedObject(values=values, starts=starts, ends=ends)
    return split_records_exact(data, max_record_bytes)


def split_records_exact(data: bytes, max_record_bytes: int = 1_048_576) -> DecodedObject:
    """Parse newline-delimited records; fall back to the concatenated scanner where a line does not parse."""
    out = DecodedObject()
    line_start = 0
    total = len(data)
    while line_start < total:
        newline = data.find(b"\n", line_start)
        line_end = total if newline < 0 else newline
        line = data[line_start:line_end]
        if line.strip(WHITESPACE):
            try:
                value = orjson.loads(line)
            except orjson.JSONDecodeError:
                # Not one record per line from here on (concatenated or pretty-printed
                # records, or damage): scan the rest of the object record by record.
                _scan_concatenated(data, line_start, max_record_bytes, out)
                return out
            record = _as_record(value)
            offset = _skip_whitespace(data, line_start)
            if record is None:
                out.bad.append(
                    BadRecord(
                        offset,
                        line.strip(WHITESPACE),
                        f"a JSON {type(value).__name__} is not a record (expected an object)",
                    )
                )
            else:
                out.add(offset, line_end, record)
        line_start = line_end + 1
    return out


def decode_object(
    body: bytes, max_record_bytes: int = 1_048_576, decompressed: tuple[bytes, str, str | None] | None = None
) -> DecodedObject:
    """Decompress and split one object. Raises :class:`UnreadableObject` when nothing can be read.

    ``decompressed`` is :func:`decompress`'s result for ``body`` when the caller already has it
    (the extract step gunzips the next object in a reader thread while this one is parsed).
    """
    plain, compression, warning = decompressed if decompressed is not None else decompress(body)
    decoded = split_records(plain, max_record_bytes)
    decoded.compression = compression
    decoded.warning = warning
    decoded.data = plain
    return decoded
