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

from bench.baseline import combine_hour_parts, library, stage_writer
from bench.common import HOUR, prepare_ours, s3_client, stream_entry, table_for
from bench.config import config
from bench.worker import run_worker, start_clock


def split_stream(size: int) -> Any:
    entry = {**stream_entry(size, table_for("split", size)[0]), "split_above_bytes": config().split_bytes}
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


def run_split(size: int) -> dict[str, Any]:
    """A split hour as the DAG runs it: extract_hour lists and splits, the parts run BENCH_SPLIT_WORKERS at a
    time (as many worker slots as cores), combine_parts dedupes across them, then load_and_merge."""
    workers = config().split_workers
    schema = table_for("split", size)[0]
    prepare_ours(schema, size)
    folder = Path(tempfile.mkdtemp(prefix="bench-split-"))
    env = {"BENCH_MANIFEST": str(folder / "manifest.json"), "BENCH_SCHEMA": schema}
    started = time.perf_counter()
    phases = {"ensure_tables": run_worker("ours:ensure_tables", size, env), "plan": run_worker("split:plan", size, env)}
    count = phases["plan"]["parts"]
    outputs = [str(folder / f"part-{index}.json") for index in range(count)]
    parts_started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        part_runs = list(
            pool.map(
                lambda index: run_worker(
                    "split:part", size, {**env, "BENCH_PART": str(index), "BENCH_PART_OUT": outputs[index]}
                ),
                range(count),
            )
        )
    parts_seconds = time.perf_counter() - parts_started
    phases["combine"] = run_worker("split:combine", size, {**env, "BENCH_PART_OUTS": os.pathsep.join(outputs)})
    phases["load"] = run_worker("ours:load", size, env)
    seconds = time.perf_counter() - started
    shutil.rmtree(folder, ignore_errors=True)
    every = [*phases.values(), *part_runs]
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
        "part_peak_rss": max(run["peak_rss"] for run in part_runs),
        "combine_peak_rss": phases["combine"]["peak_rss"],
        "load_peak_rss": phases["load"]["peak_rss"],
    }
