{#
  A split hour: its part stages were COPYed into the staging table, each part deduplicated on
  its own by the task that extracted it. Across parts a key's winner is its greatest (order_by,
  object key, offset), the rule one extract of the whole hour applies (records.dedupe), so the
  rows that lose are deleted and staging holds what that extract would have staged. Each
  object's rows that lost to another part's are added to its duplicate count, where its own
  part counted the rest.
  The ranking reads only the key, order and provenance columns (a sort of the whole rows would
  spill them all to disk); the portable form (ROW_NUMBER, no QUALIFY). Object keys compare by
  code point in both warehouses (object_key_type), a text order_by with order_collation.
#}
{% set order = order_by | ident %}
CREATE TEMPORARY TABLE {{ losers | ident }} AS
SELECT ranked."_firehose_object", ranked."_firehose_offset"
FROM (
    SELECT
        s."_firehose_object",
        s."_firehose_offset",
        ROW_NUMBER() OVER (
            PARTITION BY {% for column in key %}s.{{ column | ident }}{{ ", " if not loop.last }}{% endfor %}
            ORDER BY s.{{ order }}{{ order_collation }} DESC, s."_firehose_object" DESC, s."_firehose_offset" DESC
        ) AS "_firehose_position"
    FROM {{ staging | ident }} s
) ranked
WHERE ranked."_firehose_position" > 1;

UPDATE {{ objects | ident }}
SET records_duplicate = records_duplicate + d.losers
FROM (
    SELECT "_firehose_object" AS object_key, COUNT(*) AS losers
    FROM {{ losers | ident }}
    GROUP BY "_firehose_object"
) d
WHERE {{ objects | ident }}.object_key = d.object_key;

DELETE FROM {{ staging | ident }}
USING {{ losers | ident }} l
WHERE {{ staging | ident }}."_firehose_object" = l."_firehose_object"
  AND {{ staging | ident }}."_firehose_offset" = l."_firehose_offset";

DROP TABLE {{ losers | ident }};
