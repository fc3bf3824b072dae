"""Coerce JSON values to the stream's warehouse column types.

Each coercer returns the value as Arrow will store it, or raises
:class:`CoercionError` with a reason that ends up in the quarantine file.
The rules, in short: a missing field or JSON null is NULL; numbers given as
strings are accepted; timestamps are ISO 8601 strings or Unix epoch seconds,
naive ones are taken as UTC; a json column keeps any JSON value as compact text.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation, localcontext
from typing import Any

import orjson
import pyarrow as pa

from firehose_loader.config import ColumnType

INTEGER_TEXT = re.compile(r"[+-]?[0-9]+")
# orjson writes a NUL as \u0000; an escaped backslash before "u0000" is not one.
NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")
INTEGER_RANGES = {"smallint": 2**15, "integer": 2**31, "bigint": 2**63}
ARROW_INTEGERS = {"smallint": pa.int16(), "integer": pa.int32(), "bigint": pa.int64()}
# Redshift stores at most 65535 bytes in a varchar; text means that limit on every warehouse.
TEXT_MAX_BYTES = 65535


class CoercionError(ValueError):
    pass


def arrow_type(column_type: ColumnType) -> pa.DataType:
    name = column_type.name
    if name in ARROW_INTEGERS:
        return ARROW_INTEGERS[name]
    if name == "numeric":
        return pa.decimal128(column_type.precision, column_type.scale)
    return {
        "double precision": pa.float64(),
        "boolean": pa.bool_(),
        "varchar": pa.string(),
        "text": pa.string(),
        "date": pa.date32(),
        "timestamp": pa.timestamp("us"),
        "timestamptz": pa.timestamp("us", tz="UTC"),
        "json": pa.string(),
    }[name]


def _integer(name: str) -> Callable[[Any], int]:
    limit = INTEGER_RANGES[name]

    def coerce(value: Any) -> int:
        if isinstance(value, bool):
            raise CoercionError(f"expected {name}, got a boolean")
        if isinstance(value, int):
            number = value
        elif isinstance(value, float) and value.is_integer():
            number = int(value)
        elif isinstance(value, str) and INTEGER_TEXT.fullmatch(value.strip()):
            number = int(value.strip())
        else:
            raise CoercionError(f"expected {name}, got {_describe(value)}")
        if not -limit <= number < limit:
            raise CoercionError(f"{number} is out of range for {name}")
        return number

    return coerce


def _numeric(precision: int, scale: int) -> Callable[[Any], Decimal]:
    quantum = Decimal(1).scaleb(-scale)
    integer_digits = precision - scale

    def coerce(value: Any) -> Decimal:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise CoercionError(f"expected numeric({precision},{scale}), got {_describe(value)}")
        if isinstance(value, str) and "_" in value:
            raise CoercionError(f"expected numeric({precision},{scale}), got {_describe(value)}")
        try:
            # repr(float) is the shortest text that reads back as the same double,
            # which is the text the producer sent for every ordinary number.
            number = Decimal(
                value.strip() if isinstance(value, str) else repr(value) if isinstance(value, float) else value
            )
        except InvalidOperation:
            raise CoercionError(f"expected numeric({precision},{scale}), got {_describe(value)}") from None
        if not number.is_finite():
            raise CoercionError(f"{value!r} is not a finite number")
        if number.adjusted() > integer_digits:
            raise CoercionError(f"{_describe(value)} does not fit numeric({precision},{scale})")
        # The default context keeps 28 digits; numeric holds up to 38, and rounding needs them all.
        with localcontext() as context:
            context.prec = 2 * 38
            # PostgreSQL and Redshift round half away from zero, as ROUND_HALF_UP does.
            rounded = number.quantize(quantum, rounding=ROUND_HALF_UP)
        if rounded.adjusted() >= integer_digits and rounded != 0:
            raise CoercionError(f"{_describe(value)} does not fit numeric({precision},{scale})")
        return rounded

    return coerce


def _double(value: Any) -> float:
    if isinstance(value, bool):
        raise CoercionError("expected double precision, got a boolean")
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str) and "_" not in value:
        try:
            number = float(value.strip())
        except ValueError:
            raise CoercionError(f"expected double precision, got {_describe(value)}") from None
    else:
        raise CoercionError(f"expected double precision, got {_describe(value)}")
    if not math.isfinite(number):
        raise CoercionError(f"{value!r} is not a finite number")
    return number


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise CoercionError(f"expected boolean, got {_describe(value)}")


def _string(max_chars: int | None) -> Callable[[Any], str]:
    def coerce(value: Any) -> str:
        if isinstance(value, str):
            text = value
        elif isinstance(value, int | float) and not isinstance(value, bool):
            text = str(value)
        else:
            raise CoercionError(f"expected a string, got {_describe(value)}")
        if "\x00" in text:
            raise CoercionError("string contains a NUL character, which the warehouse cannot store")
        if max_chars is not None and len(text) > max_chars:
            raise CoercionError(f"string of {len(text)} characters exceeds varchar({max_chars})")
        if max_chars is None and len(text.encode("utf-8")) > TEXT_MAX_BYTES:
            raise CoercionError(f"string exceeds {TEXT_MAX_BYTES} bytes")
        return text

    return coerce


def _date(value: Any) -> date:
    if not isinstance(value, str):
        raise CoercionError(f"expected a date (YYYY-MM-DD), got {_describe(value)}")
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise CoercionError(f"expected a date (YYYY-MM-DD), got {_describe(value)}") from None


def _datetime(value: Any, kind: str) -> datetime:
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value, tz=UTC)
        except (OverflowError, OSError, ValueError):
            raise CoercionError(f"epoch seconds {value!r} are out of range for {kind}") from None
    if not isinstance(value, str):
        raise CoercionError(f"expected an ISO 8601 {kind} or epoch seconds, got {_describe(value)}")
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise CoercionError(f"expected an ISO 8601 {kind} or epoch seconds, got {_describe(value)}") from None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise CoercionError(f"{value!r} is out of range for {kind}") from None


def _timestamp(value: Any) -> datetime:
    # timestamp without time zone holds UTC wall-clock time.
    return _datetime(value, "timestamp").replace(tzinfo=None)


def _timestamptz(value: Any) -> datetime:
    return _datetime(value, "timestamptz")


def _json(value: Any) -> str:
    text = orjson.dumps(value).decode("utf-8")
    if NUL_ESCAPE.search(text):
        raise CoercionError("JSON contains a NUL character (\\u0000), which the warehouse cannot store")
    if len(text.encode("utf-8")) > 16 * 1024 * 1024:
        raise CoercionError("JSON value exceeds 16 MB")
    return text


def coercer(column_type: ColumnType) -> Callable[[Any], Any]:
    name = column_type.name
    if name in INTEGER_RANGES:
        return _integer(name)
    if name == "numeric":
        assert column_type.precision is not None and column_type.scale is not None
        return _numeric(column_type.precision, column_type.scale)
    if name == "varchar":
        return _string(column_type.length)
    if name == "text":
        return _string(None)
    return {
        "double precision": _double,
        "boolean": _boolean,
        "date": _date,
        "timestamp": _timestamp,
        "timestamptz": _timestamptz,
        "json": _json,
    }[name]


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"
