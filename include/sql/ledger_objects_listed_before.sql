{#
  The hour's ledger objects that a whole-hour listing must still hold: those not already marked
  gone, unless load_hours says the ledger came from a later listing than the manifest's (the
  merge keeps that ledger as it is; see merge.sql).
#}
SELECT l.object_key
FROM {{ (loader_schema, "ledger") | qualified }} l
WHERE l.stream = CAST(%(stream)s AS varchar(64)) AND l.hour = CAST(%(hour)s AS timestamp)
  AND l.status <> 'gone'
  AND NOT EXISTS (
      SELECT 1 FROM {{ (loader_schema, "load_hours") | qualified }} h
      WHERE h.stream = l.stream AND h.hour = l.hour
        AND h.listed_at IS NOT NULL
        AND (CAST(%(listed_at)s AS timestamp) IS NULL OR h.listed_at > CAST(%(listed_at)s AS timestamp))
  )
