{#
  Audit dashboard (read-only): the load of each hour of the window [start, end).
  Distinct keys of the hour's batch = valid records - duplicates within the batch.
#}
SELECT hour, status, objects, objects_unreadable, objects_gone, error_objects,
       records_raw, records_valid, records_quarantined, records_duplicate,
       records_inserted, records_updated, records_unchanged, records_superseded,
       records_valid - records_duplicate AS batch_keys,
       stage_key, run_id, loaded_at
FROM {{ (loader_schema, "load_hours") | qualified }}
WHERE stream = CAST(%(stream)s AS varchar(64))
  AND hour >= CAST(%(start)s AS timestamp) AND hour < CAST(%(end)s AS timestamp)
ORDER BY hour
