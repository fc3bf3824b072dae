"""Fixtures for whole-DAG runs against the local stack: the moto S3 server over
HTTP and a real PostgreSQL server. Only Redshift and IAM are not real here, and no
test in this folder pretends they are.

Every stream a test declares goes into one streams file that ``STREAMS_CONFIG``
points to, exactly as a user declares a stream; the DAGs are then parsed from
``dags/`` by Airflow itself.
"""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from psycopg import sql

ROOT = Path(__file__).resolve().parents[2]
SESSION_TOKEN = uuid.uuid4().hex[:8]


@pytest.fixture(scope="session")
def warehouse(stack_up) -> Iterator[psycopg.Connection]:
    with psycopg.connect(os.environ["WAREHOUSE_URL"], autocommit=True) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        yield conn


class StreamRegistry:
    """Declares test streams in a streams file of their own, one bucket and schema each."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: list[dict[str, Any]] = []

    def declare(self, s3: Any, name: str, **fields: Any) -> dict[str, Any]:
        stream_name = f"{name}_{SESSION_TOKEN}"
        bucket = f"t-{name.replace('_', '-')}-{SESSION_TOKEN}"
        entry = {
            "name": stream_name,
            "bucket": bucket,
            "prefix": "events/",
            "table": f"t_{SESSION_TOKEN}_{name}.events",
            "settle_grace_minutes": 0,
            **fields,
        }
        s3.create_bucket(Bucket=bucket)
        self.entries.append(entry)
        self.path.write_text(yaml.safe_dump({"streams": self.entries}, sort_keys=False))
        os.environ["STREAMS_CONFIG"] = str(self.path)
        return entry


@pytest.fixture(scope="session")
def streams(tmp_path_factory, stack_up) -> StreamRegistry:
    return StreamRegistry(tmp_path_factory.mktemp("streams") / "streams.yml")


def get_dag(dag_id: str, refused_streams: bool = False):
    """The DAG, parsed from dags/; with refused_streams, the streams file may refuse some streams (the
    import error of dags/streams_config.py), but ingest.py and audit.py must still import."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    errors = {
        path: error
        for path, error in bag.import_errors.items()
        if not (refused_streams and Path(path).name == "streams_config.py")
    }
    assert not errors, errors
    dag = bag.get_dag(dag_id)
    assert dag is not None, f"{dag_id} not among {sorted(bag.dag_ids)}"
    for task in dag.tasks:
        # A failing test should fail now, not after the production retry schedule.
        task.retries = 0
    return dag


def run_hour(stream_name: str, hour: datetime, env: dict[str, str] | None = None, refused_streams: bool = False):
    """Run ingest_<stream> for the hour [hour, hour+1h) as `airflow dags test` does; return the DagRun."""
    return run_dag(f"ingest_{stream_name}", hour + timedelta(hours=1), env=env, refused_streams=refused_streams)


def run_audit(stream_name: str, end: datetime, lookback_hours: int):
    """Run audit_<stream> at `end` as `airflow dags test audit_<stream> <end> -c ...` does."""
    return run_dag(f"audit_{stream_name}", end, conf={"lookback_hours": lookback_hours})


def run_dag(
    dag_id: str,
    logical_date: datetime,
    env: dict[str, str] | None = None,
    conf: dict | None = None,
    refused_streams: bool = False,
):
    dag = get_dag(dag_id, refused_streams=refused_streams)
    saved = {name: os.environ.get(name) for name in (env or {})}
    os.environ.update(env or {})
    try:
        return dag.test(logical_date=logical_date, run_conf=conf)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def dump_table(warehouse: psycopg.Connection, table: str, order: str) -> bytes:
    """The table as COPY text, in a stable order: equal dumps mean byte-identical contents."""
    buffer = io.BytesIO()
    statement = sql.SQL("COPY (SELECT * FROM {} ORDER BY {}) TO STDOUT").format(
        sql.Identifier(*table.split(".")), sql.SQL(", ").join(sql.Identifier(name.strip()) for name in order.split(","))
    )
    with warehouse.cursor().copy(statement) as copy:
        for chunk in copy:
            buffer.write(chunk)
    return buffer.getvalue()


def put(s3: Any, bucket: str, key: str, body: bytes) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=body)
