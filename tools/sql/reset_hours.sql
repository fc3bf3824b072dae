{#
  Forget some hours of a stream (demo only, PostgreSQL): the target's rows of the given keys
  and the loader's account of the hours, so that a second run of the demo starts from the same
  clean slate as the first (the real-time path must write the hours before their first load).
#}
{% set key = key[0] | ident %}
DELETE FROM {{ target | qualified }}
WHERE CAST({{ key }} AS varchar) = ANY(CAST(%(keys)s AS varchar[]));

{% for table in ("ledger", "load_hours", "realtime_quality", "audit_results") %}
DELETE FROM {{ (loader_schema, table) | qualified }}
WHERE stream = CAST(%(stream)s AS varchar(64)) AND hour = ANY(CAST(%(hours)s AS timestamp[]));

{% endfor %}
