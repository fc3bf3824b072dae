{# One column the loader added, in the transaction of its ALTER TABLE ... ADD COLUMN. #}
INSERT INTO {{ (loader_schema, "schema_history") | qualified }} (
    stream, column_name, column_type, json_types, hour, run_id, added_at
) VALUES (
    CAST(%(stream)s AS varchar(64)), CAST(%(column_name)s AS varchar(128)), CAST(%(column_type)s AS varchar(64)),
    CAST(%(json_types)s AS varchar(256)), CAST(%(hour)s AS timestamp), CAST(%(run_id)s AS varchar(256)),
    CAST(%(added_at)s AS timestamp)
)
