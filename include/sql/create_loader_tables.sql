-- The loader's own bookkeeping: one row per loaded object (the ledger) and one per
-- stream-hour, both written in the transaction that merges the hour's rows.
CREATE SCHEMA IF NOT EXISTS {{ loader_schema | ident }};

CREATE TABLE IF NOT EXISTS {{ (loader_schema, "ledger") | qualified }} (
    stream varchar(64) NOT NULL,
    hour timestamp NOT NULL,
    object_key varchar(1024) NOT NULL,
    etag varchar(128) NOT NULL,
    size_bytes bigint NOT NULL,
    compression varchar(16) NOT NULL,
    status varchar(16) NOT NULL,
    message varchar(1024),
    records_raw bigint NOT NULL,
    records_valid bigint NOT NULL,
    records_quarantined bigint NOT NULL,
    records_duplicate bigint NOT NULL,
    records_inserted bigint NOT NULL,
    records_updated bigint NOT NULL,
    records_unchanged bigint NOT NULL,
    records_superseded bigint NOT NULL,
    quarantine_key varchar(1024),
    run_id varchar(256) NOT NULL,
    loaded_at timestamp NOT NULL,
    PRIMARY KEY (stream, object_key)
);

CREATE TABLE IF NOT EXISTS {{ (loader_schema, "load_hours") | qualified }} (
    stream varchar(64) NOT NULL,
    hour timestamp NOT NULL,
    status varchar(16) NOT NULL,
    objects bigint NOT NULL,
    objects_unreadable bigint NOT NULL,
    -- objects of the ledger marked gone: loaded once, no longer in S3 when the hour was listed again
    objects_gone bigint DEFAULT 0 NOT NULL,
    error_objects bigint NOT NULL,
    records_raw bigint NOT NULL,
    records_valid bigint NOT NULL,
    records_quarantined bigint NOT NULL,
    records_duplicate bigint NOT NULL,
    records_inserted bigint NOT NULL,
    records_updated bigint NOT NULL,
    records_unchanged bigint NOT NULL,
    records_superseded bigint NOT NULL,
    stage_key varchar(1024),
    run_id varchar(256) NOT NULL,
    loaded_at timestamp NOT NULL,
    -- when the hour was listed for the manifest this row and the hour's ledger came from
    -- (NULL in rows written before the column was added: older than any listing)
    listed_at timestamp,
    -- the columns the hour's last load was staged with, [[name, declared type], ...] in the file's
    -- order (NULL without a stage, and in rows written before the column was added)
    stage_columns varchar(65535),
    PRIMARY KEY (stream, hour)
);

-- What a real-time writer had done to an hour's keys when the loader first merged them, one row
-- per stream and hour (streams with realtime_writer only). A late object adds the keys new to
-- the hour; reruns, clears, backfills and audits add nothing. measured_at, run_id and
-- measured_by are the first measurement's; last_measured_at the last one that added keys.
CREATE TABLE IF NOT EXISTS {{ (loader_schema, "realtime_quality") | qualified }} (
    stream varchar(64) NOT NULL,
    hour timestamp NOT NULL,
    s3_keys bigint NOT NULL,
    missing_keys bigint NOT NULL,
    duplicate_keys bigint NOT NULL,
    stale_keys bigint NOT NULL,
    drop_rate double precision,
    measured_at timestamp NOT NULL,
    run_id varchar(256) NOT NULL,
    measured_by varchar(16) NOT NULL,
    last_measured_at timestamp NOT NULL,
    PRIMARY KEY (stream, hour)
);

-- When each version of an object was first committed (by any merge: micro-batch, ingest, audit,
-- sweep) and when it had landed in S3 (its LastModified; NULL when the listing did not say):
-- landing -> committed is the stream's freshness. Written once per object and ETag, in the
-- transaction of that first merge; reruns and later merges add nothing.
CREATE TABLE IF NOT EXISTS {{ (loader_schema, "object_commits") | qualified }} (
    stream varchar(64) NOT NULL,
    hour timestamp NOT NULL,
    object_key varchar(1024) NOT NULL,
    etag varchar(128) NOT NULL,
    landed_at timestamp,
    committed_at timestamp NOT NULL,
    run_id varchar(256) NOT NULL,
    committed_by varchar(16) NOT NULL,
    PRIMARY KEY (stream, object_key, etag)
);

