{#
  How many keys of the merge plan the merge would change, or that are new to the loader's account
  of the hour (0: the hour is as the loader left it; see load.audit_unchanged_without_lock).
#}
SELECT COUNT(*) AS changed
FROM {{ plan | ident }}
WHERE action IN ('insert', 'update') OR copies > 1 OR first_seen = 1
