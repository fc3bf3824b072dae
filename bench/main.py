"""The run: each size's data, its contenders (interleaved repeats, medians), the row checks, the report."""

from __future__ import annotations

import os
import shlex
import statistics
import sys
from collections.abc import Callable
from typing import Any

from bench.audit_cost import audit_healthy, run_audit_cost
from bench.baseline import baseline_label, baseline_tree
from bench.checks import table_checks
from bench.common import fmt_rss, load_average
from bench.config import Config, ConfigError, config
from bench.contenders import REPEATED
from bench.contenders.dag import run_dag
from bench.contenders.deployed import run_deployed
from bench.contenders.ours import run_ours
from bench.contenders.split import run_split
from bench.data import ensure_data
from bench.merge_cost import merge_cost
from bench.report import write_report
from bench.scale import run_scale, scale_agrees
from bench.worker import run_worker


def median_result(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median end-to-end time, with the medians of the other measures of all runs."""
    ordered = sorted(results, key=lambda result: result["seconds"])
    chosen = dict(ordered[len(ordered) // 2])
    chosen["runs"] = len(results)
    chosen["all_seconds"] = [round(result["seconds"], 1) for result in results]
    for measure in ("seconds", "cpu_seconds", "transform_seconds", "transform_cpu_seconds"):
        values = [result[measure] for result in results if result.get(measure) is not None]
        if values:
            chosen[f"median_{measure}"] = statistics.median(values)
    return chosen


def planned_runs(size: int, settings: Config) -> list[tuple[str, Callable[[], dict[str, Any]]]]:
    """The contenders that run at ``size`` (each label with the call that runs it once), in the configured order."""
    runs: list[tuple[str, Callable[[], dict[str, Any]]]] = []
    for contender in settings.contenders:
        if contender == "dlt" and size > settings.dlt_max:
            print(f"  dlt: skipped above BENCH_DLT_MAX={settings.dlt_max:,}")
            continue
        if contender == "naive" and size > settings.naive_max:
            print(f"  naive: skipped above BENCH_NAIVE_MAX={settings.naive_max:,}")
            continue
        if contender in ("dag", "deployed"):
            if size > settings.dag_max:
                print(f"  {contender}: skipped above BENCH_DAG_MAX")
                continue
            runs.append((contender, lambda run=run_dag if contender == "dag" else run_deployed: run(size)))
            continue
        if contender == "split":
            if size < settings.split_min:
                print("  split: skipped below BENCH_SPLIT_MIN")
                continue
            runs.append(("split", lambda: run_split(size)))
            if settings.baseline and size <= settings.baseline_max:
                tree = baseline_tree(settings.baseline)
                label = baseline_label(settings.baseline, "split")
                runs.append((label, lambda tree=tree, label=label: run_split(size, label, tree)))
            continue
        if contender == "ours":
            runs.append(("ours", lambda: run_ours(size)))
            if settings.baseline and size <= settings.baseline_max:
                tree = baseline_tree(settings.baseline)
                label = baseline_label(settings.baseline)
                runs.append((label, lambda tree=tree, label=label: run_ours(size, label, tree)))
        else:
            runs.append((contender, lambda contender=contender: run_worker(contender, size)))
    return runs


def run_size(size: int, settings: Config) -> dict[str, Any]:
    print(f"\n== {size:,} records (load average {load_average()}) ==")
    data = ensure_data(size)
    runs = planned_runs(size, settings)
    # The limit, ours and the whole DAG run `repeat` times, interleaved so that they share the machine's load;
    # the others run once. Each reports its median run.
    attempts: dict[str, list[dict[str, Any]]] = {label: [] for label, _ in runs}
    repeat = settings.repeat if size <= 1_000_000 else min(settings.repeat, settings.repeat_large)
    for round_number in range(repeat):
        for label, run in runs:
            if round_number and label not in REPEATED:
                continue
            load_before = load_average()
            result = run()
            result["load_before"] = load_before
            attempts[label].append(result)
            print(
                f"  {label:<14} {result['seconds']:8.1f} s  CPU {result.get('cpu_seconds', 0):6.1f} s  "
                f"peak RSS {fmt_rss(result['peak_rss'])}  (load {load_before})"
            )
    results = {label: median_result(attempts[label]) for label, _ in runs}
    checks = {label: table_checks(label, size) for label in results if label != "limit"}
    return {"size": size, "data": data, "results": results, "checks": {k: v for k, v in checks.items() if v}}


def main() -> int:
    for name in ("AWS_ENDPOINT_URL", "WAREHOUSE_URL"):
        if name not in os.environ:
            print(f"{name} is not set: run `make bench` (or `make stack && . .local/stack.env` first)", file=sys.stderr)
            return 2
    try:
        settings = config()
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 2
    command = " ".join([*(f"{name}={shlex.quote(value)}" for name, value in settings.given), "make bench"])
    print(f"bench: sizes {list(settings.sizes)}, contenders {list(settings.contenders)}, load average {load_average()}")
    runs = [run_size(size, settings) for size in settings.sizes]
    merge = None
    if settings.merge_base:
        merge_size = settings.merge_size if settings.merge_size in settings.sizes else max(settings.sizes)
        merge = merge_cost(merge_size, settings.merge_base)
    scale = run_scale(settings) if settings.scale_sizes else None
    audit = run_audit_cost(settings.audit_keys, settings.audit_hours) if settings.audit_keys else None
    agree = write_report(settings.results, runs, merge, command, scale, audit)
    print()
    print(settings.results.read_text())
    if not agree or (scale and not scale_agrees(scale)):
        print("bench: the contenders' tables do not agree", file=sys.stderr)
        return 1
    if audit and not audit_healthy(audit):
        print("bench: an audit found a healthy hour not ok", file=sys.stderr)
        return 1
    return 0
