{# The loaded hours around an hour and their object counts (an hour with no load_hours row is absent). #}
SELECT hour, objects
FROM {{ (loader_schema, "load_hours") | qualified }}
WHERE stream = CAST(%(stream)s AS varchar(64))
  AND hour >= CAST(%(first_hour)s AS timestamp) AND hour <= CAST(%(last_hour)s AS timestamp)
