"""`make up`, `make down`, `make up` as a user runs them, after the tests left a foreign DAG behind.

The test runs the real targets against a stack of its own (``FIREHOSE_LOCAL`` under
``.local/make-up-test``, free ports for PostgreSQL, S3 and Airflow), so it never touches the stack
the rest of the suite uses. In order:

1. ``airflow dags test`` of a stream that exists only in a test streams file, in the tests'
   metadata database (``airflow``), as the integration tests, `make demo` and the benchmark do;
2. ``make up`` with a streams file of two streams, and ``make down`` at once, while the first
   tasks are queued or running (what a user's Ctrl-C-and-restart does);
3. ``make up`` with the example stream only (settle grace 0, so the first cycle needs no waiting).

Then it waits for the first cycle and asserts on the UI's metadata database (``airflow_ui``): the
DAGs, serialized DAGs and runs are exactly the streams file's, no task instance is failed, and
the scheduler's hour and every backfill hour are ``success``. ``make status`` agrees.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import boto3
import psycopg
import pytest
import yaml

from firehose_loader.layout import HOUR
from tools import airflow_local
from tools.simulate import product_hour
from tools.up import BACKFILL_HOURS, backfill_window

ROOT = Path(__file__).resolve().parents[2]
LOCAL = ROOT / ".local" / "make-up-test"
FIRST_CYCLE_TIMEOUT = 600
FOREIGN_HOUR = datetime(2026, 1, 5, 3, tzinfo=UTC)


def run(command: list[str], env: dict[str, str], log: Path, timeout: float) -> subprocess.CompletedProcess:
    with log.open("ab") as out:
        out.write(f"\n$ {' '.join(command)}\n".encode())
        out.flush()
        result = subprocess.run(
            command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout
        )
        out.write(result.stdout)
    return result


def make(target: str, env: dict[str, str], log: Path, timeout: float = 600) -> str:
    result = run(["make", "--no-print-directory", target], env, log, timeout)
    output = result.stdout.decode(errors="replace")
    assert result.returncode == 0, f"make {target} failed:\n{output[-3000:]}"
    return output


def streams_file(path: Path, streams: list[dict]) -> Path:
    bundled = yaml.safe_load((ROOT / "include" / "streams.yml").read_text())
    bundled["streams"] = streams
    path.write_text(yaml.safe_dump(bundled, sort_keys=False))
    return path


def example_stream(**changes) -> dict:
    stream = dict(yaml.safe_load((ROOT / "include" / "streams.yml").read_text())["streams"][0])
    stream.update(settle_grace_minutes=0, **changes)
    return stream


def rows(port: int, database: str, query: str) -> list[tuple]:
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/{database}") as conn:
        return conn.execute(query).fetchall()


@pytest.fixture
def own_stack():
    shutil.rmtree(LOCAL, ignore_errors=True)
    LOCAL.mkdir(parents=True)
    ports = {name: str(airflow_local.free_port()) for name in ("PG", "S3", "AIRFLOW")}
    env = {
        **os.environ,
        "FIREHOSE_LOCAL": str(LOCAL),
        "FIREHOSE_PG_PORT": ports["PG"],
        "FIREHOSE_S3_PORT": ports["S3"],
        "FIREHOSE_AIRFLOW_PORT": ports["AIRFLOW"],
    }
    log = LOCAL / "test.log"
    try:
        yield env, int(ports["PG"]), int(ports["S3"]), log
    finally:
        make("down", env, log, timeout=300)
        left = [path.name for path in (LOCAL / "up").glob("*.pid")] if (LOCAL / "up").exists() else []
        assert not left, f"pid files left after make down: {left}"


@pytest.mark.timeout(1200)  # two starts, one stop and a first cycle; about 4 minutes on 2 cores
def test_a_restart_starts_clean(own_stack):
    env, pg_port, s3_port, log = own_stack
    token = uuid.uuid4().hex[:8]
    events = example_stream()
    extra = example_stream(name=f"extra_{token}", prefix=f"extra-{token}/", table=f"t_{token}.extra")
    foreign = example_stream(name=f"foreign_{token}", prefix=f"foreign-{token}/", table=f"t_{token}.foreign")
    two_streams = streams_file(LOCAL / "two-streams.yml", [events, extra])
    one_stream = streams_file(LOCAL / "one-stream.yml", [events])
    foreign_file = streams_file(LOCAL / "foreign.yml", [foreign])
    wanted = {"ingest_events", "audit_events"}

    # 1. A foreign stream's `dags test` in the tests' metadata database, as the rest of the suite leaves it.
    assert run([str(airflow_local.VENV_BIN / "python"), "tools/stack.py", "up"], env, log, 600).returncode == 0
    s3 = boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{s3_port}",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    s3.create_bucket(Bucket=foreign["bucket"])
    for item in product_hour(foreign["prefix"], foreign["name"], FOREIGN_HOUR, 50, random.Random(7)):
        s3.put_object(Bucket=foreign["bucket"], Key=item.key, Body=item.body)
    dags_test = (
        f". {LOCAL / 'stack.env'} && STREAMS_CONFIG={foreign_file} exec airflow dags test"
        f" ingest_foreign_{token} {(FOREIGN_HOUR + HOUR).isoformat()}"
    )
    run(["bash", "-c", dags_test], env, log, 600)
    assert rows(pg_port, "airflow", f"SELECT run_id FROM dag_run WHERE dag_id = 'ingest_foreign_{token}'"), (
        "the foreign stream's `dags test` left no run in the tests' metadata database; see " + str(log)
    )

    # 2. Up with two streams, down at once, while the first tasks are queued or running.
    output = make("up", {**env, "STREAMS_CONFIG": str(two_streams)}, log)
    assert f"ingest_extra_{token}" in output
    make("down", env, log)

    # 3. Up with the example stream only, then the first cycle.
    began = time.monotonic()
    started_at = datetime.now(UTC)
    output = make("up", {**env, "STREAMS_CONFIG": str(one_stream)}, log)
    up_seconds = time.monotonic() - began
    assert f"deleted ingest_extra_{token}" in output and f"deleted audit_extra_{token}" in output, output
    first, last = backfill_window(started_at)
    hours = [first + offset * HOUR for offset in range(BACKFILL_HOURS)]  # the backfill's and the scheduler's
    assert hours[-2] == last

    def ingest_runs() -> dict[datetime, tuple[str, str]]:
        found = rows(
            pg_port, "airflow_ui", "SELECT logical_date, run_type, state FROM dag_run WHERE dag_id = 'ingest_events'"
        )
        return {logical: (run_type, state) for logical, run_type, state in found}

    def green() -> bool:
        runs = ingest_runs()
        return all(runs.get(hour, ("", ""))[1] == "success" for hour in hours)

    deadline = time.monotonic() + FIRST_CYCLE_TIMEOUT
    while not green():
        failed = rows(pg_port, "airflow_ui", "SELECT dag_id, run_id, task_id FROM task_instance WHERE state = 'failed'")
        assert not failed, f"failed task instances: {failed}; see {LOCAL / 'up'}"
        assert time.monotonic() < deadline, f"no green first cycle after {FIRST_CYCLE_TIMEOUT}s: {ingest_runs()}"
        time.sleep(3)
    cycle_seconds = time.monotonic() - began
    print(f"\nmake up took {up_seconds:.0f} s; the first cycle was green {cycle_seconds:.0f} s after make up began")
    (LOCAL / "timing.txt").write_text(f"make up {up_seconds:.1f} s, green first cycle {cycle_seconds:.1f} s\n")

    runs = ingest_runs()
    assert [runs[hour] for hour in hours] == [("backfill", "success")] * (BACKFILL_HOURS - 1) + [
        ("scheduled", "success")
    ]
    bad = rows(
        pg_port,
        "airflow_ui",
        "SELECT dag_id, run_id, task_id, state FROM task_instance WHERE state IN ('failed', 'upstream_failed')",
    )
    assert not bad, bad
    assert not rows(pg_port, "airflow_ui", "SELECT dag_id, run_id FROM dag_run WHERE state = 'failed'")
    for table in ("dag", "serialized_dag"):
        assert {row[0] for row in rows(pg_port, "airflow_ui", f"SELECT DISTINCT dag_id FROM {table}")} == wanted
    assert {row[0] for row in rows(pg_port, "airflow_ui", "SELECT DISTINCT dag_id FROM dag_run")} <= wanted
    # The foreign run is still where the tests left it, and nowhere near the UI.
    assert rows(pg_port, "airflow", f"SELECT 1 FROM dag_run WHERE dag_id = 'ingest_foreign_{token}'")
    status = make("status", env, log, timeout=120)
    assert "failed runs: none" in status, status
