{#
  The ALTER a target column needs to hold its declared type (named in the error; the loader never
  runs it). Redshift alters a type in place only to lengthen a varchar; any other change is a new
  column filled from the old one, which then takes its place.
#}
{% if widen %}
ALTER TABLE {{ target | qualified }} ALTER COLUMN {{ name | ident }} TYPE {{ type }}
{% else %}
ALTER TABLE {{ target | qualified }} ADD COLUMN {{ (name[:58] ~ "__new") | ident }} {{ type }}; UPDATE {{ target | qualified }} SET {{ (name[:58] ~ "__new") | ident }} = CAST({{ name | ident }} AS {{ type }}); ALTER TABLE {{ target | qualified }} DROP COLUMN {{ name | ident }}; ALTER TABLE {{ target | qualified }} RENAME COLUMN {{ (name[:58] ~ "__new") | ident }} TO {{ name | ident }}
{% endif %}
