{#
  Audit dashboard (read-only), for a stream whose prefix holds Firehose's expressions or whose
  prefix time zone is not UTC: rows in the stream's table now, per object they were loaded from
  (every "_firehose_object" that starts with the layout's literal lead). Which hour an object's
  folder belongs to is the layout's to say (layout.DeliveryLayout.hour_of_key), not a fixed
  position in the key. Rows another writer inserted carry no provenance and are not counted.
  This reads the provenance column of the whole table (no index covers it).
#}
SELECT
    "_firehose_object" AS object_key,
    COUNT(*) AS row_count
FROM {{ target | qualified }}
WHERE LEFT("_firehose_object", CAST(%(lead_length)s AS integer)) = CAST(%(lead)s AS varchar(1024))
GROUP BY 1
