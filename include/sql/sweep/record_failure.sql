{#
  An hour the sweep could not sweep: no findings, the error's message. Only when this try has no row
  for the hour yet: a try whose merge committed its finding and then failed keeps that finding.
#}
INSERT INTO {{ (loader_schema, "sweep_results") | qualified }} (stream, hour, run_id, try_number, swept_at, status, message)
SELECT
    CAST(%(stream)s AS varchar(64)),
    CAST(%(hour)s AS timestamp),
    CAST(%(run_id)s AS varchar(256)),
    CAST(%(try_number)s AS bigint),
    CAST(%(swept_at)s AS timestamp),
    CAST('failed' AS varchar(16)),
    CAST(%(message)s AS varchar(1024))
WHERE NOT EXISTS (
    SELECT 1 FROM {{ (loader_schema, "sweep_results") | qualified }} kept
    WHERE kept.stream = CAST(%(stream)s AS varchar(64)) AND kept.hour = CAST(%(hour)s AS timestamp)
      AND kept.run_id = CAST(%(run_id)s AS varchar(256)) AND kept.try_number = CAST(%(try_number)s AS bigint)
)
