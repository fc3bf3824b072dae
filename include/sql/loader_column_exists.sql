{#
  Whether one of the loader's tables has a column (1) or not (0), read from the catalog both
  PostgreSQL and Redshift keep: ensure_tables adds a column a table from an older release lacks.
#}
SELECT COUNT(*)
FROM information_schema.columns
WHERE table_schema = CAST(%(schema)s AS varchar(128))
  AND table_name = CAST(%(table)s AS varchar(128))
  AND column_name = CAST(%(column)s AS varchar(128))
