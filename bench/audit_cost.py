"""BENCH_AUDIT_KEYS: healthy hours audited two ways, with a concurrent writer that says how long it waited.

The hours (BENCH_AUDIT_HOURS of BENCH_AUDIT_KEYS keys each, narrow records) are generated into the
local S3 and loaded by this tree's extract_hour and load_and_merge, once: they stay loaded (and are
reused) while the generator's parameters and the loaded rows match. Each hour is then audited,
hour by hour and interleaved, two ways:

- ``locked merge`` (the audit before f5cbbee): ``hour_truth``, then the merge under the target's
  lock with the ledger left as it is (``merge_hour(write_ledger=False)``), the audit's findings in
  its transaction: what ``audit_hour`` did for every hour until that change, and still does for an
  hour that differs.
- ``audit_hour``: the audit as it is, which judges an hour whose ledger matches S3 without a lock
  (``load.audit_unchanged_without_lock``) and locks only an hour with differences.

During each hour's audit a writer on another connection loops, in turn taking the merge's lock
(``postgres/lock_target.sql``) and inserting a row into the target (as a real-time writer does),
each rolled back at once, and records how long each attempt waited. A monitor on a third
connection samples the audit session's granted locks on the target, whether the writer is waiting
for one (pg_locks) and whether the audit's session is what it waits for (pg_blocking_pids): on a
freshly loaded table autovacuum's SHARE UPDATE EXCLUSIVE lock also holds up the merge's lock, until
deadlock_timeout (1 s) cancels it. Both run in a process of their own (probe_main), so that what
they time is the server's waits, not this process's GIL while the audit decodes Parquet.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.common import BUCKET, load_average, pg_connect, s3_client
from bench.config import config

# Bump when the generated hours change: stored hours of another version are generated and loaded again.
AUDIT_GENERATOR_VERSION = 1
FIRST_HOUR = datetime(2026, 2, 1, tzinfo=UTC)
COLUMNS = {"event_id": "varchar(32)", "received_at": "timestamptz", "user_id": "bigint", "amount": "numeric(12,2)"}
OBJECT_RECORDS = 50_000  # ~5 MB of these records: an object as Firehose cuts it at its 5 MiB buffer
PROBE_KEY = "bench-writer-probe"  # never a key of the hours: the writer's row is rolled back anyway
PROBE_PAUSE = 0.01
MONITOR_INTERVAL = 0.005
LOCKED = "locked merge (before f5cbbee)"
LOCK_FREE = "audit_hour (lock-free when healthy)"
MODES = (LOCKED, LOCK_FREE)


def audit_names(keys: int) -> dict[str, str]:
    namespace = config().namespace
    return {
        "stream": f"{namespace}_audit_{keys}",
        "schema": f"{namespace}_audit",
        "table": f"events_{keys}",
        "prefix": f"bench-audit-{keys}/",
    }


def audit_stream(keys: int) -> Any:
    from firehose_loader.config import parse_config

    names = audit_names(keys)
    namespace = config().namespace.replace("_", "-")
    entry = {
        "name": names["stream"],
        "bucket": BUCKET,
        "prefix": names["prefix"],
        "table": f"{names['schema']}.{names['table']}",
        "key": ["event_id"],
        "order_by": "received_at",
        "columns": COLUMNS,
        "settle_grace_minutes": 0,
        "staging_prefix": f"{namespace}-staging/",
        "quarantine_prefix": f"{namespace}-quarantine/",
    }
    return parse_config({"streams": [entry]}).streams[0]


def audit_hours_list(hours: int) -> list[datetime]:
    return [FIRST_HOUR + timedelta(hours=index) for index in range(hours)]


def hour_records(hour_index: int, hour: datetime, keys: int) -> list[bytes]:
    """The hour's records: ``keys`` distinct keys of this hour, in order of arrival, gzip-sized objects later."""
    stamp = f"{hour:%Y-%m-%dT%H}"
    return [
        b'{"event_id":"h%02d-%08d","received_at":"%s:%02d:%02d.%06dZ","user_id":%d,"amount":%d.%02d}'
        % (
            hour_index,
            number,
            stamp.encode(),
            number * 60 // keys,
            number * 3600 // keys % 60,
            number % 1_000_000,
            number % 50_000,
            number % 1000,
            number % 100,
        )
        for number in range(keys)
    ]


