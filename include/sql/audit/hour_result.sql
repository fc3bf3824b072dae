SELECT hour, status, s3_keys, missing_keys, duplicate_keys, stale_keys, late_objects, error_objects, repaired_keys, drop_rate, message
FROM {{ (loader_schema, "audit_results") | qualified }}
WHERE stream = CAST(%(stream)s AS varchar(64)) AND hour = CAST(%(hour)s AS timestamp)
  AND run_id = CAST(%(run_id)s AS varchar(256)) AND try_number = CAST(%(try_number)s AS bigint)
