{#
  The staged rows the merge plan does not insert (unchanged or superseded), by provenance;
  with count_only, how many rows it does insert.
#}
{% if count_only %}
SELECT COUNT(*) FROM {{ plan | ident }} WHERE action IN ('insert', 'update')
{% else %}
SELECT "_firehose_object", "_firehose_offset"
FROM {{ plan | ident }}
WHERE action NOT IN ('insert', 'update')
{% endif %}
