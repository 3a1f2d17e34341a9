#!/bin/sh
# PostgreSQL's first start (the image runs /docker-entrypoint-initdb.d on an empty data
# directory): the databases of Dagster, MLflow and Nessie, each owned by a user of its
# own that is not a superuser, so that no service can read another's tables. The
# superuser ($POSTGRES_USER) is the server's administrator's alone.
# The names and passwords travel as psql variables (:'name' quotes them), never spliced
# into SQL text: a password may hold any character.
set -eu

create() {  # create <user and database> <password>
    psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
        -v name="$1" -v password="$2" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'name', :'password')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'name') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'name', :'name')
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'name') \gexec
SQL
}

create dagster "$DAGSTER_PG_PASSWORD"
create mlflow "$MLFLOW_PG_PASSWORD"
create nessie "$NESSIE_PG_PASSWORD"
