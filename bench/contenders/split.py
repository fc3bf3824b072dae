"""``split``: the hour as the DAG runs it above ``split_above_bytes``: plan, parts side by side, combine, load."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.baseline import baseline_loader_schema, combine_hour_parts, library, stage_writer
from bench.common import HOUR, prepare_ours, s3_client, stream_entry, table_for
from bench.config import config
from bench.worker import run_worker, start_clock


def split_stream(size: int) -> Any:
    schema = config().schema or table_for("split", size)[0]
    entry = {**stream_entry(size, schema), "split_above_bytes": config().split_bytes}
    return library("parse_config")({"streams": [entry]}).streams[0]


def contender_split_plan(size: int) -> dict[str, Any]:
    extract_or_split = library("extract_or_split")
    client = s3_client()
    started = start_clock()
    plan = extract_or_split(client, split_stream(size), HOUR, stage_writer(f"bench_{size}", "extract_hour"))
    config().manifest.write_text(json.dumps(plan))
    return {"seconds": time.perf_counter() - started, "stages": {}, "parts": len(plan["parts"])}


def contender_split_part(size: int) -> dict[str, Any]:
    extract_part = library("extract_part")
    plan = json.loads(config().manifest.read_text())
    part = plan["parts"][config().part]
    client = s3_client()
    started = start_clock()
    result = extract_part(client, split_stream(size), part, stage_writer(f"bench_{size}", "extract_part"))
    config().part_out.write_text(json.dumps(result))
    return {"seconds": time.perf_counter() - started, "stages": {}}


def contender_split_combine(size: int) -> dict[str, Any]:
    plan = json.loads(config().manifest.read_text())
    parts = [json.loads(path.read_text()) for path in config().part_outs]
    client = s3_client()
    started = start_clock()
    manifest = combine_hour_parts(
        lambda: client, split_stream(size), plan, parts, stage_writer(f"bench_{size}", "combine_parts")
    )
    config().manifest.write_text(json.dumps(manifest))
    return {"seconds": time.perf_counter() - started, "stages": {}}


def task_row(task: str, run: dict[str, Any]) -> dict[str, Any]:
    """One task process's measures: its work (after imports), the process, its CPU and its peak RSS."""
    return {
        "task": task,
        "seconds": run["seconds"],
        "process_seconds": run["process_seconds"],
        "cpu_seconds": run["cpu_seconds"],
        "peak_rss": run["peak_rss"],
    }


def run_split(
    size: int, label: str = "split", pythonpath: str | None = None, part_bytes: int | None = None
) -> dict[str, Any]:
    """A split hour as the DAG runs it: extract_hour lists and splits, the parts run BENCH_SPLIT_WORKERS at a
    time (as many worker slots as cores), combine_parts, then load_and_merge; each task in a process of its own.

    ``label`` names the table; ``pythonpath`` is a baseline's library (its own loader schema);
    ``part_bytes`` the parts' size (default BENCH_SPLIT_BYTES).
    """
    workers = config().split_workers
    schema = table_for(label, size)[0]
    loader_schema = config().loader_schema if pythonpath is None else baseline_loader_schema()
    prepare_ours(schema, size, loader_schema)
    folder = Path(tempfile.mkdtemp(prefix="bench-split-"))
    env = {
        "BENCH_MANIFEST": str(folder / "manifest.json"),
        "BENCH_SCHEMA": schema,
        "BENCH_LOADER_SCHEMA": loader_schema,
        "BENCH_SPLIT_BYTES": str(part_bytes or config().split_bytes),
    }

    def task(name: str, extra: dict[str, str] | None = None) -> dict[str, Any]:
        return run_worker(name, size, {**env, **(extra or {})}, pythonpath)

    started = time.perf_counter()
    phases = {"ensure_tables": task("ours:ensure_tables"), "plan": task("split:plan")}
    count = phases["plan"]["parts"]
    outputs = [str(folder / f"part-{index}.json") for index in range(count)]
    parts_started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        part_runs = list(
            pool.map(
                lambda index: task("split:part", {"BENCH_PART": str(index), "BENCH_PART_OUT": outputs[index]}),
                range(count),
            )
        )
    parts_seconds = time.perf_counter() - parts_started
    phases["combine"] = task("split:combine", {"BENCH_PART_OUTS": os.pathsep.join(outputs)})
    phases["load"] = task("ours:load")
    seconds = time.perf_counter() - started
    shutil.rmtree(folder, ignore_errors=True)
    every = [*phases.values(), *part_runs]
    tasks = [
        task_row("ensure_tables", phases["ensure_tables"]),
        task_row("plan", phases["plan"]),
        *(task_row(f"part {index}", run) for index, run in enumerate(part_runs)),
        task_row("combine", phases["combine"]),
        task_row("load", phases["load"]),
    ]
    largest = max(tasks, key=lambda row: row["peak_rss"])
    return {
        "seconds": seconds,
        "cpu_seconds": sum(run["cpu_seconds"] for run in every),
        "peak_rss": max(run["peak_rss"] for run in every),
        "stages": {
            "list+split": phases["plan"]["seconds"],
            f"{count} part{'' if count == 1 else 's'}, {workers} at a time": parts_seconds,
            "combine": phases["combine"]["seconds"],
            "COPY+merge": phases["load"]["seconds"],
        },
        "parts": count,
        "parts_seconds": parts_seconds,
        "part_bytes": int(env["BENCH_SPLIT_BYTES"]),
        # An hour within split_above_bytes has no parts: extract_hour extracts it whole in the plan task.
        "part_peak_rss": max((run["peak_rss"] for run in part_runs), default=0),
        "combine_peak_rss": phases["combine"]["peak_rss"],
        "load_peak_rss": phases["load"]["peak_rss"],
        "tasks": tasks,
        "largest_task": largest["task"],
        "warehouse_temp_bytes": phases["load"].get("warehouse_temp_bytes"),
    }
