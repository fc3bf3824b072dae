{# One column of the merge's INSERT ... SELECT, read from the staging table (alias s in merge.sql). #}
s.{{ name | ident }}
