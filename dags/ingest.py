"""One hourly ingest DAG per stream declared in the streams file (see README)."""

from __future__ import annotations

from airflow.providers.standard.sensors.time_delta import TimeDeltaSensor
from airflow.sdk import chain, dag, task

from firehose_loader.airflow_glue import (
    RETRY_DEFAULTS,
    run_ensure_tables,
    run_extract,
    run_load_and_merge,
)
from firehose_loader.config import Settings, Stream, load_config
from firehose_loader.docs import ingest_doc_md
from firehose_loader.schedule import HOURLY, table_asset


def build_ingest_dag(stream: Stream, settings: Settings):
    @dag(
        dag_id=stream.ingest_dag_id,
        schedule=HOURLY,
        start_date=stream.start_date,
        catchup=stream.catchup,
        max_active_runs=4,
        tags=["firehose-loader", "ingest", f"stream:{stream.name}", *stream.tags],
        doc_md=ingest_doc_md(stream, settings),
        default_args={"owner": stream.owner, **RETRY_DEFAULTS},
    )
    def ingest():
        wait_for_settled_hour = TimeDeltaSensor(
            task_id="wait_for_settled_hour",
            delta=stream.settle_grace,
            deferrable=True,
            retries=0,
        )

        @task
        def ensure_tables() -> None:
            run_ensure_tables(stream, settings)

        @task
        def extract_hour(data_interval_start=None, data_interval_end=None, run_id=None) -> dict:
            return run_extract(stream, settings, data_interval_start, data_interval_end, run_id)

        @task(outlets=[table_asset(stream, settings)])
        def load_and_merge(manifest: dict, run_id=None) -> dict:
            return run_load_and_merge(stream, settings, manifest, run_id)

        manifest = extract_hour()
        chain(wait_for_settled_hour, ensure_tables(), manifest)
        load_and_merge(manifest)

    return ingest()


config = load_config()
for _stream in config.streams:
    globals()[_stream.ingest_dag_id] = build_ingest_dag(_stream, config.settings)
