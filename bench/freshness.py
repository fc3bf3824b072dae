"""make bench-freshness: landing -> committed with Airflow running, for freshness modes poll and events.

    make bench-freshness                                     # 3 minutes per run: poll and events, 1 and 4 shards
    BENCH_FRESHNESS_MINUTES=10 make bench-freshness

One Airflow of its own (api-server, scheduler with the LocalExecutor, dag-processor, triggerer;
``AIRFLOW_HOME=.local/bench-freshness/airflow``, metadata database ``airflow_bench_freshness``) and
one stream per run, only that run's DAGs unpaused. A producer writes Firehose-like objects into the
current hour's folder for the run's minutes: per shard one gzip JSON-lines object a minute of 60,000
records (a full shard, 1,000 records/s, with a 60 s buffer). Measured: each object's landing (its
S3 LastModified) -> first commit (``object_commits``), the records/s committed, the CPU and memory
of the Airflow processes (sampled every 2 s), and the micro-batch DAG's metadata rows. Written to
``bench/freshness.md`` (which ``make bench`` keeps in ``bench/results.md``) and to the end of
``bench/results.md``.
"""

from __future__ import annotations

import contextlib
import gzip
import math
import os
import platform
import statistics
import subprocess
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import boto3
import orjson
import psutil
import psycopg
import yaml

from firehose_loader.layout import hour_start
from tools import airflow_local, stack

ROOT = Path(__file__).resolve().parents[1]
HOME = ROOT / ".local" / "bench-freshness"
DATABASE = "airflow_bench_freshness"
RESULTS = ROOT / "bench" / "freshness.md"
RECORDS_PER_SHARD_MINUTE = 60_000
MINUTES = int(os.environ.get("BENCH_FRESHNESS_MINUTES", "3"))
RUNS = [("poll", 1), ("events", 1), ("poll", 4), ("events", 4)]
COMMAND = "make bench-freshness"


def stream_entry(token: str, mode: str, shards: int) -> dict:
    name = f"{mode}{shards}_{token}"
    freshness: dict = {"mode": mode, "interval_minutes": 1 if mode == "poll" else 10}
    if mode == "events":
        freshness["queue_url"] = stack.local_queue_url(f"bench-{mode}{shards}-{token}")
    return {
        "name": name,
        "bucket": f"b-{mode}{shards}-{token}",
        "prefix": "events/",
        "table": f"bench_{token}.{mode}{shards}",
        "key": ["event_id"],
        "order_by": "seq",
        "columns": {"event_id": "varchar(64)", "seq": "bigint", "user_id": "bigint", "payload": "text"},
        "settle_grace_minutes": 0,
        "start_date": hour_start(datetime.now(UTC)).isoformat(),
        "freshness": freshness,
    }


def shard_object(shard: int, minute: int, token: str) -> bytes:
    base = (minute * 16 + shard) * RECORDS_PER_SHARD_MINUTE
    lines = (
        orjson.dumps({"event_id": f"{token}-{base + n}", "seq": base + n, "user_id": n % 9973, "payload": "x" * 64})
        for n in range(RECORDS_PER_SHARD_MINUTE)
    )
    return gzip.compress(b"\n".join(lines) + b"\n", compresslevel=1)


