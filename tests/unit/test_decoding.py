"""Splitting Firehose objects into records: delimiters, compression, damage, and byte offsets."""

from __future__ import annotations

import gzip
import io
import json
import zipfile
import zlib
from typing import Any

import cramjam
import orjson
import pytest

from firehose_loader.records.decoding import (
    SNAPPY_FRAMED_MAGIC,
    DecodedObject,
    UnreadableObject,
    decode_object,
    decompress,
    split_records,
)

RECORDS: list[dict[str, Any]] = [
    {"id": 1, "name": "alpha", "tags": ["a", "b"]},
    {"id": 2, "name": "beta", "nested": {"x": {"y": [1, 2, {"z": None}]}}},
    {"id": 3, "name": "gämma ☃", "ok": True},
    {"id": 4, "amount": 12.5, "empty": {}},
]


def encode(record: Any) -> bytes:
    return json.dumps(record, ensure_ascii=False).encode("utf-8")


def joined(parts: list[bytes], separators: list[bytes]) -> tuple[bytes, list[int]]:
    """Concatenate parts with the given separators; return the data and each part's start offset."""
    data = b""
    starts = []
    for index, part in enumerate(parts):
        starts.append(len(data))
        data += part
        if index < len(separators):
            data += separators[index]
    return data, starts


def assert_addressable(decoded: DecodedObject, data: bytes) -> None:
    """Every record and bad record can be found again by slicing the decompressed bytes at its offsets."""
    for start, end, record in decoded.records:
        assert orjson.loads(data[start:end]) == record
        assert data[start : start + 1] == b"{"
    for bad in decoded.bad:
        assert bad.raw
        assert data[bad.offset : bad.offset + len(bad.raw)] == bad.raw


def values(decoded: DecodedObject) -> list[dict[str, Any]]:
    return [record for _, _, record in decoded.records]


def starts(decoded: DecodedObject) -> list[int]:
    return [start for start, _, _ in decoded.records]


# --- plain text layouts -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "separator",
    [
        pytest.param(b"\n", id="ndjson"),
        pytest.param(b"\r\n", id="crlf"),
        pytest.param(b"", id="concatenated"),
        pytest.param(b" ", id="space"),
        pytest.param(b"\t", id="tab"),
        pytest.param(b"\n\n", id="blank-line"),
        pytest.param(b" \r\n ", id="mixed-whitespace"),
    ],
)
@pytest.mark.parametrize("trailer", [b"", b"\n", b"\r\n", b"  \n"])
def test_layouts(separator: bytes, trailer: bytes) -> None:
    parts = [encode(record) for record in RECORDS]
    data, expected_starts = joined(parts, [separator] * (len(parts) - 1))
    data += trailer
    decoded = split_records(data)
    assert values(decoded) == RECORDS
    assert starts(decoded) == expected_starts
    assert decoded.bad == []
    assert decoded.raw_count == len(RECORDS)
    assert_addressable(decoded, data)


def test_mixed_separators_between_records() -> None:
    parts = [encode(record) for record in RECORDS]
    separators = [b" ", b"\r\n", b""]  # "} {", then CRLF, then nothing
    data, expected_starts = joined(parts, separators)
    assert b"} {" in data and b"}\r\n{" in data and b"}{" in data
    decoded = split_records(data)
    assert values(decoded) == RECORDS
    assert starts(decoded) == expected_starts
    assert_addressable(decoded, data)


def test_ndjson_then_concatenated_in_one_object() -> None:
    parts = [encode(record) for record in RECORDS]
    data, expected_starts = joined(parts, [b"\n", b"\n", b""])
    decoded = split_records(data)
    assert values(decoded) == RECORDS
    assert starts(decoded) == expected_starts


@pytest.mark.parametrize("separator", [b"", b"\n", b" "])
def test_brace_pairs_inside_strings(separator: bytes) -> None:
    records = [
        {"s": "a}{b"},
        {"s": "}{", "t": "} {", "u": "}\r\n{"},
        {"s": '{"fake": 1}{"fake": 2}'},
        {"id": 9},
    ]
    parts = [encode(record) for record in records]
    data, expected_starts = joined(parts, [separator] * (len(parts) - 1))
    decoded = split_records(data)
    assert values(decoded) == records
    assert starts(decoded) == expected_starts
    assert decoded.bad == []


