-- Session-local tables: they vanish with the connection, so an interrupted run leaves nothing behind.
DROP TABLE IF EXISTS {{ staging | ident }};
DROP TABLE IF EXISTS {{ objects | ident }};
DROP TABLE IF EXISTS {{ plan | ident }};

{% if split %}
DROP TABLE IF EXISTS {{ losers | ident }};
{% endif %}

-- Whole rows, or only the merge plan's columns where the dialect COPYs the winners itself.
CREATE TEMPORARY TABLE {{ staging | ident }} (
{% for column in staging_columns %}
    {{ column.name | ident }} {{ column.staging_type }},
{% endfor %}
    "_firehose_object" {{ object_key_type }} NOT NULL,
    "_firehose_offset" bigint NOT NULL
);

CREATE TEMPORARY TABLE {{ objects | ident }} (
    object_key varchar(1024) NOT NULL,
    etag varchar(128) NOT NULL,
    size_bytes bigint NOT NULL,
    compression varchar(16) NOT NULL,
    status varchar(16) NOT NULL,
    message varchar(1024),
    records_raw bigint NOT NULL,
    records_valid bigint NOT NULL,
    records_quarantined bigint NOT NULL,
    records_duplicate bigint NOT NULL,
    quarantine_key varchar(1024),
    landed_at timestamp
);
