{#
  Runs inside the repair transaction, after merge.sql: the plan says, per key of
  the hour's S3 truth, what the target held before the merge.

  What the audit reports is damage done after the load: keys the loader had already
  reconciled (first_seen = 0) that are now missing, doubled, or older than the version the
  loader had loaded (stale with winner_loaded = 1). Keys new to the loader's account of the hour
  (a late object's, or every key of an hour no ingest loaded) are the hour's first merge: what
  the real-time writer did to them is in realtime_quality. A late object's newer version of a
  reconciled key is new data, not damage. For both the audit says only that it loaded them
  (status 'loaded'). 'repaired' means that at least one reconciled key was repaired.

  Erased keys (action 'erased', see merge.sql) were deleted on purpose: they are not in the
  findings at all, not even in s3_keys.

  Every try of an audit run adds its own row (the history is append-only): a retry that finds
  the hour its first try repaired records 'ok' beside that try's 'repaired', never over it.
#}
{% set stale_damage %}(first_seen = 0 AND winner_loaded = 1 AND stale = 1){% endset %}
{% set repaired %}(first_seen = 0 AND (action = 'insert' OR (action = 'update' AND (copies > 1 OR (winner_loaded = 1 AND stale = 1))))){% endset %}
{% set newly_loaded %}(first_seen = 1 OR (winner_loaded = 0 AND action IN ('insert', 'update'))){% endset %}
INSERT INTO {{ (loader_schema, "audit_results") | qualified }} (
    stream, hour, run_id, try_number, audited_at, status,
    s3_keys, missing_keys, duplicate_keys, stale_keys, late_objects, error_objects, repaired_keys, drop_rate
)
SELECT * FROM (
SELECT
    CAST(%(stream)s AS varchar(64)),
    CAST(%(hour)s AS timestamp),
    CAST(%(run_id)s AS varchar(256)),
    CAST(%(try_number)s AS bigint),
    CAST(%(audited_at)s AS timestamp),
    CASE
        WHEN COALESCE(SUM(CASE WHEN {{ repaired }} THEN 1 ELSE 0 END), 0) > 0 THEN 'repaired'
        WHEN COALESCE(SUM(CASE WHEN {{ newly_loaded }} THEN 1 ELSE 0 END), 0) > 0 THEN 'loaded'
        ELSE 'ok'
    END,
    COUNT(*),
    COALESCE(SUM(CASE WHEN first_seen = 0 AND action = 'insert' THEN 1 ELSE 0 END), 0),
    COALESCE(SUM(CASE WHEN first_seen = 0 AND copies > 1 THEN 1 ELSE 0 END), 0),
    COALESCE(SUM(CASE WHEN {{ stale_damage }} THEN 1 ELSE 0 END), 0),
    CAST(%(late_objects)s AS bigint),
    CAST(%(error_objects)s AS bigint),
    COALESCE(SUM(CASE WHEN {{ repaired }} THEN 1 ELSE 0 END), 0),
    CASE
        WHEN COUNT(*) = 0 THEN NULL
        ELSE CAST(SUM(CASE WHEN first_seen = 0 AND action = 'insert' THEN 1 ELSE 0 END) AS double precision) / COUNT(*)
    END
FROM {{ plan | ident }}
WHERE action <> 'erased'
) finding
