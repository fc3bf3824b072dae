{#
  Rows of a key live on one slice (the merge joins on the key without redistributing the
  target); blocks are sorted by the order column, which grows with time, so new rows land
  in order and range queries on it skip blocks.
#}
DISTSTYLE KEY DISTKEY ({{ key[0] | ident }}) COMPOUND SORTKEY ({{ order_by | ident }})
