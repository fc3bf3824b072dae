{#
  What a lossy real-time path does to one hour of the target AFTER its load (demo only,
  PostgreSQL): some rows disappear, some arrive twice, some are rewritten in an older version
  (delete + insert: the row loses its provenance, as the real-time path knows nothing of S3)
  and some are updated in place to an older version (the row keeps the loader's provenance).
  The audit finds and repairs all of it. Each statement's row count is what it injected.
#}
{% set key = key[0] | ident %}
{% set order = order_by | ident %}
{% set order_type = (columns | selectattr("name", "equalto", order_by) | first).type | lower %}
{% set older_by = "INTERVAL '1 minute'" if ("timestamp" in order_type or "date" in order_type) else "1" %}
{% set hour_rows %}
    SELECT {{ key }} FROM {{ target | qualified }}
    WHERE "_firehose_object" LIKE %(hour_prefix)s
    ORDER BY {{ key }}
{% endset %}

DELETE FROM {{ target | qualified }}
WHERE {{ key }} IN ({{ hour_rows }} LIMIT %(drops)s);

INSERT INTO {{ target | qualified }} ({% for column in columns %}{{ column.name | ident }}{{ ", " if not loop.last }}{% endfor %})
SELECT {% for column in columns %}{{ column.name | ident }}{{ ", " if not loop.last }}{% endfor %}

FROM {{ target | qualified }}
WHERE {{ key }} IN ({{ hour_rows }} LIMIT %(duplicates)s);

UPDATE {{ target | qualified }}
SET {{ order }} = {{ order }} - {{ older_by }}, "_firehose_object" = NULL, "_firehose_offset" = NULL
WHERE {{ key }} IN ({{ hour_rows }} LIMIT %(stale)s OFFSET %(duplicates)s);

{# The rows rewritten above left hour_rows (no provenance): the next keys after the doubled ones. #}
UPDATE {{ target | qualified }}
SET {{ order }} = {{ order }} - {{ older_by }}
WHERE {{ key }} IN ({{ hour_rows }} LIMIT %(stale_in_place)s OFFSET %(duplicates)s);
