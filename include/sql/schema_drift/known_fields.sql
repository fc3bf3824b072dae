{# The fields schema drift has recorded for the stream before (a field new to this list is alerted once). #}
SELECT DISTINCT field
FROM {{ (loader_schema, "schema_drift") | qualified }}
WHERE stream = CAST(%(stream)s AS varchar(64))
