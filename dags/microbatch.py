"""One micro-batch DAG per stream whose freshness mode is poll or events (see docs/streams.md#freshness)."""

from __future__ import annotations

from airflow.sdk import dag, task

from firehose_loader.airflow.dag_pieces import (
    MICROBATCH_RETRY_DEFAULTS,
    microbatch_schedule,
    table_asset,
    task_defaults,
)
from firehose_loader.airflow.tasks import run_microbatch
from firehose_loader.config import Settings, Stream, load_streams


def build_microbatch_dag(stream: Stream, settings: Settings):
    @dag(
        dag_id=stream.microbatch_dag_id,
        schedule=microbatch_schedule(stream, settings),
        start_date=stream.start_date,
        catchup=False,
        # One run at a time: every run lists the open hours anyway, so a run that waits is not needed
        # for correctness, only for latency; the merge's lock orders it with the hourly pass and audits.
        max_active_runs=1,
        tags=["firehose-loader", "microbatch", f"stream:{stream.name}", *stream.tags],
        doc_md=(
            f"Merges the new objects of `{stream.name}`'s open hours into `{stream.qualified_table}` "
            f"within minutes (freshness mode `{stream.freshness.mode}`). `{stream.ingest_dag_id}` settles each "
            "hour after it ends; a run with nothing new is skipped."
        ),
        default_args=task_defaults(stream, MICROBATCH_RETRY_DEFAULTS),
    )
    def microbatch():
        @task(outlets=[table_asset(stream, settings)], pool=stream.merge_pool)
        def merge_new_objects(triggering_asset_events=None, run_id=None, ti=None) -> list[dict]:
            return run_microbatch(stream, settings, triggering_asset_events, run_id, ti.try_number)

        merge_new_objects()

    return microbatch()


# Only the valid streams in a micro-batch mode: a refused one is the import error of dags/streams_config.py.
config = load_streams()
for _stream in config.streams:
    if _stream.freshness.microbatches:
        globals()[_stream.microbatch_dag_id] = build_microbatch_dag(_stream, config.settings)
