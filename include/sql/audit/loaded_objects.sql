{# The hour's loaded objects a listing is compared with (one marked gone is expected in no listing, and reloads if it is back). #}
SELECT object_key, etag
FROM {{ (loader_schema, "ledger") | qualified }}
WHERE stream = CAST(%(stream)s AS varchar(64)) AND hour = CAST(%(hour)s AS timestamp)
  AND status <> 'gone'
