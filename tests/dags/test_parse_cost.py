"""Parsing the DAG files stays cheap: the dag-processor imports no part of the data plane.

The task bodies import pyarrow, numpy, pandas and the SQL templates when they run; a DAG file
that imported them at parse time would pay for it on every parse of every stream's DAGs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA_PLANE = ("pyarrow", "numpy", "pandas", "orjson", "pgpq", "psycopg", "sqlparse", "boto3")

PARSE = """
import json, runpy, sys
import airflow.sdk  # the dag-processor has the SDK loaded before it parses a file
for path in sys.argv[1:]:
    runpy.run_path(path)
print(json.dumps(sorted(name for name in sys.modules if name.split(".")[0] in %r)))
"""


def test_parsing_the_dag_files_imports_no_data_plane() -> None:
    dag_files = [str(ROOT / "dags" / name) for name in ("ingest.py", "audit.py", "microbatch.py", "streams_config.py")]
    result = subprocess.run(
        [sys.executable, "-c", PARSE % (DATA_PLANE,), *dag_files],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT / "plugins")},
        timeout=120,
    )
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded == [], f"parsing the DAG files imported {loaded}"
