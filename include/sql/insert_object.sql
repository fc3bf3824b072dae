INSERT INTO {{ objects | ident }} (
    object_key, etag, size_bytes, compression, status, message,
    records_raw, records_valid, records_quarantined, records_duplicate, quarantine_key, landed_at
) VALUES (
    %(key)s, %(etag)s, %(size)s, %(compression)s, %(status)s, %(message)s,
    %(records_raw)s, %(records_valid)s, %(records_quarantined)s, %(records_duplicate)s, %(quarantine_key)s,
    CAST(%(landed_at)s AS timestamp)
);
