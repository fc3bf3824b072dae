COPY {{ staging | ident }} ({% for column in columns %}{{ column.name | ident }}, {% endfor %}"_firehose_object", "_firehose_offset")
FROM STDIN WITH (FORMAT binary)
