-- The stream's table. The loader's provenance columns are nullable: the real-time
-- path inserts rows with only the stream's columns.
CREATE SCHEMA IF NOT EXISTS {{ target[0] | ident }};

CREATE TABLE IF NOT EXISTS {{ target | qualified }} (
{% for column in columns %}
    {{ column.name | ident }} {{ column.type }}{{ " NOT NULL" if column.name in key else "" }},
{% endfor %}
    "_firehose_object" {{ object_key_type }},
    "_firehose_offset" bigint
){{ table_options }};
