{# The fields the hour's records carried that were not among the columns when it was loaded (its schema drift). #}
SELECT DISTINCT field
FROM {{ (loader_schema, "schema_drift") | qualified }}
WHERE stream = CAST(%(stream)s AS varchar(64)) AND hour = CAST(%(hour)s AS timestamp)
