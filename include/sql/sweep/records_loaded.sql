SELECT records_loaded
FROM {{ (loader_schema, "sweep_results") | qualified }}
WHERE stream = CAST(%(stream)s AS varchar(64)) AND hour = CAST(%(hour)s AS timestamp)
  AND run_id = CAST(%(run_id)s AS varchar(256)) AND try_number = CAST(%(try_number)s AS bigint)