class Sampler(threading.Thread):
    """CPU (percent of one core, summed) and RSS of the Airflow process trees, every 2 s."""

    def __init__(self, roots: list[int]) -> None:
        super().__init__(daemon=True)
        self.roots, self.cpu, self.rss, self.stop = roots, [], [], threading.Event()
        self.seen: dict[int, psutil.Process] = {}

    def processes(self) -> list[psutil.Process]:
        found = []
        for pid in {item for root in self.roots for item in airflow_local.process_tree(root)}:
            with contextlib.suppress(psutil.Error):
                found.append(self.seen.setdefault(pid, psutil.Process(pid)))
        return found

    def run(self) -> None:
        for process in self.processes():
            with contextlib.suppress(psutil.Error):
                process.cpu_percent(None)
        while not self.stop.wait(2.0):
            cpu = rss = 0.0
            for process in self.processes():
                with contextlib.suppress(psutil.Error):
                    cpu += process.cpu_percent(None)
                    rss += process.memory_info().rss
            self.cpu.append(cpu)
            self.rss.append(rss)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def start_airflow(streams_file: Path) -> tuple[dict[str, subprocess.Popen], str, dict[str, str]]:
    logs = HOME / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    port = airflow_local.free_port()
    env = airflow_local.airflow_environment(
        HOME / "airflow",
        port,
        DATABASE,
        STREAMS_CONFIG=str(streams_file),
        AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="True",
        AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="10",
        AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=str(airflow_local.free_port()),
        AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT=str(airflow_local.free_port()),
    )
    airflow_local.ensure_password(HOME / "airflow")
    with psycopg.connect(stack.pg_url("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DATABASE}"')
    airflow_local.run_airflow(["db", "migrate"], env, logs / "db-migrate.log", timeout=600)
    airflow = str(airflow_local.VENV_BIN / "airflow")
    processes = {"api-server": airflow_local.start([airflow, "api-server"], env, logs / "api-server.log")}
    base = f"http://localhost:{port}"
    airflow_local.wait_until(lambda: airflow_local.http_status(f"{base}/api/v2/version") == 200, "the api-server", 300)
    for component in ("scheduler", "dag-processor", "triggerer"):
        processes[component] = airflow_local.start([airflow, component], env, logs / f"{component}.log")
    return processes, base, env


def metadata_rows(dag_id: str) -> int:
    with psycopg.connect(stack.pg_url(DATABASE)) as conn:
        runs = conn.execute("SELECT COUNT(*) FROM dag_run WHERE dag_id = %s", (dag_id,)).fetchone()[0]
        tasks = conn.execute("SELECT COUNT(*) FROM task_instance WHERE dag_id = %s", (dag_id,)).fetchone()[0]
    return runs + tasks


def one_run(entry: dict, shards: int, base: str, password: str, roots: list[int]) -> dict:
    s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1")
    with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
        s3.create_bucket(Bucket=entry["bucket"])
    token = airflow_local.api_token(base, password)
    dag_id = f"microbatch_{entry['name']}"
    airflow_local.wait_until(
        lambda: (
            dag_id
            in {d["dag_id"] for d in airflow_local.api_call(base, token, "GET", "/api/v2/dags?limit=100")["dags"]}
        ),
        f"{dag_id} parsed",
        300,
    )
    # Only the micro-batches run: the hour in which the objects land is not over during the run.
    airflow_local.api_call(base, token, "PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
    time.sleep(20)  # the watcher starts and takes the notification's s3:TestEvent
    rows_before = metadata_rows(dag_id)
    sampler = Sampler(roots)
    sampler.start()
    began = datetime.now(UTC)
    keys = []
    for minute in range(MINUTES):
        tick = time.monotonic()
        hour = hour_start(datetime.now(UTC))
        for shard in range(shards):
            key = f"events/{hour:%Y/%m/%d/%H}/{entry['name']}-{shard}-{datetime.now(UTC):%Y-%m-%d-%H-%M-%S}-{uuid.uuid4()}"
            s3.put_object(Bucket=entry["bucket"], Key=key, Body=shard_object(shard, minute, entry["name"]))
            keys.append(key)
        time.sleep(max(0.0, 60 - (time.monotonic() - tick)))

    def committed() -> list[tuple]:
        with psycopg.connect(os.environ["WAREHOUSE_URL"]) as conn:
            return conn.execute(
                "SELECT landed_at, committed_at FROM firehose_loader.object_commits WHERE stream = %s",
                (entry["name"],),
            ).fetchall()

    deadline = time.monotonic() + 900
    while len(committed()) < len(keys) and time.monotonic() < deadline:
        time.sleep(2)
    sampler.stop.set()
    sampler.join()
    pairs = committed()
    ended = datetime.now(UTC)
    rows_after = metadata_rows(dag_id)
    airflow_local.api_call(base, token, "PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": True})
    latencies = [(committed_at - landed_at).total_seconds() for landed_at, committed_at in pairs]
    last_commit = max(committed_at for _, committed_at in pairs)
    first_landing = min(landed_at for landed_at, _ in pairs)
    span = (last_commit - first_landing).total_seconds()
    return {
        "objects": len(keys),
        "committed": len(pairs),
        "p50": percentile(latencies, 0.5),
        "p95": percentile(latencies, 0.95),
        "max": max(latencies),
        "records_per_second": len(pairs) * RECORDS_PER_SHARD_MINUTE / span if span else 0.0,
        "cpu_mean": statistics.fmean(sampler.cpu) if sampler.cpu else 0.0,
        "cpu_max": max(sampler.cpu, default=0.0),
        "rss_max_mb": max(sampler.rss, default=0.0) / 2**20,
        "metadata_rows_per_hour": (rows_after - rows_before) * 3600 / (ended - began).total_seconds(),
    }


def report(results: list[tuple[str, int, dict]]) -> str:
    lines = [
        "## make bench-freshness: landing -> committed with Airflow running",
        "",
        f"Command: `{COMMAND}` (BENCH_FRESHNESS_MINUTES={MINUTES}); {datetime.now(UTC):%Y-%m-%d %H:%M} UTC;"
        f" {platform.platform()}, {os.cpu_count()} CPUs; PostgreSQL and moto (S3 + SQS) on this machine.",
        f"Per shard one gzip JSON-lines object a minute of {RECORDS_PER_SHARD_MINUTE:,} records"
        f" (1,000 records/s), for {MINUTES} minutes; landing = S3 LastModified, committed = object_commits.",
        "",
        "| mode | shards | objects (committed) | p50 | p95 | max | records/s, first landing → last commit | Airflow CPU mean / max (% of a core) | Airflow RSS max | metadata rows / hour |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for mode, shards, r in results:
        lines.append(
            f"| {mode} | {shards} | {r['objects']} ({r['committed']}) | {r['p50']:.1f} s | {r['p95']:.1f} s |"
            f" {r['max']:.1f} s | {r['records_per_second']:,.0f} | {r['cpu_mean']:.0f} / {r['cpu_max']:.0f} |"
            f" {r['rss_max_mb']:,.0f} MB | {r['metadata_rows_per_hour']:,.0f} |"
        )
    lines += [
        "",
        "Metadata rows are the micro-batch DAG's dag_run and task_instance rows (a run per wake-up);"
        " `airflow db clean` bounds them (docs/deploy.md, section 12).",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    stack.up()
    os.environ.update(stack.stack_environment())
    token = uuid.uuid4().hex[:6]
    HOME.mkdir(parents=True, exist_ok=True)
    entries = [stream_entry(token, mode, shards) for mode, shards in RUNS]
    streams_file = HOME / "streams.yml"
    streams_file.write_text(yaml.safe_dump({"streams": entries}, sort_keys=False))
    os.environ["STREAMS_CONFIG"] = str(streams_file)
    stack.ensure_event_queues()
    processes, base, _env = start_airflow(streams_file)
    password = airflow_local.ensure_password(HOME / "airflow")
    results = []
    try:
        for (mode, shards), entry in zip(RUNS, entries, strict=True):
            print(f"bench-freshness: {mode}, {shards} shard(s), {MINUTES} min ...", flush=True)
            results.append((mode, shards, one_run(entry, shards, base, password, [p.pid for p in processes.values()])))
            print(results[-1], flush=True)
    finally:
        for process in processes.values():
            airflow_local.stop_tree(process.pid, grace=20)
    text = report(results)
    RESULTS.write_text(text)
    results_md = ROOT / "bench" / "results.md"
    existing = results_md.read_text() if results_md.exists() else ""
    marker = "## make bench-freshness"
    kept = existing.split(marker)[0].rstrip()
    results_md.write_text((kept + "\n\n" if kept else "") + text)
    print(text)


if __name__ == "__main__":
    main()
