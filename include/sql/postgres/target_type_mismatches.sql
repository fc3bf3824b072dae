{#
  The stream's columns whose type in the target is not the declared one (or that it lacks):
  name, declared type, the target's type (NULL when missing). Types are compared without
  modifiers: binary COPY sends a value as its base type, and the column checks the length.
#}
SELECT declared.name, declared.type, format_type(a.atttypid, a.atttypmod)
FROM unnest(CAST(%(names)s AS text[]), CAST(%(types)s AS text[])) AS declared(name, type)
LEFT JOIN pg_catalog.pg_attribute a
    ON a.attrelid = to_regclass(%(table)s) AND a.attname = declared.name AND a.attnum > 0 AND NOT a.attisdropped
WHERE a.atttypid IS DISTINCT FROM to_regtype(declared.type)
ORDER BY array_position(CAST(%(names)s AS text[]), declared.name)
