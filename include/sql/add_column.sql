{# A nullable column of the stream's table (a column the streams file declares that the table lacks). #}
ALTER TABLE {{ target | qualified }} ADD COLUMN {{ name | ident }} {{ type }}
