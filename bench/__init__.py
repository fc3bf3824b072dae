"""make bench: one Firehose hour through the real ingest path, beside the parse limit, a naive loader and dlt.

- ``config``: every BENCH_* variable, read once into a frozen ``Config``;
- ``common``: the hour, its names in S3 and the warehouse, clients;
- ``data``: the generated hour in the local S3;
- ``contenders/``: one module per contender (``WORKERS`` maps worker jobs to their functions);
- ``worker``: how a contender runs in a worker process and reports its time and memory;
- ``baseline``: timing an older commit's library (BENCH_BASELINE), in its old or new layout;
- ``checks``: every contender's table must hold the same rows;
- ``merge_cost``: BENCH_MERGE_BASE's merge into a large table;
- ``report``: results.md;
- ``main``: the run; ``__main__`` (``python -m bench``) and ``run.py`` (``make bench``) start it.
"""
