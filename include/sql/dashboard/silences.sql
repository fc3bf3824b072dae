{# Audit dashboard (read-only): the stream's silences that began in the window [start, end). #}
SELECT silent_from, empty_hours, last_objects, alerted_at, run_id
FROM {{ (loader_schema, "silences") | qualified }}
WHERE stream = CAST(%(stream)s AS varchar(64))
  AND silent_from >= CAST(%(start)s AS timestamp) AND silent_from < CAST(%(end)s AS timestamp)
ORDER BY silent_from
