SELECT object_key, etag
FROM {{ (loader_schema, "ledger") | qualified }}
WHERE stream = CAST(%(stream)s AS varchar(64)) AND hour = CAST(%(hour)s AS timestamp)
