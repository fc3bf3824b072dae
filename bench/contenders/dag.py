"""``dag``: the whole ingest DAG for the hour with ``airflow dags test``, as a user runs it (tasks in that process).

:func:`whole_dag_run` is shared with ``deployed`` (bench/contenders/deployed.py), which adds ``--use-executor``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.common import HOUR, HOUR_LENGTH, loader_stream_name, pg_connect, prepare_ours, stream_entry, table_for
from bench.config import config
from bench.worker import deployed_environment, run_worker, start_clock

# `airflow dags test` logs an ISO timestamp at the start of each line.
DAG_RUN_CREATED = re.compile(r"^(\S+)\s+\[info\s*\]\s+Created dag run\.", re.MULTILINE)
DAG_RUN_FINISHED = re.compile(r"^(\S+)\s+\[info\s*\]\s+DagRun Finished:", re.MULTILINE)


def contender_dag(size: int) -> dict[str, Any]:
    return whole_dag_run(size, "dag", [])


def run_dag(size: int) -> dict[str, Any]:
    prepare_ours(table_for("dag", size)[0], size)
    return run_worker("dag", size)


def whole_dag_run(size: int, label: str, options: list[str]) -> dict[str, Any]:
    import yaml

    loader_schema = config().loader_schema
    schema = table_for(label, size)[0]
    folder = Path(tempfile.mkdtemp(prefix=f"bench-{label}-"))
    streams_file = folder / "streams.yml"
    streams_file.write_text(
        yaml.safe_dump({"loader_schema": loader_schema, "streams": [stream_entry(size, schema)]}, sort_keys=False)
    )
    dag_id = f"ingest_{loader_stream_name(size)}"
    command = ["airflow", "dags", "test", *options, dag_id, (HOUR + HOUR_LENGTH).isoformat()]
    environment = deployed_environment({"STREAMS_CONFIG": str(streams_file)})
    environment["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environment.get('PATH', '')}"
    started = start_clock()
    completed = subprocess.run(command, env=environment, cwd=str(config().root), capture_output=True, text=True)
    seconds = time.perf_counter() - started
    log = folder / "dags-test.log"
    log.write_text(completed.stdout + completed.stderr)
    with pg_connect(autocommit=True) as conn:
        status = conn.execute(
            f"SELECT status FROM {loader_schema}.load_hours WHERE stream = %s AND hour = %s",
            (loader_stream_name(size), HOUR.replace(tzinfo=None)),
        ).fetchone()
    if completed.returncode != 0 or status is None or status[0] != "loaded":
        raise RuntimeError(f"airflow dags test failed (exit {completed.returncode}, load_hours {status}); see {log}")
    shutil.rmtree(folder, ignore_errors=True)
    stages = {}
    run_seconds = dag_run_seconds(completed.stdout + completed.stderr)
    if run_seconds is not None:
        stages["the DAG run (created to finished)"] = run_seconds
        stages["CLI start + exit"] = seconds - run_seconds
    return {"seconds": seconds, "stages": stages, "command": " ".join(command)}


def dag_run_seconds(log: str) -> float | None:
    """Seconds from the DAG run's creation to its end, from the log of `airflow dags test` (None if not found).

    The rest of the command's time is Airflow's CLI starting (and filling its DAG bag) and exiting,
    which a deployment's running scheduler does not pay per run.
    """
    created, finished = DAG_RUN_CREATED.search(log), DAG_RUN_FINISHED.search(log)
    if created is None or finished is None:
        return None
    started_at = datetime.fromisoformat(created.group(1).replace("Z", "+00:00"))
    return (datetime.fromisoformat(finished.group(1).replace("Z", "+00:00")) - started_at).total_seconds()
