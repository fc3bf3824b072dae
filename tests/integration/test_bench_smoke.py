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
    report = results.read_text()
    assert "Row checks: **all tables agree** (expected 5,000 rows, one per key)" in report
    assert re.search(r"\*\*split\*\* .*: 1 part, 2 at a time", report)
    for contender in ("| limit |", "| ours |", "| split |", "| naive |", "| dlt |"):
        assert contender in report
    # the DAG ran on the LocalExecutor against an api-server, and its run was timed from Airflow's log
    assert re.search(r"\| deployed \| .*the DAG run \(created to finished\) \d", report)
    assert "- machine: " in report and "- versions: " in report
    assert "BENCH_SIZES=5000" in report  # the command to reproduce
