{#
  An hour the audit did not judge: it failed, or it waits for its ingest (status); no counts. Only
  when this try has no row for the hour yet: a try whose repair committed its findings and then
  failed (reading them back) keeps those findings.
#}
INSERT INTO {{ (loader_schema, "audit_results") | qualified }} (stream, hour, run_id, try_number, audited_at, status, late_objects, message)
SELECT
    CAST(%(stream)s AS varchar(64)),
    CAST(%(hour)s AS timestamp),
    CAST(%(run_id)s AS varchar(256)),
    CAST(%(try_number)s AS bigint),
    CAST(%(audited_at)s AS timestamp),
    CAST(%(status)s AS varchar(16)),
    CAST(%(late_objects)s AS bigint),
    CAST(%(message)s AS varchar(1024))
WHERE NOT EXISTS (
    SELECT 1 FROM {{ (loader_schema, "audit_results") | qualified }} kept
    WHERE kept.stream = CAST(%(stream)s AS varchar(64)) AND kept.hour = CAST(%(hour)s AS timestamp)
      AND kept.run_id = CAST(%(run_id)s AS varchar(256)) AND kept.try_number = CAST(%(try_number)s AS bigint)
)
