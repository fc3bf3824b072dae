"""`make demo`: write three Firehose hours for the bundled `events` stream and load them.

As in production, a lossy real-time path (a Lambda) writes each hour into the table first, with
keys dropped, doubled and left in an older version (some by an in-place UPDATE); the ingest DAG
then loads the hour and, at its first merge, measures what the real-time path had written
(``realtime_quality``). Later the real-time path damages one loaded hour; the audit DAG finds it
(``audit_results``) and repairs it. The demo prints both accounts beside what the simulator
injected, and exits non-zero if they differ.

Runs the real DAGs through the real CLI (`airflow dags test`), exactly as a user would, against
the local stack. Safe to run again: the same objects are written, and the demo first forgets its
three hours (their rows in the table and the loader's tables), so each run starts from the same
clean slate.
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
from firehose_loader.layout import stream_layout
from firehose_loader.text_table import format_table
from tools.simulate import (
    Injected,
    SimulatedObject,
    hour_truth,
    lossy_realtime_path,
    make_object,
    partitioned_hour,
    product_hour,
    realtime_write,
    reset_hours,
)

ROOT = Path(__file__).resolve().parents[1]

HOURS = [datetime(2026, 3, 1, hour, tzinfo=UTC) for hour in (9, 10, 11)]
RECORDS_PER_HOUR = 2_000
# What the real-time path does to each hour before its load: keys dropped, doubled, rewritten older
# (delete + insert), updated in place to an older version.
BEFORE_LOAD = {HOURS[0]: (12, 5, 4, 3), HOURS[1]: (7, 3, 2, 2), HOURS[2]: (20, 0, 6, 1)}
# What it does to the middle hour after its load: rows lost, doubled, older without provenance, older in place.
AFTER_LOAD = {"drops": 7, "duplicates": 4, "stale": 3, "stale_in_place": 2}


def write_hours(s3, bucket: str, prefix: str, stream_name: str) -> dict[datetime, list[SimulatedObject]]:
    rng = random.Random(2026)
    with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
        s3.create_bucket(Bucket=bucket)
    written = {}
    for hour in HOURS:
        objects = product_hour(prefix, stream_name, hour, RECORDS_PER_HOUR, rng)
        # One damaged record, as producers sometimes send: it goes to quarantine, the rest loads.
        objects.append(
            make_object(prefix, stream_name, hour, 58, [b'{"event_id": "evt-broken", "received_at": '], "ndjson", rng)
        )
        for item in objects:
            s3.put_object(Bucket=bucket, Key=item.key, Body=item.body)
        written[hour] = objects
    return written


def realtime_before_load(stream, settings, written: dict[datetime, list[SimulatedObject]]) -> dict[datetime, Injected]:
    """Forget the demo's hours (a clean slate), then let the real-time path write each of them first."""
    keys = [key for objects in written.values() for key in hour_truth(stream, objects)]
    injected = {}
    with psycopg.connect(os.environ["WAREHOUSE_URL"]) as conn:
        reset_hours(conn, stream, settings, HOURS, keys)
        for hour, objects in written.items():
            drops, duplicates, older, in_place = BEFORE_LOAD[hour]
            injected[hour] = realtime_write(
                conn,
                stream,
                settings,
                objects,
                drops=drops,
                duplicates=duplicates,
                older=older,
                older_in_place=in_place,
                seed=hour.hour,
            )
            print(f"  {hour:%Y-%m-%d %H}:00  {injected[hour].describe()}")
    return injected


def rate(missing: int, keys: int) -> str:
    return f"{missing / keys:.2%}" if keys else "-"


