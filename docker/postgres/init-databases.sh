#!/usr/bin/env bash
# Runs once, when the postgres service initialises an empty data volume (docker-entrypoint-initdb.d):
# Airflow's metadata database is POSTGRES_DB; this adds a login role and a database, owned by it, for the
# annotation store and for MLflow's tracking store and registry. Passwords come from the environment
# (docker-compose.yaml passes them from .env). Changing a password later: ALTER ROLE ... PASSWORD ...
set -euo pipefail

create_owned_database() {  # name password
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    --set=name="$1" --set=password="$2" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'name', :'password')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'name') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'name', :'name')
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'name') \gexec
SQL
}

create_owned_database "${ANNOTATIONS_DB_NAME:-annotations}" "${ANNOTATIONS_DB_PASSWORD:?set ANNOTATIONS_DB_PASSWORD}"
create_owned_database "${MLFLOW_DB_NAME:-mlflow}" "${MLFLOW_DB_PASSWORD:?set MLFLOW_DB_PASSWORD}"
