{# Audit dashboard (read-only): the hour's schema drift, one row per field over the hour's objects. #}
SELECT field, SUM(records) AS records, MIN(json_types) AS json_types, MIN(sample) AS sample, COUNT(*) AS objects
FROM {{ (loader_schema, "schema_drift") | qualified }}
WHERE stream = CAST(%(stream)s AS varchar(64)) AND hour = CAST(%(hour)s AS timestamp)
GROUP BY field
ORDER BY field