def check_first_merge(stream, settings, injected: dict[datetime, Injected]) -> list[str]:
    """Print realtime_quality beside what the simulator injected; the hours where they differ."""
    with psycopg.connect(os.environ["WAREHOUSE_URL"]) as conn:
        measured = {
            row[0]: row[1:]
            for row in conn.execute(
                sql.SQL(
                    "SELECT hour, s3_keys, missing_keys, duplicate_keys, stale_keys, drop_rate, measured_by"
                    " FROM {} WHERE stream = %s AND hour = ANY(%s)"
                ).format(sql.Identifier(settings.loader_schema, "realtime_quality")),
                (stream.name, [hour.replace(tzinfo=None) for hour in HOURS]),
            ).fetchall()
        }
    rows, wrong = [], []
    for hour, want in injected.items():
        got = measured.get(hour.replace(tzinfo=None))
        got_counts = tuple(got[:4]) if got else None
        ok = got_counts == want.counts()
        if not ok:
            wrong.append(f"{hour:%H}:00 measured {got_counts}, injected {want.counts()}")
        rows.append(
            (
                f"{hour:%Y-%m-%d %H:00}",
                str(want.keys),
                f"{want.missing} / {want.duplicate} / {want.stale}",
                "-" if got is None else f"{got[1]} / {got[2]} / {got[3]}",
                "-" if got is None or got[4] is None else f"{got[4]:.2%}",
                "-" if got is None else got[5],
                "yes" if ok else "NO",
            )
        )
    header = (
        "hour (UTC)",
        "S3 keys",
        "injected missing / doubled / stale",
        "realtime_quality (first merge)",
        "drop rate",
        "measured by",
        "match",
    )
    print("\n  the real-time path at each hour's first merge (realtime_quality; the load repaired it):")
    print(format_table(header, rows, indent="  "))
    return wrong


def check_after_load(stream, settings, injected: dict[datetime, Injected]) -> list[str]:
    """Print the latest audit's post-load findings beside what was injected after the load."""
    with psycopg.connect(os.environ["WAREHOUSE_URL"]) as conn:
        found = {
            row[0]: row[1:]
            for row in conn.execute(
                sql.SQL(
                    "SELECT hour, status, missing_keys, duplicate_keys, stale_keys, repaired_keys FROM {0}"
                    " WHERE stream = %s AND hour = ANY(%s) AND run_id ="
                    " (SELECT run_id FROM {0} WHERE stream = %s ORDER BY audited_at DESC LIMIT 1)"
                ).format(sql.Identifier(settings.loader_schema, "audit_results")),
                (stream.name, [hour.replace(tzinfo=None) for hour in HOURS], stream.name),
            ).fetchall()
        }
    rows, wrong = [], []
    for hour in HOURS:
        want = injected.get(hour, Injected(0, 0, 0, 0))
        expected = (want.missing, want.duplicate, want.stale, want.missing + want.duplicate + want.stale)
        got = found.get(hour.replace(tzinfo=None))
        got_counts = tuple(got[1:5]) if got else None
        ok = got_counts == expected
        if not ok:
            wrong.append(f"{hour:%H}:00 audit found {got_counts}, injected {expected}")
        rows.append(
            (
                f"{hour:%Y-%m-%d %H:00}",
                f"{expected[0]} / {expected[1]} / {expected[2]}",
                "-" if got is None else got[0],
                "-" if got is None else f"{got[1]} / {got[2]} / {got[3]}",
                "-" if got is None else str(got[4]),
                "yes" if ok else "NO",
            )
        )
    header = ("hour (UTC)", "injected missing / doubled / stale", "status", "audit found", "repaired", "match")
    print(format_table(header, rows, indent="  "))
    return wrong


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


PARTITIONED_STREAM = "events_by_type"


def demo_partitioned(s3, config, written: dict[datetime, list[SimulatedObject]]) -> list[str]:
    """The same events under dynamic partitioning in a Hive-style layout: loaded, and compared with ``events``."""
    stream = config.stream(PARTITIONED_STREAM)
    layout = stream_layout(stream)
    rng = random.Random(2027)
    keys = []
    for hour, objects in written.items():
        (error_pattern, *_rest) = layout.error_patterns(hour)
        error_folder = "".join(segment.text for segment in error_pattern.segments)
        for item in partitioned_hour(layout, error_folder, stream.name, hour, objects, "event_type", rng):
            s3.put_object(Bucket=stream.bucket, Key=item.key, Body=item.body)
        keys += list(hour_truth(stream, objects))
    folders = sorted({layout.folder_of(HOURS[0], {"event_type": value}) for value in ("click", "purchase")})
    print(f"\nthe same events under dynamic partitioning, Hive-style: s3://{stream.bucket}/{stream.prefix}")
    print("  e.g. " + "\n       ".join(folders) + "  (one folder per event type and hour)")
    with psycopg.connect(os.environ["WAREHOUSE_URL"]) as conn:
        reset_hours(conn, stream, config.settings, HOURS, keys)
    print(f"loading them with the {stream.ingest_dag_id} DAG:")
    for hour in HOURS:
        run_ingest(stream.ingest_dag_id, hour)
    print_summary(stream, config.settings)
    with psycopg.connect(os.environ["WAREHOUSE_URL"]) as conn:
        (errors,) = conn.execute(
            sql.SQL("SELECT COALESCE(SUM(error_objects), 0) FROM {} WHERE stream = %s AND hour = ANY(%s)").format(
                sql.Identifier(config.settings.loader_schema, "load_hours")
            ),
            (stream.name, [hour.replace(tzinfo=None) for hour in HOURS]),
        ).fetchone()
    print(
        f"  the damaged record of each hour has no event_type to partition by: Firehose wrote it to its error"
        f" output (s3://{stream.bucket}/{stream.error_prefix}processing-failed/...), {errors} error objects"
        " counted, never loaded"
    )
    events = config.stream("events")
    with psycopg.connect(os.environ["WAREHOUSE_URL"]) as conn:
        tables = [
            conn.execute(
                sql.SQL(
                    "SELECT event_id, event_type, user_id, received_at, amount, is_test, properties::text"
                    " FROM {} ORDER BY event_id"
                ).format(sql.Identifier(item.schema, item.table))
            ).fetchall()
            for item in (events, stream)
        ]
    same = tables[0] == tables[1]
    print(
        f"  {stream.qualified_table} holds the same {len(tables[1])} rows as {events.qualified_table}: {'yes' if same else 'NO'}"
    )
    return [] if same else [f"{stream.qualified_table} differs from {events.qualified_table}"]


