{#
  load_hours from before listed_at: its rows keep NULL, which a merge takes as older than any
  listing (create_loader_tables.sql declares the column for a new table).
#}
ALTER TABLE {{ (loader_schema, "load_hours") | qualified }} ADD COLUMN listed_at timestamp
