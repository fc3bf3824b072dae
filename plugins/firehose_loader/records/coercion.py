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
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation, localcontext
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from firehose_loader.config import ColumnType

INTEGER_TEXT = re.compile(r"[+-]?[0-9]+")
# orjson writes a NUL as \u0000; an escaped backslash before "u0000" is not one.
NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")
INTEGER_RANGES = {"smallint": 2**15, "integer": 2**31, "bigint": 2**63}
ARROW_INTEGERS = {"smallint": pa.int16(), "integer": pa.int32(), "bigint": pa.int64()}
# Redshift stores at most 65535 bytes in a varchar; text means that limit on every warehouse.
TEXT_MAX_BYTES = 65535
JSON_MAX_BYTES = 16 * 1024 * 1024
# Every decimal of at most 15 significant digits reads back exactly from a double (DBL_DIG); a
# double whose shortest text is longer may stand for a number that was sent with more digits.
DOUBLE_EXACT_DIGITS = 15
DOUBLE_EXACT_INTEGER = 2**53


class CoercionError(ValueError):
    pass


class InexactNumberError(CoercionError):
    """A JSON number that came through a double, which cannot hold it exactly (an integer of 2**53 or
    more, a fraction with more digits than a double keeps): its exact value is in the record's text."""


@dataclass(frozen=True)
class WarehouseLimits:
    """What the warehouse stores, as validation checks it: a value beyond a limit quarantines its record.

    Each dialect has its own (``Dialect.limits``); the default is PostgreSQL's.
    """

    warehouse: str = "PostgreSQL"
    # The most bytes of JSON text a json column takes (PostgreSQL jsonb: the loader's 16 MB;
    # Redshift stages it as varchar(65535) and parses it into SUPER).
    json_max_bytes: int = JSON_MAX_BYTES
    # The most bytes of a varchar value (Redshift counts varchar lengths in bytes, at most 65535;
    # PostgreSQL counts characters and has no byte limit that matters here).
    varchar_max_bytes: int | None = None
    # Whether the warehouse compares varchar values ignoring trailing blanks (Redshift: 'a1' = 'a1 '):
    # then a key or order_by value ending in a blank is quarantined (see validate).
    ignores_trailing_blanks: bool = False


POSTGRES_LIMITS = WarehouseLimits()


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
            if abs(value) >= DOUBLE_EXACT_INTEGER:
                raise InexactNumberError(
                    f"{value!r} came through a double, which cannot hold that integer exactly (send it as a string)"
                )
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
        if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
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
        if isinstance(value, float) and (
            abs(value) >= DOUBLE_EXACT_INTEGER or len(number.as_tuple().digits) > DOUBLE_EXACT_DIGITS
        ):
            raise InexactNumberError(
                f"{value!r} came through a double, which may not hold every digit sent (send it as a string)"
            )
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


def _string(max_chars: int | None, max_bytes: int | None = None, warehouse: str = "") -> Callable[[Any], str]:
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
        if max_bytes is not None and (size := len(text.encode("utf-8"))) > max_bytes:
            raise CoercionError(f"string of {size} bytes exceeds the {max_bytes} bytes a {warehouse} varchar holds")
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


def _json(limits: WarehouseLimits) -> Callable[[Any], str]:
    def coerce(value: Any) -> str:
        try:
            dumped = orjson.dumps(value)
        except orjson.JSONEncodeError as exc:
            # orjson reads 1024 levels of nesting but writes only 254.
            raise CoercionError(f"JSON value cannot be stored: {exc}") from None
        return _json_text(dumped, limits)

    return coerce


