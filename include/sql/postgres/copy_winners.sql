{# The merge's winners, straight from the stage into the target (after merge.sql deleted the rows they replace). #}
COPY {{ target | qualified }} ({% for column in columns %}{{ column.name | ident }}, {% endfor %}"_firehose_object", "_firehose_offset")
FROM STDIN WITH (FORMAT binary)
