#!/usr/bin/env bash
# The fleet shape on one machine: Redis (if none answers), N Celery workers, the gateway under
# gunicorn. `make up` runs `scripts/fleet.sh up WORKERS HOST PORT`; `make down` runs
# `scripts/fleet.sh down`, which stops only what `up` started (pid files under var/run).
#
# Worker 1 serves vision,text,index (it alone writes the catalog); the others vision,text.
# Settings (LENS_REDIS_URL, LENS_DATA_DIR, ...) come from the environment / lens.toml as usual.
#
# CATALOG=postgres (make up CATALOG=postgres): the catalog in PostgreSQL (scripts/ensure-postgres.sh
# starts one on 127.0.0.1:5432 where none answers; LENS_CATALOG__OPTIONS__URL overrides), migrated
# with `lens db migrate`, and photos handed to the workers through Redis
# (LENS_FLEET__UPLOAD_STORE=redis unless set). VECTORS=milvus: vectors in Milvus at LENS_VECTORS__OPTIONS__URI, or, unset,
# a Milvus Lite server (`python -m milvus_lite server`, the Milvus API on 127.0.0.1:19530) that
# `up` starts and `down` stops.
set -euo pipefail
cd "$(dirname "$0")/.."

# FLEET_DIR moves the pid files and logs (tests run a fleet beside an operator's).
RUN=${FLEET_DIR:-var}/run
LOG=${FLEET_DIR:-var}/log
VENV=.venv

redis_hostport() {
  local url=${LENS_REDIS_URL:-redis://127.0.0.1:6379/0} hostport
  hostport=${url#redis://}; hostport=${hostport%%/*}; hostport=${hostport##*@}
  local host=${hostport%%:*} port=${hostport##*:}; [ "$port" = "$host" ] && port=6379
  echo "$host $port"
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

wait_gone() {  # pid file, seconds
  local pid; pid=$(cat "$1" 2>/dev/null) || return 0
  for _ in $(seq $(( $2 * 10 ))); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  return 1
}

up() {
  local workers=${1:-2} host=${2:-127.0.0.1} port=${3:-8080}
  mkdir -p "$RUN" "$LOG"
  if alive "$RUN/gateway.pid"; then
    echo "fleet: already up (gateway pid $(cat "$RUN/gateway.pid")); run 'make down' first" >&2
    exit 1
  fi
  read -r rhost rport < <(redis_hostport)
  if ! redis-cli -h "$rhost" -p "$rport" ping >/dev/null 2>&1; then
    scripts/ensure-redis.sh
    # ensure-redis.sh started this one: ours to stop on `down`.
    cp var/redis/redis.pid "$RUN/redis.pid"
  fi
  backends
  for i in $(seq 1 "$workers"); do
    local queues=vision,text
    [ "$i" -eq 1 ] && queues=vision,text,index
    "$VENV/bin/celery" -A workers.worker worker --detach --queues "$queues" --concurrency 1 \
      --hostname "worker$i@%h" --pidfile "$(realpath "$RUN")/worker$i.pid" --logfile "$(realpath "$LOG")/worker$i.log" \
      --loglevel INFO
  done
  read -r gw_workers gw_threads < <("$VENV/bin/python" -c \
    "from lens.config import get_settings; s = get_settings().server; print(s.gateway_workers, s.gateway_threads)")
  # Several gateway processes: /metrics must sum over all of them, not show the one that answered.
  rm -rf "$RUN/prometheus" && mkdir -p "$RUN/prometheus"
  PROMETHEUS_MULTIPROC_DIR="$(realpath "$RUN")/prometheus" \
  "$VENV/bin/gunicorn" --daemon --bind "$host:$port" --workers "$gw_workers" --threads "$gw_threads" --worker-class gthread \
    --timeout 60 --graceful-timeout 30 --max-requests 2000 --max-requests-jitter 200 \
    --pid "$RUN/gateway.pid" --access-logfile "$LOG/gateway-access.log" --error-logfile "$LOG/gateway.log" \
    'web.app:create_app()'
  for _ in $(seq 100); do
    curl -fsS "http://$host:$port/healthz" >/dev/null 2>&1 && break
    sleep 0.2
  done
  if ! curl -fsS "http://$host:$port/healthz" >/dev/null 2>&1; then
    echo "fleet: the gateway did not answer; see $LOG/gateway.log" >&2
    exit 1
  fi
  echo "lens fleet up: $workers worker(s), gateway at http://$host:$port/  (logs in $LOG, stop with 'make down')"
}

backends() {
  case "${CATALOG:-}" in
    ""|sqlite) ;;
    postgres)
      export LENS_CATALOG__BACKEND=postgres
      export LENS_CATALOG__OPTIONS__URL=${LENS_CATALOG__OPTIONS__URL:-postgresql://postgres@127.0.0.1:5432/test}
      [[ "$LENS_CATALOG__OPTIONS__URL" == *127.0.0.1:5432* ]] && scripts/ensure-postgres.sh
      # Nothing shared but the engines: photos go to the workers through Redis.
      export LENS_FLEET__UPLOAD_STORE=${LENS_FLEET__UPLOAD_STORE:-redis}
      "$VENV/bin/lens" db migrate ;;
    *) echo "fleet: CATALOG must be sqlite or postgres, not '$CATALOG'" >&2; exit 2 ;;
  esac
  case "${VECTORS:-}" in
    ""|faiss) ;;
    milvus)
      export LENS_VECTORS__BACKEND=milvus
      if [ -z "${LENS_VECTORS__OPTIONS__URI:-}" ]; then
        export LENS_VECTORS__OPTIONS__URI=http://127.0.0.1:${MILVUS_PORT:-19530}
        mkdir -p "${FLEET_DIR:-var}/milvus"
        nohup "$VENV/bin/python" -m milvus_lite server --data-dir "${FLEET_DIR:-var}/milvus" --host 127.0.0.1 \
          --port "${MILVUS_PORT:-19530}" >"$LOG/milvus.log" 2>&1 &
        echo $! >"$RUN/milvus.pid"
        for _ in $(seq 100); do
          (exec 3<>"/dev/tcp/127.0.0.1/${MILVUS_PORT:-19530}") 2>/dev/null && break
          sleep 0.2
        done
      fi ;;
    *) echo "fleet: VECTORS must be faiss or milvus, not '$VECTORS'" >&2; exit 2 ;;
  esac
  if [ -n "${CATALOG:-}${VECTORS:-}" ]; then
    "$VENV/bin/lens" demo-catalog --if-empty
  fi
}

down() {
  local stopped=0
  # Gateway first (no new jobs), then workers (warm shutdown finishes the task in hand), Redis last.
  for pidfile in "$RUN"/gateway.pid "$RUN"/worker*.pid "$RUN"/milvus.pid "$RUN"/redis.pid; do
    [ -f "$pidfile" ] || continue
    if alive "$pidfile"; then
      kill -TERM "$(cat "$pidfile")"
      if ! wait_gone "$pidfile" 30; then
        echo "fleet: $(basename "$pidfile" .pid) ignored SIGTERM for 30 s; sending SIGKILL" >&2
        kill -KILL "$(cat "$pidfile")" 2>/dev/null || true
      fi
      stopped=$((stopped + 1))
    fi
    rm -f "$pidfile"
  done
  echo "lens fleet down ($stopped process(es) stopped)"
}

case "${1:-}" in
  up) shift; up "$@" ;;
  down) down ;;
  *) echo "usage: $0 up [WORKERS] [HOST] [PORT] | down" >&2; exit 2 ;;
esac
