{#
  Audit dashboard (read-only): per hour of the window [start, end), what every audit of it
  found, summed (each audit repairs what it found, so findings of two runs are two events),
  beside the latest audit's status, S3 key count, error-output count and message.
#}
SELECT
    totals.hour,
    totals.audits,
    totals.failed_audits,
    totals.repaired_audits,
    totals.missing_keys,
    totals.duplicate_keys,
    totals.stale_keys,
    totals.late_objects,
    totals.repaired_keys,
    totals.last_audited_at,
    latest.status AS latest_status,
    latest.s3_keys AS latest_s3_keys,
    latest.error_objects AS latest_error_objects,
    latest.message AS latest_message,
    latest.run_id AS latest_run_id
FROM (
    SELECT
        hour,
        COUNT(*) AS audits,
        SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END) AS failed_audits,
        SUM(CASE WHEN status = 'repaired' THEN 1 ELSE 0 END) AS repaired_audits,
        COALESCE(SUM(missing_keys), 0) AS missing_keys,
        COALESCE(SUM(duplicate_keys), 0) AS duplicate_keys,
        COALESCE(SUM(stale_keys), 0) AS stale_keys,
        COALESCE(SUM(late_objects), 0) AS late_objects,
        COALESCE(SUM(repaired_keys), 0) AS repaired_keys,
        MAX(audited_at) AS last_audited_at
    FROM {{ (loader_schema, "audit_results") | qualified }}
    WHERE stream = CAST(%(stream)s AS varchar(64))
      AND hour >= CAST(%(start)s AS timestamp) AND hour < CAST(%(end)s AS timestamp)
    GROUP BY hour
) totals
JOIN (
    SELECT
        hour, status, s3_keys, error_objects, message, run_id,
        ROW_NUMBER() OVER (PARTITION BY hour ORDER BY audited_at DESC, run_id DESC, try_number DESC) AS position
    FROM {{ (loader_schema, "audit_results") | qualified }}
    WHERE stream = CAST(%(stream)s AS varchar(64))
      AND hour >= CAST(%(start)s AS timestamp) AND hour < CAST(%(end)s AS timestamp)
) latest ON latest.hour = totals.hour AND latest.position = 1
ORDER BY totals.hour
