"""The target's column types against the declared ones, modifiers included: checked before any row changes.

A column whose type cannot hold every value of the declared type (``varchar(64)`` where
``varchar(128)`` is declared, ``numeric(12,2)`` for ``numeric(14,4)``, another base type) fails
the load at once with the exact ``ALTER TABLE`` that fixes it; the loader never changes a type
itself. A wider column than declared (``varchar(256)`` for ``varchar(128)``) holds every value
and is accepted, so the ALTER may come before or after the edit of the streams file.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from firehose_loader.warehouse.protocol import Dialect, TargetTypeError
from firehose_loader.warehouse.render import render

# information_schema.columns.data_type spellings → the spelling Dialect.column_type gives.
CATALOG_NAMES = {
    "timestamp with time zone": "timestamptz",
    "timestamp without time zone": "timestamp",
    "character varying": "varchar",
}
# PostgreSQL's text and varchar take the same binary COPY form; text holds what Redshift's
# varchar(65535) holds, the most any declared string may be.
TEXT_LENGTH = 65535
SIZED = re.compile(r"^(varchar|numeric)\((\d+)(?:,(\d+))?\)$")


def catalog_type(data_type: str, length: int | None, precision: int | None, scale: int | None) -> str:
    """A catalog row's type spelled as Dialect.column_type spells types (``varchar(64)``, ``numeric(12,2)``)."""
    name = CATALOG_NAMES.get(data_type.lower(), data_type.lower())
    if name == "varchar" and length is not None:
        return f"varchar({length})"
    if name == "numeric" and precision is not None:
        return f"numeric({precision},{scale or 0})"
    return name


def _sized(type_text: str) -> tuple[str, int | None, int | None]:
    if match := SIZED.fullmatch(type_text):
        return match.group(1), int(match.group(2)), None if match.group(3) is None else int(match.group(3))
    return type_text, None, None


def holds(found: str, declared: str) -> bool:
    """Whether a column of type ``found`` holds every value of the ``declared`` type exactly."""
    if found == declared:
        return True
    found_name, found_size, found_scale = _sized(found)
    declared_name, declared_size, declared_scale = _sized(declared)
    strings = {"varchar", "text"}
    if found_name in strings and declared_name in strings:
        found_length = TEXT_LENGTH if found_name == "text" else found_size
        declared_length = TEXT_LENGTH if declared_name == "text" else declared_size
        return found_length is not None and declared_length is not None and found_length >= declared_length
    if found_name == declared_name == "numeric":
        # Another scale would round (or pad) the values: only more integer digits are harmless.
        assert found_size is not None and declared_size is not None
        return found_scale == declared_scale and found_size >= declared_size
    return False


def type_problems(
    target: tuple[str, str], declared: Mapping[str, str], found: Mapping[str, str], dialect: Dialect
) -> list[str]:
    """One message per declared column the target lacks or whose type cannot hold the declared type."""
    table = ".".join(target)
    problems = []
    for name, declared_type in declared.items():
        found_type = found.get(name)
        if found_type is None:
            problems.append(
                f"table {table} has no column {name!r}, which the streams file declares: add it "
                f"({dialect.add_column_statement(target, name, declared_type)}) or recreate the table"
            )
        elif not holds(found_type, declared_type):
            problems.append(
                f"column {name!r} of {table} is {found_type} but the streams file declares {declared_type}: the "
                f"loader writes the declared type and never changes a column itself; change the column "
                f"({dialect.alter_column_statement(target, name, found_type, declared_type)}) or the streams file"
            )
    return problems


def check_target_types(cursor: Any, context: Mapping[str, Any], dialect: Dialect) -> None:
    """Raise TargetTypeError naming each column of the target that does not hold its declared type, and the ALTER."""
    schema, table = context["target"]
    cursor.execute(render("target_columns.sql"), {"schema": schema, "table": table})
    found = {
        name: catalog_type(data_type, length, precision, scale)
        for name, data_type, length, precision, scale in _rows(cursor.fetchall())
    }
    if not found:
        return  # no such table (yet): the statements that need it fail on it by name
    declared = {column["name"]: column["type"] for column in context["columns"]}
    problems = type_problems((schema, table), declared, found, dialect)
    if problems:
        raise TargetTypeError("; ".join(problems))


def _rows(rows: Iterable[Sequence[Any]]) -> list[tuple[str, str, int | None, int | None, int | None]]:
    return [(str(name), str(kind), length, precision, scale) for name, kind, length, precision, scale in rows]
