"""The contenders: one module each. ``WORKERS`` names the function a worker process runs for each job.

- ``limit``: list + read the objects, ISA-L gunzip and orjson-parse every record; nothing kept.
- ``ours``: the DAG's three tasks as three processes, as Airflow runs them: ``ensure_tables``,
  ``extract_hour`` (list + read, decode + validate, dedupe, stage write) and ``load_and_merge``
  (COPY + merge with the ledger), calling the same functions the tasks call.
- ``split``: the same hour split into parts (``split_above_bytes``) as the DAG does above that size:
  list + split, ``extract_part`` processes two at a time, ``combine_parts``, ``load_and_merge``.
- ``dag``: the whole ingest DAG with ``airflow dags test`` (sensor, three tasks, Airflow's own overhead).
- ``deployed``: the same DAG as a deployment runs it: every task in a LocalExecutor process, against a
  running api-server (``airflow dags test --use-executor`` stands in for the scheduler).
- ``naive``: ``pandas.read_json(lines=True)`` per object, ``drop_duplicates`` on the key
  after sorting by the order column, COPY into a fresh table.
- ``dlt``: dlt's filesystem source (S3) -> postgres destination, ``write_disposition="merge"``,
  primary key ``event_id``, ``dedup_sort`` on ``received_at``.
"""

from __future__ import annotations

# Worker job -> "module:function" (see bench/worker.py).
WORKERS = {
    "limit": "bench.contenders.limit:contender_limit",
    "ours:ensure_tables": "bench.contenders.ours:contender_ours_ensure_tables",
    "ours:extract": "bench.contenders.ours:contender_ours_extract",
    "ours:load": "bench.contenders.ours:contender_ours_load",
    "split:plan": "bench.contenders.split:contender_split_plan",
    "split:part": "bench.contenders.split:contender_split_part",
    "split:combine": "bench.contenders.split:contender_split_combine",
    "naive": "bench.contenders.naive:contender_naive",
    "dag": "bench.contenders.dag:contender_dag",
    "deployed": "bench.contenders.deployed:contender_deployed",
    "dlt": "bench.contenders.dlt_loader:contender_dlt",
}

# The contenders that run BENCH_REPEAT times (the others once).
REPEATED = ("limit", "ours", "dag", "deployed")
