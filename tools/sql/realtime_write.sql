{#
  The real-time path (a Lambda) writes one hour into the target BEFORE the ingest loads it
  (demo and tests only, PostgreSQL). Rows it writes carry no provenance: it knows nothing of S3.

  %(rows)s is the hour's S3 truth as a JSON array (one record per key, the newest version),
  without the keys it drops and with the keys it doubles twice. Then some keys are rewritten in
  an older version by delete + insert (%(older)s) and some are updated in place to an older
  version (%(in_place)s). Only the first key column is used (the demo's streams have one).
#}
{% set key = key[0] | ident %}
{% set order = order_by | ident %}
{% set order_type = (columns | selectattr("name", "equalto", order_by) | first).type | lower %}
{% set older_by = "INTERVAL '1 minute'" if ("timestamp" in order_type or "date" in order_type) else "1" %}
{% macro names(prefix="") %}{% for column in columns %}{{ prefix }}{{ column.name | ident }}{{ ", " if not loop.last }}{% endfor %}{% endmacro %}
{% set records %}json_populate_recordset(CAST(NULL AS {{ target | qualified }}), CAST(%(rows)s AS json)){% endset %}

INSERT INTO {{ target | qualified }} ({{ names() }})
SELECT {{ names("r.") }}
FROM {{ records }} r;

DELETE FROM {{ target | qualified }}
WHERE CAST({{ key }} AS varchar) = ANY(CAST(%(older)s AS varchar[]));

INSERT INTO {{ target | qualified }} ({{ names() }})
SELECT {% for column in columns %}{% if column.name == order_by %}r.{{ order }} - {{ older_by }}{% else %}r.{{ column.name | ident }}{% endif %}{{ ", " if not loop.last }}{% endfor %}

FROM {{ records }} r
WHERE CAST(r.{{ key }} AS varchar) = ANY(CAST(%(older)s AS varchar[]));

UPDATE {{ target | qualified }}
SET {{ order }} = {{ order }} - {{ older_by }}
WHERE CAST({{ key }} AS varchar) = ANY(CAST(%(in_place)s AS varchar[]));
