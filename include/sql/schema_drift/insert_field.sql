{# One new field of one object (one parameter set per object and field). #}
INSERT INTO {{ (loader_schema, "schema_drift") | qualified }} (
    stream, hour, object_key, field, records, json_types, sample, run_id, loaded_at
) VALUES (
    CAST(%(stream)s AS varchar(64)), CAST(%(hour)s AS timestamp), CAST(%(object_key)s AS varchar(1024)),
    CAST(%(field)s AS varchar(256)), CAST(%(records)s AS bigint), CAST(%(json_types)s AS varchar(256)),
    CAST(%(sample)s AS varchar(1024)), CAST(%(run_id)s AS varchar(256)), CAST(%(loaded_at)s AS timestamp)
)
