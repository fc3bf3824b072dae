"""The bench's hour, its names in S3 and the warehouse, and the clients every module uses."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.config import config

BUCKET = "firehose-bench"
HOUR = datetime(2026, 3, 1, 10, tzinfo=UTC)
HOUR_LENGTH = timedelta(hours=1)
# Bump when the generated data changes: a stored hour with another version is generated again.
GENERATOR_VERSION = 1
# tools.simulate.PRODUCT_EVENT_COLUMNS, written out: a BENCH_BASELINE tree may predate that name.
COLUMNS = {
    "event_id": "varchar(64)",
    "event_type": "varchar(64)",
    "user_id": "bigint",
    "received_at": "timestamptz",
    "amount": "numeric(12,2)",
    "is_test": "boolean",
    "properties": "json",
}
KEY = "event_id"
ORDER = "received_at"


class Stages:
    """Wall-clock seconds per named stage."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds


def prefix_for(size: int) -> str:
    return f"bench-{size}/"


def stream_name(size: int) -> str:
    return f"bench_{size}"


def loader_stream_name(size: int) -> str:
    """The stream name ours loads under (ledger rows, stage keys, the DAG id)."""
    return f"{config().namespace}_{size}"


def table_for(contender: str, size: int) -> tuple[str, str]:
    if " before (" in contender:  # a baseline's run: "ours before (ref)" -> ours_before
        contender = contender.split(" before (")[0] + "_before"
    if contender == "dlt":  # dlt keeps its own state tables in the dataset: one per size
        contender = f"dlt_{size}"
    schema = f"{config().namespace}_" + re.sub(r"[^a-z0-9_]", "_", contender.lower())
    return schema, f"events_{size}"


def stream_entry(size: int, schema: str) -> dict[str, Any]:
    namespace = config().namespace.replace("_", "-")
    return {
        "name": loader_stream_name(size),
        "bucket": BUCKET,
        "prefix": prefix_for(size),
        "table": f"{schema}.events_{size}",
        "key": [KEY],
        "order_by": ORDER,
        "columns": COLUMNS,
        "settle_grace_minutes": 0,
        "staging_prefix": f"{namespace}-staging/",
        "quarantine_prefix": f"{namespace}-quarantine/",
    }


def s3_client() -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1")


def pg_connect(autocommit: bool = False) -> Any:
    import psycopg

    conn = psycopg.connect(os.environ["WAREHOUSE_URL"], autocommit=autocommit)
    conn.execute("SET TIME ZONE 'UTC'")
    if not autocommit:
        conn.commit()
    return conn


def hour_objects(client: Any, size: int) -> list[tuple[str, int]]:
    from firehose_loader.layout import default_layout
    from firehose_loader.s3io import list_hour_objects

    return [(item.key, item.size) for item in list_hour_objects(client, BUCKET, default_layout(prefix_for(size)), HOUR)]


def forget_hours(size: int, loader_schema: str | None = None) -> None:
    """Remove the stream's rows from the loader's ledger and load_hours, so that the hour loads afresh."""
    loader_schema = loader_schema or config().loader_schema
    with pg_connect(autocommit=True) as conn:
        for table in ("ledger", "load_hours"):
            exists = conn.execute("SELECT to_regclass(%s)", (f"{loader_schema}.{table}",)).fetchone()[0]
            if exists:
                conn.execute(f"DELETE FROM {loader_schema}.{table} WHERE stream = %s", (loader_stream_name(size),))


def prepare_ours(schema: str, size: int, loader_schema: str | None = None) -> None:
    """Drop ours' target table and forget the stream's hours: the hour loads into a fresh table."""
    with pg_connect(autocommit=True) as conn:
        conn.execute(f'DROP TABLE IF EXISTS "{schema}"."events_{size}"')
    forget_hours(size, loader_schema)


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def fmt_rss(value: int | None) -> str:
    return "-" if not value else f"{value / 2**30:.2f} GB"