@pytest.mark.parametrize("separator", [b"\n", b""])
def test_pretty_printed_records(separator: bytes) -> None:
    parts = [json.dumps(record, indent=2, ensure_ascii=False).encode() for record in RECORDS]
    assert all(b"\n" in part for part in parts)
    data, expected_starts = joined(parts, [separator] * (len(parts) - 1))
    data += b"\n"
    decoded = split_records(data)
    assert values(decoded) == RECORDS
    assert starts(decoded) == expected_starts
    assert decoded.bad == []
    assert_addressable(decoded, data)


def test_ndjson_followed_by_pretty_printed() -> None:
    parts = [encode(RECORDS[0]), encode(RECORDS[1]), json.dumps(RECORDS[2], indent=4).encode(), encode(RECORDS[3])]
    data, expected_starts = joined(parts, [b"\n"] * 3)
    decoded = split_records(data)
    assert values(decoded) == RECORDS
    assert starts(decoded) == expected_starts


@pytest.mark.parametrize("body", [b"", b" ", b"\n", b"\r\n\r\n", b" \t\n  \n"])
def test_empty_and_whitespace_only(body: bytes) -> None:
    decoded = decode_object(body)
    assert decoded.records == []
    assert decoded.bad == []
    assert decoded.raw_count == 0
    assert decoded.warning is None


def test_record_offsets_in_ndjson_with_leading_whitespace() -> None:
    data = b'  {"a": 1}\n\t{"b": 2}\n'
    decoded = split_records(data)
    assert starts(decoded) == [2, data.index(b'{"b"')]


# --- damaged records ---------------------------------------------------------------------------------------------

GOOD = [encode({"id": 1, "v": "first"}), encode({"id": 2, "v": "second"}), encode({"id": 3, "v": "third"})]

BAD_IN_NDJSON = [
    pytest.param(b'{"id": 9, "v": }', id="missing-value"),
    pytest.param(b'{"id": 9, "v": tru}', id="bad-literal"),
    pytest.param(b'{"id": 9, "v": "x"', id="truncated-object"),
    pytest.param(b'{"id": 9, "v": "unterminated', id="truncated-string"),
    pytest.param(b'{"id": 9, "v": "\xff\xfe"}', id="invalid-utf8"),
    pytest.param(b'{"id": 9,, "v": 1}', id="double-comma"),
    pytest.param(b"[1, 2, 3]", id="array"),
    pytest.param(b"42", id="number"),
    pytest.param(b'"text"', id="string"),
    pytest.param(b"null", id="null"),
    pytest.param(b'[{"id": 9}]', id="array-of-objects"),
]


@pytest.mark.parametrize("bad", BAD_IN_NDJSON)
@pytest.mark.parametrize("position", [0, 1, 3])
def test_bad_line_in_ndjson(bad: bytes, position: int) -> None:
    """The bad line is reported at its offset; every good line around it is still returned."""
    parts = [*GOOD[:position], bad, *GOOD[position:]]
    data, part_starts = joined(parts, [b"\n"] * len(parts))
    decoded = split_records(data)
    assert values(decoded) == [orjson.loads(part) for part in GOOD]
    assert [start for index, start in enumerate(part_starts) if index != position] == starts(decoded)
    assert len(decoded.bad) == 1
    (reported,) = decoded.bad
    assert reported.offset == part_starts[position]
    assert reported.raw.rstrip(b"\r\n") == bad  # exactness of the tail: test_bad_last_line_raw_excludes_newline
    assert reported.reason
    assert decoded.raw_count == len(GOOD) + 1
    assert_addressable(decoded, data)


BAD_IN_CONCATENATED = [
    pytest.param(b'{"id": 9, "v": }', id="missing-value"),
    pytest.param(b'{"id": 9, "v": tru}', id="bad-literal"),
    pytest.param(b'{"id": 9, "v": "\xff\xfe"}', id="invalid-utf8"),
    pytest.param(b'{"id": 9,, "v": 1}', id="double-comma"),
    pytest.param(b'{"id": 9, "v": 01}', id="leading-zero"),
]


