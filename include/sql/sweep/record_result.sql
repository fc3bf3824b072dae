{#
  Runs inside the sweep's merge transaction, after merge.sql: records_loaded is how many rows
  of the late objects' batch the merge inserted or replaced (the plan's inserts and updates).
  A failed hour has no plan and no merge: its row is written alone (record_failure.sql).
#}
INSERT INTO {{ (loader_schema, "sweep_results") | qualified }} (
    stream, hour, run_id, try_number, swept_at, status,
    late_objects, late_keys, max_lateness_seconds, records_loaded
)
SELECT
    CAST(%(stream)s AS varchar(64)),
    CAST(%(hour)s AS timestamp),
    CAST(%(run_id)s AS varchar(256)),
    CAST(%(try_number)s AS bigint),
    CAST(%(swept_at)s AS timestamp),
    CAST(%(status)s AS varchar(16)),
    CAST(%(late_objects)s AS bigint),
    CAST(%(late_keys)s AS varchar(65535)),
    CAST(%(max_lateness_seconds)s AS bigint),
    COALESCE(SUM(CASE WHEN action IN ('insert', 'update') THEN 1 ELSE 0 END), 0)
FROM {{ plan | ident }}
