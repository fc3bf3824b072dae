{#
  Audit dashboard (read-only): which of the loader's tables and the stream's table exist yet,
  so a stream that never ran shows as such instead of failing the page.
#}
SELECT table_schema, table_name
FROM information_schema.tables
WHERE (table_schema = CAST(%(loader_schema)s AS varchar(128))
       AND table_name IN ('ledger', 'load_hours', 'audit_results', 'realtime_quality', 'schema_drift', 'object_commits',
                          'sweep_results', 'silences'))
   OR (table_schema = CAST(%(schema)s AS varchar(128)) AND table_name = CAST(%(table)s AS varchar(128)))