@pytest.mark.parametrize("bad", BAD_IN_CONCATENATED)
@pytest.mark.parametrize("separator", [b"", b" ", b"\r\n"])
def test_bad_record_in_concatenated_data(bad: bytes, separator: bytes) -> None:
    parts = [GOOD[0], bad, GOOD[1], GOOD[2]]
    data, part_starts = joined(parts, [separator] * 3)
    if separator == b"\r\n":
        # the first line is good, the second is not: the scanner takes over mid-object
        assert orjson.loads(data.split(b"\n")[0])
    decoded = split_records(data)
    assert values(decoded) == [orjson.loads(part) for part in GOOD]
    assert starts(decoded) == [part_starts[0], part_starts[2], part_starts[3]]
    (reported,) = decoded.bad
    assert reported.offset == part_starts[1]
    assert reported.raw == bad
    assert_addressable(decoded, data)


def test_several_bad_records_each_at_its_offset() -> None:
    bads = [b"[1]", b'{"a": }', b"7"]
    parts = [GOOD[0], bads[0], GOOD[1], bads[1], bads[2], GOOD[2]]
    data, part_starts = joined(parts, [b"\n"] * len(parts))
    decoded = split_records(data)
    assert values(decoded) == [orjson.loads(part) for part in GOOD]
    assert [(bad.offset, bad.raw) for bad in decoded.bad] == [
        (part_starts[1], bads[0]),
        (part_starts[3], bads[1]),
        (part_starts[4], bads[2]),
    ]


@pytest.mark.parametrize("line_end", [b"\n", b"\r\n"])
def test_bad_last_line_raw_excludes_newline(line_end: bytes) -> None:
    """A quarantined record's raw bytes (and so its length) are the record, not the line break after it."""
    bad = b'{"id": 9, "v": }'
    data = GOOD[0] + line_end + bad + line_end
    (reported,) = split_records(data).bad
    assert reported.offset == len(GOOD[0] + line_end)
    assert reported.raw == bad


def test_truncated_last_record() -> None:
    tail = b'{"id": 4, "v": "fou'
    data = b"\n".join([*GOOD, tail])
    decoded = split_records(data)
    assert values(decoded) == [orjson.loads(part) for part in GOOD]
    (reported,) = decoded.bad
    assert reported.offset == len(data) - len(tail)
    assert reported.raw == tail


# --- compression ---------------------------------------------------------------------------------------------------


def ndjson(count: int) -> tuple[bytes, list[dict[str, Any]]]:
    records = [{"id": index, "name": f"record-{index:05d}", "pad": "x" * (index % 17)} for index in range(count)]
    return b"".join(encode(record) + b"\n" for record in records), records


def test_gzip_detected_by_magic_bytes() -> None:
    data, records = ndjson(50)
    decoded = decode_object(gzip.compress(data))
    assert decoded.compression == "gzip"
    assert decoded.warning is None
    assert decoded.data == data
    assert values(decoded) == records
    assert_addressable(decoded, data)


def test_plain_body_is_not_treated_as_gzip() -> None:
    data, records = ndjson(3)
    decoded = decode_object(data)
    assert decoded.compression == "none"
    assert values(decoded) == records


def test_multi_member_gzip() -> None:
    first, first_records = ndjson(20)
    second = encode({"id": "second-member"}) + encode({"id": "concatenated"})
    decoded = decode_object(gzip.compress(first) + gzip.compress(second))
    assert decoded.warning is None
    assert decoded.data == first + second
    assert values(decoded) == [*first_records, {"id": "second-member"}, {"id": "concatenated"}]
    # offsets continue across members: they are positions in the whole decompressed stream
    assert starts(decoded)[len(first_records)] == len(first)
    assert_addressable(decoded, decoded.data)


def test_gzip_offsets_point_into_decompressed_stream() -> None:
    bad = b'{"id": "broken", }'
    data = GOOD[0] + b"\n" + GOOD[1] + b"\n" + bad + b"\n" + GOOD[2] + b"\n"
    decoded = decode_object(gzip.compress(data))
    (reported,) = decoded.bad
    assert reported.offset == data.index(bad)
    assert data[reported.offset : reported.offset + len(reported.raw)] == bad


