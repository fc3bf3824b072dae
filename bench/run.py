"""make bench: one Firehose hour through the real ingest path, beside the parse limit, a naive loader and dlt.

    make bench                                   # 100 k and 1 M records; the audit of 24 hours of 100 k keys
    BENCH_FULL=1 make bench                      # and a 3.6 M-record shard-hour, a split 1 M and 10 M hour, audit at 1 M keys
    BENCH_FULL=1 BENCH_BASELINE=1a5b402 make bench   # the split hours also by the Python combine (before/after)
    BENCH_SIZES=5000 BENCH_RESULTS=/tmp/r.md make bench

The bench is the package bench/ (``python -m bench`` is the same as this script; ``--help`` lists
every BENCH_* variable, bench/config.py defines them). Each size is generated once into the local S3
(kept, and reused while the generator's parameters match), then every contender (bench/contenders/)
runs in a fresh process of its own on the same objects and writes into the same PostgreSQL, each into
its own table. Afterwards the tables are compared (row count, a checksum over key + order column, and
one over every column) and the results are printed and written to ``bench/results.md``.
Then the split hour at scale (bench/scale.py) and the audit of healthy hours (bench/audit_cost.py).
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

if __name__ == "__main__":
    # Run as a script, Python puts bench/ itself first on sys.path: put the project there instead,
    # so that `bench` is this package (and its modules do not shadow top-level ones).
    sys.path[0] = str(Path(__file__).resolve().parents[1])
    runpy.run_module("bench", run_name="__main__", alter_sys=True)
