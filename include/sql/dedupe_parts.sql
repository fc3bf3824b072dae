{#
  A split hour: its part stages were COPYed into the parts table, each part deduplicated on its
  own by the task that extracted it. Across parts a key's winner is its greatest (order_by,
  object key, offset), the rule one extract of the whole hour applies (records.dedupe), so the
  staging table gets the rows that extract would have staged. Each object's rows that lost to
  another part's are added to its duplicate count, where its own part counted the rest.
  The portable form (ROW_NUMBER, no QUALIFY); object keys compare by code point in both
  warehouses (object_key_type), a text order_by with order_collation.
#}
{% set order = order_by | ident %}
CREATE TEMPORARY TABLE {{ ranked | ident }} AS
SELECT
    p.*,
    ROW_NUMBER() OVER (
        PARTITION BY {% for column in key %}p.{{ column | ident }}{{ ", " if not loop.last }}{% endfor %}
        ORDER BY p.{{ order }}{{ order_collation }} DESC, p."_firehose_object" DESC, p."_firehose_offset" DESC
    ) AS "_firehose_position"
FROM {{ parts | ident }} p;

UPDATE {{ objects | ident }}
SET records_duplicate = records_duplicate + d.losers
FROM (
    SELECT "_firehose_object" AS object_key, COUNT(*) AS losers
    FROM {{ ranked | ident }}
    WHERE "_firehose_position" > 1
    GROUP BY "_firehose_object"
) d
WHERE {{ objects | ident }}.object_key = d.object_key;

INSERT INTO {{ staging | ident }} ({% for column in staging_columns %}{{ column.name | ident }}, {% endfor %}"_firehose_object", "_firehose_offset")
SELECT {% for column in staging_columns %}{{ column.name | ident }}, {% endfor %}"_firehose_object", "_firehose_offset"
FROM {{ ranked | ident }}
WHERE "_firehose_position" = 1;

DROP TABLE {{ ranked | ident }};

DROP TABLE {{ parts | ident }};
