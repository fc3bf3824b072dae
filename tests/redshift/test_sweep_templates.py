"""The late sweep's SQL, rendered with the Redshift dialect: the delta merge and the sweep's own templates.

These tests stand in for Amazon Redshift, which cannot run here: sqlglot's Redshift dialect
parses each statement (the shared template suite renders merge.sql without ``delta`` only).
"""

from __future__ import annotations

import re
from datetime import datetime

import pytest
import sqlglot
from sqlglot import exp

from firehose_loader.load import ensure_tables, merge_hour, staged_batch
from firehose_loader.warehouse.render import render_statements
from tests.redshift.recording import RecordingConnection
from tests.redshift.redshift_setup import DIALECT, SETTINGS, STREAMS
from tests.redshift.test_statement_sequence import (
    LEDGER,
    LOAD_HOURS,
    RUN_ID,
    STAGE_FILES,
    STREAM,
    manifest,
)
from tests.redshift.test_templates import LOCK, redshift_context

pytestmark = pytest.mark.redshift


def delta_merge(stream_name: str) -> list[str]:
    return render_statements("merge.sql", **{**redshift_context(stream_name), "delta": True})


@pytest.mark.parametrize("stream_name", list(STREAMS))
def test_the_delta_merge_parses_as_redshift_and_uses_delete_using_and_insert_select(stream_name: str) -> None:
    """Stands in for Redshift: every statement of the delta merge is Redshift SQL, its values bind parameters."""
    statements = delta_merge(stream_name)
    for statement in statements:
        expression = sqlglot.parse_one(statement, read="redshift")
        if isinstance(expression, exp.Command):
            assert LOCK.fullmatch(statement), statement
        assert not re.search(r"(?<!CAST\()%\(\w+\)s(?! AS )", statement), statement
    ledger = '"firehose_loader"."ledger"'
    assert any(s.startswith(f"DELETE FROM {ledger}\nUSING ") for s in statements)
    assert any(s.startswith(f"INSERT INTO {ledger}") for s in statements)
    # A delta never clears the hour's ledger: only rows of the manifest's objects are deleted.
    assert not any(s.startswith(f"DELETE FROM {ledger}\nWHERE stream") for s in statements)
    assert any(s.startswith('DELETE FROM "firehose_loader"."load_hours"') for s in statements)


def test_without_delta_the_merge_is_as_before() -> None:
    """Stands in for Redshift: a merge without delta renders none of the delta's statements."""
    plain = render_statements("merge.sql", **redshift_context(next(iter(STREAMS))))
    assert not any('USING "firehose_objects"' in statement for statement in plain)


def test_a_delta_merge_with_its_findings_is_one_transaction() -> None:
    """Stands in for Redshift: the sweep's delta merge and its sweep_results row commit together, once."""
    connection = RecordingConnection()
    ensure_tables(connection, STREAM, SETTINGS, DIALECT)
    findings = {
        "swept_at": datetime(2026, 3, 3, 11, 5),
        "try_number": 1,
        "status": "late",
        "late_objects": 2,
        "late_keys": "a\nb",
        "max_lateness_seconds": 3600,
    }
    merge_hour(
        connection,
        STREAM,
        SETTINGS,
        DIALECT,
        manifest(),
        staged_batch(STAGE_FILES.client, STREAM, manifest()),
        RUN_ID,
        delta=True,
        measured_by="sweep",
        then=[("sweep/record_result.sql", findings)],
    )
    _, merge = connection.transactions()
    assert [event.kind for event in merge].count("commit") == 1 and merge[-1].kind == "commit"
    statements = [event.statement for event in merge if event.kind in ("execute", "executemany")]
    tail = [statement.split("\n")[0] for statement in statements[-7:]]
    # load_hours goes first when an object is new or changed (after the ledger rows change, that is no longer known).
    assert tail == [
        f"DELETE FROM {LOAD_HOURS}",
        f"DELETE FROM {LEDGER}",
        f"INSERT INTO {LEDGER} (",
        f"INSERT INTO {LOAD_HOURS} (",
        # The objects' schema drift rows, replaced with their ledger rows (the recording knows no field).
        "SELECT DISTINCT field",
        'DELETE FROM "firehose_loader"."schema_drift"',
        'INSERT INTO "firehose_loader"."sweep_results" (',
    ]
