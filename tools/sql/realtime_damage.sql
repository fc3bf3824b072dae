{#
  What a lossy real-time path leaves behind in one hour of the target (demo only,
  PostgreSQL): some rows never arrive, some arrive twice, some only in an older version.
  Rows it writes carry no provenance, as the real-time path knows nothing of S3.
#}
{% set key = key[0] | ident %}
{% set order = order_by | ident %}
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
SET {{ order }} = {{ order }} - INTERVAL '1 minute', "_firehose_object" = NULL, "_firehose_offset" = NULL
WHERE {{ key }} IN ({{ hour_rows }} LIMIT %(stale)s OFFSET %(duplicates)s);
