{#
  The stream's erased keys: one row per key, with the key's columns as the target types them
  (exact for any key type and composite keys, and joined to the stage like the target is).
  erased_version is the greatest order_by the erasure deleted (NULL when no row of the key was
  in the target); with erased_keys_accept_newer only a greater order_by loads again.
#}
CREATE TABLE IF NOT EXISTS {{ tombstones | qualified }} (
    "_firehose_stream" varchar(64) NOT NULL,
{% for column in key_columns %}
    {{ column.name | ident }} {{ column.type }} NOT NULL,
{% endfor %}
    "_firehose_erased_version" {{ order_type }},
    "_firehose_reason" varchar(1024) NOT NULL,
    "_firehose_erased_at" timestamp NOT NULL,
    "_firehose_erased_by" varchar(256) NOT NULL
);
