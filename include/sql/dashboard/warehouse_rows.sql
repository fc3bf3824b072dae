{#
  Audit dashboard (read-only): rows in the stream's table now, per hour folder of the object
  they were loaded from ("_firehose_object" between <prefix><first folder> and
  <prefix><folder after the window>; folders are fixed-width, so the range is exact).
  Rows another writer inserted (the real-time path) carry no provenance and are not counted.
  This reads the provenance column of the whole table (no index covers it).
#}
SELECT
    SUBSTRING("_firehose_object", CAST(%(folder_position)s AS integer), 13) AS folder,
    COUNT(*) AS row_count
FROM {{ target | qualified }}
WHERE "_firehose_object" >= CAST(%(low)s AS varchar(1024))
  AND "_firehose_object" < CAST(%(high)s AS varchar(1024))
GROUP BY 1
