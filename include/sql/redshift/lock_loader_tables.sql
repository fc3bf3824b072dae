{#
  Redshift's LOCK is ACCESS EXCLUSIVE: it blocks readers too. So the merge locks the loader's
  own tables, never the target that dashboards read. Every loader write of a target (a merge by
  the ingest, the audit, the sweep or a micro-batch, and an erasure) takes this lock first, so
  two of them never interleave, for one stream or across streams (which also avoids error 1023
  on the shared ledger tables). A writer outside the loader (a real-time Lambda) was never
  serialized by a lock it does not take: Redshift's serializable isolation cancels the merge
  when the two conflict, and the merge is run again (warehouse.transactions). The order is
  always the same, so two loads cannot deadlock.
#}
LOCK {{ (loader_schema, "ledger") | qualified }}, {{ (loader_schema, "load_hours") | qualified }}, {{ (loader_schema, "schema_drift") | qualified }}, {{ (loader_schema, "object_commits") | qualified }}
{%- if realtime_writer %}, {{ (loader_schema, "realtime_quality") | qualified }}{% endif %}