def ensure_audit_data(keys: int, hours: int) -> dict[str, Any]:
    """The hours in S3 and loaded into the target (generated and loaded once; reused while they match)."""
    from firehose_loader.config import Settings
    from firehose_loader.extract import extract_hour
    from firehose_loader.layout import StageWriter, default_layout, naive_utc
    from firehose_loader.load import ensure_tables, load_and_merge, staged_batch
    from firehose_loader.s3io import list_hour_objects
    from firehose_loader.warehouse.postgres import Postgres
    from tools.simulate import object_key

    names = audit_names(keys)
    stream, settings = audit_stream(keys), Settings(loader_schema=config().loader_schema)
    client = s3_client()
    try:
        client.head_bucket(Bucket=BUCKET)
    except Exception:
        client.create_bucket(Bucket=BUCKET)
    wanted = {"version": AUDIT_GENERATOR_VERSION, "keys": keys, "hours": hours, "first_hour": FIRST_HOUR.isoformat()}
    marker_key = f"{names['prefix']}_generated.json"
    try:
        stored = json.loads(client.get_object(Bucket=BUCKET, Key=marker_key)["Body"].read())
    except Exception:
        stored = None
    if stored != wanted:
        started = time.perf_counter()
        rng = random.Random(config().seed)
        for index, hour in enumerate(audit_hours_list(hours)):
            old = [item.key for item in list_hour_objects(client, BUCKET, default_layout(names["prefix"]), hour)]
            for start in range(0, len(old), 1000):
                chunk = old[start : start + 1000]
                client.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": key} for key in chunk]})
            records = hour_records(index, hour, keys)
            for first in range(0, keys, OBJECT_RECORDS):
                body = gzip.compress(b"\n".join(records[first : first + OBJECT_RECORDS]) + b"\n", 1, mtime=0)
                minute = first * 60 // keys
                client.put_object(Bucket=BUCKET, Key=object_key(names["prefix"], "bench", hour, minute, rng), Body=body)
        client.put_object(Bucket=BUCKET, Key=marker_key, Body=json.dumps(wanted).encode())
        print(f"  audit data: generated {hours} hours of {keys:,} keys in {time.perf_counter() - started:.1f} s")
    hours_list = audit_hours_list(hours)
    with pg_connect(autocommit=True) as conn:
        target = f'"{names["schema"]}"."{names["table"]}"'
        rows = None
        if conn.execute("SELECT to_regclass(%s)", (target,)).fetchone()[0] is not None:
            rows = conn.execute(f"SELECT count(*) FROM {target}").fetchone()[0]
        loaded = 0
        if conn.execute("SELECT to_regclass(%s)", (f"{settings.loader_schema}.load_hours",)).fetchone()[0]:
            loaded = conn.execute(
                f"SELECT count(*) FROM {settings.loader_schema}.load_hours WHERE stream = %s AND hour = ANY(%s)",
                (stream.name, [naive_utc(hour) for hour in hours_list]),
            ).fetchone()[0]
    if stored == wanted and rows == keys * hours and loaded == hours:
        with pg_connect() as conn:
            ensure_tables(conn, stream, settings, Postgres())  # the loader's tables as this tree has them
        print(f"  audit data: {hours} hours of {keys:,} keys already loaded into {target}")
        return {"loaded_seconds": None}
    started = time.perf_counter()
    with pg_connect(autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {target}")
        for table in ("ledger", "load_hours"):
            if conn.execute("SELECT to_regclass(%s)", (f"{settings.loader_schema}.{table}",)).fetchone()[0]:
                conn.execute(f"DELETE FROM {settings.loader_schema}.{table} WHERE stream = %s", (stream.name,))
    with pg_connect() as conn:
        ensure_tables(conn, stream, settings, Postgres())
        for hour in hours_list:
            manifest = extract_hour(
                client, stream, hour, StageWriter("ingest", f"bench_audit_{keys}", "extract_hour", 1)
            )
            summary = load_and_merge(
                conn, stream, settings, Postgres(), manifest, staged_batch(client, stream, manifest), "bench_audit"
            )
            if summary["records_inserted"] != keys:
                raise RuntimeError(
                    f"audit hour {hour.isoformat()} loaded {summary['records_inserted']} rows, not {keys}"
                )
    with pg_connect(autocommit=True) as conn:
        # As a table long loaded is: vacuumed. Else autovacuum's lock on the fresh table holds up the
        # merge's lock (and the writer's) until deadlock_timeout cancels it, hour after hour.
        conn.execute(f"VACUUM (ANALYZE) {target}")
    seconds = time.perf_counter() - started
    print(f"  audit data: loaded {hours} hours of {keys:,} keys (and vacuumed) in {seconds:.1f} s")
    return {"loaded_seconds": round(seconds, 1)}


class WriterProbe:
    """A writer on its own connection, looping while an hour is audited: the merge's lock and a row write in turn.

    Each attempt is rolled back at once (the target is left as it was); ``lock_waits`` and
    ``write_waits`` are the seconds each attempt took to be granted. A monitor on a third
    connection samples ``pg_locks``: the locks the audit's session holds on the target and
    whether the writer is waiting for one.
    """

    def __init__(self, lock_statement: str, insert_statement: str, target: str, audit_pid: int) -> None:
        self.lock_statement = lock_statement
        self.insert_statement = insert_statement
        self.target = target
        self.audit_pid = audit_pid
        self.lock_waits: list[float] = []
        self.write_waits: list[float] = []
        self.modes_held: set[str] = set()
        self.samples = 0
        self.samples_waiting = 0
        self.samples_blocked_by_audit = 0
        self.samples_locked = 0
        self._writer_pid: int | None = None
        self._ready = threading.Barrier(3)
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._write, daemon=True),
            threading.Thread(target=self._monitor, daemon=True),
        ]

    def __enter__(self) -> WriterProbe:
        for thread in self._threads:
            thread.start()
        self._ready.wait()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _write(self) -> None:
        with pg_connect() as conn:
            self._writer_pid = conn.info.backend_pid
            self._ready.wait()
            take_lock = True
            while not self._stop.is_set():
                mark = time.perf_counter()
                if take_lock:
                    conn.execute(self.lock_statement.encode())
                else:
                    conn.execute(self.insert_statement.encode(), (PROBE_KEY,))
                (self.lock_waits if take_lock else self.write_waits).append(time.perf_counter() - mark)
                conn.rollback()
                take_lock = not take_lock  # each kind of attempt in turn: both meet a lock held through a merge
                self._stop.wait(PROBE_PAUSE)

    def _monitor(self) -> None:
        with pg_connect(autocommit=True) as conn:
            self._ready.wait()
            while not self._stop.is_set():
                rows = conn.execute(
                    "SELECT pid, mode, granted FROM pg_locks WHERE relation = %s::regclass AND pid = ANY(%s)",
                    (self.target, [self.audit_pid, self._writer_pid]),
                ).fetchall()
                held = {mode for pid, mode, granted in rows if pid == self.audit_pid and granted}
                self.modes_held |= held
                self.samples += 1
                self.samples_locked += "ShareRowExclusiveLock" in held
                if any(pid == self._writer_pid and not granted for pid, _, granted in rows):
                    self.samples_waiting += 1
                    # Who it waits for: the audit, or another session (autovacuum's SHARE UPDATE EXCLUSIVE
                    # on a freshly loaded table blocks the merge's lock until deadlock_timeout cancels it).
                    (blockers,) = conn.execute("SELECT pg_blocking_pids(%s)", (self._writer_pid,)).fetchone()
                    self.samples_blocked_by_audit += self.audit_pid in blockers
                self._stop.wait(MONITOR_INTERVAL)

    def summary(self) -> dict[str, Any]:
        return {
            "attempts": len(self.lock_waits) + len(self.write_waits),
            "lock_wait_max": max(self.lock_waits, default=0.0),
            "lock_wait_total": sum(self.lock_waits),
            "write_wait_max": max(self.write_waits, default=0.0),
            "write_wait_total": sum(self.write_waits),
            "wait_max": max([*self.lock_waits, *self.write_waits], default=0.0),
            "modes_held": sorted(self.modes_held),
            "samples": self.samples,
            "samples_waiting": self.samples_waiting,
            "samples_blocked_by_audit": self.samples_blocked_by_audit,
            "samples_locked": self.samples_locked,
        }


