{# Audit dashboard (read-only): one hour's ledger, one row per object. #}
SELECT object_key, etag, size_bytes, compression, status, message,
       records_raw, records_valid, records_quarantined, records_duplicate,
       records_inserted, records_updated, records_unchanged, records_superseded,
       quarantine_key, run_id, loaded_at
FROM {{ (loader_schema, "ledger") | qualified }}
WHERE stream = CAST(%(stream)s AS varchar(64)) AND hour = CAST(%(hour)s AS timestamp)
ORDER BY object_key
