"""``ours``: the DAG's three tasks (ensure_tables, extract_hour, load_and_merge), each in a process of its own."""

from __future__ import annotations

import json
import os
import tempfile
import time
from typing import Any

from bench.baseline import baseline_loader_schema, library, stage_timing, stage_writer
from bench.common import HOUR, Stages, pg_connect, prepare_ours, s3_client, stream_entry, table_for
from bench.config import config
from bench.worker import run_worker, start_clock


def ours_stream(size: int) -> Any:
    schema = config().schema or table_for("ours", size)[0]
    return library("parse_config")({"streams": [stream_entry(size, schema)]}).streams[0]


def ours_context(size: int) -> tuple[Any, Any, Any]:
    return ours_stream(size), library("Settings")(loader_schema=config().loader_schema), library("Postgres")()


def contender_ours_ensure_tables(size: int) -> dict[str, Any]:
    ensure_tables = library("ensure_tables")
    stream, settings, dialect = ours_context(size)
    started = start_clock()
    with pg_connect() as conn:
        ensure_tables(conn, stream, settings, dialect)
    return {"seconds": time.perf_counter() - started, "stages": {}}


def contender_ours_extract(size: int) -> dict[str, Any]:
    extract_hour = library("extract_hour")
    stream = ours_stream(size)
    client = s3_client()
    stages = Stages()
    started = start_clock()
    with stage_timing(stages):
        manifest = extract_hour(client, stream, HOUR, stage_writer(f"bench_{size}", "extract_hour"))
    elapsed = time.perf_counter() - started
    config().manifest.write_text(json.dumps(manifest))
    return {
        "seconds": elapsed,
        "stages": stages.seconds,
        "rows": manifest["rows"],
        "records_raw": sum(entry["records_raw"] for entry in manifest["objects"]),
        "records_duplicate": sum(entry["records_duplicate"] for entry in manifest["objects"]),
        "records_quarantined": sum(entry["records_quarantined"] for entry in manifest["objects"]),
    }


def warehouse_temp_bytes() -> int:
    """Bytes of temporary files PostgreSQL has written in this database (sorts and hashes past work_mem)."""
    with pg_connect(autocommit=True) as conn:
        query = "SELECT temp_bytes FROM pg_stat_database WHERE datname = current_database()"
        return int(conn.execute(query).fetchone()[0])


def contender_ours_load(size: int) -> dict[str, Any]:
    load_and_merge, staged_batch = library("load_and_merge"), library("staged_batch")
    stream, settings, dialect = ours_context(size)
    manifest = json.loads(config().manifest.read_text())
    temp_before = warehouse_temp_bytes()
    started = start_clock()
    with pg_connect() as conn:
        summary = load_and_merge(
            conn, stream, settings, dialect, manifest, staged_batch(s3_client(), stream, manifest), f"bench_{size}"
        )
    elapsed = time.perf_counter() - started
    return {
        "seconds": elapsed,
        "warehouse_temp_bytes": warehouse_temp_bytes() - temp_before,
        "stages": {"COPY+merge": elapsed},
        "summary": {name: value for name, value in summary.items() if isinstance(value, int | str | None)},
    }


def run_ours(size: int, label: str = "ours", pythonpath: str | None = None) -> dict[str, Any]:
    """The DAG's tasks in order, each in a process of its own (as Airflow runs them); a baseline's from ``pythonpath``."""
    schema = table_for(label, size)[0]
    loader_schema = config().loader_schema if pythonpath is None else baseline_loader_schema()
    prepare_ours(schema, size, loader_schema)
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        manifest = handle.name
    env = {"BENCH_MANIFEST": manifest, "BENCH_SCHEMA": schema, "BENCH_LOADER_SCHEMA": loader_schema}
    phases = {}
    for phase in ("ensure_tables", "extract", "load"):
        phases[phase] = run_worker(f"ours:{phase}", size, env, pythonpath)
    os.unlink(manifest)
    stages = {**phases["extract"]["stages"], **phases["load"]["stages"]}
    return {
        "seconds": sum(phase["process_seconds"] for phase in phases.values()),
        "work_seconds": sum(phase["seconds"] for phase in phases.values()),
        "transform_seconds": phases["extract"]["seconds"],
        "cpu_seconds": sum(phase["cpu_seconds"] for phase in phases.values()),
        "transform_cpu_seconds": phases["extract"]["cpu_seconds"],
        "stages": stages,
        "peak_rss": max(phase["peak_rss"] for phase in phases.values()),
        "phases": {
            name: {key: phase[key] for key in ("seconds", "process_seconds", "peak_rss", "cpu_seconds")}
            for name, phase in phases.items()
        },
        "extract": phases["extract"],
        "summary": phases["load"].get("summary"),
    }
