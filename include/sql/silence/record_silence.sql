{# A silence is recorded once, under the hour it began (the primary key stops a second row). #}
INSERT INTO {{ (loader_schema, "silences") | qualified }} (stream, silent_from, empty_hours, last_objects, alerted_at, run_id)
SELECT
    CAST(%(stream)s AS varchar(64)), CAST(%(silent_from)s AS timestamp), CAST(%(empty_hours)s AS bigint),
    CAST(%(last_objects)s AS bigint), CAST(%(alerted_at)s AS timestamp), CAST(%(run_id)s AS varchar(256))
WHERE NOT EXISTS (
    SELECT 1 FROM {{ (loader_schema, "silences") | qualified }}
    WHERE stream = CAST(%(stream)s AS varchar(64)) AND silent_from = CAST(%(silent_from)s AS timestamp)
)
