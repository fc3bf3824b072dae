"""BENCH_MERGE_BASE: the cost of merging the staged hour into a target that already holds many other keys."""

from __future__ import annotations

import time
from typing import Any

from bench.baseline import library, stage_writer
from bench.common import HOUR, forget_hours, load_average, pg_connect, s3_client, stream_entry
from bench.config import config


def merge_cost(size: int, base_rows: int) -> dict[str, Any]:
    """Merge the staged hour into a target that already holds ``base_rows`` other keys (index on the key)."""
    ensure_tables, extract_hour = library("ensure_tables"), library("extract_hour")
    load_and_merge, staged_batch = library("load_and_merge"), library("staged_batch")
    postgres = library("Postgres")

    schema = f"{config().namespace}_big"
    entry = stream_entry(size, schema)
    stream = library("parse_config")({"streams": [entry]}).streams[0]
    settings = library("Settings")(loader_schema=config().loader_schema)
    table = f'"{schema}"."events_{size}"'
    print(f"\n== merge cost: {size:,}-record hour into a table of {base_rows:,} rows ==")
    timings: dict[str, Any] = {"base_rows": base_rows, "size": size}
    with pg_connect(autocommit=True) as conn:
        existing = conn.execute(
            "SELECT to_regclass(%s) IS NOT NULL AND (SELECT reltuples FROM pg_class WHERE oid = to_regclass(%s)) >= %s",
            (table, table, base_rows * 0.99),
        ).fetchone()[0]
    forget_hours(size)
    if not existing:
        with pg_connect(autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        with pg_connect() as conn:
            ensure_tables(conn, stream, settings, postgres())
        mark = time.perf_counter()
        with pg_connect(autocommit=True) as conn:
            conn.execute("SET maintenance_work_mem = '512MB'")
            conn.execute(f'DROP INDEX IF EXISTS "{schema}"."events_{size}__firehose_key"')
            conn.execute(
                f"""
                INSERT INTO {table}
                SELECT 'old-' || lpad(n::text, 9, '0'),
                       (ARRAY['page_view','click','signup','purchase','logout'])[1 + n % 5],
                       n % 5000000,
                       timestamptz '2026-02-01' + n * interval '250 milliseconds',
                       CASE WHEN n % 5 = 3 THEN (n % 100000) / 100.0 END,
                       n % 50 = 0,
                       jsonb_build_object('page', '/docs', 'session', jsonb_build_object('id', md5(n::text), 'sequence', n % 400),
                                          'text', repeat(md5(n::text), 1 + n % 8)),
                       'firehose/older/object-' || (n / 20000),
                       n % 20000 * 700
                FROM generate_series(1, {base_rows}) AS n
                """
            )
            conn.execute(f'CREATE INDEX "events_{size}__firehose_key" ON {table} ("event_id")')
            conn.execute(f"VACUUM ANALYZE {table}")
        timings["fill_seconds"] = round(time.perf_counter() - mark, 1)
        print(f"  filled {base_rows:,} rows in {timings['fill_seconds']} s")
    with pg_connect(autocommit=True) as conn:
        conn.execute(f"DELETE FROM {table} WHERE event_id NOT LIKE 'old-%'")
        conn.execute(f"VACUUM ANALYZE {table}")
        timings["table_bytes_before"] = conn.execute(f"SELECT pg_total_relation_size('{table}')").fetchone()[0]
    client = s3_client()
    manifest = extract_hour(client, stream, HOUR, stage_writer(f"bench_big_{size}", "extract_hour"))
    for attempt in ("first load (all inserts)", "rerun (all unchanged)"):
        load = load_average()
        mark = time.perf_counter()
        with pg_connect() as conn:
            summary = load_and_merge(
                conn, stream, settings, postgres(), manifest, staged_batch(client, stream, manifest), "bench_big"
            )
        seconds = time.perf_counter() - mark
        timings[attempt] = {
            "seconds": round(seconds, 1),
            "load": load,
            "inserted": summary.get("records_inserted"),
            "unchanged": summary.get("records_unchanged"),
        }
        print(f"  {attempt}: {seconds:.1f} s (load {load}) {timings[attempt]}")
    with pg_connect(autocommit=True) as conn:
        timings["rows_after"] = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        plan = conn.execute(
            f"EXPLAIN SELECT 1 FROM {table} t WHERE EXISTS (SELECT 1 FROM (VALUES ('evt-x')) x(event_id) "
            "WHERE x.event_id = t.event_id)"
        ).fetchall()
        timings["plan"] = "\n".join(row[0] for row in plan)
    return timings
