"""Render the SQL templates in ``include/sql``.

Templates get raw names and quote them with the ``ident`` filter, which also
re-checks each name: nothing reaches the warehouse unvalidated. Values (run
id, hour) never enter the text; they travel as bind parameters. The exceptions
are what a statement cannot take as a parameter (Redshift's COPY source and IAM
role): the ``literal`` filter quotes it after checking that nothing in it could
end the literal; and the Redshift Data API's BatchExecuteStatement, which takes no
parameters at all: ``inline_parameters`` writes each bound value as the SQL
literal ``sql_literal`` makes of it, exactly as a client-side binding driver would.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import jinja2
import sqlparse

from firehose_loader.config import IDENTIFIER, PROJECT_ROOT

SQL_DIR = PROJECT_ROOT / "include" / "sql"
# Printable ASCII without the quote, the backslash and the percent sign: such a value cannot end
# a string literal, start an escape, or be taken for a bind parameter by a pyformat driver.
SAFE_LITERAL = re.compile(r"[A-Za-z0-9 !#$&()*+,./:;<=>?@\[\]^_`{|}~-]{1,2048}")


def quote_identifier(name: str) -> str:
    if not isinstance(name, str) or not IDENTIFIER.fullmatch(name):
        raise ValueError(f"refusing to put {name!r} into SQL: not a validated identifier")
    return f'"{name}"'


def quote_qualified(parts: tuple[str, str] | list[str]) -> str:
    return ".".join(quote_identifier(part) for part in parts)


def quote_literal(value: str) -> str:
    if not isinstance(value, str) or not SAFE_LITERAL.fullmatch(value):
        raise ValueError(
            f"refusing to put {value!r} into SQL as a literal: only printable ASCII without quotes, \\ or %"
        )
    return f"'{value}'"


class LiteralError(ValueError):
    """A bound value that has no SQL literal the loader will write (NUL, a lone surrogate, NaN, an aware time)."""


# A string literal's pieces: runs without a backslash, and backslashes. A backslash is written as
# CHR(92) so that the literal means the same on PostgreSQL (standard_conforming_strings on: a
# backslash is itself) and on Redshift (where a backslash in a literal starts an escape).
BACKSLASH_RUNS = re.compile(r"\\+|[^\\]+")
BACKSLASH = "CHR(92)"


def sql_literal(value: bool | int | float | Decimal | str | datetime | date | None) -> str:
    """The SQL literal of a bind value: NULL, TRUE/FALSE, a number, or a quoted string (times as ISO text).

    Strings are quoted with ``'`` doubled; a backslash becomes ``CHR(92)`` joined with ``||``; any
    other character (newlines, Unicode) stays as it is, since the statement travels as UTF-8.
    NUL (which neither warehouse stores in text), a lone surrogate (not UTF-8), a NaN or infinite
    number and a timezone-aware time (the templates cast to ``timestamp``: the loader binds naive
    UTC) are refused with LiteralError. The templates cast every parameter to its type, so a
    time or a number read as text is converted by the warehouse as a bound value would be.
    """
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float | Decimal):
        if not math.isfinite(value):
            raise LiteralError(f"refusing to put {value!r} into SQL: not a finite number")
        return repr(value) if isinstance(value, float) else format(value, "f")
    if isinstance(value, datetime):
        if value.utcoffset() is not None:
            raise LiteralError(f"refusing to put {value!r} into SQL: a timestamp literal is naive UTC")
        return _string_literal(value.isoformat(sep=" "))
    if isinstance(value, date):
        return _string_literal(value.isoformat())
    if isinstance(value, str):
        return _string_literal(value)
    raise LiteralError(f"refusing to put {value!r} into SQL: no literal for a {type(value).__name__}")


def _string_literal(text: str) -> str:
    if "\x00" in text:
        raise LiteralError(f"refusing to put {text[:80]!r} into SQL: it holds NUL, which text cannot store")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise LiteralError(f"refusing to put {text[:80]!r} into SQL: not valid Unicode ({exc.reason})") from None
    if "\\" not in text:
        return "'" + text.replace("'", "''") + "'"
    pieces = [
        " || ".join([BACKSLASH] * len(run)) if run.startswith("\\") else "'" + run.replace("'", "''") + "'"
        for run in BACKSLASH_RUNS.findall(text)
    ]
    return "(" + " || ".join(pieces) + ")"


# A pyformat placeholder, or an escaped percent sign, as psycopg reads a statement with parameters.
PLACEHOLDER = re.compile(r"%\((\w+)\)s|%%|%")


def inline_parameters(statement: str, parameters: Mapping[str, Any]) -> str:
    """The statement with each ``%(name)s`` replaced by the literal of its value, and ``%%`` by ``%``.

    For BatchExecuteStatement, which takes no parameters. A placeholder without a value, or a
    lone ``%``, is refused with LiteralError naming it.
    """

    def replace(match: re.Match[str]) -> str:
        token, name = match.group(0), match.group(1)
        if token == "%%":
            return "%"
        if name is None:
            raise LiteralError(f"a lone % in a statement with parameters: {statement[:120]!r}")
        if name not in parameters:
            raise LiteralError(f"no value for the parameter %({name})s of {statement[:120]!r}")
        return sql_literal(parameters[name])

    return PLACEHOLDER.sub(replace, statement)


def sql_environment(directory: Path) -> jinja2.Environment:
    """A Jinja environment for the SQL templates in ``directory``, with the quoting filters."""
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(directory),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    environment.filters["ident"] = quote_identifier
    environment.filters["qualified"] = quote_qualified
    environment.filters["literal"] = quote_literal
    return environment


ENVIRONMENT = sql_environment(SQL_DIR)


def render(template: str, **context: Any) -> str:
    return ENVIRONMENT.get_template(template).render(**context)


def render_statements(template: str, **context: Any) -> list[str]:
    """Render a template and split it into statements, comments dropped."""
    return split_statements(render(template, **context))


def split_statements(text: str) -> list[str]:
    """The statements of a rendered script, comments dropped."""
    text = sqlparse.format(text, strip_comments=True)
    return [statement.rstrip().rstrip(";") for statement in sqlparse.split(text) if statement.strip()]
