#!/usr/bin/env bash
# Start a local PostgreSQL when none answers at 127.0.0.1:5432 (the catalog.backend = postgres
# tests use database `test` there, trust auth for loopback): install Debian's `postgresql` if
# missing, start (or create) its cluster, allow loopback without a password, create `test`.
set -euo pipefail
host=127.0.0.1 port=${TEST_POSTGRES_PORT:-5432}
answers() { pg_isready -q -h "$host" -p "$port" 2>/dev/null && \
  psql -h "$host" -p "$port" -U postgres -d test -Atc 'select 1' >/dev/null 2>&1; }
if command -v pg_isready >/dev/null && answers; then exit 0; fi
SUDO=$([ "$(id -u)" = 0 ] && echo "" || echo sudo)
if ! command -v pg_lsclusters >/dev/null || [ -z "$(ls /usr/lib/postgresql 2>/dev/null)" ]; then
  echo "ensure-postgres: installing Debian's postgresql"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends postgresql >/dev/null
fi
version=$(ls /usr/lib/postgresql | sort -V | tail -1)
if ! pg_lsclusters -h | awk '{print $1" "$2}' | grep -q "^$version main$"; then
  $SUDO pg_createcluster "$version" main --port "$port" >/dev/null
fi
hba=/etc/postgresql/$version/main/pg_hba.conf
if ! grep -q "lens: loopback trust" "$hba"; then
  # Prepended: pg_hba.conf takes the first matching line.
  { echo "# lens: loopback trust (tests)"; echo "host all all 127.0.0.1/32 trust"; echo "host all all ::1/128 trust"; \
    cat "$hba"; } > "$hba.lens" && $SUDO mv "$hba.lens" "$hba" && $SUDO chown postgres:postgres "$hba"
fi
echo "ensure-postgres: starting PostgreSQL $version on $host:$port"
$SUDO pg_ctlcluster "$version" main start 2>/dev/null || $SUDO pg_ctlcluster "$version" main reload
for _ in $(seq 100); do pg_isready -q -h "$host" -p "$port" && break; sleep 0.1; done
psql -h "$host" -p "$port" -U postgres -Atc "select 1 from pg_database where datname = 'test'" | grep -q 1 || \
  psql -h "$host" -p "$port" -U postgres -qc "create database test"
answers || { echo "ensure-postgres: PostgreSQL did not answer on $host:$port" >&2; exit 1; }
