"""Helpers shared by the integration tests of the reliability promises (this module holds no tests).

The state of a stream that every reliability test compares is its :class:`Snapshot`: the
target as an ordered COPY dump (byte-identical or not), and the ledger and load_hours rows
without what legitimately differs between two streams or two runs (the stream name, run id,
load time, stage key).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import psycopg
from psycopg import sql

from firehose_loader.config import Settings, Stream, parse_stream
from tests.integration.conftest import ROOT, SESSION_TOKEN, dump_table, get_dag

LEDGER_COLUMNS = (
    "object_key, etag, size_bytes, compression, status, message, records_raw, records_valid, records_quarantined,"
    " records_duplicate, records_inserted, records_updated, records_unchanged, records_superseded,"
    " replace(quarantine_key, stream, '<stream>')"
)
LOAD_HOURS_COLUMNS = (
    "hour, status, objects, objects_unreadable, error_objects, records_raw, records_valid, records_quarantined,"
    " records_duplicate, records_inserted, records_updated, records_unchanged, records_superseded,"
    " stage_key IS NOT NULL"
)
# Positions of records_inserted .. records_superseded in the rows above.
LEDGER_ACTIONS = slice(10, 14)
LOAD_HOURS_ACTIONS = slice(9, 13)


@dataclass(frozen=True)
class Snapshot:
    table: bytes
    ledger: tuple[tuple, ...]
    load_hours: tuple[tuple, ...]

    def accounting(self) -> Snapshot:
        """The same without how merged rows split into inserted/updated/unchanged/superseded.

        A rerun finds its rows already there (unchanged instead of inserted): the ledger then
        describes the last load, and only the split differs from the first one.
        """
        return Snapshot(
            self.table,
            tuple(_merged(row, LEDGER_ACTIONS) for row in self.ledger),
            tuple(_merged(row, LOAD_HOURS_ACTIONS) for row in self.load_hours),
        )


def _merged(row: tuple, actions: slice) -> tuple:
    return (*row[: actions.start], sum(row[actions]), *row[actions.stop :])


def snapshot(warehouse: psycopg.Connection, entry: dict[str, Any], order: str = "id") -> Snapshot:
    stream = entry["name"]
    ledger = warehouse.execute(
        f"SELECT {LEDGER_COLUMNS} FROM firehose_loader.ledger WHERE stream = %s ORDER BY object_key", (stream,)
    ).fetchall()
    load_hours = warehouse.execute(
        f"SELECT {LOAD_HOURS_COLUMNS} FROM firehose_loader.load_hours WHERE stream = %s ORDER BY hour", (stream,)
    ).fetchall()
    return Snapshot(dump_table(warehouse, entry["table"], order), tuple(ledger), tuple(load_hours))


def unlisted_stream(s3: Any, name: str, **fields: Any) -> tuple[dict[str, Any], Stream]:
    """A stream for tests that call the tasks' functions directly: like ``streams.declare``, but
    not in the streams file, so it adds no DAG to every later DAG run's parse.
    """
    entry = {
        "name": f"{name}_{SESSION_TOKEN}",
        "bucket": f"t-{name.replace('_', '-')}-{SESSION_TOKEN}",
        "prefix": "events/",
        "table": f"t_{SESSION_TOKEN}_{name}.events",
        "settle_grace_minutes": 0,
        **fields,
    }
    s3.create_bucket(Bucket=entry["bucket"])
    return entry, parse_stream(entry, 0)


def load_in_process(entry: dict[str, Any], hour: datetime, run_id: str) -> dict[str, Any]:
    """Load one hour with the functions the ingest DAG's tasks call (Airflow connections, no DAG run)."""
    from firehose_loader.airflow.tasks import run_ensure_tables, run_extract, run_load_and_merge

    stream, settings = parse_stream(entry, 0), Settings()
    run_ensure_tables(stream, settings)
    manifest = run_extract(stream, settings, hour, hour + timedelta(hours=1), run_id, 1)["manifest"]
    assert manifest is not None, "an hour under split_above_bytes is extracted whole"
    return run_load_and_merge(stream, settings, manifest, run_id)


