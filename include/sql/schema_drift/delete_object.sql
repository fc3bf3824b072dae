{# An object's schema drift rows, replaced each time its ledger row is written (one parameter set per object). #}
DELETE FROM {{ (loader_schema, "schema_drift") | qualified }}
WHERE stream = CAST(%(stream)s AS varchar(64)) AND object_key = CAST(%(object_key)s AS varchar(1024))
