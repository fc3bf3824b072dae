"""The fast paths agree with the reference paths they stand in for, value for value and message for message.

``coerce_column`` (Arrow kernels, per-value coercer for the rest) against ``coercer`` applied to
each value; ``split_records`` (one pass over the common layouts) against ``split_records_exact``
(record by record); ISA-L gunzip against zlib.
"""

from __future__ import annotations

import gzip
import json
import random
import zlib
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pyarrow as pa
import pytest

from firehose_loader.config import parse_column_type
from firehose_loader.records.coercion import CoercionError, arrow_type, coerce_column, coercer
from firehose_loader.records.decoding import (
    UnreadableObject,
    _gunzip_zlib,
    decompress,
    split_records,
    split_records_exact,
)
from firehose_loader.records.validate import _validate_plain, validate_records
from tests.unit.stream_factory import make_stream


def reference(type_text: str, values: list[Any]) -> tuple[list[Any], dict[int, str]]:
    column_type = parse_column_type(type_text)
    coerce = coercer(column_type)
    out: list[Any] = []
    errors: dict[int, str] = {}
    for index, value in enumerate(values):
        if value is None:
            out.append(None)
            continue
        try:
            out.append(coerce(value))
        except CoercionError as exc:
            errors[index] = str(exc)
            out.append(None)
    return pa.array(out, type=arrow_type(column_type)).to_pylist(), errors


def assert_same(type_text: str, values: list[Any]) -> None:
    expected, expected_errors = reference(type_text, values)
    array, errors = coerce_column(parse_column_type(type_text), values)
    assert array.type == arrow_type(parse_column_type(type_text))
    assert errors == expected_errors
    assert array.to_pylist() == expected


POOLS: dict[str, list[Any]] = {
    "smallint": [0, 1, -7, 32767, -32768, 32768, -32769, 7.0, "42", " 42 ", "+5", "007", True, 1.5, "x", [1], 2**70],
    "integer": [0, 2**31 - 1, -(2**31), 2**31, "12", 3.0, False, {"v": 1}, "1e3", -0.0],
    "bigint": [0, 2**63 - 1, -(2**63), 2**63, -(2**63) - 1, 10**30, "9223372036854775807", 5.0, True, "ten"],
    "numeric(12,2)": [
        "969.94",
        "0.5",
        "-0.00",
        "0012.5",
        "12.345",
        "12.355",
        "-12.345",
        "1e3",
        "+5",
        ".5",
        "5.",
        " 1.5",
        "9999999999.99",
        "99999999999.99",
        "9999999999.995",
        "NaN",
        "1_000",
        12,
        12.5,
        0.1,
        True,
        "lots",
        "-0",
        "0",
    ],
    "numeric(3,3)": ["0.9995", "0.5", "0.999", "1", 1, "-0.123", "0.1234"],
    "numeric(5,0)": ["99999", "100000", "12.5", "-5", "0"],
    "double precision": [1, -2.5, 0.1, "3.25", " 1e-3 ", 2**53, 2**53 + 1, 2**64, True, "nan", "inf", "1_0", "x"],
    "boolean": [True, False, "true", "FALSE", " true ", 1, 0, "yes"],
    "varchar(5)": ["abc", "abcde", "abcdef", "ééééé", "éééééé", "a\x00b", 12, 1.5, True, "", "😀😀😀😀😀", ["x"]],
    "text": ["x" * 65535, "x" * 65536, "é" * 32768, "é" * 32767, "ok", 7, "nul\x00", None],
    "date": [
        "2026-01-01",
        "2024-02-29",
        "2023-02-29",
        "2026-02-30",
        "2026-13-01",
        "20260101",
        "0000-01-01",
        " 2026-01-01",
        5,
    ],
    "timestamptz": [
        "2026-01-01T10:00:00Z",
        "2026-01-01T10:00:00+02:00",
        "2026-01-01 10:00:00+01:00",
        "2026-01-01T10:00:00",
        "2026-01-01T10:00:00.5Z",
        "2026-01-01T10:00:00.123456+05:30",
        "2026-01-01T10:00:00.1234567Z",
        "2026-01-01T24:00:00Z",
        "2026-01-01T23:59:60Z",
        "2026-02-30T10:00:00Z",
        "2026-01-01T10:00:00+25:00",
        "2026-01-01T10:00:00+0200",
        "2026-01-01T10:00Z",
        "2026-01-01t10:00:00z",
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:00:00-05:00",
        "2026-01-01T10:00:00-00:00",
        "1900-01-01T00:00:00+23:59",
        "2199-12-31T23:59:59-23:59",
        1767225600,
        1767225600.5,
        True,
        "",
        "yesterday",
    ],
    "timestamp": ["2026-01-01T10:00:00+02:00", "2026-01-01T10:00:00", "2026-01-01T10:00:00.000001Z", 0, "bad"],
    "json": [
        {"a": [1, {"b": None}]},
        [1, 2.5],
        "s",
        3,
        True,
        {},
        "\x00",
        {"k": "a\x00b"},
        "C:\\u0000",
        {"e": "\\u0000"},
    ],
}


