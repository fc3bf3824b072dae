{# An hour the audit did not judge: it failed, or it waits for its ingest (status); no counts. #}
DELETE FROM {{ (loader_schema, "audit_results") | qualified }}
WHERE stream = CAST(%(stream)s AS varchar(64)) AND hour = CAST(%(hour)s AS timestamp)
  AND run_id = CAST(%(run_id)s AS varchar(256));

INSERT INTO {{ (loader_schema, "audit_results") | qualified }} (stream, hour, run_id, audited_at, status, late_objects, message)
VALUES (
    CAST(%(stream)s AS varchar(64)),
    CAST(%(hour)s AS timestamp),
    CAST(%(run_id)s AS varchar(256)),
    CAST(%(audited_at)s AS timestamp),
    CAST(%(status)s AS varchar(16)),
    CAST(%(late_objects)s AS bigint),
    CAST(%(message)s AS varchar(1024))
);
