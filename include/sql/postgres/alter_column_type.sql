{# The ALTER a target column needs to hold its declared type (named in the error; the loader never runs it). #}
ALTER TABLE {{ target | qualified }} ALTER COLUMN {{ name | ident }} TYPE {{ type }}{% if convert %} USING CAST({{ name | ident }} AS {{ type }}){% endif %}
