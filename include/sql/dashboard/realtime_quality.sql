{#
  Audit dashboard (read-only): the real-time path's account of each hour of the window
  [start, end), as the hour's first merge measured it (realtime_quality, streams with
  realtime_writer): keys missing, doubled, stale before the loader changed a row, and the drop rate.
#}
SELECT hour, s3_keys, missing_keys, duplicate_keys, stale_keys, drop_rate,
       measured_at, run_id, measured_by, last_measured_at
FROM {{ (loader_schema, "realtime_quality") | qualified }}
WHERE stream = CAST(%(stream)s AS varchar(64))
  AND hour >= CAST(%(start)s AS timestamp) AND hour < CAST(%(end)s AS timestamp)
ORDER BY hour
