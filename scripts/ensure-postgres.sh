#!/usr/bin/env bash
# Start a local PostgreSQL when none answers at 127.0.0.1:5432 (the catalog.backend = postgres
# tests use database `test` there, trust auth for loopback): install Debian's `postgresql` if
# missing, start (or create) a cluster on that port, allow loopback without a password, create
# `test`. As root it acts directly; otherwise through `sudo -n` (never a password prompt), and
# without that it says what to run.
set -euo pipefail
host=127.0.0.1 port=${TEST_POSTGRES_PORT:-5432}
answers() { pg_isready -q -h "$host" -p "$port" 2>/dev/null && \
  psql -h "$host" -p "$port" -U postgres -d test -Atc 'select 1' >/dev/null 2>&1; }
if command -v pg_isready >/dev/null && answers; then exit 0; fi

if [ "$(id -u)" = 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  SUDO=(sudo -n)
else
  cat >&2 <<EOF
ensure-postgres: no PostgreSQL answers on $host:$port, and setting one up needs root (installing
the package, writing /etc/postgresql/*/pg_hba.conf, starting the cluster); this user is not root
and has no password-less sudo. Run this script once as root (sudo $0), or point the tests at a
PostgreSQL of yours: TEST_POSTGRES_URL=postgresql://USER@HOST:PORT/test (trust or ~/.pgpass).
EOF
  exit 1
fi
as_root() { "${SUDO[@]}" "$@"; }

if ! command -v pg_lsclusters >/dev/null || [ -z "$(ls /usr/lib/postgresql 2>/dev/null)" ]; then
  echo "ensure-postgres: installing Debian's postgresql"
  as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends postgresql >/dev/null
fi

# The cluster to use: one already configured for $port (any version or name); else a new one on
# $port, named `main` when that name is free for the newest version, `lens` when a `main` exists
# on another port (it is left as it is: its port is not the one the tests use).
read -r version cluster < <(pg_lsclusters -h | awk -v p="$port" '$3 == p {print $1, $2; exit}') || true
if [ -z "${version:-}" ]; then
  version=$(ls /usr/lib/postgresql | sort -V | tail -1)
  cluster=main
  if pg_lsclusters -h | awk '{print $1" "$2}' | grep -qx "$version main"; then
    other=$(pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" {print $3}')
    echo "ensure-postgres: cluster $version/main listens on port $other, not $port; creating cluster $version/lens on $port"
    cluster=lens
  fi
  if ! pg_lsclusters -h | awk '{print $1" "$2}' | grep -qx "$version $cluster"; then
    as_root pg_createcluster "$version" "$cluster" --port "$port" >/dev/null
  fi
fi
configured=$(pg_lsclusters -h | awk -v v="$version" -v c="$cluster" '$1 == v && $2 == c {print $3}')
if [ "$configured" != "$port" ]; then
  echo "ensure-postgres: cluster $version/$cluster is configured for port $configured, not $port" >&2
  exit 1
fi

# pg_hba.conf is readable and writable by postgres/root only: read and replace it as root.
hba=/etc/postgresql/$version/$cluster/pg_hba.conf
if ! as_root grep -q "lens: loopback trust" "$hba"; then
  # Prepended: pg_hba.conf takes the first matching line.
  tmp=$(mktemp)
  { echo "# lens: loopback trust (tests)"; echo "host all all 127.0.0.1/32 trust"; echo "host all all ::1/128 trust"; \
    as_root cat "$hba"; } > "$tmp"
  as_root install -m 640 -o postgres -g postgres "$tmp" "$hba"
  rm -f "$tmp"
fi
echo "ensure-postgres: starting PostgreSQL $version/$cluster on $host:$port"
as_root pg_ctlcluster "$version" "$cluster" start 2>/dev/null || as_root pg_ctlcluster "$version" "$cluster" reload
for _ in $(seq 100); do pg_isready -q -h "$host" -p "$port" && break; sleep 0.1; done
psql -h "$host" -p "$port" -U postgres -Atc "select 1 from pg_database where datname = 'test'" | grep -q 1 || \
  psql -h "$host" -p "$port" -U postgres -qc "create database test"
answers || { echo "ensure-postgres: PostgreSQL $version/$cluster did not answer on $host:$port" >&2; exit 1; }
