{# An hour the sweep could not sweep: no findings, the error's message. #}
INSERT INTO {{ (loader_schema, "sweep_results") | qualified }} (stream, hour, run_id, try_number, swept_at, status, message)
VALUES (
    CAST(%(stream)s AS varchar(64)),
    CAST(%(hour)s AS timestamp),
    CAST(%(run_id)s AS varchar(256)),
    CAST(%(try_number)s AS bigint),
    CAST(%(swept_at)s AS timestamp),
    CAST('failed' AS varchar(16)),
    CAST(%(message)s AS varchar(1024))
)
