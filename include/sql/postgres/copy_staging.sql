{# The merge plan's columns of the stage: the key, order_by and the rows' provenance. #}
COPY {{ staging | ident }} ({% for column in staging_columns %}{{ column.name | ident }}, {% endfor %}"_firehose_object", "_firehose_offset")
FROM STDIN WITH (FORMAT binary)
