#!/usr/bin/env bash
# Run once by the postgres image on a new data volume (/docker-entrypoint-initdb.d): one user
# and one database per service, each user owning its database only and without CREATEDB, so a
# service's credentials reach nothing of another. Passwords come from the environment of the
# postgres container (docker-compose.yml requires each; none has a default).
set -euo pipefail

create() {  # <user = database> <password>
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    -v name="$1" -v password="$2" <<'SQL'
CREATE ROLE :"name" LOGIN PASSWORD :'password' NOCREATEDB NOCREATEROLE;
CREATE DATABASE :"name" OWNER :"name";
REVOKE ALL ON DATABASE :"name" FROM PUBLIC;
SQL
}

create gateway "$POSTGRES_GATEWAY_PASSWORD"
create credit "$POSTGRES_CREDIT_PASSWORD"
create loyalty "$POSTGRES_LOYALTY_PASSWORD"
create reporting "$POSTGRES_REPORTING_PASSWORD"
create notifier "$POSTGRES_NOTIFIER_PASSWORD"
