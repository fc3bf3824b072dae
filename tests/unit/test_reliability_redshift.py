"""Redshift does not enforce primary keys: nothing the loader promises may depend on them.

On both warehouses the target has no PRIMARY KEY or UNIQUE constraint (the real-time path writes
duplicates that the audit must be able to see), so "one row per key" comes from the merge: per
key it deletes every copy and inserts the winner, under the table lock. The loader tables declare
primary keys as documentation only: their rows are replaced DELETE-then-INSERT in the same locked
transaction, never inserted blindly. The integration tests run on PostgreSQL without any
constraint on the target, which is exactly what Redshift gives.
"""

from __future__ import annotations

import re

import pytest

from firehose_loader.config import Settings
from firehose_loader.load import template_context
from firehose_loader.warehouse.postgres import Postgres
from firehose_loader.warehouse.redshift import Redshift
from firehose_loader.warehouse.render import render_statements
from tests.unit.stream_factory import make_stream

DIALECTS = [Postgres(), Redshift(iam_role="arn:aws:iam::123456789012:role/firehose-loader-copy")]


def statements(template: str, dialect) -> list[str]:
    context = template_context(make_stream(), Settings(), dialect)
    return render_statements(template, **{**context, "lock_statement": dialect.lock_statement(context)})


@pytest.mark.parametrize("dialect", DIALECTS, ids=lambda dialect: dialect.name)
def test_the_target_relies_on_no_constraint(dialect) -> None:
    (create,) = [s for s in statements("create_target.sql", dialect) if s.startswith("CREATE TABLE")]
    assert not re.search(r"PRIMARY\s+KEY|UNIQUE|REFERENCES", create, re.IGNORECASE)


@pytest.mark.parametrize("dialect", DIALECTS, ids=lambda dialect: dialect.name)
def test_every_write_to_a_keyed_table_replaces_under_the_lock(dialect) -> None:
    merge = statements("merge.sql", dialect)
    if not dialect.stages_rows:  # the dialect COPYs the winners after merge.sql, in its transaction
        merge += statements("postgres/copy_winners.sql", dialect)
    assert merge[0].startswith("LOCK")
    writes = [(VERBS[match.group(1).upper()], match.group(2)) for s in merge if (match := WRITE.match(s))]
    # target: delete the keys that change, then insert; ledger and load_hours: delete the hour, then insert
    tables = [table for _verb, table in writes]
    assert set(tables) == {'"sales"."order_lines"', '"firehose_loader"."ledger"', '"firehose_loader"."load_hours"'}
    for table in dict.fromkeys(tables):
        verbs = [verb for verb, name in writes if name == table]
        assert verbs == ["DELETE", "INSERT"], (table, verbs)
    # no in-place UPDATE of a keyed row, no TRUNCATE (an implicit commit on Redshift), no COMMIT midway
    assert not any(re.match(r"\s*(UPDATE|TRUNCATE|COMMIT|END)\b", s, re.IGNORECASE) for s in merge)


WRITE = re.compile(r'\s*(DELETE FROM|INSERT INTO|COPY)\s+("[^"]+"\."[^"]+")', re.IGNORECASE)
VERBS = {"DELETE FROM": "DELETE", "INSERT INTO": "INSERT", "COPY": "INSERT"}
