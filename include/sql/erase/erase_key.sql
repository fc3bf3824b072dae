{#
  Erase one key (load.erase_keys runs it per key, in one transaction, under the merge's lock):
  refresh the key's tombstone or add one, then delete every row of the key from the target,
  whoever wrote it. The key's values are bound as text (key_0, key_1, ... in key order) and cast
  to the key columns' types. erased_version is the greatest order_by deleted now, or the one an
  earlier erasure recorded when no row came back since.
#}
{% set matches_key %}{% for column in key_columns %}{{ column.name | ident }} = CAST(%(key_{{ loop.index0 }})s AS {{ column.type }}){{ " AND " if not loop.last }}{% endfor %}{% endset %}
{% set deleted_version %}(SELECT MAX({{ order_by | ident }}{{ order_collation }}) FROM {{ target | qualified }} WHERE {{ matches_key }}){% endset %}
UPDATE {{ tombstones | qualified }}
SET "_firehose_erased_version" = COALESCE({{ deleted_version }}, "_firehose_erased_version"),
    "_firehose_reason" = CAST(%(reason)s AS varchar(1024)),
    "_firehose_erased_at" = CAST(%(erased_at)s AS timestamp),
    "_firehose_erased_by" = CAST(%(erased_by)s AS varchar(256))
WHERE {{ matches_key }};

INSERT INTO {{ tombstones | qualified }} (
    "_firehose_stream", {% for column in key_columns %}{{ column.name | ident }}, {% endfor %}"_firehose_erased_version",
    "_firehose_reason", "_firehose_erased_at", "_firehose_erased_by"
)
SELECT
    CAST(%(stream)s AS varchar(64)),
{% for column in key_columns %}
    CAST(%(key_{{ loop.index0 }})s AS {{ column.type }}),
{% endfor %}
    {{ deleted_version }},
    CAST(%(reason)s AS varchar(1024)), CAST(%(erased_at)s AS timestamp), CAST(%(erased_by)s AS varchar(256))
WHERE NOT EXISTS (SELECT 1 FROM {{ tombstones | qualified }} WHERE {{ matches_key }});

DELETE FROM {{ target | qualified }}
WHERE {{ matches_key }};
