{# An hour the audit did not judge: it failed, or it waits for its ingest (status); no counts. #}
INSERT INTO {{ (loader_schema, "audit_results") | qualified }} (stream, hour, run_id, try_number, audited_at, status, late_objects, message)
VALUES (
    CAST(%(stream)s AS varchar(64)),
    CAST(%(hour)s AS timestamp),
    CAST(%(run_id)s AS varchar(256)),
    CAST(%(try_number)s AS bigint),
    CAST(%(audited_at)s AS timestamp),
    CAST(%(status)s AS varchar(16)),
    CAST(%(late_objects)s AS bigint),
    CAST(%(message)s AS varchar(1024))
);