@pytest.mark.parametrize("type_text", list(POOLS))
def test_each_value_alone_and_all_together(type_text: str) -> None:
    pool = POOLS[type_text]
    for value in pool:
        assert_same(type_text, [value])
        assert_same(type_text, [None, value, None])
    assert_same(type_text, pool)
    assert_same(type_text, [None] * 3)
    assert_same(type_text, [])


@pytest.mark.parametrize("type_text", list(POOLS))
@pytest.mark.parametrize("seed", range(12))
def test_random_columns(type_text: str, seed: int) -> None:
    rng = random.Random(seed)
    pool = [*POOLS[type_text], None]
    # Mostly the common shape, sometimes one odd value among many good ones.
    good = [value for value in pool if value is not None and not reference(type_text, [value])[1]]
    for size in (1, 5, 200):
        values = [rng.choice(good) if good and rng.random() < 0.8 else rng.choice(pool) for _ in range(size)]
        assert_same(type_text, values)


def test_timestamps_of_every_shape_match_python() -> None:
    rng = random.Random(5)
    values = []
    for _ in range(2000):
        moment = datetime(1900, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.randrange(300 * 365 * 86400))
        text = moment.strftime("%Y-%m-%d") + rng.choice("T ") + moment.strftime("%H:%M:%S")
        if rng.random() < 0.5:
            text += "." + str(rng.randrange(10**6)).zfill(6)[: rng.randrange(1, 7)]
        zone = rng.choice(
            ["", "Z", f"+{rng.randrange(24):02d}:{rng.randrange(60):02d}", f"-{rng.randrange(24):02d}:30"]
        )
        values.append(text + zone)
    assert_same("timestamptz", values)
    assert_same("timestamp", values)


def test_numerics_of_every_shape_match_python() -> None:
    rng = random.Random(6)
    values = []
    for _ in range(2000):
        digits = str(rng.randrange(10 ** rng.randrange(1, 14)))
        text = ("-" if rng.random() < 0.3 else "") + digits
        if rng.random() < 0.7:
            text += "." + str(rng.randrange(10**4)).zfill(4)[: rng.randrange(1, 5)]
        values.append(text)
    assert_same("numeric(12,2)", values)
    assert_same("numeric(20,4)", values)


# --- splitting ------------------------------------------------------------------------------------------------


def as_tuple(decoded: Any) -> tuple[Any, ...]:
    return decoded.records, [(bad.offset, bad.raw, bad.reason) for bad in decoded.bad]


RECORDS = [
    {"id": 1, "s": "plain"},
    {"id": 2, "s": "}{ inside", "n": {"x": [1, {"y": "}{"}]}},
    {"id": 3, "s": "ünïcode ☃"},
    {},
    {"id": 5, "nested": {"a": {"b": {}}}},
]
PIECES = [orjson.dumps(record) for record in RECORDS] + [
    b'{"id": 6, "v": }',
    b"[1, 2]",
    b"7",
    b'{"id": 8,\n  "pretty": true\n}',
    b'{"id":9}{"id":10}',
    b'{"bad utf8": "\xff"}',
]


