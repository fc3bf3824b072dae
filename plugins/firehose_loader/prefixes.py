"""Firehose's S3 prefix expressions, parsed once (at config time) into a typed template.

A Firehose prefix is literal text with expressions ``!{namespace:value}`` in it (AWS: "Custom
Prefixes for Amazon S3 Objects"):

* ``!{timestamp:<pattern>}``: the object's time (the arrival of its oldest record) in a Java
  ``DateTimeFormatter`` pattern, in the stream's time zone; every instance in one prefix is the
  same instant. Accepted here: year (``yyyy``, ``uuuu``, ``yy``), month (``MM``, ``M``), day
  (``dd``, ``d``), hour (``HH``, ``H``), quoted text (``'T'``, ``''``) and any other character
  that is not a letter.
* ``!{partitionKeyFromQuery:<name>}`` and ``!{partitionKeyFromLambda:<name>}`` (dynamic
  partitioning): any value, one folder name; the loader finds the values by listing.
* ``!{firehose:random-string}``: a random string, in the prefix or the error prefix.
* ``!{firehose:error-output-type}``: why records failed, in the error prefix only.

A prefix without any expression means what it meant before expressions existed: Firehose
appends ``yyyy/MM/dd/HH/`` to it (for an error prefix, ``<error-output-type>/yyyy/MM/dd/HH/``).
A template must locate one hour (year, month, day and hour fields), or it is refused with the
reason; so is an unknown namespace, an unbalanced ``!{`` or a pattern letter the loader cannot
read back from a key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Literal

NAMESPACES = ("timestamp", "firehose", "partitionKeyFromQuery", "partitionKeyFromLambda")
# What !{firehose:error-output-type} evaluates to for an S3 destination: records a Lambda
# transform failed (or dynamic partitioning could not key) and records Parquet/ORC conversion failed.
ERROR_OUTPUT_TYPES = ("processing-failed", "format-conversion-failed")
# Literal characters of a prefix: S3's safe characters, and "=" for Hive-style folders (year=2026/).
LITERAL = re.compile(r"[A-Za-z0-9!_.*'()=/-]*")
PARTITION_KEY_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
# Pattern letters, by field: (the field's name, the counts accepted).
TIME_LETTERS = {"y": "year", "u": "year", "M": "month", "d": "day", "H": "hour"}
REFUSED_LETTERS = {
    "m": "minute",
    "s": "second",
    "S": "fraction of a second",
    "h": "clock hour (1-12)",
    "K": "hour of am/pm",
    "k": "clock hour (1-24)",
    "a": "am/pm",
}
DEFAULT_TIME = "yyyy/MM/dd/HH"


class PrefixError(ValueError):
    """A prefix the loader cannot read an hour's folders from; the message says why."""


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class TimeField:
    """One field of a timestamp pattern: ``field`` is year, month, day or hour; ``width`` its count of letters."""

    field: Literal["year", "month", "day", "hour"]
    width: int

    def render(self, moment: datetime) -> str:
        if self.field == "year":
            return f"{moment.year % 100:02d}" if self.width == 2 else str(moment.year).zfill(self.width)
        value = {"month": moment.month, "day": moment.day, "hour": moment.hour}[self.field]
        return str(value).zfill(self.width)

    @property
    def regex(self) -> str:
        if self.field == "year":
            return r"\d{2}" if self.width == 2 else r"\d{4,}"
        return r"\d{2}" if self.width == 2 else r"\d{1,2}"


@dataclass(frozen=True)
class PartitionKey:
    source: Literal["query", "lambda"]
    name: str


@dataclass(frozen=True)
class RandomString:
    pass


@dataclass(frozen=True)
class ErrorOutputType:
    pass


Piece = Text | TimeField | PartitionKey | RandomString | ErrorOutputType


@dataclass(frozen=True)
class PrefixTemplate:
    """A prefix as Firehose evaluates it: literal text, time fields and values found by listing.

    ``text`` is the prefix as written; ``pieces`` its parsed form, with the default time folders
    of a prefix without expressions already appended.
    """

    text: str
    pieces: tuple[Piece, ...]
    written_with_expressions: bool

    @property
    def partition_keys(self) -> tuple[PartitionKey, ...]:
        return tuple(piece for piece in self.pieces if isinstance(piece, PartitionKey))

    @property
    def has_error_output_type(self) -> bool:
        return any(isinstance(piece, ErrorOutputType) for piece in self.pieces)

    @property
    def lead(self) -> str:
        """The literal text before the first expression: every key of the layout starts with it."""
        lead = []
        for piece in self.pieces:
            if not isinstance(piece, Text):
                break
            lead.append(piece.text)
        return "".join(lead)


def _java_pattern(pattern: str, where: str) -> list[Text | TimeField]:
    """The fields and literal text of a Java DateTimeFormatter pattern, or PrefixError."""
    pieces: list[Text | TimeField] = []
    position = 0
    while position < len(pattern):
        char = pattern[position]
        if char == "'":
            end = pattern.find("'", position + 1)
            if end < 0:
                raise PrefixError(f"{where}: unbalanced quote in timestamp pattern {pattern!r}")
            # '' is one quote; 'text' is text.
            pieces.append(Text(pattern[position + 1 : end] if end > position + 1 else "'"))
            position = end + 1
            continue
        if char.isalpha():
            count = len(pattern) - position - len(pattern[position:].lstrip(char))
            if char in REFUSED_LETTERS:
                raise PrefixError(
                    f"{where}: timestamp pattern {pattern!r} has a {REFUSED_LETTERS[char]} field "
                    f"({char * count!r}); a folder must hold a whole hour (year, month, day and hour fields only)"
                )
            if char not in TIME_LETTERS:
                raise PrefixError(
                    f"{where}: timestamp pattern letter {char!r} in {pattern!r} is not supported "
                    "(accepted: yyyy, uuuu, yy, MM, M, dd, d, HH, H, quoted text and non-letters)"
                )
            field = TIME_LETTERS[char]
            if field != "year" and count > 2:
                raise PrefixError(
                    f"{where}: {char * count!r} in {pattern!r} writes the {field} as text; use {char * 2!r}"
                )
            pieces.append(TimeField(field, count))  # type: ignore[arg-type]
            position += count
            continue
        if char in "[]{}#":
            raise PrefixError(f"{where}: {char!r} is reserved in a timestamp pattern ({pattern!r})")
        pieces.append(Text(char))
        position += 1
    return pieces


