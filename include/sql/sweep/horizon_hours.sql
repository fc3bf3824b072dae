{# The hours in the sweep's horizon that a load has committed (a load_hours row). #}
SELECT hour
FROM {{ (loader_schema, "load_hours") | qualified }}
WHERE stream = CAST(%(stream)s AS varchar(64))
  AND hour >= CAST(%(first_hour)s AS timestamp) AND hour <= CAST(%(last_hour)s AS timestamp)
