{# The tables of the loader's and the target's schemas (Redshift has no indexes): ensure_tables runs DDL only for a missing one. #}
SELECT table_schema, table_name
FROM information_schema.tables
WHERE table_schema IN (CAST(%(loader_schema)s AS varchar(128)), CAST(%(target_schema)s AS varchar(128)))
