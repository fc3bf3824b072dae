-- Run once by the postgres:16 image on an empty data volume (docker-entrypoint-initdb.d).
-- POSTGRES_DB in docker-compose.yaml creates the Airflow metadata database "airflow";
-- this adds the local warehouse, as tools/stack.py does for the local stack.
-- The loader creates its schemas (firehose_loader, analytics, ...) itself.
CREATE DATABASE warehouse;
