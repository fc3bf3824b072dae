"""Render the SQL templates in ``include/sql``.

Templates get raw names and quote them with the ``ident`` filter, which also
re-checks each name: nothing reaches the warehouse unvalidated. Values (run
id, hour) never enter the text; they travel as bind parameters. The one exception
is what a statement cannot take as a parameter (Redshift's COPY source and IAM
role): the ``literal`` filter quotes it after checking that nothing in it could
end the literal.
"""

from __future__ import annotations

import re
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