@pytest.mark.parametrize("seed", range(300))
def test_split_agrees_with_the_record_by_record_reader(seed: int) -> None:
    rng = random.Random(seed)
    good_only = seed % 3 == 0
    pool = PIECES[:5] if good_only else PIECES
    separators = [b"\n"] * 6 + [b""] * 4 + [b"\r\n", b" ", b"\n\n", b" \n"]
    layout = rng.choice(["ndjson", "concatenated", "crlf", "mixed"])
    parts = [rng.choice(pool) for _ in range(rng.randrange(0, 12))]
    if layout == "mixed":
        data = b"".join(part + rng.choice(separators) for part in parts)
    else:
        separator = {"ndjson": b"\n", "concatenated": b"", "crlf": b"\r\n"}[layout]
        data = separator.join(parts) + rng.choice([b"", separator, b"\n"])
    if rng.random() < 0.2:
        data = rng.choice([b" ", b"\n", b"\t"]) + data
    assert as_tuple(split_records(data)) == as_tuple(split_records_exact(data))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\n",
        b"{}",
        b"{}\n",
        b"{}{}",
        b"{}{}\n",
        b"{}\n{}",
        b'{"a":"}{"}{"b":1}',
        b'{"a":"x}{"}',
        b'{"a":1}\r\n{"b":2}\r\n',
        b'{"a":1}\n\n{"b":2}\n',
        b'{"a":1} {"b":2}',
        b' {"a":1}',
        b'{"a":1}\n{"b":2}{"c":3}\n',
        b'{"a":1}\n[1]\n',
    ],
)
def test_split_edge_layouts(data: bytes) -> None:
    assert as_tuple(split_records(data)) == as_tuple(split_records_exact(data))


def test_split_offsets_address_the_records() -> None:
    records = [{"id": index, "text": "x" * (index % 13)} for index in range(500)]
    for separator in (b"\n", b"", b"\r\n"):
        data = separator.join(json.dumps(record).encode() for record in records)
        decoded = split_records(data)
        assert [value for _, _, value in decoded.records] == records
        for start, end, value in decoded.records:
            assert orjson.loads(data[start:end]) == value


