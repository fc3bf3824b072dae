{# The merge's winners, straight from the stage into the target (after merge.sql deleted the rows they replace), by name: the stage's columns (a column it lacks is NULL). #}
COPY {{ target | qualified }} ({% for column in insert_columns %}{{ column.name | ident }}, {% endfor %}"_firehose_object", "_firehose_offset")
FROM STDIN WITH (FORMAT binary)
