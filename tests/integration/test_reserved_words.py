"""SQL reserved words as identifiers: accepted, because every identifier is quoted, and loaded end to end.

The decision (see RELIABILITY.md): an identifier is refused only when it is not lowercase
``[a-z_][a-z0-9_]*`` (tests/unit/test_config.py, tests/unit/test_hostile_config.py,
tests/dags/test_dag_integrity.py); a reserved word such as ``select`` or ``order`` passes that
check and works, since the templates quote every identifier (tests/unit/test_sql.py). Here a
stream made of reserved words is ingested, re-ingested, damaged and audited through the DAGs.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
from psycopg import sql

from tests.integration.conftest import SESSION_TOKEN, run_audit, run_hour
from tests.integration.support import object_key

HOUR = datetime(2026, 5, 5, 9, tzinfo=UTC)
RESERVED = {
    "table": f"t_{SESSION_TOKEN}_reserved.order",
    "key": ["select", "from"],
    "order_by": "order",
    "columns": {
        "select": "varchar(16)",
        "from": "varchar(16)",
        "order": "bigint",
        "user": "text",
        "group": "json",
        "table": "timestamptz",
        "limit": "numeric(6,2)",
        "default": "boolean",
    },
}


def test_reserved_words_as_table_and_column_names_load_and_audit_end_to_end(streams, s3, warehouse):
    entry = streams.declare(s3, "rel_reserved", **RESERVED)
    records = [
        {"select": "a", "from": "x", "order": 1, "user": "old", "group": {"g": 1}, "table": "2026-05-05T09:01:00Z"},
        {"select": "a", "from": "x", "order": 2, "user": "new", "limit": "1.5", "default": True},
        {"select": "a", "from": "y", "order": 1, "user": "other", "group": [1, 2]},
        {"select": "b", "from": "x", "order": 7, "user": "b"},
    ]
    body = b"\n".join(orjson.dumps(record) for record in [*records, records[0]])
    s3.put_object(Bucket=entry["bucket"], Key=object_key(HOUR, "00-a"), Body=body)

    assert run_hour(entry["name"], HOUR).state == "success"
    schema, name = entry["table"].split(".")
    table = sql.Identifier(schema, name)
    query = sql.SQL(
        'SELECT "select", "from", "order", "user", "group", "table", "limit", "default" FROM {} ORDER BY 1, 2'
    ).format(table)
    rows = warehouse.execute(query).fetchall()
    assert [row[:4] for row in rows] == [("a", "x", 2, "new"), ("a", "y", 1, "other"), ("b", "x", 7, "b")]
    assert rows[1][4] == [1, 2] and str(rows[0][6]) == "1.50" and rows[0][7] is True
    assert warehouse.execute(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relname = 'order'",
        (schema,),
    ).fetchone() == (1,)

    # A rerun changes nothing; the audit repairs a lost row and finds nothing the second time.
    before = warehouse.execute(query).fetchall()
    assert run_hour(entry["name"], HOUR).state == "success"
    assert warehouse.execute(query).fetchall() == before
    warehouse.execute(sql.SQL("""DELETE FROM {} WHERE "select" = 'b'""").format(table))
    end = HOUR + timedelta(hours=1)
    for expected_status, expected_missing in (("repaired", 1), ("ok", 0)):
        assert run_audit(entry["name"], end, lookback_hours=1).state == "success"
        status, missing = warehouse.execute(
            "SELECT status, missing_keys FROM firehose_loader.audit_results WHERE stream = %s"
            " ORDER BY audited_at DESC LIMIT 1",
            (entry["name"],),
        ).fetchone()
        assert (status, missing) == (expected_status, expected_missing)
    assert warehouse.execute(query).fetchall() == before
