{#
  load_hours from before objects were marked gone: none of its hours has a gone object
  (create_loader_tables.sql declares the column for a new table).
#}
ALTER TABLE {{ (loader_schema, "load_hours") | qualified }} ADD COLUMN objects_gone bigint DEFAULT 0 NOT NULL
