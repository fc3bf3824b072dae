"""The ``doc_md`` shown on each DAG's page in the Airflow UI."""

from __future__ import annotations

from firehose_loader.config import Settings, Stream
from firehose_loader.layout import stream_layout


def _folders_of_an_hour(stream: Stream) -> str:
    """Where a run's objects are, in the stream's layout."""
    if stream_layout(stream).is_default:
        return f"`s3://{stream.bucket}/{stream.prefix}YYYY/MM/DD/10/` (10:00-11:00)"
    return (
        f"the folders of `s3://{stream.bucket}/{stream.prefix}` (local hours in {stream.prefix_timezone}) "
        "whose hour ends within 10:00-11:00 UTC: one folder, none for the first UTC hour of a local hour "
        "that a DST change repeats (the next run loads that folder), and with partition keys each "
        "partition's folder of that hour"
    )


def ingest_doc_md(stream: Stream, settings: Settings) -> str:
    grace = int(stream.settle_grace.total_seconds() // 60)
    key = ", ".join(stream.key)
    split_size = f"{stream.split_above_bytes / 2**20:,.0f} MiB"
    settle = (
        f"\n**The settle pass.** Freshness mode `{stream.freshness.mode}`: `{stream.microbatch_dag_id}` merges "
        "each object within minutes of landing; this run then merges whatever the micro-batches missed "
        "(the rest is unchanged) and gives the hour its whole-hour ledger, load_hours row and stage.\n"
        if stream.freshness.microbatches
        else ""
    )
    return f"""
### Hourly Firehose load: `{stream.name}` → `{stream.qualified_table}`

**Which hour a run loads.** A run loads its data interval, one UTC hour: the run
scheduled at 11:00 loads the objects in
{_folders_of_an_hour(stream)}. It first waits
until the hour has settled (interval end + {grace} min, for Firehose buffering).
{settle}
**Tasks**

| task | what it does | clearing it |
|---|---|---|
| `wait_for_settled_hour` | deferrable wait until end + {grace} min | harmless |
| `ensure_tables` | creates `{stream.qualified_table}` and the loader tables if missing (beside the wait; the load waits for it) | harmless |
| `extract_hour` | lists the hour's exact keys, decodes, validates, dedupes, stages Parquet under `{stream.staging_prefix}`, writes bad records to `{stream.quarantine_prefix}{stream.name}/`; an hour of more than {split_size} of objects is only listed and split into parts | re-reads S3; clear with *downstream* so the new stage is loaded |
| `extract_part` | mapped, one per part of a split hour (skipped otherwise): the same work for the part's objects | re-reads its objects; clear with *downstream* |
| `combine_parts` | writes a split hour's stage: the COPY manifest of its part stages, which `load_and_merge` dedupes in the warehouse (passes the manifest through otherwise) | harmless; clear with *downstream* |
| `load_and_merge` | COPY into a temporary staging table and merge into the target with the ledger, in one transaction | re-merges the same stage (its manifest names it); rewrites nothing that is already there, nor a ledger an audit wrote since from a later listing |

**Rerun, clear, backfill.** Every step derives from the data interval, never from the
clock, so clearing a run (or any task with downstream) redoes exactly that hour and
ends with the table a clean run gives. Per key `{key}` the greatest `{stream.order_by}`
wins (ties: the later object and offset), and an older hour loaded after a newer one
never overwrites newer rows. Backfill from the UI (*Trigger* → *Backfill*) or:

    airflow backfill create --dag-id {stream.ingest_dag_id} --from-date 2026-03-01T00:00:00+00:00 --to-date 2026-03-02T00:00:00+00:00

**Where to look.** `{settings.loader_schema}.load_hours` has one row per hour (status `loaded`,
`partial` when records were quarantined or an object was unreadable, `empty` when the hour had
no objects); `{settings.loader_schema}.ledger` one row per object with raw / valid / quarantined /
duplicate / inserted / updated / unchanged / superseded counts. The *Firehose audit* page in the
UI's navigation (`/firehose/?stream={stream.name}`) shows the last 48 hours and each hour's ledger.
"""


def audit_doc_md(stream: Stream, settings: Settings) -> str:
    return f"""
### Hourly audit: `{stream.name}` → `{stream.qualified_table}`

**What a run audits.** The `lookback_hours` (param, default 24) whole hours before its data
interval's end, once that last hour has settled: the run at 11:00 audits 10:00 and the 23
hours before it. `airflow dags test {stream.audit_dag_id} 2026-03-01T11:00:00+00:00 -c '{{"lookback_hours": 14}}'`
audits the 14 hours before 11:00.

**How.** For each hour the S3 truth is the hour's deduplicated batch: the stage of its last load
when the ledger still matches the folder (no object is re-read), or a fresh extract when an
object is new or changed (late) or the hour was never loaded. The batch is merged exactly like
the ingest (one transaction, same winner rule), and the damage done **after the load** (to keys the
loader had already reconciled) is recorded in `{settings.loader_schema}.audit_results`. What the
real-time path had done before the load is measured at each key's first merge, in
`{settings.loader_schema}.realtime_quality` ({"this stream declares a real-time writer" if stream.realtime_writer else "this stream declares no real-time writer, so there is no drop rate to report"}).
An hour whose ingest has not committed yet and is still running is `waiting`; an hour no ingest
will load is loaded by the audit (`loaded`).

**Erasing keys on purpose.** A run triggered with `erase_keys` and `erase_reason`
(`airflow dags trigger {stream.audit_dag_id} --conf '{{"erase_keys": [...], "erase_reason": "..."}}'`)
deletes those keys' rows and records tombstones (`{settings.loader_schema}.tombstones_{stream.name}`) in
its `erase_keys` task: no merge loads them again, and no audit counts them
({"a newer version loads again" if stream.erased_keys_accept_newer else "a newer version stays erased"}; docs/operations.md).

| column | meaning |
|---|---|
| `s3_keys` | distinct valid keys in S3 for the hour |
| `missing_keys` | reconciled keys absent from the table (deleted after the load) |
| `duplicate_keys` | keys with more than one row in the table |
| `stale_keys` | keys whose row has an older `{stream.order_by}` than the hour's newest version |
| `late_objects` | objects the ledger had not loaded (or whose ETag changed) |
| `error_objects` | Firehose error-output objects for the hour (never loaded) |
| `repaired_keys` | keys the repair inserted or replaced |
| `drop_rate` | `missing_keys / s3_keys` after the load (the real-time path's own is `realtime_quality.drop_rate`) |

**Status of an audited hour, and what to do.**

| status | meaning | what to do |
|---|---|---|
| `ok` | the table matched S3 for the hour | nothing |
| `repaired` | reconciled keys were missing, doubled or stale after the load; this try repaired them (a second run reports `ok`) | find what writes into the table after the load |
| `loaded` | the audit merged keys new to the hour (a late object, or an hour no ingest loaded) | nothing; if no ingest loaded the hour, see why its run failed or was paused |
| `waiting` | the hour's ingest has not committed and is still running | nothing: the next audit judges it |
| `failed` | the repair of this hour was rolled back; `message` says why | fix the cause, then clear `audit_and_repair`; the other hours were audited and the task failed after them |

The configured notifier is called once per run when an hour failed or needed more than
`audit_alert_threshold` ({stream.audit_alert_threshold}) repaired keys plus late objects.

**Tasks**

| task | what it does | clearing it |
|---|---|---|
| `wait_for_settled_hour` | deferrable wait until the interval end + {int(stream.settle_grace.total_seconds() // 60)} min | harmless |
| `ensure_tables` | creates the loader tables and `{stream.qualified_table}` if missing (beside the wait) | harmless |
| `audit_and_repair` | audits and repairs each hour in its own transaction, writes `audit_results` | audits the same hours again and adds this try's rows to `audit_results` (normally `ok`: the earlier try already repaired; its rows stay) |
| `late_sweep` | compares every hour of the last `late_horizon_hours` ({stream.late_horizon_hours}) with the ledger (keys and ETags, no object read), loads only objects that landed after their hour was loaded, and hours no load committed; writes `sweep_results` and alerts on any finding | harmless: a second sweep finds nothing |

**Older hours, backfill.** One run audits `lookback_hours` hours, so to audit further back trigger
a run with a larger `lookback_hours` (UI: *Trigger*, then the param; CLI:
`airflow dags trigger {stream.audit_dag_id} -c '{{"lookback_hours": 72}}'`) rather than a backfill,
whose runs would each audit their own, overlapping, 24 hours. A backfill works all the same
(UI: *Trigger* → *Backfill*, or
`airflow backfill create --dag-id {stream.audit_dag_id} --from-date 2026-03-01T00:00:00+00:00 --to-date 2026-03-02T00:00:00+00:00`);
it only does more work.

**Where to look.** `{settings.loader_schema}.audit_results` (one row per hour, run and try), `{settings.loader_schema}.sweep_results` (the late sweep's findings), `{settings.loader_schema}.realtime_quality`, and the
*Firehose audit* page in the UI's navigation (`/firehose/?stream={stream.name}`): the last 48 hours
as a chart, and each hour's ledger.
"""