@pytest.mark.parametrize("keep", [0.3, 0.5, 0.9])
def test_truncated_gzip_keeps_readable_records(keep: float) -> None:
    data, records = ndjson(400)
    compressed = gzip.compress(data)
    cut = compressed[: int(len(compressed) * keep)]
    readable = zlib.decompressobj(wbits=31).decompress(cut)
    assert 0 < len(readable) < len(data)
    complete_lines = readable.count(b"\n")
    decoded = decode_object(cut)
    assert decoded.compression == "gzip"
    assert decoded.warning
    assert decoded.data == readable
    assert values(decoded) == records[:complete_lines]
    tail = readable[readable.rfind(b"\n") + 1 :]
    assert [bad.raw for bad in decoded.bad] == ([tail] if tail else [])
    assert_addressable(decoded, readable)


def test_gzip_missing_only_its_trailer_warns_but_keeps_everything() -> None:
    data, records = ndjson(30)
    decoded = decode_object(gzip.compress(data)[:-4])
    assert decoded.warning
    assert values(decoded) == records


def test_zip() -> None:
    data, records = ndjson(10)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("part-0000.json", data)
    decoded = decode_object(buffer.getvalue())
    assert decoded.compression == "zip"
    assert values(decoded) == records
    assert decoded.bad == []


def test_corrupt_zip_is_unreadable() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("part", b'{"a": 1}\n')
    with pytest.raises(UnreadableObject):
        decode_object(buffer.getvalue()[:20])


def test_corrupt_snappy_framed_is_unreadable() -> None:
    body = SNAPPY_FRAMED_MAGIC + b"\x00\x10\x00\x00" + b"\x01" * 16
    assert body.startswith(b"\xff\x06\x00\x00sNaPpY")
    with pytest.raises(UnreadableObject, match=r"(?i)snappy"):
        decode_object(body)


NDJSON = b"".join(encode(record) + b"\n" for record in RECORDS)


def hadoop_snappy(body: bytes, block: int = 50, chunk: int = 20) -> bytes:
    """Hadoop's Snappy block format: per block its length, then chunks of <length><raw Snappy>."""
    out = b""
    for start in range(0, len(body), block):
        raw = body[start : start + block]
        out += len(raw).to_bytes(4, "big")
        for piece in range(0, len(raw), chunk):
            compressed = bytes(cramjam.snappy.compress_raw(raw[piece : piece + chunk]))
            out += len(compressed).to_bytes(4, "big") + compressed
    return out


def test_snappy_framing_format_is_detected_by_its_magic_bytes() -> None:
    body = bytes(cramjam.snappy.compress(NDJSON))
    assert body.startswith(SNAPPY_FRAMED_MAGIC)
    decoded = decode_object(body)
    assert decoded.compression == "snappy" and decoded.warning is None
    assert [value for _start, _end, value in decoded.records] == RECORDS
    assert decoded.records[1][0] == len(encode(RECORDS[0])) + 1  # offsets in the decompressed stream


def test_hadoop_snappy_is_read_when_the_stream_declares_it() -> None:
    body = hadoop_snappy(NDJSON)
    assert decompress(body, "HADOOP_SNAPPY") == (NDJSON, "hadoop-snappy", None)
    # Without the declaration the bytes have no magic to tell them: they are read as (broken) text.
    assert decompress(body)[1] == "none"


def test_a_hadoop_snappy_stream_still_reads_gzip_and_plain_objects_by_what_they_are() -> None:
    assert decompress(gzip.compress(NDJSON), "HADOOP_SNAPPY") == (NDJSON, "gzip", None)
    assert decompress(NDJSON, "HADOOP_SNAPPY") == (NDJSON, "none", None)


def test_truncated_hadoop_snappy_keeps_the_whole_blocks_before_the_damage() -> None:
    body = hadoop_snappy(NDJSON)
    plain, compression, warning = decompress(body[:-5], "HADOOP_SNAPPY")
    assert compression == "hadoop-snappy" and warning is not None and "truncated" in warning
    assert NDJSON.startswith(plain) and 0 < len(plain) < len(NDJSON) and len(plain) % 50 == 0
    with pytest.raises(UnreadableObject, match="HADOOP_SNAPPY"):
        decompress(body[:6], "HADOOP_SNAPPY")
