{# The schema drift rows of the manifest's objects (the objects table), replaced each time their ledger rows are written. #}
DELETE FROM {{ (loader_schema, "schema_drift") | qualified }}
USING {{ objects | ident }} o
WHERE {{ (loader_schema, "schema_drift") | qualified }}.stream = CAST(%(stream)s AS varchar(64))
  AND {{ (loader_schema, "schema_drift") | qualified }}.object_key = o.object_key
