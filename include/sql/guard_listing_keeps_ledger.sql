{#
  Data API mode's form of load.check_listing_keeps_the_ledger, which a batch cannot read in the
  middle: under the lock, this statement fails the transaction (a text that is no integer) when
  the hour's ledger holds an object the listing (the objects table) lacks. The text is not a
  constant, so no planner folds the CAST before the count is known. load maps the failure to
  ShrinkingListingError after the rollback.
#}
SELECT CAST(
    CASE WHEN COUNT(*) = 0 THEN '0'
    ELSE 'the listing lacks ' || CAST(COUNT(*) AS varchar(20)) || ' object(s) of the ledger' END
    AS integer
) AS refused
FROM (
{% include "ledger_objects_listed_before.sql" %}
) l
WHERE NOT EXISTS (SELECT 1 FROM {{ objects | ident }} o WHERE o.object_key = l.object_key)
