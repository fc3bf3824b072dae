{#
  Data API mode's form of the lock-free audit's read of plan_changes.sql, which a batch cannot
  read in the middle: this statement fails the transaction (a text that is no integer) when the
  merge plan would change the hour, so the findings after it commit only for a healthy hour;
  load.audit_unchanged_without_lock then merges under the lock instead.
#}
SELECT CAST(
    CASE WHEN changes.changed = 0 THEN '0'
    ELSE 'the merge plan changes ' || CAST(changes.changed AS varchar(20)) || ' key(s)' END
    AS integer
) AS refused
FROM (
{% include "plan_changes.sql" %}
) changes
