"""One hourly audit DAG per stream: reconcile S3 with the warehouse by key, and repair."""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Param, dag, get_current_context, task

from firehose_loader.airflow.dag_pieces import (
    FORCE_RELISTING_PARAM,
    HOURLY,
    settled_and_ready,
    table_asset,
    task_defaults,
)
from firehose_loader.airflow.doc_md import audit_doc_md
from firehose_loader.airflow.tasks import run_audit, run_erase, run_late_sweep
from firehose_loader.config import Settings, Stream, load_streams

AUDIT_AFTER_INGEST = timedelta(minutes=10)


def build_audit_dag(stream: Stream, settings: Settings):
    @dag(
        dag_id=stream.audit_dag_id,
        schedule=HOURLY,
        start_date=stream.start_date,
        catchup=False,
        max_active_runs=1,
        params={
            "lookback_hours": Param(24, type="integer", minimum=1, maximum=24 * 14, description="hours to audit"),
            # A manual run can erase keys on purpose first (docs/operations.md#erasing-keys).
            "erase_keys": Param(
                [],
                type="array",
                description="keys to erase: values (one-column key), lists in key order, or mappings by column",
            ),
            "erase_reason": Param("", type="string", description="why the keys are erased (required with erase_keys)"),
            **FORCE_RELISTING_PARAM,
        },
        tags=["firehose-loader", "audit", f"stream:{stream.name}", *stream.tags],
        doc_md=audit_doc_md(stream, settings),
        default_args=task_defaults(stream),
    )
    def audit():
        @task(outlets=[table_asset(stream, settings)], pool=stream.merge_pool)
        def audit_and_repair(data_interval_end=None, params=None, run_id=None, ti=None) -> list[dict]:
            lookback_hours = int(params["lookback_hours"])
            return run_audit(
                stream,
                settings,
                data_interval_end,
                lookback_hours,
                run_id,
                ti.try_number,
                get_current_context(),
                force_relisting=bool(params["force_relisting"]),
            )

        # After the audit's window is judged: every hour of the stream's late_horizon_hours compared
        # with its ledger, and only new or changed objects loaded (docs/audit.md). It runs after the
        # audit even when the audit failed (one hour that cannot be repaired must not stop the sweep).
        @task(outlets=[table_asset(stream, settings)], pool=stream.merge_pool, trigger_rule="all_done")
        def late_sweep(data_interval_end=None, run_id=None, ti=None) -> list[dict]:
            return run_late_sweep(stream, settings, data_interval_end, run_id, ti.try_number, get_current_context())

        # Ten minutes after the ingest's own wait, so the newest hour's ingest normally committed first
        # and the audit does not load that hour itself and report all of it missing.
        @task(outlets=[table_asset(stream, settings)], pool=stream.merge_pool)
        def erase_keys(params=None, run_id=None) -> int:
            return run_erase(stream, settings, params["erase_keys"], params["erase_reason"], run_id)

        settled, tables_ready = settled_and_ready(stream, settings, extra_wait=AUDIT_AFTER_INGEST)
        [settled, tables_ready] >> audit_and_repair() >> late_sweep()
        # Beside the audit, not before it: an erasure does not wait for the hour to settle (the
        # merge's lock orders the two, and either order leaves the keys erased).
        tables_ready >> erase_keys()

    return audit()


# Only the valid streams: a refused one is the import error of dags/streams_config.py.
config = load_streams()
for _stream in config.streams:
    globals()[_stream.audit_dag_id] = build_audit_dag(_stream, config.settings)
