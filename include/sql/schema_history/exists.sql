{# Whether the loader's schema_history table exists yet (1) or not (0): a task may run before ensure_tables. #}
SELECT COUNT(*)
FROM information_schema.tables
WHERE table_schema = CAST(%(schema)s AS varchar(128)) AND table_name = 'schema_history'
