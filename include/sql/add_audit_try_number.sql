{#
  audit_results from before its history kept every try: one row per run, now one per try. Rows
  already there are taken as first tries; the key gains the try (PostgreSQL enforces it).
#}
ALTER TABLE {{ (loader_schema, "audit_results") | qualified }} ADD COLUMN try_number bigint DEFAULT 1 NOT NULL;
ALTER TABLE {{ (loader_schema, "audit_results") | qualified }} DROP CONSTRAINT audit_results_pkey;
ALTER TABLE {{ (loader_schema, "audit_results") | qualified }} ADD PRIMARY KEY (stream, hour, run_id, try_number);