def _json_text(dumped: bytes, limits: WarehouseLimits = POSTGRES_LIMITS) -> str:
    """The checks on a value's compact JSON text (as ``orjson.dumps`` wrote it)."""
    text = dumped.decode("utf-8")
    if "\\u0000" in text and NUL_ESCAPE.search(text):
        raise CoercionError("JSON contains a NUL character (\\u0000), which the warehouse cannot store")
    if len(dumped) > limits.json_max_bytes:
        if limits.json_max_bytes == JSON_MAX_BYTES:
            raise CoercionError("JSON value exceeds 16 MB")
        raise CoercionError(
            f"JSON value of {len(dumped)} bytes exceeds the {limits.json_max_bytes} bytes a {limits.warehouse} "
            "json column takes"
        )
    return text


def coercer(column_type: ColumnType, limits: WarehouseLimits = POSTGRES_LIMITS) -> Callable[[Any], Any]:
    name = column_type.name
    if name in INTEGER_RANGES:
        return _integer(name)
    if name == "numeric":
        assert column_type.precision is not None and column_type.scale is not None
        return _numeric(column_type.precision, column_type.scale)
    if name == "varchar":
        return _string(column_type.length, _varchar_bytes(column_type, limits), limits.warehouse)
    if name == "text":
        return _string(None)
    if name == "json":
        return _json(limits)
    return {
        "double precision": _double,
        "boolean": _boolean,
        "date": _date,
        "timestamp": _timestamp,
        "timestamptz": _timestamptz,
    }[name]


def _varchar_bytes(column_type: ColumnType, limits: WarehouseLimits) -> int | None:
    """The byte limit a varchar(n) value can reach (None when n characters always fit: 4 bytes each at most)."""
    assert column_type.length is not None
    if limits.varchar_max_bytes is None or 4 * column_type.length <= limits.varchar_max_bytes:
        return None
    return limits.varchar_max_bytes


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


# --- Column at a time ---------------------------------------------------------------------------------------------------
#
# The same rules as the coercers above, applied to a whole column with Arrow kernels. Each fast
# path accepts only values whose result it knows to be what the per-value coercer returns (plain
# ints, strings, ISO timestamps in the common shape, ...); every other value, and every value a
# fast path flags as bad, goes through the per-value coercer, so the stored values and the
# error messages are the coercer's own.

_YEAR = "(?:19|20|21)[0-9]{2}"  # years whose offsets cannot overflow the datetime range
_DATE = f"{_YEAR}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])"
_TIME = "(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\\.[0-9]{1,6})?"
_ZONE = "(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
FAST_DATE = f"^{_DATE}$"
FAST_TIMESTAMP = f"^{_DATE}[T ]{_TIME}{_ZONE}?$"
FAST_NAIVE_TIMESTAMP = f"^({_DATE}[T ]{_TIME})$"


def _fast_numeric_pattern(precision: int, scale: int) -> str:
    integer_digits = precision - scale
    integer = "0" if integer_digits == 0 else f"(?:0|[1-9][0-9]{{0,{integer_digits - 1}}})"
    fraction = f"(?:\\.[0-9]{{1,{scale}}})?" if scale else ""
    return f"^-?{integer}{fraction}$"


def _infer(values: list[Any]) -> pa.Array | None:
    """The values as an Arrow array of the type they all share, or None (mixed types, huge ints, ...)."""
    try:
        return pa.array(values)
    except (pa.ArrowException, OverflowError, TypeError, ValueError):
        return None


def _positions(mask: pa.Array) -> np.ndarray:
    """Positions where a boolean array is true (null counts as false)."""
    return np.flatnonzero(pc.fill_null(mask, False).to_numpy(zero_copy_only=False))


def coerce_column(
    column_type: ColumnType,
    values: list[Any],
    nul_possible: bool = True,
    limits: WarehouseLimits = POSTGRES_LIMITS,
    exact: Callable[[int], Any] | None = None,
) -> tuple[pa.Array, dict[int, str]]:
    """Coerce a column of JSON values (None for a missing field or null) to its Arrow type.

    Returns the array, null where a value is missing or bad, and the bad positions with the
    reason the per-value coercer gives for them. ``nul_possible=False`` says no value holds a
    NUL character (true of every value parsed from JSON text without ``\\u0000``: JSON has no
    other way to write one), which spares the scan for it. ``limits`` are the warehouse's; ``exact``
    gives the value at a position as its record's text holds it, for a number a double could not hold
    (:class:`InexactNumberError`): without it such a value is quarantined.
    """
    if column_type.name == "json":
        return _json_column(values, nul_possible, limits)
    fast, slow = _fast_column(column_type, values, nul_possible, limits)
    if fast is None:
        nulls = pa.nulls(len(values), arrow_type(column_type))
        return _with_coerced(column_type, nulls, values, None, limits, exact)
    return _with_coerced(column_type, fast, values, slow, limits, exact)


