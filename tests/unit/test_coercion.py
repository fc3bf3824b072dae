"""Coercing JSON values to column types: what is accepted, what it becomes, and what is refused."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest

from firehose_loader.config import ColumnType, parse_column_type
from firehose_loader.records.coercion import TEXT_MAX_BYTES, CoercionError, arrow_type, coercer


def coerce(type_text: str, value: Any) -> Any:
    return coercer(parse_column_type(type_text))(value)


def refused(type_text: str, value: Any) -> str:
    with pytest.raises(CoercionError) as caught:
        coerce(type_text, value)
    return str(caught.value)


# --- integers ------------------------------------------------------------------------------------------------------

BITS = {"smallint": 16, "integer": 32, "bigint": 64}


@pytest.mark.parametrize("type_text", BITS)
def test_integer_range_edges(type_text: str) -> None:
    low, high = -(2 ** (BITS[type_text] - 1)), 2 ** (BITS[type_text] - 1) - 1
    assert coerce(type_text, low) == low
    assert coerce(type_text, high) == high
    assert coerce(type_text, str(high)) == high
    assert coerce(type_text, str(low)) == low
    for outside in (low - 1, high + 1, str(high + 1), str(low - 1)):
        message = refused(type_text, outside)
        assert str(outside) in message
        assert type_text in message


@pytest.mark.parametrize("type_text", BITS)
@pytest.mark.parametrize(
    ("value", "expected"),
    [(0, 0), (-7, -7), (7.0, 7), (-0.0, 0), ("42", 42), (" 42 ", 42), ("+5", 5), ("-5", -5), ("007", 7)],
)
def test_integer_accepts(type_text: str, value: Any, expected: int) -> None:
    result = coerce(type_text, value)
    assert result == expected
    assert type(result) is int


@pytest.mark.parametrize("type_text", BITS)
@pytest.mark.parametrize(
    "value",
    [True, False, 1.5, -0.1, "1.0", "1e3", "", " ", "0x10", "ten", "1 000", [1], {"v": 1}, float("nan"), float("inf")],
)
def test_integer_refuses(type_text: str, value: Any) -> None:
    refused(type_text, value)


def test_boolean_is_not_an_integer_message() -> None:
    assert "boolean" in refused("integer", True)


# --- numeric -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1.005", "1.01"),  # half away from zero, upwards
        ("-1.005", "-1.01"),  # half away from zero, downwards
        ("2.345", "2.35"),
        ("2.344999", "2.34"),
        ("-2.3449", "-2.34"),
        ("0.005", "0.01"),
        ("-0.005", "-0.01"),
        ("0.004", "0.00"),
        (1.005, "1.01"),  # a float rounds as its JSON text, not as its binary value (1.00499999...)
        (2.675, "2.68"),
        (-2.675, "-2.68"),
        (7, "7.00"),
        ("1e2", "100.00"),
        (" 12.5 ", "12.50"),
        ("999.994", "999.99"),
        ("-999.99", "-999.99"),
    ],
)
def test_numeric_rounds_half_away_from_zero(value: Any, expected: str) -> None:
    result = coerce("numeric(5,2)", value)
    assert isinstance(result, Decimal)
    assert result == Decimal(expected)
    assert result.as_tuple().exponent == -2  # always at the column's scale


@pytest.mark.parametrize("value", ["999.995", "1000", 1000, 1e3, "-999.995", "12345.6", "1e3"])
def test_numeric_precision_overflow(value: Any) -> None:
    assert "numeric(5,2)" in refused("numeric(5,2)", value)


def test_numeric_with_only_fractional_digits() -> None:
    assert coerce("numeric(3,3)", "0.9994") == Decimal("0.999")
    refused("numeric(3,3)", "0.9995")  # rounds to 1.000, which needs an integer digit
    refused("numeric(3,3)", 1)


def test_numeric_scale_zero() -> None:
    assert coerce("numeric(3)", "2.5") == Decimal(3)
    assert coerce("numeric(3)", "-2.5") == Decimal(-3)
    assert coerce("numeric(3)", "999.4") == Decimal(999)
    refused("numeric(3)", "999.5")


@pytest.mark.parametrize(
    ("type_text", "text"),
    [
        ("numeric(20,2)", "123456789012345678.91"),
        ("numeric(18,0)", "999999999999999999"),
        ("numeric(28,10)", "123456789012345678.0123456789"),
        ("numeric(38,10)", "1234567890123456789012345678.0123456789"),
        ("numeric(38,0)", "99999999999999999999999999999999999999"),
        ("numeric(38,2)", "-123456789012345678901234567890123456.78"),
    ],
)
def test_numeric_from_string_is_exact(type_text: str, text: str) -> None:
    result = coerce(type_text, text)
    assert result == Decimal(text)
    assert str(result) == text


def test_numeric_from_big_integer_is_exact() -> None:
    value = 10**37 + 1
    assert coerce("numeric(38,0)", value) == Decimal(value)


@pytest.mark.parametrize("value", ["1e50", 10**40, "-1e39"])
def test_numeric_far_too_large_is_refused_not_crashing(value: Any) -> None:
    refused("numeric(38,2)", value)


@pytest.mark.parametrize(
    "value", ["NaN", "nan", "-NaN", "sNaN", "Infinity", "-Infinity", "inf", float("nan"), float("inf"), float("-inf")]
)
def test_numeric_refuses_non_finite(value: Any) -> None:
    refused("numeric(12,2)", value)


@pytest.mark.parametrize("value", [True, False, "", "abc", "1,5", "1.2.3", [1], {"a": 1}])
def test_numeric_refuses_non_numbers(value: Any) -> None:
    refused("numeric(12,2)", value)


# --- double precision and boolean -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"), [(1, 1.0), (-2.5, -2.5), ("3.25", 3.25), (" 1e-3 ", 0.001), (2**53, float(2**53))]
)
def test_double_accepts(value: Any, expected: float) -> None:
    result = coerce("double precision", value)
    assert result == expected
    assert type(result) is float


@pytest.mark.parametrize(
    "value", [True, False, "NaN", "nan", "Infinity", "-inf", "1e400", float("nan"), float("inf"), "x", "", None, [1.0]]
)
def test_double_refuses(value: Any) -> None:
    refused("double precision", value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(True, True), (False, False), ("true", True), ("false", False), ("TRUE", True), (" False ", False)],
)
def test_boolean_accepts(value: Any, expected: bool) -> None:
    assert coerce("boolean", value) is expected


@pytest.mark.parametrize("value", [1, 0, 1.0, "1", "0", "yes", "no", "t", "f", "", "truee", [True]])
def test_boolean_refuses(value: Any) -> None:
    refused("boolean", value)


# --- strings -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["", "abc", "é" * 5, "☃☃☃☃☃", "😀" * 5, "日本語テキ", "a\u0301bcd"],
)
def test_varchar_counts_characters_not_bytes(text: str) -> None:
    assert len(text) <= 5
    assert coerce("varchar(5)", text) == text


@pytest.mark.parametrize("text", ["abcdef", "é" * 6, "😀" * 6, "日本語テキスト"])
def test_varchar_too_long(text: str) -> None:
    assert len(text) > 5
    message = refused("varchar(5)", text)
    assert str(len(text)) in message


def test_varchar_exact_length_in_multibyte_characters() -> None:
    text = "ü" * 64
    assert len(text.encode("utf-8")) == 128
    assert coerce("varchar(64)", text) == text


@pytest.mark.parametrize(("value", "expected"), [(42, "42"), (-1.5, "-1.5"), ("x", "x")])
def test_string_from_numbers(value: Any, expected: str) -> None:
    assert coerce("text", value) == expected
    assert coerce("varchar(10)", value) == expected


@pytest.mark.parametrize("value", [True, None, [], {}, {"a": "b"}])
def test_string_refuses_non_scalars(value: Any) -> None:
    refused("text", value)


@pytest.mark.parametrize("type_text", ["text", "varchar(10)"])
@pytest.mark.parametrize("text", ["\x00", "a\x00b", "end\x00"])
def test_nul_character_refused(type_text: str, text: str) -> None:
    assert "NUL" in refused(type_text, text)


def test_text_limit_is_in_bytes() -> None:
    fits = "é" * (TEXT_MAX_BYTES // 2)
    assert len(fits.encode("utf-8")) <= TEXT_MAX_BYTES
    assert coerce("text", fits) == fits
    refused("text", fits + "é")  # one more two-byte character goes over


# --- dates and times -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [("2026-01-31", date(2026, 1, 31)), (" 2024-02-29 ", date(2024, 2, 29)), ("0001-01-01", date(1, 1, 1))],
)
def test_date_accepts(value: str, expected: date) -> None:
    assert coerce("date", value) == expected


@pytest.mark.parametrize("value", ["2026-02-30", "2025-02-29", "2026-13-01", "31/01/2026", "", "today", 20260131, True])
def test_date_refuses(value: Any) -> None:
    refused("date", value)


OFFSET_CASES = [
    ("2026-01-01T10:00:00+02:00", datetime(2026, 1, 1, 8, tzinfo=UTC)),
    ("2026-01-01T01:30:00+05:30", datetime(2025, 12, 31, 20, tzinfo=UTC)),
    ("2026-01-01T23:15:00-03:00", datetime(2026, 1, 2, 2, 15, tzinfo=UTC)),
    ("2026-01-01T10:00:00Z", datetime(2026, 1, 1, 10, tzinfo=UTC)),
    ("2026-01-01T10:00:00.123456+00:00", datetime(2026, 1, 1, 10, 0, 0, 123456, tzinfo=UTC)),
    ("2026-01-01 10:00:00+01:00", datetime(2026, 1, 1, 9, tzinfo=UTC)),
]


@pytest.mark.parametrize(("text", "expected"), OFFSET_CASES)
def test_timestamptz_with_offset_converted_to_utc(text: str, expected: datetime) -> None:
    result = coerce("timestamptz", text)
    assert result == expected
    assert result.utcoffset() == timedelta(0)


@pytest.mark.parametrize(("text", "expected"), OFFSET_CASES)
def test_timestamp_with_offset_stores_utc_wall_clock(text: str, expected: datetime) -> None:
    result = coerce("timestamp", text)
    assert result.tzinfo is None
    assert result == expected.replace(tzinfo=None)


@pytest.mark.parametrize("type_text", ["timestamp", "timestamptz"])
def test_naive_timestamp_taken_as_utc(type_text: str) -> None:
    result = coerce(type_text, "2026-06-01T12:34:56")
    assert result.replace(tzinfo=None) == datetime(2026, 6, 1, 12, 34, 56)
    if type_text == "timestamptz":
        assert result.utcoffset() == timedelta(0)


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    "expected",
    [
        EPOCH,
        datetime(2026, 1, 1, tzinfo=UTC),
        datetime(2026, 1, 1, 0, 0, 0, 250000, tzinfo=UTC),
        datetime(1969, 12, 31, tzinfo=UTC),
    ],
)
def test_epoch_seconds(expected: datetime) -> None:
    seconds = (expected - EPOCH).total_seconds()
    for value in {seconds, int(seconds)} if seconds.is_integer() else {seconds}:
        assert coerce("timestamptz", value) == expected
        assert coerce("timestamp", value) == expected.replace(tzinfo=None)


@pytest.mark.parametrize("type_text", ["timestamp", "timestamptz"])
@pytest.mark.parametrize(
    "value",
    [
        True,
        "yesterday",
        "2026-01-32T00:00:00",
        "2026-01-01T25:00:00",
        "",
        10**20,
        float("nan"),
        "0001-01-01T00:00:00+01:00",  # before year 1 in UTC
        "9999-12-31T23:00:00-05:00",  # after year 9999 in UTC
        [2026],
    ],
)
def test_timestamp_refuses(type_text: str, value: Any) -> None:
    refused(type_text, value)


# --- json --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        {"b": [1, {"c": None, "d": True}], "a": "x y"},
        [1, 2.5, "three", None, {"nested": {"deep": [[]]}}],
        "a string",
        "☃ ünïcode 😀",
        42,
        -1.5,
        True,
        {},
        [],
    ],
)
def test_json_keeps_value_as_compact_text(value: Any) -> None:
    text = coerce("json", value)
    assert isinstance(text, str)
    assert text == json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    assert json.loads(text) == value


@pytest.mark.parametrize("value", ["\x00", {"k": "a\x00b"}, {"a\x00": 1}, [["\x00"]]])
def test_json_refuses_nul(value: Any) -> None:
    assert "NUL" in refused("json", value)


@pytest.mark.parametrize("value", ["C:\\u0000", {"escape": "\\u0000 is the NUL escape"}])
def test_json_accepts_the_text_backslash_u0000(value: Any) -> None:
    """A literal backslash followed by u0000 is six ordinary characters, not a NUL."""
    text = coerce("json", value)
    assert json.loads(text) == value


# --- arrow types ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("column_type", "expected"),
    [
        (ColumnType("smallint"), pa.int16()),
        (ColumnType("integer"), pa.int32()),
        (ColumnType("bigint"), pa.int64()),
        (ColumnType("numeric", precision=12, scale=2), pa.decimal128(12, 2)),
        (ColumnType("double precision"), pa.float64()),
        (ColumnType("boolean"), pa.bool_()),
        (ColumnType("varchar", length=5), pa.string()),
        (ColumnType("text"), pa.string()),
        (ColumnType("date"), pa.date32()),
        (ColumnType("timestamp"), pa.timestamp("us")),
        (ColumnType("timestamptz"), pa.timestamp("us", tz="UTC")),
        (ColumnType("json"), pa.string()),
    ],
)
def test_arrow_types(column_type: ColumnType, expected: pa.DataType) -> None:
    assert arrow_type(column_type) == expected


@pytest.mark.parametrize(
    ("type_text", "value"),
    [
        ("smallint", -32768),
        ("numeric(20,2)", "-123456789012345678.91"),
        ("timestamptz", "2026-01-01T10:00:00+02:00"),
        ("timestamp", 1767225600.5),
        ("date", "2026-01-31"),
    ],
)
def test_coerced_values_fit_their_arrow_type(type_text: str, value: Any) -> None:
    column_type = parse_column_type(type_text)
    coerced = coercer(column_type)(value)
    array = pa.array([coerced], type=arrow_type(column_type))
    assert array.to_pylist() == [coerced]
