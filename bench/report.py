"""The report: bench/results.md (or BENCH_RESULTS): the machine, the command to reproduce, one section per size."""

from __future__ import annotations

import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.audit_cost import LOCK_FREE, LOCKED
from bench.checks import tables_agree
from bench.common import HOUR, fmt_rss, load_average, pg_connect
from bench.config import config
from bench.scale import growth


def machine() -> dict[str, str]:
    def read(command: list[str]) -> str:
        try:
            return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()
        except Exception:
            return "?"

    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    memory = "?"
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal"):
            memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    versions = {}
    for package in ("pyarrow", "pandas", "orjson", "isal", "boto3", "psycopg", "moto", "dlt", "apache-airflow"):
        try:
            from importlib.metadata import version

            versions[package] = version(package)
        except Exception:
            versions[package] = "not installed"
    with pg_connect(autocommit=True) as conn:
        versions["PostgreSQL"] = conn.execute("SHOW server_version").fetchone()[0]
    return {
        "nproc": read(["nproc"]),
        "memory": memory,
        "cpu": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "versions": ", ".join(f"{name} {value}" for name, value in versions.items()),
    }


STAGE_ORDER = ("list+read", "decode+validate", "dedupe", "stage write", "COPY+merge")


def size_report(run: dict[str, Any]) -> tuple[list[str], bool]:
    size = run["size"]
    data = run["data"]
    results = run["results"]
    lines = [
        f"### {size:,} records",
        "",
        f"{data['records']:,} records ({size:,} distinct keys, {data['records'] - size:,} duplicates) in "
        f"{data['objects']} objects ({', '.join(f'{count} {kind}' for kind, count in sorted(data['encodings'].items()))}); "
        f"{data['json_bytes'] / 1e6:,.0f} MB of JSON, {data['stored_bytes'] / 1e6:,.0f} MB in S3.",
        "",
    ]
    json_mb = data["json_bytes"] / 1e6
    for label, result in results.items():
        if not label.startswith("ours"):
            continue
        stages = result["stages"]
        extract = result["extract"]
        lines += [
            f"**{label}** (the DAG's tasks, each in its own process):",
            "",
            "| records | MB | "
            + " | ".join(STAGE_ORDER)
            + " | transform (extract task) | end to end | records/s | peak RSS |",
            "|---:|---:|" + "---:|" * len(STAGE_ORDER) + "---:|---:|---:|---:|",
            f"| {data['records']:,} | {json_mb:,.0f} | "
            + " | ".join(f"{stages.get(stage, 0):.1f}" for stage in STAGE_ORDER)
            + f" | {result['transform_seconds']:.1f} s | {result['seconds']:.1f} s"
            f" | {data['records'] / result['seconds']:,.0f} | {fmt_rss(result['peak_rss'])} |",
            "",
            f"(the median run of {result['runs']}: end to end {', '.join(map(str, result['all_seconds']))} s). "
            "Stage seconds are wall time in the extract task's main thread (list+read is time spent waiting "
            "for a read; reading and gunzip run in a reader thread beside decoding), and COPY+merge the load "
            "task's `load_and_merge`. Per task process: "
            + "; ".join(
                f"{name} {phase['process_seconds']:.1f} s (work {phase['seconds']:.1f} s, "
                f"CPU {phase['cpu_seconds']:.1f} s, peak RSS {fmt_rss(phase['peak_rss'])})"
                for name, phase in result["phases"].items()
            )
            + f". Rows staged {extract['rows']:,}, duplicates removed {extract['records_duplicate']:,}, "
            f"quarantined {extract['records_quarantined']:,}.",
            "",
        ]
    split = results.get("split")
    if split:
        lines += [
            f"**split** (the same hour as the DAG runs it above `split_above_bytes` = {config().split_bytes:,} bytes): "
            f"{split['parts']} part{'' if split['parts'] == 1 else 's'}, {config().split_workers} at a time; "
            + ", ".join(f"{name} {value:.1f} s" for name, value in split["stages"].items())
            + f"; end to end {split['seconds']:.1f} s. Peak RSS per task: parts {fmt_rss(split['part_peak_rss'])}, "
            f"combine {fmt_rss(split['combine_peak_rss'])}, load {fmt_rss(split['load_peak_rss'])}.",
            "",
        ]
    ours = results.get("ours")
    lines += [
        "| contender | seconds (median) | runs | records/s | time ratio to ours | CPU s | peak RSS | stages (s) "
        "| load avg before |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for label, result in results.items():
        seconds = result["median_seconds"]
        ratio = f"{seconds / ours['median_seconds']:.2f}x" if ours else "-"
        stage_text = ", ".join(f"{name} {value:.1f}" for name, value in result["stages"].items())
        cpu = result.get("median_cpu_seconds")
        lines.append(
            f"| {label} | {seconds:.1f} | {result['runs']} | {data['records'] / seconds:,.0f} | {ratio} | "
            f"{'-' if cpu is None else f'{cpu:.1f}'} | {fmt_rss(result['peak_rss'])} | {stage_text} "
            f"| {result.get('load_before', '-')} |"
        )
    lines.append("")
    if ours and "limit" in results:
        limit = results["limit"]
        limit_parse = limit["stages"].get("gunzip", 0) + limit["stages"].get("parse", 0)
        transform = ours["median_transform_seconds"]
        transform_cpu = ours["median_transform_cpu_seconds"]
        lines += [
            f"Transform (our extract task: list + read + decode + validate + dedupe + stage, median of "
            f"{ours['runs']}) {transform:.1f} s wall, {transform_cpu:.1f} s CPU; the limit (list + read + gunzip + "
            f"parse, median of {limit['runs']}) {limit['median_seconds']:.1f} s wall, "
            f"{limit['median_cpu_seconds']:.1f} s CPU ({limit_parse:.1f} s of it gunzip + parse). Ours runs at "
            f"**{limit['median_seconds'] / transform:.0%}** of the limit's throughput by wall time and "
            f"**{limit['median_cpu_seconds'] / transform_cpu:.0%}** by CPU time (the target is 50%).",
            "",
        ]
    checks = run["checks"]
    agree = True
    if checks:
        lines += check_table(checks)
        agree = tables_agree(checks, size)
        lines += [
            "",
            f"Row checks: **{'all tables agree' if agree else 'TABLES DIFFER'}** "
            f"(expected {size:,} rows, one per key).",
            "",
        ]
    if "limit" in results:
        parsed = results["limit"]["records_parsed"]
        if parsed != data["records"]:
            agree = False
            lines.append(f"The limit parsed {parsed:,} records, expected {data['records']:,}.")
    return lines, agree


def check_table(checks: dict[str, dict[str, Any]]) -> list[str]:
    lines = [
        "| table | rows | distinct keys | checksum (key + order) | checksum (all columns) |",
        "|---|---:|---:|---|---|",
    ]
    for label, check in checks.items():
        lines.append(
            f"| {label} | {check['rows']:,} | {check['keys']:,} | {check['key_order_checksum']} | {check['row_checksum']} |"
        )
    return lines


def task_cell(task: dict[str, Any]) -> str:
    return f"{task['seconds']:.1f} s, {fmt_rss(task['peak_rss'])}"


def scale_report(scale: dict[str, Any]) -> tuple[list[str], bool]:
    """The split-at-scale section: per size and path the tasks' times and peak RSS, the growth, the row checks."""
    labels = scale["labels"]
    lines = [
        f"### A split hour at scale: parts of {scale['part_bytes']:,} bytes at every size",
        "",
        f"The hour split into parts of at most `split_above_bytes` = {scale['part_bytes']:,} bytes of objects "
        f"(`BENCH_SCALE_PART_BYTES`), {config().split_workers} parts at a time, every task in a fresh process; "
        f"paths: {', '.join(f'`{label}`' for label in labels)}. Each cell: the task's work seconds (after its "
        "imports) and its process's peak RSS; end to end is the wall time of all the tasks, process starts included.",
        "",
        "| records | path | parts | end to end | CPU s | plan | parts (wall) | largest part | combine | load "
        "| largest task | load avg before |",
        "|---:|---|---:|---:|---:|---|---:|---|---|---|---|---|",
    ]
    agree = True
    for item in scale["sizes"]:
        for label, result in item["results"].items():
            tasks = {task["task"]: task for task in result["tasks"]}
            parts = [task for task in result["tasks"] if task["task"].startswith("part ")]
            largest_part = max(parts, key=lambda task: task["peak_rss"], default=None)
            part_text = "-" if largest_part is None else f"{largest_part['task']}: {task_cell(largest_part)}"
            largest = tasks[result["largest_task"]]
            lines.append(
                f"| {item['data']['records']:,} | {label} | {result['parts']} | {result['seconds']:.1f} s "
                f"| {result['cpu_seconds']:.1f} | {task_cell(tasks['plan'])} | {result['parts_seconds']:.1f} s "
                f"| {part_text} | {task_cell(tasks['combine'])} "
                f"| {task_cell(tasks['load'])} | {largest['task']}, {fmt_rss(largest['peak_rss'])} "
                f"| {result['load_before']} |"
            )
    lines += ["", "The largest task's peak RSS from the smallest to the largest hour:", ""]
    lines += ["| path | " + " | ".join(f"{item['size']:,}" for item in scale["sizes"]) + " | growth |"]
    lines += ["|---|" + "---:|" * len(scale["sizes"]) + "---:|"]
    for label in labels:
        grown = growth(scale, label)
        cells = []
        for item in scale["sizes"]:
            result = item["results"][label]
            cells.append(f"{fmt_rss(result['peak_rss'])} ({result['largest_task']})")
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {'-' if grown is None else f'{grown[2]:.2f}x'} |")
    lines.append("")
    for item in scale["sizes"]:
        lines += [f"Every task at {item['size']:,} records (work seconds, peak RSS):", ""]
        lines += ["| task | " + " | ".join(item["results"]) + " |", "|---|" + "---|" * len(item["results"])]
        names: list[str] = []
        for result in item["results"].values():
            names += [task["task"] for task in result["tasks"] if task["task"] not in names]
        for name in names:
            cells = []
            for result in item["results"].values():
                task = next((task for task in result["tasks"] if task["task"] == name), None)
                cells.append("-" if task is None else task_cell(task))
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
        temp = [
            f"{label} {result['warehouse_temp_bytes'] / 2**30:.2f} GB"
            for label, result in item["results"].items()
            if result.get("warehouse_temp_bytes") is not None
        ]
        if temp:
            lines += [
                "Temporary files PostgreSQL wrote during the load (sorts and hashes past `work_mem`; "
                f"pg_stat_database.temp_bytes): {', '.join(temp)}.",
                "",
            ]
        if item["checks"]:
            size_agrees = tables_agree(item["checks"], item["size"])
            agree &= size_agrees
            lines += check_table(item["checks"])
            lines += [
                "",
                f"Row checks at {item['size']:,}: **{'all tables agree' if size_agrees else 'TABLES DIFFER'}** "
                f"(expected {item['size']:,} rows, one per key).",
                "",
            ]
    return lines, agree


def audit_report(audit: dict[str, Any]) -> list[str]:
    """The audit section: per way the time per hour, what the writer waited, and the locks the audit held."""
    modes = audit["modes"]
    loaded = audit.get("loaded_seconds")
    lines = [
        f"### The audit: {audit['hours']} healthy hours of {audit['keys']:,} keys, a writer probing each audit",
        "",
        f"Hours loaded {'earlier (reused)' if loaded is None else f'by this run in {loaded} s'}; "
        f"load average {audit['load_before']} before the audits, {audit['load_after']} after. Writer waits are "
        "the seconds an attempt (the merge's lock, or a one-row insert, in turn, each rolled back) took; "
        "locks held are the modes pg_locks showed granted to the audit's session on the target; the monitor "
        "samples every 5 ms whether the writer waits, and (in brackets) whether it waits for the audit's session "
        "(pg_blocking_pids) rather than another, such as autovacuum.",
        "",
        "| audit | s per hour (median) | s for all hours | writer attempts | longest wait: merge's lock "
        "| longest wait: row insert | median of each hour's longest wait | total waited "
        "| samples with the writer waiting (for the audit) | locks held on the target | hours not ok |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for mode, item in modes.items():
        lines.append(
            f"| {mode} | {item['median_seconds']:.2f} | {item['total_seconds']:.1f} | {item['attempts']:,} "
            f"| {item['lock_wait_max']:.3f} s | {item['write_wait_max']:.3f} s | {item['median_hour_wait_max']:.3f} s "
            f"| {item['lock_wait_total'] + item['write_wait_total']:.1f} s "
            f"| {item['samples_waiting']:,} of {item['samples']:,} ({item['samples_blocked_by_audit']:,}) "
            f"| {', '.join(item['modes_held']) or '-'} "
            f"| {len(item['not_ok'])} |"
        )
    lines += [
        "",
        "Per hour (seconds; the writer's longest wait, for the merge's lock or a row insert):",
        "",
        f"| hour | {LOCKED} | writer waited | {LOCK_FREE} | writer waited |",
        "|---|---:|---:|---:|---:|",
    ]
    for locked, free in zip(modes[LOCKED]["hours"], modes[LOCK_FREE]["hours"], strict=True):
        lines.append(
            f"| {locked['hour']:%Y-%m-%dT%H} | {locked['seconds']:.2f} | {locked['wait_max']:.3f} "
            f"| {free['seconds']:.2f} | {free['wait_max']:.3f} |"
        )
    lines.append("")
    return lines


def write_report(
    path: Path,
    runs: list[dict[str, Any]],
    merge: dict[str, Any] | None,
    command: str,
    scale: dict[str, Any] | None = None,
    audit: dict[str, Any] | None = None,
) -> bool:
    info = machine()
    lines = [
        "# make bench: results",
        "",
        f"Written by `bench/run.py` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. Each contender runs in a fresh",
        "process (ours: one process per DAG task) on the same objects in the local S3 (moto server) and",
        "writes into the same PostgreSQL. Peak RSS is the larger of the process's ru_maxrss and a sampler's",
        "sum over its process tree (of PSS, so that forked decode workers' shared pages count once); it does",
        "not include the S3 or PostgreSQL servers.",
        "",
        f"- machine: {info['nproc']} cores ({info['cpu']}), {info['memory']}, Linux {info['kernel']}, "
        f"Python {info['python']}",
        f"- versions: {info['versions']}",
        f"- data: seed {config().seed} (`BENCH_SEED`), hour {HOUR.isoformat()}",
        f"- load average when the report was written: {load_average()} (other work shares this machine)",
        "",
        "Reproduce:",
        "",
        "```bash",
        command,
        "```",
        "",
    ]
    agree_all = True
    for run in runs:
        section, agree = size_report(run)
        agree_all &= agree
        lines += section
    if merge:
        lines += [
            f"### Merge cost: the {merge['size']:,}-record hour into a table of {merge['base_rows']:,} rows",
            "",
            "| merge | seconds | inserted | unchanged | load avg before |",
            "|---|---:|---:|---:|---|",
        ]
        for attempt in ("first load (all inserts)", "rerun (all unchanged)"):
            item = merge[attempt]
            lines.append(
                f"| {attempt} | {item['seconds']} | {item['inserted']:,} | {item['unchanged']:,} | {item['load']} |"
            )
        lines += [
            "",
            f"Rows after: {merge['rows_after']:,}. The key lookup's plan:",
            "",
            "```",
            merge["plan"],
            "```",
            "",
        ]
    if scale:
        section, agree = scale_report(scale)
        agree_all &= agree
        lines += section
    if audit:
        lines += audit_report(audit)
    root = config().root
    extra = root / "bench" / "NOTES.md"
    if extra.exists() and path.resolve() == (root / "bench" / "results.md").resolve():
        lines += [extra.read_text().strip(), ""]
    freshness = root / "bench" / "freshness.md"  # make bench-freshness's report, kept beside this one
    if freshness.exists() and path.resolve() == (root / "bench" / "results.md").resolve():
        lines += [freshness.read_text().strip(), ""]
    path.write_text("\n".join(lines))
    return agree_all