def _fast_column(
    column_type: ColumnType, values: list[Any], nul_possible: bool = True, limits: WarehouseLimits = POSTGRES_LIMITS
) -> tuple[pa.Array | None, np.ndarray]:
    """The column through Arrow kernels, and the positions left to the per-value coercer.

    (None, ...) when no fast path applies: then every value goes through the coercer.
    """
    name = column_type.name
    none = np.empty(0, dtype=np.int64)
    inferred = _infer(values)
    if inferred is None:
        return None, none
    if inferred.type == pa.null():
        return pa.nulls(len(values), arrow_type(column_type)), none
    if name in INTEGER_RANGES and inferred.type == pa.int64():
        limit = INTEGER_RANGES[name]
        if name == "bigint":
            return inferred, none
        return inferred, _positions(pc.or_(pc.less(inferred, -limit), pc.greater_equal(inferred, limit)))
    if name == "double precision" and inferred.type in (pa.float64(), pa.int64()):
        slow = none
        if inferred.type == pa.int64():
            # float(int) is exact up to 2**53; larger ints go to the coercer
            big = pc.greater(pc.abs(inferred), 2**53)
            slow = _positions(big)
            inferred = pc.if_else(big, None, inferred).cast(pa.float64())
        return inferred, np.union1d(slow, _positions(pc.invert(pc.is_finite(inferred))))
    if name == "boolean" and inferred.type == pa.bool_():
        return inferred, none
    if inferred.type != pa.string():
        return None, none
    if name in ("varchar", "text"):
        if name == "varchar":
            bad = pc.greater(pc.utf8_length(inferred), column_type.length)
            if (max_bytes := _varchar_bytes(column_type, limits)) is not None:
                bad = pc.or_(bad, pc.greater(pc.binary_length(inferred), max_bytes))
        else:
            bad = pc.greater(pc.binary_length(inferred), TEXT_MAX_BYTES)
        if nul_possible:
            bad = pc.or_(bad, pc.match_substring(inferred, "\x00"))
        return inferred, _positions(bad)
    if name == "numeric":
        assert column_type.precision is not None and column_type.scale is not None
        pattern = _fast_numeric_pattern(column_type.precision, column_type.scale)
    elif name == "date":
        pattern = FAST_DATE
    elif name in ("timestamp", "timestamptz"):
        pattern = FAST_TIMESTAMP
    else:
        return None, none
    matched = pc.match_substring_regex(inferred, pattern)
    every = matched.true_count == len(inferred) - inferred.null_count
    text = inferred if every else pc.if_else(matched, inferred, None)
    try:
        if name in ("timestamp", "timestamptz"):
            # Without an offset a value is UTC; timestamp keeps the UTC wall-clock time.
            if pc.ends_with(text, "Z").true_count != len(text) - text.null_count:
                text = pc.replace_substring_regex(text, FAST_NAIVE_TIMESTAMP, "\\1Z")
            fast = text.cast(pa.timestamp("us", tz="UTC"))
        else:
            fast = text.cast(arrow_type(column_type))
    except pa.ArrowInvalid:  # e.g. 2026-02-30: the coercer says why, value by value
        return None, none
    if every:
        return fast, np.empty(0, dtype=np.int64)
    return fast, _positions(pc.and_(pc.invert(matched), pc.is_valid(inferred)))


