"""One hourly ingest DAG per stream declared in the streams file (see README)."""

from __future__ import annotations

from airflow.sdk import TriggerRule, dag, task

from firehose_loader.airflow.dag_pieces import HOURLY, RETRY_DEFAULTS, settled_and_ready, table_asset
from firehose_loader.airflow.doc_md import ingest_doc_md
from firehose_loader.airflow.tasks import (
    run_combine_parts,
    run_extract,
    run_extract_part,
    run_load_and_merge,
)
from firehose_loader.config import Settings, Stream, load_config


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
        # Returns the parts of an hour over the stream's split_above_bytes, which extract_part
        # extracts one task each; a smaller hour is extracted here and has none. The manifest
        # goes to combine_parts under its own XCom key.
        @task
        def extract_hour(data_interval_start=None, data_interval_end=None, run_id=None, ti=None) -> list:
            manifest = run_extract(stream, settings, data_interval_start, data_interval_end, run_id)
            ti.xcom_push(key="manifest", value=manifest)
            return manifest["parts"]

        @task
        def extract_part(part: dict, run_id=None) -> dict:
            return run_extract_part(stream, settings, part, run_id)

        @task(trigger_rule=TriggerRule.NONE_FAILED)
        def combine_parts(manifest: dict, parts: list, run_id=None) -> dict:
            return run_combine_parts(stream, settings, manifest, parts, run_id)

        @task(outlets=[table_asset(stream, settings)])
        def load_and_merge(manifest: dict, run_id=None) -> dict:
            return run_load_and_merge(stream, settings, manifest, run_id)

        settled, tables_ready = settled_and_ready(stream, settings)
        split = extract_hour()
        settled >> split
        parts = extract_part.expand(part=split)
        tables_ready >> load_and_merge(combine_parts(split["manifest"], parts))

    return ingest()


config = load_config()
for _stream in config.streams:
    globals()[_stream.ingest_dag_id] = build_ingest_dag(_stream, config.settings)
