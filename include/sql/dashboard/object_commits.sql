{#
  Audit dashboard (read-only): when each object version of the window's landings was first
  committed (object_commits), for the stream's freshness: landing -> committed, and the lag.
#}
SELECT landed_at, committed_at, committed_by
FROM {{ (loader_schema, "object_commits") | qualified }}
WHERE stream = CAST(%(stream)s AS varchar(64))
  AND landed_at >= CAST(%(start)s AS timestamp) AND landed_at < CAST(%(end)s AS timestamp)
ORDER BY landed_at