def _with_coerced(
    column_type: ColumnType,
    fast: pa.Array,
    values: list[Any],
    slow: np.ndarray | None,
    limits: WarehouseLimits = POSTGRES_LIMITS,
    exact: Callable[[int], Any] | None = None,
) -> tuple[pa.Array, dict[int, str]]:
    """``fast`` with the per-value coercer's results at the ``slow`` positions (None: every non-null value)."""
    target = arrow_type(column_type)
    if slow is None:
        slow = np.flatnonzero(np.fromiter((value is not None for value in values), dtype=bool, count=len(values)))
    if not len(slow):
        return fast.cast(target), {}
    coerce = coercer(column_type, limits)
    errors: dict[int, str] = {}
    fixed: list[Any] = []
    for index in slow.tolist():
        try:
            try:
                fixed.append(coerce(values[index]))
            except InexactNumberError:
                if exact is None:
                    raise
                fixed.append(coerce(exact(index)))  # the number as the record's text holds it
        except CoercionError as exc:
            errors[index] = str(exc)
            fixed.append(None)
    # Positions 0..n-1 take the fast value, except where the coercer's value (appended after them) replaces it.
    mask = np.zeros(len(values), dtype=bool)
    mask[slow] = True
    base = pc.if_else(pa.array(mask), pa.scalar(None, fast.type), fast).cast(target)
    indices = np.arange(len(values), dtype=np.int64)
    indices[slow] = len(values) + np.arange(len(slow), dtype=np.int64)
    return pa.concat_arrays([base, pa.array(fixed, type=target)]).take(pa.array(indices)), errors


def _json_column(
    values: list[Any], nul_possible: bool = True, limits: WarehouseLimits = POSTGRES_LIMITS
) -> tuple[pa.Array, dict[int, str]]:
    dumps = orjson.dumps
    try:
        texts = [b"" if value is None else dumps(value) for value in values]
    except orjson.JSONEncodeError:
        # A value orjson cannot write (nested too deep, ...): the per-value coercer decides each.
        return _with_coerced(ColumnType("json"), pa.nulls(len(values), pa.string()), values, None, limits)
    return coerce_json_texts(texts, nul_possible, limits)


def coerce_json_texts(
    texts: list[bytes], nul_possible: bool = True, limits: WarehouseLimits = POSTGRES_LIMITS
) -> tuple[pa.Array, dict[int, str]]:
    """A json column from its values' ``orjson.dumps`` texts, ``b""`` for a missing value or null.

    (No value dumps to empty text, so ``b""`` cannot be mistaken for one.)
    """
    count = len(texts)
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=count)
    data = b"".join(texts)
    valid = lengths > 0
    if len(data) < 2**31:
        offsets = np.zeros(count + 1, dtype=np.int32)
        np.cumsum(lengths, out=offsets[1:])
        validity = None if valid.all() else pa.array(valid).buffers()[1]
        nulls = count - int(np.count_nonzero(valid))
        buffers = [validity, pa.py_buffer(offsets), pa.py_buffer(data)]
        array = pa.Array.from_buffers(pa.binary(), count, buffers, null_count=nulls)
    else:  # more than 2 GiB of JSON in one object: let Arrow lay it out
        array = pa.array([text if text else None for text in texts], type=pa.binary())
    errors: dict[int, str] = {}
    # Only a text that holds \u0000 or is huge can fail; _json_text decides those.
    suspicious = np.flatnonzero(lengths > limits.json_max_bytes)
    if nul_possible and b"\\u0000" in data:
        suspicious = np.union1d(suspicious, _positions(pc.match_substring(array, "\\u0000")))
    for index in suspicious.tolist():
        try:
            _json_text(texts[index], limits)
        except CoercionError as exc:
            errors[index] = str(exc)
    if errors:
        mask = np.zeros(count, dtype=bool)
        mask[list(errors)] = True
        array = pc.if_else(pa.array(mask), pa.scalar(None, pa.binary()), array)
    # orjson writes UTF-8 only: the bytes are valid string data as they are.
    return array.view(pa.string()), errors
