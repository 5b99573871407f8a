-- Run once by the postgres image on an empty data volume (docker-compose.yaml): Prefect's database is POSTGRES_DB
-- (prefect); translora's adapter registry gets its own (TRANSLORA_REGISTRY_URL=.../registry).
CREATE DATABASE registry;
