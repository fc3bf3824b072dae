{#
  One column of the merge's INSERT ... SELECT, read from the staging table (alias s in merge.sql).
  A json column is staged as its JSON text and parsed into SUPER here.
#}
{% if kind == "json" %}JSON_PARSE(s.{{ name | ident }}){% else %}s.{{ name | ident }}{% endif %}
