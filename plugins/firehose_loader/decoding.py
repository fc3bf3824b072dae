"""Turn one Firehose object's bytes into JSON records with their byte offsets.

Firehose concatenates records as the producer sent them: newline-delimited,
with no delimiter at all (``{...}{...}``), or a mix, sometimes with CRLF or
spaces between records. Compression is detected by magic bytes, never by the
key's suffix. Offsets are positions in the decompressed stream, so a
quarantined record can be found again with ``zcat | tail -c +OFFSET``.
"""

from __future__ import annotations

import re
import zipfile
import zlib
from bisect import bisect_right
from dataclasses import dataclass, field
from io import BytesIO
from typing import Any

import orjson

GZIP_MAGIC = b"\x1f\x8b"
ZIP_MAGIC = b"PK\x03\x04"
SNAPPY_FRAMED_MAGIC = b"\xff\x06\x00\x00sNaPpY"
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
    # (start offset, end offset, record): the raw bytes stay addressable for quarantine.
    records: list[tuple[int, int, dict[str, Any]]] = field(default_factory=list)
    bad: list[BadRecord] = field(default_factory=list)
    compression: str = "none"
    warning: str | None = None
    data: bytes = b""

    @property
    def raw_count(self) -> int:
        return len(self.records) + len(self.bad)


def _gunzip(body: bytes) -> tuple[bytes, str | None]:
    """Decompress every gzip member; keep what was readable before a corrupt or truncated tail."""
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


def decompress(body: bytes) -> tuple[bytes, str, str | None]:
    """Return (plain bytes, compression name, warning about a damaged tail or None)."""
    if body.startswith(GZIP_MAGIC):
        plain, warning = _gunzip(body)
        return plain, "gzip", warning
    if body.startswith(ZIP_MAGIC):
        try:
            with zipfile.ZipFile(BytesIO(body)) as archive:
                return b"".join(archive.read(name) for name in archive.namelist()), "zip", None
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
            raise UnreadableObject(f"corrupt zip archive: {exc}") from None
    if body.startswith(SNAPPY_FRAMED_MAGIC):
        raise UnreadableObject("Snappy-compressed objects are not supported; set the Firehose compression to GZIP")
    return body, "none", None


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
            out.records.append((position, end, record))
            position = _skip_whitespace(data, end)
            reason = None
            break
        if reason is not None:
            out.bad.append(BadRecord(position, data[position:first_end].rstrip(b"\r\n"), reason))
            position = _skip_whitespace(data, first_end)


def split_records(data: bytes, max_record_bytes: int = 1_048_576) -> DecodedObject:
    """Parse newline-delimited records fast; fall back to the concatenated scanner where a line does not parse."""
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
                out.records.append((offset, line_end, record))
        line_start = line_end + 1
    return out


def decode_object(body: bytes, max_record_bytes: int = 1_048_576) -> DecodedObject:
    """Decompress and split one object. Raises :class:`UnreadableObject` when nothing can be read."""
    plain, compression, warning = decompress(body)
    decoded = split_records(plain, max_record_bytes)
    decoded.compression = compression
    decoded.warning = warning
    decoded.data = plain
    return decoded
