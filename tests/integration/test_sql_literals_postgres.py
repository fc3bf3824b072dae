"""The literals Data API mode writes for bind values read back, from the real PostgreSQL server, as the values bound.

Redshift cannot run here; PostgreSQL stands in for it: the literals are the subset both read
the same way (a backslash is written CHR(92), so PostgreSQL's standard strings and Redshift's
escaping literals agree), cast to the types the templates cast parameters to.
"""

from __future__ import annotations

import os
from datetime import date, datetime
from decimal import Decimal

import psycopg
import pytest

from firehose_loader.warehouse.render import inline_parameters

# (value, the type the templates cast it to): every kind of value the loader binds.
VALUES = [
    ("plain", "varchar(256)"),
    ("", "varchar(256)"),
    ("it's 'quoted'", "varchar(256)"),
    ("back\\slash \\\\ and \\'", "varchar(256)"),
    ("\\", "varchar(256)"),
    ("é ✓ 😀 ümlaut — Ω", "varchar(1024)"),
    ("two\nlines\r\n\ttab", "varchar(256)"),
    ("100% %(not_a_parameter)s", "varchar(256)"),
    ("x'; DROP TABLE pg_class; --", "varchar(256)"),
    ("scheduled__2026-03-01T11:00:00+00:00", "varchar(256)"),
    (None, "varchar(64)"),
    (None, "timestamp"),
    (None, "bigint"),
    (True, "boolean"),
    (False, "boolean"),
    (0, "bigint"),
    (-(2**63), "bigint"),
    (2**63 - 1, "bigint"),
    (Decimal("12345678.0001"), "numeric(14,4)"),
    (Decimal("-0.5"), "numeric(12,2)"),
    (2.5e-07, "double precision"),
    (datetime(2026, 3, 1, 10, 0), "timestamp"),
    (datetime(2026, 12, 31, 23, 59, 59, 999999), "timestamp"),
    (date(2026, 2, 28), "date"),
]


@pytest.mark.parametrize("standard_strings", ["on", "off"])
def test_every_literal_reads_back_as_the_value(stack_up, standard_strings: str) -> None:
    """With standard_conforming_strings off too, as Redshift reads a backslash in a literal."""
    columns = ", ".join(f"CAST(%(v{index})s AS {kind})" for index, (_, kind) in enumerate(VALUES))
    statement = inline_parameters(f"SELECT {columns}", {f"v{index}": value for index, (value, _) in enumerate(VALUES)})
    assert "%(" not in statement.replace("%(not_a_parameter)s", "")
    with psycopg.connect(os.environ["WAREHOUSE_URL"]) as conn:
        conn.execute(f"SET standard_conforming_strings TO {standard_strings}")
        # Sent as text with no parameters, as BatchExecuteStatement sends it.
        (row,) = conn.execute(statement.encode("utf-8")).fetchall()
    assert list(row) == [value for value, _ in VALUES]
