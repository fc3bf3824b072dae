"""``deployed``: the whole ingest DAG as a deployment runs it: each task in a LocalExecutor process, against a
running api-server.

``airflow dags test --use-executor`` stands in for the scheduler (it queues each ready task on the executor
and polls once a second); the api-server is started beforehand (:func:`running_api_server`), as a
deployment's is always up.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.common import prepare_ours, table_for
from bench.contenders.dag import whole_dag_run
from bench.worker import deployed_environment, run_worker


def contender_deployed(size: int) -> dict[str, Any]:
    return whole_dag_run(size, "deployed", ["--use-executor"])


def run_deployed(size: int) -> dict[str, Any]:
    prepare_ours(table_for("deployed", size)[0], size)
    with running_api_server() as environment:
        return run_worker("deployed", size, environment)


@contextlib.contextmanager
def running_api_server() -> Iterator[dict[str, str]]:
    """An Airflow api-server on a free port, its execution API warmed up: yields the environment of its clients.

    The first request to the execution API builds its versioned routes (seconds); a deployment's
    api-server has done that long before a run, so the bench does it before the clock starts.
    """
    from tools import airflow_local

    port = airflow_local.free_port()
    base_url = f"http://127.0.0.1:{port}"
    environment = {
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": base_url,
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base_url}/execution/",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        # The executor signs each task's token; the api-server must verify it with the same secret.
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
    }
    env = deployed_environment(environment)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    log = Path(tempfile.mkdtemp(prefix="bench-api-server-")) / "api-server.log"
    process = airflow_local.start([str(Path(sys.executable).parent / "airflow"), "api-server"], env, log)
    try:
        airflow_local.wait_until(
            lambda: airflow_local.http_status(f"{base_url}/execution/health") == 200,
            "the api-server",
            180,
            process,
            log,
        )
        yield environment
    finally:
        airflow_local.stop_tree(process.pid, grace=20)