-- One row per stream, hour, audit run and try: what the audit found before repairing
-- (append-only: a retry or a clear adds its own row, so no try's findings are lost).: what the audit found before repairing.
-- Counts are NULL on a failed hour.
CREATE TABLE IF NOT EXISTS {{ (loader_schema, "audit_results") | qualified }} (
    stream varchar(64) NOT NULL,
    hour timestamp NOT NULL,
    run_id varchar(256) NOT NULL,
    try_number bigint DEFAULT 1 NOT NULL,
    audited_at timestamp NOT NULL,
    status varchar(16) NOT NULL,
    s3_keys bigint,
    missing_keys bigint,
    duplicate_keys bigint,
    stale_keys bigint,
    late_objects bigint,
    error_objects bigint,
    repaired_keys bigint,
    drop_rate double precision,
    message varchar(1024),
    PRIMARY KEY (stream, hour, run_id, try_number)
);

-- One row per stream, hour, sweep run and try for each hour the late sweep found new or changed
-- objects in (status 'late'), an hour it loaded that no load had committed ('gap'), or an hour
-- it could not sweep ('failed', with message): what it found, and in the merge's transaction.
-- late_keys lists the objects' keys, one a line (cut at 65535 characters);
-- max_lateness_seconds is the latest object's LastModified after its hour's end.
-- One row per silence of a stream: silence_alert_hours hours in a row that loaded no object,
-- after an hour that did (silence.record_silence), recorded under its first empty hour so it
-- alerts once.
CREATE TABLE IF NOT EXISTS {{ (loader_schema, "silences") | qualified }} (
    stream varchar(64) NOT NULL,
    silent_from timestamp NOT NULL,
    empty_hours bigint NOT NULL,
    last_objects bigint NOT NULL,
    alerted_at timestamp NOT NULL,
    run_id varchar(256) NOT NULL,
    PRIMARY KEY (stream, silent_from)
);

CREATE TABLE IF NOT EXISTS {{ (loader_schema, "sweep_results") | qualified }} (
    stream varchar(64) NOT NULL,
    hour timestamp NOT NULL,
    run_id varchar(256) NOT NULL,
    try_number bigint NOT NULL,
    swept_at timestamp NOT NULL,
    status varchar(16) NOT NULL,
    late_objects bigint,
    late_keys varchar(65535),
    max_lateness_seconds bigint,
    records_loaded bigint,
    message varchar(1024),
    PRIMARY KEY (stream, hour, run_id, try_number)
);

-- Schema drift: per stream, object and field, how many of the object's records carry a field the
-- stream does not declare, the JSON types seen and a sample value; written with the object's
-- ledger row, in the merge's transaction (a rerun replaces the object's rows).
CREATE TABLE IF NOT EXISTS {{ (loader_schema, "schema_drift") | qualified }} (
    stream varchar(64) NOT NULL,
    hour timestamp NOT NULL,
    object_key varchar(1024) NOT NULL,
    field varchar(256) NOT NULL,
    records bigint NOT NULL,
    json_types varchar(256) NOT NULL,
    sample varchar(1024),
    run_id varchar(256) NOT NULL,
    loaded_at timestamp NOT NULL,
    PRIMARY KEY (stream, object_key, field)
);

-- Columns the loader added to a stream's table itself (new_fields: add_columns), one row per stream
-- and column: what it inferred from the JSON types seen, and the load that added it. Every task of
-- the stream reads it: the added columns are loaded from then on, as if declared.
CREATE TABLE IF NOT EXISTS {{ (loader_schema, "schema_history") | qualified }} (
    stream varchar(64) NOT NULL,
    column_name varchar(128) NOT NULL,
    column_type varchar(64) NOT NULL,
    json_types varchar(256) NOT NULL,
    hour timestamp NOT NULL,
    run_id varchar(256) NOT NULL,
    added_at timestamp NOT NULL,
    PRIMARY KEY (stream, column_name)
);
