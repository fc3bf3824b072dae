{#
  load_hours from before stage_columns: its rows keep NULL, and a load of their stage reads the
  columns from the stage file's metadata (create_loader_tables.sql declares the column for a new table).
#}
ALTER TABLE {{ (loader_schema, "load_hours") | qualified }} ADD COLUMN stage_columns varchar(65535)
