{# Audit dashboard (read-only): one hour's realtime_quality row (the real-time path at its first merge). #}
SELECT hour, s3_keys, missing_keys, duplicate_keys, stale_keys, drop_rate,
       measured_at, run_id, measured_by, last_measured_at
FROM {{ (loader_schema, "realtime_quality") | qualified }}
WHERE stream = CAST(%(stream)s AS varchar(64)) AND hour = CAST(%(hour)s AS timestamp)