def _check_literal(text: str, where: str, whole: str) -> None:
    if not LITERAL.fullmatch(text):
        bad = sorted({char for char in text if not LITERAL.fullmatch(char)})
        raise PrefixError(f"{where}: {whole!r} has characters {bad} outside [A-Za-z0-9!_.*'()=/-]")


def _merge_text(pieces: list[Piece]) -> tuple[Piece, ...]:
    merged: list[Piece] = []
    for piece in pieces:
        if isinstance(piece, Text) and merged and isinstance(merged[-1], Text):
            merged[-1] = Text(merged[-1].text + piece.text)
        elif not (isinstance(piece, Text) and not piece.text):
            merged.append(piece)
    return tuple(merged)


@lru_cache(maxsize=256)
def parse_prefix(text: str, kind: Literal["prefix", "error_prefix"] = "prefix") -> PrefixTemplate:
    """Parse a prefix (or an error prefix) into its template; PrefixError says why one is refused."""
    where = "error prefix" if kind == "error_prefix" else "prefix"
    pieces: list[Piece] = []
    position = 0
    expressions = False
    while position < len(text):
        start = text.find("!{", position)
        if start < 0:
            _check_literal(text[position:], where, text)
            pieces.append(Text(text[position:]))
            break
        _check_literal(text[position:start], where, text)
        pieces.append(Text(text[position:start]))
        end = text.find("}", start)
        nested = text.find("!{", start + 2)
        if end < 0 or (0 <= nested < end):
            raise PrefixError(f"{where}: unbalanced '!{{' at character {start} of {text!r} (no closing '}}')")
        pieces.extend(_expression(text[start + 2 : end], where, kind))
        expressions = True
        position = end + 1
    if not expressions:
        if kind == "error_prefix":
            pieces += [ErrorOutputType(), Text("/")]
        pieces += [*_java_pattern(DEFAULT_TIME, where), Text("/")]
    template = PrefixTemplate(text, _merge_text(pieces), expressions)
    _check_template(template, where, kind)
    return template


def _expression(body: str, where: str, kind: str) -> list[Piece]:
    namespace, colon, value = body.partition(":")
    if not colon:
        raise PrefixError(f"{where}: expression '!{{{body}}}' has no namespace (write !{{namespace:value}})")
    if namespace not in NAMESPACES:
        raise PrefixError(f"{where}: unknown namespace {namespace!r} in '!{{{body}}}' (known: {', '.join(NAMESPACES)})")
    if namespace == "timestamp":
        if not value:
            raise PrefixError(f"{where}: '!{{timestamp:}}' needs a pattern such as yyyy/MM/dd/HH")
        return list(_java_pattern(value, where))
    if namespace == "firehose":
        if value == "random-string":
            return [RandomString()]
        if value == "error-output-type":
            if kind != "error_prefix":
                raise PrefixError(f"{where}: !{{firehose:error-output-type}} is only allowed in the error prefix")
            return [ErrorOutputType()]
        raise PrefixError(
            f"{where}: unknown firehose value {value!r} in '!{{{body}}}' (known: random-string, error-output-type)"
        )
    if kind == "error_prefix":
        raise PrefixError(f"{where}: '!{{{body}}}': partition keys are not allowed in the error prefix")
    if not PARTITION_KEY_NAME.fullmatch(value):
        raise PrefixError(f"{where}: '!{{{body}}}' needs a partition key name of [A-Za-z0-9_.-]")
    return [PartitionKey("query" if namespace == "partitionKeyFromQuery" else "lambda", value)]


def _check_template(template: PrefixTemplate, where: str, kind: str) -> None:
    text = template.text
    if text.startswith("/") or "//" in text:
        raise PrefixError(f"{where}: {text!r} must not start with '/' or hold an empty folder ('//')")
    if (kind == "prefix" or not template.written_with_expressions) and text and not text.endswith("/"):
        # A bare prefix would match sibling folders (events/2026/01/01/1 is also a prefix of hours 10-19).
        raise PrefixError(f"{where}: {text!r} must end with '/'")
    fields = {piece.field for piece in template.pieces if isinstance(piece, TimeField)}
    if "hour" not in fields:
        raise PrefixError(f"{where}: {text!r} has no hour field (add one, e.g. !{{timestamp:HH}})")
    missing = [name for name in ("year", "month", "day") if name not in fields]
    if missing:
        raise PrefixError(f"{where}: {text!r} cannot locate an hour: no {' or '.join(missing)} field")
    if kind == "error_prefix" and template.written_with_expressions and not template.has_error_output_type:
        # Firehose's own rule: an error prefix with expressions holds !{firehose:error-output-type}.
        raise PrefixError(f"{where}: {text!r} has expressions but no !{{firehose:error-output-type}}")