def main() -> None:
    config = load_config()
    stream = config.stream("events")
    s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    written = write_hours(s3, stream.bucket, stream.prefix, stream.name)
    count = sum(len(objects) for objects in written.values())
    print(f"wrote {count} Firehose objects for 3 hours to s3://{stream.bucket}/{stream.prefix}")
    print(f"the lossy real-time path writes each hour into {stream.qualified_table} first (before the load):")
    before = realtime_before_load(stream, config.settings, written)
    print(f"loading them with the {stream.ingest_dag_id} DAG:")
    for hour in HOURS:
        run_ingest(stream.ingest_dag_id, hour)
    print_summary(stream, config.settings)
    wrong = check_first_merge(stream, config.settings, before)
    print_quarantine(s3, stream, config.settings)

    damaged = HOURS[1]
    with psycopg.connect(os.environ["WAREHOUSE_URL"]) as conn:
        after = lossy_realtime_path(conn, stream, config.settings, damaged, **AFTER_LOAD)
    print(
        f"\nafter the load, the real-time path damages hour {damaged:%H}:00 again: {after.missing} rows lost,"
        f" {after.duplicate} doubled, {after.stale} older ({after.stale_in_place} by in-place UPDATE)"
    )
    end = HOURS[-1] + timedelta(hours=1)
    lookback = json.dumps({"lookback_hours": len(HOURS)})
    dags_test(stream.audit_dag_id, end, "audits the 3 hours before it and repairs them", lookback, "-first")
    print_audit(stream, config.settings, "what the audit found (state before its repair):")
    print("  damage after the load (audit_results) beside what was injected after the load:")
    wrong += check_after_load(stream, config.settings, {damaged: after})
    dags_test(stream.audit_dag_id, end, "the same audit again", lookback, "-second")
    print_audit(stream, config.settings, "after the repair, a second audit finds nothing:")
    wrong += check_after_load(stream, config.settings, {})
    wrong += demo_partitioned(s3, config, written)
    print(
        f"""
Where to look next:
  . .local/stack.env                  # the same environment the demo used
  psql "$WAREHOUSE_URL" -c 'SELECT * FROM {config.settings.loader_schema}.load_hours ORDER BY hour'
  psql "$WAREHOUSE_URL" -c 'SELECT object_key, status, records_raw, records_quarantined FROM {config.settings.loader_schema}.ledger'
  psql "$WAREHOUSE_URL" -c 'SELECT * FROM {config.settings.loader_schema}.realtime_quality ORDER BY hour'
  psql "$WAREHOUSE_URL" -c 'SELECT * FROM {config.settings.loader_schema}.audit_results ORDER BY audited_at, hour'
  airflow dags test {stream.ingest_dag_id} 2026-03-01T11:00:00+00:00      # rerun an hour: nothing changes
  logs of the runs above: .local/demo-*.log
"""
    )
    if wrong:
        raise SystemExit("the loader's numbers differ from what the simulator injected: " + "; ".join(wrong))
    print("every number above matches what the simulator injected")


if __name__ == "__main__":
    main()
