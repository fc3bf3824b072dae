"""One hourly audit DAG per stream: reconcile S3 with the warehouse by key, and repair."""

from __future__ import annotations

from airflow.providers.standard.sensors.time_delta import TimeDeltaSensor
from airflow.sdk import Param, chain, dag, get_current_context, task

from firehose_loader.airflow_glue import RETRY_DEFAULTS, run_audit, run_ensure_tables
from firehose_loader.config import Settings, Stream, load_config
from firehose_loader.docs import audit_doc_md
from firehose_loader.schedule import HOURLY, table_asset


def build_audit_dag(stream: Stream, settings: Settings):
    @dag(
        dag_id=stream.audit_dag_id,
        schedule=HOURLY,
        start_date=stream.start_date,
        catchup=False,
        max_active_runs=1,
        params={
            "lookback_hours": Param(24, type="integer", minimum=1, maximum=24 * 14, description="hours to audit"),
        },
        tags=["firehose-loader", "audit", f"stream:{stream.name}", *stream.tags],
        doc_md=audit_doc_md(stream, settings),
        default_args={"owner": stream.owner, **RETRY_DEFAULTS},
    )
    def audit():
        wait_for_settled_hour = TimeDeltaSensor(
            task_id="wait_for_settled_hour",
            delta=stream.settle_grace,
            deferrable=True,
            retries=0,
        )

        @task
        def ensure_tables() -> None:
            run_ensure_tables(stream, settings)

        @task(outlets=[table_asset(stream, settings)])
        def audit_and_repair(data_interval_end=None, params=None, run_id=None) -> list[dict]:
            return run_audit(
                stream, settings, data_interval_end, int(params["lookback_hours"]), run_id, get_current_context()
            )

        chain(wait_for_settled_hour, ensure_tables(), audit_and_repair())

    return audit()


config = load_config()
for _stream in config.streams:
    globals()[_stream.audit_dag_id] = build_audit_dag(_stream, config.settings)
