{# Audit dashboard (read-only): every audit of one hour (every try of each run), newest first. #}
SELECT run_id, try_number, audited_at, status, s3_keys, missing_keys, duplicate_keys, stale_keys,
       late_objects, error_objects, repaired_keys, drop_rate, message
FROM {{ (loader_schema, "audit_results") | qualified }}
WHERE stream = CAST(%(stream)s AS varchar(64)) AND hour = CAST(%(hour)s AS timestamp)
ORDER BY audited_at DESC, run_id DESC, try_number DESC
