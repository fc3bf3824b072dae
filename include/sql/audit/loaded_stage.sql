{# records_valid > 0 without a stage_key: a late sweep merged a delta, and no one stage holds the hour. #}
SELECT stage_key, listed_at, records_valid, stage_columns
FROM {{ (loader_schema, "load_hours") | qualified }}
WHERE stream = CAST(%(stream)s AS varchar(64)) AND hour = CAST(%(hour)s AS timestamp)
