"""One hourly ingest DAG per stream declared in the streams file (see README)."""

from __future__ import annotations

from airflow.sdk import TriggerRule, dag, get_current_context, task

from firehose_loader.airflow.dag_pieces import (
    FORCE_RELISTING_PARAM,
    HOURLY,
    settled_and_ready,
    table_asset,
    task_defaults,
)
from firehose_loader.airflow.doc_md import ingest_doc_md
from firehose_loader.airflow.tasks import (
    run_combine_parts,
    run_extract,
    run_extract_part,
    run_load_and_merge,
)
from firehose_loader.config import Settings, Stream, load_streams
from firehose_loader.handover import Extracted, Manifest, Part, PartResult


def build_ingest_dag(stream: Stream, settings: Settings):
    @dag(
        dag_id=stream.ingest_dag_id,
        schedule=HOURLY,
        start_date=stream.start_date,
        catchup=stream.catchup,
        max_active_runs=4,
        params=FORCE_RELISTING_PARAM,
        tags=["firehose-loader", "ingest", f"stream:{stream.name}", *stream.tags],
        doc_md=ingest_doc_md(stream, settings),
        default_args=task_defaults(stream),
    )
    def ingest():
        # An hour over the stream's split_above_bytes comes back as parts (no manifest yet), which
        # extract_part extracts one task each; a smaller hour comes back with its manifest and no parts.
        # Every stage key names the DAG kind, the run, the task and its try (layout.stage_key), so
        # no audit run and no other try overwrites a stage a manifest names.
        # The parts are the return value because Airflow maps only over a return value; the whole
        # extract result (never None, unlike a split hour's manifest) goes to combine_parts under its own key.
        @task(multiple_outputs=False)
        def extract_hour(data_interval_start=None, data_interval_end=None, run_id=None, ti=None) -> list[Part]:
            extracted = run_extract(stream, settings, data_interval_start, data_interval_end, run_id, ti.try_number)
            ti.xcom_push(key="extracted", value=extracted)
            return extracted["parts"]

        @task(multiple_outputs=False)
        def extract_part(part: Part, run_id=None, ti=None) -> PartResult:
            return run_extract_part(stream, settings, part, run_id, ti.try_number)

        @task(trigger_rule=TriggerRule.NONE_FAILED, multiple_outputs=False)
        def combine_parts(extracted: Extracted, parts: list[PartResult], run_id=None, ti=None) -> Manifest:
            return run_combine_parts(stream, settings, extracted, parts, run_id, ti.try_number)

        @task(outlets=[table_asset(stream, settings)], pool=stream.merge_pool, multiple_outputs=False)
        def load_and_merge(manifest: Manifest, params=None, run_id=None, ti=None) -> dict:
            return run_load_and_merge(
                stream,
                settings,
                manifest,
                run_id,
                ti.try_number,
                get_current_context(),
                force_relisting=bool(params["force_relisting"]),
            )

        settled, tables_ready = settled_and_ready(stream, settings)
        planned = extract_hour()
        settled >> planned
        parts = extract_part.expand(part=planned)
        # The task decorator's types take the task's own arguments, not the XComArgs that stand for them.
        tables_ready >> load_and_merge(combine_parts(planned["extracted"], parts))  # type: ignore[arg-type, index]

    return ingest()


# Only the valid streams: a refused one is the import error of dags/streams_config.py.
config = load_streams()
for _stream in config.streams:
    globals()[_stream.ingest_dag_id] = build_ingest_dag(_stream, config.settings)
