#!/usr/bin/env bash
# A real Airflow 3 on 127.0.0.1 for genrec's DAGs: API server (UI and REST), scheduler with the
# LocalExecutor, DAG processor and triggerer, all from the project's venv, with the metadata DB in
# SQLite under AIRFLOW_HOME. Every process's PID goes to AIRFLOW_HOME/run, and `stop` ends exactly
# those PIDs (and their children: each process leads its own session).
#
# Usage: infra/airflow.sh start|stop|status
#   start   start the catalogue server of the tasks' lakehouse (`genrec catalog start`: tasks of
#           different DAGs then share the catalogue), migrate the DB, size the genrec_spark pool
#           (AIRFLOW_SPARK_SLOTS Spark tasks at once), start the four processes, wait until the API
#           answers, and print the UI address and login. A running server is left as it is.
#   stop    TERM every recorded process and all it started, then KILL what is left after 30 s; then
#           stop the catalogue server.
#   status  print each process and whether it runs; exit 0 when all run, 3 otherwise.
#
# Environment:
#   AIRFLOW_HOME          Airflow's folder (default REPO/airflow_home)
#   AIRFLOW_PORT          API server port (default 8080)
#   AIRFLOW_START_TIMEOUT seconds to wait for the API (default 180)
#   AIRFLOW_SPARK_SLOTS   genrec tasks that may run at once (default 2)
#   GENREC_HOME, GENREC_* the tasks inherit them: they say which lakehouse and MLflow store the DAGs use
#                         (GENREC_HOME defaults to the folder `start` runs in)
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cmd=${1:-}
venv_bin=${GENREC_VENV_BIN:-$repo/.venv/bin}
export AIRFLOW_HOME=$(realpath -m "${AIRFLOW_HOME:-$repo/airflow_home}")
port=${AIRFLOW_PORT:-8080}
timeout_s=${AIRFLOW_START_TIMEOUT:-180}
slots=${AIRFLOW_SPARK_SLOTS:-2}
export GENREC_HOME=$(realpath -m "${GENREC_HOME:-$PWD}")
run_dir=$AIRFLOW_HOME/run
processes=(api-server scheduler dag-processor triggerer)

die() { echo "error: $*" >&2; exit 1; }

export AIRFLOW__CORE__DAGS_FOLDER=${AIRFLOW__CORE__DAGS_FOLDER:-$repo/dags}
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__EXECUTOR=LocalExecutor
export AIRFLOW__CORE__PARALLELISM=${AIRFLOW__CORE__PARALLELISM:-4}
export AIRFLOW__API__HOST=127.0.0.1
export AIRFLOW__API__PORT=$port
export AIRFLOW__API__BASE_URL=http://127.0.0.1:$port
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL=http://127.0.0.1:$port/execution/
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS:-admin:admin}
# New DAGs start unpaused, so genrec_retrain follows the map Asset without a click.
export AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION=False
export AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL=${AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL:-30}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 MLFLOW_DISABLE_TELEMETRY=true SPARK_LOCAL_IP=127.0.0.1 \
  TOKENIZERS_PARALLELISM=false

# Every process must sign and check task tokens with the same secret: one per AIRFLOW_HOME, kept.
secrets=$AIRFLOW_HOME/genrec-secrets.env
load_secrets() {
  mkdir -p "$AIRFLOW_HOME"
  if [ ! -s "$secrets" ]; then
    umask 077
    printf 'AIRFLOW__API_AUTH__JWT_SECRET=%s\nAIRFLOW__API__SECRET_KEY=%s\n' \
      "$("$venv_bin/python" -c 'import secrets; print(secrets.token_hex(32))')" \
      "$("$venv_bin/python" -c 'import secrets; print(secrets.token_hex(32))')" > "$secrets"
  fi
  set -a; . "$secrets"; set +a
}

