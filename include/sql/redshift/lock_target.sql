{#
  Redshift's LOCK takes an exclusive lock (readers of these tables wait until the commit).
  The loader tables are locked with the target: every load writes them, and two loads of
  different streams writing them at once would otherwise end in error 1023 (serializable
  isolation violation). The order is always the same, so two loads cannot deadlock.
#}
LOCK {{ target | qualified }}, {{ (loader_schema, "ledger") | qualified }}, {{ (loader_schema, "load_hours") | qualified }}, {{ (loader_schema, "object_commits") | qualified }}
{%- if realtime_writer %}, {{ (loader_schema, "realtime_quality") | qualified }}{% endif %}
