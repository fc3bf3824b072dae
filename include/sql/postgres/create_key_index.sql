-- The merge looks rows up by key; without this index it scans the whole table every hour.
CREATE INDEX IF NOT EXISTS {{ index_name | ident }} ON {{ target | qualified }} ({{ key | map("ident") | join(", ") }});