def probe_main() -> None:
    """The writer probe's process: a setup line on stdin, then per hour ``start`` ... ``stop`` (its summary on stdout).

    A process of its own, so that its waits are the server's and not this process's GIL: the audit
    it probes runs Python (Parquet reads, COPY) in the bench's process.
    """
    setup = json.loads(sys.stdin.readline())
    for line in sys.stdin:
        if line.strip() != "start":
            break
        with WriterProbe(
            setup["lock_statement"], setup["insert_statement"], setup["target"], setup["audit_pid"]
        ) as probe:
            print("ready", flush=True)
            sys.stdin.readline()  # stop
        print(json.dumps(probe.summary()), flush=True)


class ProbeProcess:
    """The bench's end of the probe process (bench/audit_cost.py probe_main)."""

    def __init__(self, setup: dict[str, Any]) -> None:
        from bench.worker import deployed_environment, package_copy

        settings = config()
        environment = deployed_environment()
        environment["PYTHONPATH"] = os.pathsep.join([str(package_copy()), str(settings.plugins), str(settings.root)])
        self.process = subprocess.Popen(
            [sys.executable, "-P", "-c", "from bench.audit_cost import probe_main; probe_main()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=environment,
            cwd=str(settings.root),
        )
        self._send(json.dumps(setup))

    def _send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def _receive(self) -> str:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the writer probe ended (exit code {self.process.wait()})")
        return line

    @contextlib.contextmanager
    def probing(self) -> Iterator[dict[str, Any]]:
        """The writer and the monitor run through the block; the dict then holds their summary."""
        self._send("start")
        self._receive()  # ready: both connections are open and looping
        summary: dict[str, Any] = {}
        yield summary
        self._send("stop")
        summary.update(json.loads(self._receive()))

    def close(self) -> None:
        self._send("exit")
        self.process.wait(timeout=30)


def audit_hour_locked(
    conn: Any, client: Any, stream: Any, settings: Any, dialect: Any, hour: datetime, run_id: str
) -> dict[str, Any]:
    """The audit of one hour as it ran before f5cbbee: the hour's truth merged under the lock, findings with it."""
    from firehose_loader.audit import hour_truth, read_result
    from firehose_loader.handover import handed_hour
    from firehose_loader.layout import naive_utc
    from firehose_loader.load import merge_hour, staged_batch

    truth = hour_truth(conn, client, stream, settings, dialect, hour, run_id, try_number=1)
    findings = {"late_objects": truth.late, "audited_at": naive_utc(datetime.now(UTC)), "try_number": 1}
    merge_hour(
        conn,
        stream,
        settings,
        dialect,
        truth.manifest,
        staged_batch(client, stream, truth.manifest),
        run_id,
        write_ledger=truth.reloaded,
        measured_by="audit",
        then=[("audit/record_result.sql", findings)],
    )
    return read_result(conn, stream, settings, dialect, naive_utc(handed_hour(truth.manifest)), run_id, 1)


def run_audit_cost(keys: int, hours: int) -> dict[str, Any]:
    """Audit each healthy hour both ways (interleaved), with the writer probe running through each audit."""
    from psycopg import sql

    from firehose_loader.audit import audit_hour
    from firehose_loader.config import Settings
    from firehose_loader.load import set_session_timeouts, template_context
    from firehose_loader.warehouse.postgres import Postgres

    print(f"\n== audit: {hours} healthy hours of {keys:,} keys, a writer probing each audit ==")
    loaded = ensure_audit_data(keys, hours)
    names = audit_names(keys)
    stream, settings, dialect = audit_stream(keys), Settings(loader_schema=config().loader_schema), Postgres()
    lock_statement = dialect.lock_statement(template_context(stream, settings, dialect))
    insert_statement = sql.SQL("INSERT INTO {}.{} (event_id, received_at) VALUES (%s, now())").format(
        sql.Identifier(names["schema"]), sql.Identifier(names["table"])
    )
    target = f'"{names["schema"]}"."{names["table"]}"'
    client = s3_client()
    run_id = f"bench_audit_{datetime.now(UTC):%Y%m%dT%H%M%S}"
    load_before = load_average()
    per_mode: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    with pg_connect() as conn:
        set_session_timeouts(conn, stream, settings, dialect)  # as the audit task's session has them
        setup = {
            "lock_statement": lock_statement,
            "insert_statement": insert_statement.as_string(conn),
            "target": target,
            "audit_pid": conn.info.backend_pid,
        }
        probe = ProbeProcess(setup)
        try:
            for hour in audit_hours_list(hours):
                for mode in MODES:
                    mode_run = f"{run_id}_{'locked' if mode == LOCKED else 'lock_free'}"
                    with probe.probing() as waits:
                        mark = time.perf_counter()
                        if mode == LOCKED:
                            result = audit_hour_locked(conn, client, stream, settings, dialect, hour, mode_run)
                        else:
                            result = audit_hour(conn, client, stream, settings, dialect, hour, mode_run, try_number=1)
                        seconds = time.perf_counter() - mark
                    per_mode[mode].append({"hour": hour, "seconds": seconds, "status": result["status"], **waits})
                locked, free = per_mode[LOCKED][-1], per_mode[LOCK_FREE][-1]
                print(
                    f"  {hour:%Y-%m-%dT%H}  locked {locked['seconds']:5.2f} s (writer waited up to "
                    f"{locked['wait_max']:.3f} s)  lock-free {free['seconds']:5.2f} s (writer waited up to "
                    f"{free['wait_max']:.3f} s)"
                )
        finally:
            probe.close()
    modes = {}
    for mode, rows in per_mode.items():
        modes[mode] = {
            "hours": rows,
            "median_seconds": statistics.median(row["seconds"] for row in rows),
            "total_seconds": sum(row["seconds"] for row in rows),
            "lock_wait_max": max(row["lock_wait_max"] for row in rows),
            "lock_wait_total": sum(row["lock_wait_total"] for row in rows),
            "write_wait_max": max(row["write_wait_max"] for row in rows),
            "write_wait_total": sum(row["write_wait_total"] for row in rows),
            "median_hour_wait_max": statistics.median(row["wait_max"] for row in rows),
            "modes_held": sorted({mode for row in rows for mode in row["modes_held"]}),
            "samples_locked": sum(row["samples_locked"] for row in rows),
            "samples_waiting": sum(row["samples_waiting"] for row in rows),
            "samples_blocked_by_audit": sum(row["samples_blocked_by_audit"] for row in rows),
            "samples": sum(row["samples"] for row in rows),
            "attempts": sum(row["attempts"] for row in rows),
            "not_ok": [row["hour"].isoformat() for row in rows if row["status"] != "ok"],
        }
    return {
        "keys": keys,
        "hours": hours,
        "load_before": load_before,
        "load_after": load_average(),
        **loaded,
        "modes": modes,
    }


def audit_healthy(audit: dict[str, Any]) -> bool:
    """Every audited hour was found healthy (status ok) by both ways."""
    return all(not mode["not_ok"] for mode in audit["modes"].values())
