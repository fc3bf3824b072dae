{#
  The target's columns with their types and modifiers, from the catalog both PostgreSQL and
  Redshift keep: warehouse.target_types compares them with the declared types before a merge.
#}
SELECT column_name, data_type, character_maximum_length, numeric_precision, numeric_scale
FROM information_schema.columns
WHERE table_schema = CAST(%(schema)s AS varchar(128))
  AND table_name = CAST(%(table)s AS varchar(128))