pid_of() { cat "$run_dir/$1.pid" 2>/dev/null || true; }
alive() { local pid; pid=$(pid_of "$1"); [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null \
  && grep -qa "airflow" "/proc/$pid/cmdline" 2>/dev/null; }

# A process that runs, as opposed to a zombie waiting for its parent to read its exit status.
running() { [ -r "/proc/$1/stat" ] && [ "$(sed 's/.*) //' "/proc/$1/stat" | cut -d' ' -f1)" != Z ]; }

descendants() { local c; for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do echo "$c"; descendants "$c"; done; }

passwords() { cat "$AIRFLOW_HOME/simple_auth_manager_passwords.json.generated" 2>/dev/null || echo "{}"; }

start() {
  [ -x "$venv_bin/airflow" ] || die "no airflow in $venv_bin; run 'make install' first"
  load_secrets
  mkdir -p "$run_dir"
  local all=1 p
  for p in "${processes[@]}"; do alive "$p" || all=0; done
  if [ $all = 1 ]; then echo "airflow already running at http://127.0.0.1:$port"; return 0; fi
  echo "$GENREC_HOME" > "$run_dir/genrec_home"
  "$venv_bin/genrec" catalog start > "$run_dir/catalog.log" 2>&1 \
    || die "the catalogue server did not start; see $run_dir/catalog.log"
  "$venv_bin/airflow" db migrate > "$run_dir/db-migrate.log" 2>&1 || die "airflow db migrate failed; see $run_dir/db-migrate.log"
  "$venv_bin/airflow" pools set genrec_spark "$slots" "genrec Spark tasks that may run at once" \
    > "$run_dir/pools.log" 2>&1 || die "could not create the genrec_spark pool; see $run_dir/pools.log"
  for p in "${processes[@]}"; do
    alive "$p" && continue
    setsid "$venv_bin/airflow" "$p" > "$run_dir/$p.log" 2>&1 < /dev/null &
    echo $! > "$run_dir/$p.pid"
  done
  local waited=0
  until curl -sf "http://127.0.0.1:$port/api/v2/monitor/health" > /dev/null 2>&1; do
    for p in "${processes[@]}"; do alive "$p" || die "$p exited; see $run_dir/$p.log"; done
    [ $waited -ge "$timeout_s" ] && die "the API did not answer within ${timeout_s}s; see $run_dir/api-server.log"
    sleep 2; waited=$((waited + 2))
  done
  echo "airflow is up: UI http://127.0.0.1:$port  (login: user 'admin', password in"
  echo "  $AIRFLOW_HOME/simple_auth_manager_passwords.json.generated: $(passwords))"
}

stop() {
  local p pid all=()
  # The recorded processes and everything they started: a task's worker (and its Spark JVM) can
  # leave the process group, so the tree is listed before anything is signalled.
  for p in "${processes[@]}"; do
    pid=$(pid_of "$p")
    if [ -n "$pid" ] && running "$pid"; then all+=("$pid" $(descendants "$pid")); fi
  done
  for pid in "${all[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  local waited=0
  for pid in "${all[@]}"; do
    while running "$pid" && [ $waited -lt 30 ]; do sleep 1; waited=$((waited + 1)); done
    if running "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
  done
  # KILL is asynchronous: report stopped only once every process is gone (or a zombie).
  for pid in "${all[@]}"; do
    local tries=0
    while running "$pid" && [ $tries -lt 50 ]; do sleep 0.2; tries=$((tries + 1)); done
    if running "$pid"; then die "pid $pid is still running after KILL"; fi
  done
  for p in "${processes[@]}"; do rm -f "$run_dir/$p.pid"; done
  echo "airflow stopped"
  # The lakehouse whose catalogue server `start` started, wherever `stop` runs from.
  if [ -s "$run_dir/genrec_home" ]; then
    GENREC_HOME=$(cat "$run_dir/genrec_home") "$venv_bin/genrec" catalog stop
    rm -f "$run_dir/genrec_home"
  fi
}

status() {
  local p rc=0
  for p in "${processes[@]}"; do
    if alive "$p"; then echo "$p: running (pid $(pid_of "$p"))"; else echo "$p: stopped"; rc=3; fi
  done
  return $rc
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: infra/airflow.sh start|stop|status" >&2; exit 2 ;;
esac
