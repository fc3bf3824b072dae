{# Who recorded a silence, and when (silence.record_silence: whether it was this call). #}
SELECT run_id, alerted_at
FROM {{ (loader_schema, "silences") | qualified }}
WHERE stream = CAST(%(stream)s AS varchar(64)) AND silent_from = CAST(%(silent_from)s AS timestamp)
