{# Audit dashboard (read-only): what the late sweep found in the hour, one row per sweep run and try. #}
SELECT swept_at, run_id, try_number, status, late_objects, late_keys, max_lateness_seconds, records_loaded, message
FROM {{ (loader_schema, "sweep_results") | qualified }}
WHERE stream = CAST(%(stream)s AS varchar(64)) AND hour = CAST(%(hour)s AS timestamp)
ORDER BY swept_at, run_id, try_number
