#!/bin/sh
# StateRelay's database and its two roles, made once on an empty PostgreSQL.
#
# docker-compose.example.yml mounts this file in /docker-entrypoint-initdb.d, where the
# postgres image runs it (as the superuser, through the local socket) when it initialises
# an empty data volume. By hand: PGHOST=db.internal POSTGRES_USER=postgres \
# STATERELAY_OWNER_PASSWORD=... STATERELAY_APP_PASSWORD=... sh init-staterelay.sh
#
# The owner owns the database and applies migrations (database.migrate_url); the app role
# is what every replica connects as (database.url): neither is a superuser, and the app
# role owns nothing and cannot bypass row-level security. See docs/hosting.md.
set -eu
: "${POSTGRES_USER:?the superuser to connect as}"
: "${STATERELAY_OWNER_PASSWORD:?set it in .env next to docker-compose.yml}"
: "${STATERELAY_APP_PASSWORD:?set it in .env next to docker-compose.yml}"

psql --no-psqlrc --set ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    --set db="${STATERELAY_DB:-staterelay}" \
    --set owner="${STATERELAY_OWNER_ROLE:-staterelay_owner}" \
    --set app="${STATERELAY_APP_ROLE:-staterelay_app}" \
    --set owner_password="$STATERELAY_OWNER_PASSWORD" \
    --set app_password="$STATERELAY_APP_PASSWORD" <<'SQL'
CREATE ROLE :"owner" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS
    PASSWORD :'owner_password';
CREATE ROLE :"app" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS
    PASSWORD :'app_password';
CREATE DATABASE :"db" OWNER :"owner";
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
GRANT CONNECT ON DATABASE :"db" TO :"app";
SQL
