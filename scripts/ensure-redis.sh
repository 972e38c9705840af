#!/usr/bin/env bash
# Start a local Redis when none answers at $LENS_REDIS_URL's host/port (default 127.0.0.1:6379).
set -euo pipefail
url=${LENS_REDIS_URL:-redis://127.0.0.1:6379/0}
hostport=${url#redis://}; hostport=${hostport%%/*}; hostport=${hostport##*@}
host=${hostport%%:*}; port=${hostport##*:}; [ "$port" = "$host" ] && port=6379
if redis-cli -h "$host" -p "$port" ping >/dev/null 2>&1; then exit 0; fi
echo "ensure-redis: starting redis-server on $host:$port"
mkdir -p var/redis
redis-server --daemonize yes --bind "$host" --port "$port" --save "" --appendonly no \
  --dir "$PWD/var/redis" --logfile "$PWD/var/redis/redis.log" --pidfile "$PWD/var/redis/redis.pid"
for _ in $(seq 50); do redis-cli -h "$host" -p "$port" ping >/dev/null 2>&1 && exit 0; sleep 0.1; done
echo "ensure-redis: redis did not answer on $host:$port" >&2; exit 1
