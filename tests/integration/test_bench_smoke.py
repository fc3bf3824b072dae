"""`make bench` keeps working: the bench script on a small hour, every contender but the whole-DAG run.

Not a timed test: it checks that the script completes, that each contender loaded the hour and
that their tables agree (row count and checksums), not how fast they were.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from psycopg import sql

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration


def run_bench(warehouse, environment: dict[str, str], namespace: str) -> None:
    """Run bench/run.py with ``environment``, then drop every schema of its namespace; it must exit 0."""
    try:
        completed = subprocess.run(
            [sys.executable, str(ROOT / "bench" / "run.py")],
            cwd=ROOT,
            env=environment,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        schemas = warehouse.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE %s", (f"{namespace}%",)
        ).fetchall()
        for (schema,) in schemas:
            warehouse.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
    assert completed.returncode == 0, completed.stdout[-4000:] + completed.stderr[-4000:]


def test_bench_script_completes_and_the_contenders_agree(stack_up, warehouse, tmp_path: Path) -> None:
    results = tmp_path / "results.md"
    # Its own schemas, so a developer's `make bench` running meanwhile is not disturbed.
    namespace = f"bench_smoke_{uuid.uuid4().hex[:8]}"
    environment = {
        **os.environ,
        "BENCH_SIZES": "5000",
        "BENCH_CONTENDERS": "limit,ours,split,deployed,naive,dlt",
        # Objects are cut at Firehose's 5 MiB: the 5,000-record hour is one object, so one part.
        "BENCH_SPLIT_MIN": "0",
        "BENCH_SPLIT_BYTES": "200000",
        "BENCH_RESULTS": str(results),
        "BENCH_NAMESPACE": namespace,
    }
    run_bench(warehouse, environment, namespace)
    report = results.read_text()
    assert "Row checks: **all tables agree** (expected 5,000 rows, one per key)" in report
    assert re.search(r"\*\*split\*\* .*: 1 part, 2 at a time", report)
    for contender in ("| limit |", "| ours |", "| split |", "| naive |", "| dlt |"):
        assert contender in report
    # the DAG ran on the LocalExecutor against an api-server, and its run was timed from Airflow's log
    assert re.search(r"\| deployed \| .*the DAG run \(created to finished\) \d", report)
    assert "- machine: " in report and "- versions: " in report
    assert "BENCH_SIZES=5000" in report  # the command to reproduce


# The Python combine (combine_parts deduplicated the hour's keys in one process) before the split
# hour's dedupe moved into the warehouse: the split-at-scale run's baseline.
PYTHON_COMBINE_REF = "1a5b402"


def test_bench_scale_and_audit_runs_measure_both_paths(stack_up, warehouse, tmp_path: Path) -> None:
    """The split-at-scale run (this tree and a baseline, parts growing with the hour) and the audit run with its
    writer probe, at a tiny size: both paths' tables agree, every task is measured, the locked audit makes the
    writer wait and the lock-free one does not."""
    known = subprocess.run(["git", "cat-file", "-e", f"{PYTHON_COMBINE_REF}^{{commit}}"], cwd=ROOT, check=False)
    if known.returncode != 0:
        pytest.skip(f"the baseline {PYTHON_COMBINE_REF} is not in this clone's history (a shallow clone)")
    results = tmp_path / "results.md"
    namespace = f"bench_smoke_{uuid.uuid4().hex[:8]}"
    environment = {
        **os.environ,
        "BENCH_SIZES": "5000",
        "BENCH_CONTENDERS": "limit",
        # A 5,000-record hour is one object (one part); a 20,000-record hour three, each over 500 kB (three parts).
        "BENCH_SCALE_SIZES": "5000,20000",
        "BENCH_SCALE_PART_BYTES": "500000",
        "BENCH_BASELINE": PYTHON_COMBINE_REF,
        "BENCH_AUDIT_KEYS": "10000",
        "BENCH_AUDIT_HOURS": "2",
        "BENCH_RESULTS": str(results),
        "BENCH_NAMESPACE": namespace,
    }
    run_bench(warehouse, environment, namespace)
    report = results.read_text()
    before = f"scale before ({PYTHON_COMBINE_REF})"
    # Both paths loaded each hour into tables with the same rows.
    for size in ("5,000", "20,000"):
        assert f"Row checks at {size}: **all tables agree** (expected {size} rows, one per key)" in report
        assert f"| scale | {size} | {size} |" in report and f"| {before} | {size} | {size} |" in report
    # The part size is fixed: the bigger hour has more parts, each measured in its own process.
    parts = {
        (records, path): int(count)
        for records, path, count in re.findall(r"^\| ([\d,]+) \| (scale[^|]*?) \| (\d+) \|", report, re.MULTILINE)
    }
    assert parts == {("5,150", "scale"): 1, ("5,150", before): 1, ("20,600", "scale"): 3, ("20,600", before): 3}
    for task in ("plan", "part 0", "part 2", "combine", "load"):
        assert re.search(rf"^\| {task} \| [\d.]+ s, [\d.]+ GB \| [\d.]+ s, [\d.]+ GB \|$", report, re.MULTILINE), task
    assert re.search(rf"^\| {re.escape(before)} \| [\d.]+ GB \(.+\) \| [\d.]+ GB \(.+\) \| [\d.]+x \|$", report, re.M)
    # The audit: the locked merge held the merge's lock and the writer was seen waiting for it; the lock-free
    # audit of the same healthy hours held only a read lock and the writer never waited.
    audit_rows = {
        row.split(" | ")[0].lstrip("| "): row.split(" | ")
        for row in report.splitlines()
        if row.startswith(("| locked merge", "| audit_hour"))
    }
    locked, lock_free = audit_rows["locked merge (before f5cbbee)"], audit_rows["audit_hour (lock-free when healthy)"]
    sampled = r"[\d,]+ of [\d,]+ \(([\d,]+)\)"  # samples with the writer waiting (waiting for the audit's session)
    locked_match, lock_free_match = re.fullmatch(sampled, locked[8]), re.fullmatch(sampled, lock_free[8])
    assert locked_match and lock_free_match, (locked[8], lock_free[8])
    assert int(locked_match.group(1).replace(",", "")) > 0
    assert "ShareRowExclusiveLock" in locked[9]
    assert int(locked[3].replace(",", "")) > 0 and int(lock_free[3].replace(",", "")) > 0  # the writer ran
    assert lock_free_match.group(1) == "0"  # never waiting for the audit (autovacuum may hold it up, not counted)
    assert lock_free[9] == "AccessShareLock"
    assert locked[10].rstrip(" |") == lock_free[10].rstrip(" |") == "0"  # every hour found healthy, both ways