# --- gunzip ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "damage",
    ["none", "crc", "length", "truncated", "trailing-zeros", "trailing-garbage", "multi-member", "corrupt-block"],
)
def test_gunzip_matches_zlib(damage: str) -> None:
    data = b"".join(orjson.dumps({"id": index, "pad": "y" * (index % 31)}) + b"\n" for index in range(3000))
    body = bytearray(gzip.compress(data))
    if damage == "crc":
        body[-8] ^= 0xFF
    elif damage == "length":
        body[-2] ^= 0xFF
    elif damage == "truncated":
        body = body[: len(body) // 2]
    elif damage == "trailing-zeros":
        body += b"\x00" * 7
    elif damage == "trailing-garbage":
        body += b"garbage"
    elif damage == "multi-member":
        body += gzip.compress(data[:500])
    elif damage == "corrupt-block":
        body[len(body) // 2] ^= 0x55
    expected_plain, expected_warning = _gunzip_zlib(bytes(body))
    if expected_warning and not expected_plain:
        # Nothing readable at all: the object is unreadable (and kept whole in quarantine).
        with pytest.raises(UnreadableObject):
            decompress(bytes(body))
        return
    plain, compression, warning = decompress(bytes(body))
    assert compression == "gzip"
    assert (plain, warning) == (expected_plain, expected_warning)
    if damage in ("none", "trailing-zeros", "multi-member"):
        assert warning is None
    else:
        assert warning


def test_gunzip_of_an_empty_member() -> None:
    assert decompress(gzip.compress(b"")) == (b"", "gzip", None)
    assert _gunzip_zlib(zlib.compress(b"x")) != (b"x", None)  # not gzip framing: zlib path reports it


# --- validating an object: the one-pass reader against the record-by-record path -------------------------------

VALIDATED_STREAM = make_stream()


def validated_record(rng: random.Random, number: int) -> bytes:
    record: dict[str, Any] = {
        "order_id": rng.choice([number, number, str(number), None, "x", 2**70]),
        "line_no": rng.choice([1, 2, 40000, "3"]),
        "updated_at": rng.choice(["2026-01-01T10:00:00Z", "2026-01-01T10:00:00+02:00", 1767225600, None, "nope"]),
        "qty": rng.choice([1, None, 1.5, "7"]),
        "price": rng.choice(["12.34", 12.345, "1e3", None]),
        "weight": rng.choice([1.5, 2, "3.5", True]),
        "gift": rng.choice([True, "false", None, 1]),
        "sku": rng.choice(["abc", "x" * 40, 12, "a\x00b"]),
        "note": rng.choice(["ok", None, "☃", ""]),
        "ship_date": rng.choice(["2026-01-31", "2026-02-30", None]),
        "created_local": rng.choice(["2026-01-01 10:00:00", "2026-01-01T10:00:00.5"]),
        "attrs": rng.choice([{"a": [1, {"b": None}]}, None, "\x00", [1, "C:\\u0000"], 3]),
    }
    if rng.random() < 0.2:
        record.pop(rng.choice(list(record)))
    return json.dumps(record, ensure_ascii=False).encode()


@pytest.mark.parametrize("seed", range(60))
def test_validating_in_one_pass_matches_record_by_record(seed: int) -> None:
    rng = random.Random(seed)
    parts = [validated_record(rng, number) for number in range(rng.randrange(1, 40))]
    if seed % 4 == 3:
        parts.insert(rng.randrange(len(parts) + 1), rng.choice([b"[1]", b'{"order_id": }', b"7"]))
    separator = rng.choice([b"\n", b"", b"\r\n"])
    data = separator.join(parts) + rng.choice([b"", b"\n"])
    table, quarantined, raw = _validate_plain(VALIDATED_STREAM, "obj", data)
    decoded = split_records_exact(data)
    decoded.data = data
    expected_table, expected_quarantined = validate_records(VALIDATED_STREAM, "obj", decoded)
    assert raw == decoded.raw_count
    assert table.equals(expected_table)
    assert quarantined == expected_quarantined


@pytest.mark.parametrize("separator", [b"\n", b""])
def test_nul_characters_are_found_in_the_one_pass_reader(separator: bytes) -> None:
    """The NUL scans run only where the object's text has a \\u0000 escape; there they still find every NUL."""
    good = b'{"order_id": 1, "line_no": 1, "updated_at": "2026-01-01T10:00:00Z", "sku": "ok", "attrs": {"a": 1}}'
    nul_sku = b'{"order_id": 2, "line_no": 1, "updated_at": "2026-01-01T10:00:00Z", "sku": "a\\u0000b"}'
    nul_json = b'{"order_id": 3, "line_no": 1, "updated_at": "2026-01-01T10:00:00Z", "attrs": ["\\u0000"]}'
    escaped = b'{"order_id": 4, "line_no": 1, "updated_at": "2026-01-01T10:00:00Z", "attrs": "C:\\\\u0000"}'
    data = separator.join([good, nul_sku, nul_json, escaped])
    table, quarantined, raw = _validate_plain(VALIDATED_STREAM, "obj", data)
    assert raw == 4
    assert table.column("order_id").to_pylist() == [1, 4]
    assert [(entry.raw, entry.reason.split(":")[0]) for entry in quarantined] == [
        (nul_sku, "column sku"),
        (nul_json, "column attrs"),
    ]
    assert "NUL" in quarantined[0].reason and "NUL" in quarantined[1].reason


def test_a_value_orjson_cannot_write_goes_to_the_per_value_coercer() -> None:
    """A json value nested too deep for orjson.dumps: the fast reader steps aside and _json decides,
    whatever it decides (quarantine, or the error it raises today)."""
    deep: Any = 1
    for _ in range(300):
        deep = [deep]
    good = b'{"order_id": 1, "line_no": 1, "updated_at": "2026-01-01T10:00:00Z"}'
    record = json.dumps({"order_id": 2, "line_no": 1, "updated_at": "2026-01-01T10:00:00Z", "attrs": deep}).encode()
    data = good + b"\n" + record + b"\n"
    try:
        coercer(parse_column_type("json"))(deep)
    except CoercionError as exc:
        table, quarantined, _ = _validate_plain(VALIDATED_STREAM, "obj", data)
        assert table.num_rows == 1 and [entry.reason for entry in quarantined] == [f"column attrs: {exc}"]
    except Exception as exc:
        with pytest.raises(type(exc)):
            _validate_plain(VALIDATED_STREAM, "obj", data)
    else:
        table, quarantined, _ = _validate_plain(VALIDATED_STREAM, "obj", data)
        assert table.num_rows == 2
