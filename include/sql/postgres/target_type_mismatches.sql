{#
  The stream's columns whose type in the target is not the declared one (or that it lacks):
  name, declared type, the target's type (NULL when missing). Types are compared without
  modifiers: binary COPY sends a value as its base type, and the column checks the length.
  text and varchar take the same binary form, so either may stand for the other.
#}
{% macro base_type(type_oid) %}CASE WHEN {{ type_oid }} = CAST('character varying' AS regtype) THEN CAST('text' AS regtype) ELSE {{ type_oid }} END{% endmacro %}
SELECT declared.name, declared.type, format_type(a.atttypid, a.atttypmod)
FROM unnest(CAST(%(names)s AS text[]), CAST(%(types)s AS text[])) AS declared(name, type)
LEFT JOIN pg_catalog.pg_attribute a
    ON a.attrelid = to_regclass(%(table)s) AND a.attname = declared.name AND a.attnum > 0 AND NOT a.attisdropped
WHERE {{ base_type("CAST(a.atttypid AS regtype)") }} IS DISTINCT FROM {{ base_type("to_regtype(declared.type)") }}
ORDER BY array_position(CAST(%(names)s AS text[]), declared.name)
