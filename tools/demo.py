"""`make demo`: write three Firehose hours for the bundled `events` stream and load them.

Runs the real DAG through the real CLI (`airflow dags test`), exactly as a user
would, against the local stack. Safe to run again: the same objects are written
and the reloads change nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from firehose_loader.audit import format_report
from firehose_loader.config import load_config
from firehose_loader.text_table import format_table
from tools.simulate import lossy_realtime_path, make_object, product_hour

ROOT = Path(__file__).resolve().parents[1]

HOURS = [datetime(2026, 3, 1, hour, tzinfo=UTC) for hour in (9, 10, 11)]
RECORDS_PER_HOUR = 2_000


def write_hours(s3, bucket: str, prefix: str, stream_name: str) -> int:
    rng = random.Random(2026)
    with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
        s3.create_bucket(Bucket=bucket)
    written = 0
    for hour in HOURS:
        objects = product_hour(prefix, stream_name, hour, RECORDS_PER_HOUR, rng)
        # One damaged record, as producers sometimes send: it goes to quarantine, the rest loads.
        objects.append(
            make_object(prefix, stream_name, hour, 58, [b'{"event_id": "evt-broken", "received_at": '], "ndjson", rng)
        )
        for item in objects:
            s3.put_object(Bucket=bucket, Key=item.key, Body=item.body)
            written += 1
    return written


def dags_test(dag_id: str, logical_date: datetime, note: str, conf: str | None = None, log_name: str = "") -> None:
    command = ["airflow", "dags", "test", dag_id, logical_date.isoformat()] + (["-c", conf] if conf else [])
    shown = " ".join(command[:5]) + (f" -c '{conf}'" if conf else "")
    print(f"  {shown}   ({note})")
    log_path = ROOT / ".local" / f"demo-{dag_id}-{logical_date:%Y%m%d%H}{log_name}.log"
    with log_path.open("w") as log:
        result = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT)
    if result.returncode != 0 or "state=success" not in log_path.read_text():
        raise SystemExit(f"the run failed; its log is {log_path}")


def run_ingest(dag_id: str, hour: datetime) -> None:
    dags_test(dag_id, hour + timedelta(hours=1), f"loads {hour:%Y-%m-%d %H}:00-{hour.hour + 1:02d}:00")


def print_audit(stream, settings, title: str) -> None:
    with psycopg.connect(os.environ["WAREHOUSE_URL"], row_factory=dict_row) as conn:
        results = conn.execute(
            sql.SQL(
                "SELECT * FROM {0}.audit_results WHERE stream = %s AND run_id ="
                " (SELECT run_id FROM {0}.audit_results WHERE stream = %s ORDER BY audited_at DESC LIMIT 1)"
                " ORDER BY hour"
            ).format(sql.Identifier(settings.loader_schema)),
            (stream.name, stream.name),
        ).fetchall()
    print(f"\n  {title}")
    print(format_report(stream, results, indent="  ") + "\n")


def print_summary(stream, settings) -> None:
    with psycopg.connect(os.environ["WAREHOUSE_URL"]) as conn:
        hours = conn.execute(
            sql.SQL(
                "SELECT hour, status, objects, records_raw, records_duplicate, records_quarantined,"
                " records_inserted, records_updated, records_unchanged, records_superseded"
                " FROM {}.load_hours WHERE stream = %s AND hour = ANY(%s) ORDER BY hour"
            ).format(sql.Identifier(settings.loader_schema)),
            (stream.name, [hour.replace(tzinfo=None) for hour in HOURS]),
        ).fetchall()
        rows, keys = conn.execute(
            sql.SQL("SELECT COUNT(*), COUNT(DISTINCT {}) FROM {}").format(
                sql.Identifier(stream.key[0]), sql.Identifier(stream.schema, stream.table)
            )
        ).fetchone()
    header = (
        "hour (UTC)",
        "status",
        "objects",
        "records",
        "duplicates",
        "quarantined",
        "inserted",
        "updated",
        "unchanged",
        "older",
    )
    print()
    print(format_table(header, [(f"{row[0]:%Y-%m-%d %H:00}", *map(str, row[1:])) for row in hours], indent="  "))
    print(f"\n  {stream.qualified_table}: {rows} rows, {keys} distinct {stream.key[0]} (one row per key)")


def print_quarantine(s3, stream, settings) -> None:
    with psycopg.connect(os.environ["WAREHOUSE_URL"]) as conn:
        keys = conn.execute(
            sql.SQL(
                "SELECT quarantine_key FROM {}.ledger WHERE stream = %s AND quarantine_key IS NOT NULL"
                " AND hour = ANY(%s) ORDER BY object_key"
            ).format(sql.Identifier(settings.loader_schema)),
            (stream.name, [hour.replace(tzinfo=None) for hour in HOURS]),
        ).fetchall()
    print("\n  quarantined records (kept in S3 with object key, byte offset and reason):")
    for (key,) in keys:
        print(f"  s3://{stream.bucket}/{key}")
        for line in s3.get_object(Bucket=stream.bucket, Key=key)["Body"].read().decode().splitlines():
            print(f"    {line}")


def main() -> None:
    config = load_config()
    stream = config.stream("events")
    s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    count = write_hours(s3, stream.bucket, stream.prefix, stream.name)
    print(f"wrote {count} Firehose objects for 3 hours to s3://{stream.bucket}/{stream.prefix}")
    print(f"loading them with the {stream.ingest_dag_id} DAG:")
    for hour in HOURS:
        run_ingest(stream.ingest_dag_id, hour)
    print_summary(stream, config.settings)
    print_quarantine(s3, stream, config.settings)

    damaged = HOURS[1]
    print(
        f"\nthe lossy real-time path damages hour {damaged:%H}:00: 7 rows lost, 4 doubled, 3 left in an older version"
    )
    with psycopg.connect(os.environ["WAREHOUSE_URL"]) as conn:
        lossy_realtime_path(conn, stream, config.settings, damaged, drops=7, duplicates=4, stale=3)
    end = HOURS[-1] + timedelta(hours=1)
    lookback = json.dumps({"lookback_hours": len(HOURS)})
    dags_test(stream.audit_dag_id, end, "audits the 3 hours before it and repairs them", lookback, "-first")
    print_audit(stream, config.settings, "what the audit found (state before its repair):")
    dags_test(stream.audit_dag_id, end, "the same audit again", lookback, "-second")
    print_audit(stream, config.settings, "after the repair, a second audit finds nothing:")
    print(
        f"""
Where to look next:
  . .local/stack.env                  # the same environment the demo used
  psql "$WAREHOUSE_URL" -c 'SELECT * FROM {config.settings.loader_schema}.load_hours ORDER BY hour'
  psql "$WAREHOUSE_URL" -c 'SELECT object_key, status, records_raw, records_quarantined FROM {config.settings.loader_schema}.ledger'
  psql "$WAREHOUSE_URL" -c 'SELECT * FROM {config.settings.loader_schema}.audit_results ORDER BY audited_at, hour'
  airflow dags test {stream.ingest_dag_id} 2026-03-01T11:00:00+00:00      # rerun an hour: nothing changes
  logs of the runs above: .local/demo-*.log
"""
    )


if __name__ == "__main__":
    main()
