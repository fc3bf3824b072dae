{# The columns the loader added to the stream's table (new_fields: add_columns), in the order it added them. #}
SELECT column_name, column_type
FROM {{ (loader_schema, "schema_history") | qualified }}
WHERE stream = CAST(%(stream)s AS varchar(64))
ORDER BY added_at, column_name