def run_hour_with_retries(
    stream_name: str,
    hour: datetime,
    retries: dict[str, int],
    env: dict[str, str] | None = None,
    on_retry: Callable[[Any], None] | None = None,
):
    """Run ingest_<stream> for one hour like run_hour, but let the given tasks retry at once (no delay).

    ``on_retry`` is called (as the tasks' ``on_retry_callback``) between a failed try and its retry.
    """
    dag = get_dag(f"ingest_{stream_name}")
    for task_id, count in retries.items():
        task = dag.task_dict[task_id]
        task.retries = count
        task.retry_delay = timedelta(0)
        task.retry_exponential_backoff = 0
        if on_retry is not None:
            task.on_retry_callback = [on_retry]
    saved = {name: os.environ.get(name) for name in (env or {})}
    os.environ.update(env or {})
    try:
        return dag.test(logical_date=hour + timedelta(hours=1))
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def task_tries(dag_run) -> dict[str, tuple[str, int]]:
    """Each task's final state and how many tries it took."""
    return {ti.task_id: (str(ti.state), ti.try_number) for ti in dag_run.get_task_instances()}


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = 90.0, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def target_locks(warehouse: psycopg.Connection, table: str) -> list[tuple[int, str, bool, str]]:
    """(pid, mode, granted, backend state) of every lock on the table, other than this connection's."""
    return warehouse.execute(
        "SELECT l.pid, l.mode, l.granted, a.state FROM pg_locks l JOIN pg_stat_activity a USING (pid)"
        " WHERE l.locktype = 'relation' AND l.relation = to_regclass(%s) AND l.pid <> pg_backend_pid()"
        " ORDER BY l.pid",
        (table,),
    ).fetchall()


def backend_alive(warehouse: psycopg.Connection, pid: int) -> bool:
    return warehouse.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()[0] > 0


@contextmanager
def table_gate(table: str) -> Iterator[psycopg.Connection]:
    """Hold the lock every merge takes first, so that merges started meanwhile queue behind it at once.

    Yields the gate's connection; leaving the block rolls back and opens the gate.
    """
    with psycopg.connect(os.environ["WAREHOUSE_URL"]) as conn:
        conn.execute(sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(sql.Identifier(*table.split("."))))
        try:
            yield conn
        finally:
            conn.rollback()


def waiting_on(warehouse: psycopg.Connection, table: str) -> int:
    return sum(1 for _pid, _mode, granted, _state in target_locks(warehouse, table) if not granted)


WORKER = """
import json, sys
from datetime import datetime
from tests.integration.support import load_in_process
summary = load_in_process(json.loads(sys.argv[1]), datetime.fromisoformat(sys.argv[2]), sys.argv[3])
print("SUMMARY", summary, flush=True)
"""


def start_worker(entry: dict[str, Any], hour: datetime, run_id: str, log: Path, **env: str) -> subprocess.Popen:
    """A separate Python process that loads the hour with the ingest tasks' functions."""
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, json.dumps(entry), hour.isoformat(), run_id],
        cwd=ROOT,
        env=child_env(**env),
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def child_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, **extra}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "plugins"), str(ROOT), env.get("PYTHONPATH", "")])
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


SIMPLE = {"key": ["id"], "order_by": "seq", "columns": {"id": "varchar(32)", "seq": "integer", "note": "text"}}
POISON_KEY = "k-poison"


def ndjson(records: list[dict[str, Any] | bytes]) -> bytes:
    return b"".join((item if isinstance(item, bytes) else orjson.dumps(item)) + b"\n" for item in records)


def object_key(hour: datetime, name: str) -> str:
    return f"events/{hour:%Y/%m/%d/%H}/stream-1-{hour:%Y-%m-%d-%H}-{name}"


def write_two_hours(s3: Any, bucket: str, first: datetime) -> tuple[datetime, datetime]:
    """Two hours whose second updates, extends and re-sends the first; one bad record per hour.

    The second hour carries new keys (one of them POISON_KEY), newer versions of old keys,
    an older version that must lose, and at-least-once duplicates.
    """
    second = first + timedelta(hours=1)
    s3.put_object(
        Bucket=bucket,
        Key=object_key(first, "00-a"),
        Body=ndjson([{"id": f"k{n:03d}", "seq": 1, "note": f"first {n}"} for n in range(40)]),
    )
    s3.put_object(
        Bucket=bucket,
        Key=object_key(first, "10-b"),
        Body=ndjson(
            [{"id": f"k{n:03d}", "seq": 1, "note": f"again {n}"} for n in range(30, 50)] + [b'{"id": "bad", "seq": }']
        ),
    )
    s3.put_object(
        Bucket=bucket,
        Key=object_key(second, "00-a"),
        Body=ndjson(
            [{"id": f"k{n:03d}", "seq": 2, "note": f"second {n}"} for n in range(20, 60)]
            + [{"id": "k000", "seq": 0, "note": "older, must lose"}, {"id": POISON_KEY, "seq": 1, "note": "poison"}]
        ),
    )
    s3.put_object(
        Bucket=bucket,
        Key=object_key(second, "10-b"),
        Body=ndjson([{"id": f"k{n:03d}", "seq": 2, "note": f"second {n}"} for n in range(50, 55)] + [{"id": "no-seq"}]),
    )
    return first, second
