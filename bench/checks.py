"""The check that every contender ends with the same rows: count, distinct keys and two checksums per table."""

from __future__ import annotations

from typing import Any

from bench.common import KEY, ORDER, pg_connect, table_for


def table_checks(label: str, size: int) -> dict[str, Any] | None:
    """Rows, distinct keys, a checksum over key + order column and one over every column (None: no table)."""
    schema, table = table_for(label, size)
    with pg_connect(autocommit=True) as conn:
        if conn.execute("SELECT to_regclass(%s)", (f'"{schema}"."{table}"',)).fetchone()[0] is None:
            return None
        row = conn.execute(
            f"""
            SELECT count(*), count(DISTINCT {KEY}),
                   sum(('x' || substr(md5({KEY} || '|' || to_char({ORDER}, 'YYYY-MM-DD"T"HH24:MI:SS.US')), 1, 15))::bit(60)::bigint),
                   sum(('x' || substr(md5(concat_ws('|', {KEY}, to_char({ORDER}, 'YYYY-MM-DD"T"HH24:MI:SS.US'),
                        event_type, user_id::text, amount::numeric(12,2)::text, is_test::text,
                        properties::jsonb::text)), 1, 15))::bit(60)::bigint)
            FROM "{schema}"."{table}"
            """
        ).fetchone()
    return {"rows": row[0], "keys": row[1], "key_order_checksum": str(row[2]), "row_checksum": str(row[3])}


def tables_agree(checks: dict[str, dict[str, Any]], size: int) -> bool:
    """Every table has the same counts and checksums, and one row per key of the hour."""
    first = next(iter(checks.values()))
    return (
        all(
            (check["rows"], check["keys"], check["key_order_checksum"], check["row_checksum"])
            == (first["rows"], first["keys"], first["key_order_checksum"], first["row_checksum"])
            for check in checks.values()
        )
        and first["rows"] == first["keys"] == size
    )
