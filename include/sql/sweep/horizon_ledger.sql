{#
  The ledger of every hour in the sweep's horizon: what each hour's folder is compared with. An
  object marked gone is left out: if it is back, it is new to the hour's account again.
#}
SELECT hour, object_key, etag
FROM {{ (loader_schema, "ledger") | qualified }}
WHERE stream = CAST(%(stream)s AS varchar(64))
  AND hour >= CAST(%(first_hour)s AS timestamp) AND hour <= CAST(%(last_hour)s AS timestamp)
  AND status <> 'gone'
