#!/usr/bin/env bash
# A real Spark standalone cluster on 127.0.0.1: one master and N workers, run from the pyspark
# installation in the project's venv (it ships bin/spark-class and the jars). Nothing is installed
# and nothing is started by name: every daemon's PID goes to a run folder, and `stop` ends exactly
# those PIDs.
#
# Usage: infra/spark_cluster.sh start|stop|status [--workers N] [--port P] [--cores C] [--memory M]
#   start   start the master and N workers (default 2), wait until every worker is registered,
#           print the master URL (spark://127.0.0.1:P). A running cluster is left as it is.
#   stop    stop the daemons whose PIDs are in the run folder (TERM, then KILL after 20 s).
#   status  print each daemon and whether it runs; exit 0 when all run, 3 otherwise.
#
# Environment:
#   SPARK_CLUSTER_DIR      run folder for PIDs, logs and worker scratch
#                          (default $GENREC_HOME/.spark-cluster, else REPO/.cache/spark-cluster)
#   SPARK_MASTER_PORT      master port (default 7077); --port overrides it
#   SPARK_CLUSTER_TIMEOUT  seconds to wait for the workers to register (default 120)
#   GENREC_PYTHON          the python whose pyspark is used (default REPO/.venv/bin/python)
#
# Point a genrec run at it with GENREC_SPARK_MASTER=spark://127.0.0.1:7077. The web UIs bind
# ephemeral ports on 127.0.0.1 (their URLs are in the logs), so two clusters never clash on them.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cmd=${1:-}
[ $# -gt 0 ] && shift
workers=2
port=${SPARK_MASTER_PORT:-7077}
cores=1
memory=2g
while [ $# -gt 0 ]; do
  case "$1" in
    --workers) workers=${2:?--workers needs a number}; shift 2 ;;
    --port) port=${2:?--port needs a number}; shift 2 ;;
    --cores) cores=${2:?--cores needs a number}; shift 2 ;;
    --memory) memory=${2:?--memory needs a size such as 2g}; shift 2 ;;
    *) echo "error: unknown option $1" >&2; exit 2 ;;
  esac
done
if [ -n "${SPARK_CLUSTER_DIR:-}" ]; then
  run_dir=$SPARK_CLUSTER_DIR
elif [ -n "${GENREC_HOME:-}" ]; then
  run_dir=$GENREC_HOME/.spark-cluster
else
  run_dir=$repo/.cache/spark-cluster
fi
run_dir=$(realpath -m "$run_dir")
timeout_s=${SPARK_CLUSTER_TIMEOUT:-120}
python=${GENREC_PYTHON:-$repo/.venv/bin/python}
host=127.0.0.1
master_url="spark://$host:$port"

die() { echo "error: $*" >&2; exit 1; }

# True when PID runs and is a master or worker started for this run folder (a PID file can outlive
# its process, and the number can be reused by something else).
is_ours() {
  local pid=$1
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] \
    && grep -qaE 'org\.apache\.spark\.deploy\.(master\.Master|worker\.Worker)' "/proc/$pid/cmdline" \
    && grep -qzxF "SPARK_LOG_DIR=$run_dir" "/proc/$pid/environ" 2>/dev/null
}

pid_files() { ls "$run_dir"/*.pid 2>/dev/null | sort || true; }

port_in_use() { (exec 3<>"/dev/tcp/$host/$1") 2>/dev/null; }

# Starts one daemon in the background with its output in NAME.log and its PID in NAME.pid.
# spark-class ends in `exec java ...`, so $! is the JVM's PID.
launch() {
  local name=$1; shift
  nohup "$spark_home/bin/spark-class" "$@" </dev/null >"$run_dir/$name.log" 2>&1 &
  echo $! >"$run_dir/$name.pid"
}

registered() {  # number of workers that logged their registration
  local n=0 i
  for i in $(seq 1 "$workers"); do
    grep -q "Successfully registered with master" "$run_dir/worker-$i.log" 2>/dev/null && n=$((n + 1))
  done
  echo "$n"
}

start() {
  if [ -r "$run_dir/master.pid" ] && is_ours "$(cat "$run_dir/master.pid")"; then
    echo "cluster already running (run folder $run_dir)"; status; echo "$master_url"; return 0
  fi
  [ -x "$python" ] || die "$python not found; run \`make install\` first (or set GENREC_PYTHON)"
  command -v java >/dev/null || die "java not found (Spark needs Java 17)"
  spark_home=$("$python" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')
  [ -x "$spark_home/bin/spark-class" ] || die "no bin/spark-class under $spark_home"
  port_in_use "$port" && die "port $port on $host is already in use (pick another with --port)"
  mkdir -p "$run_dir"
  rm -f "$run_dir"/*.pid "$run_dir"/*.log
  export SPARK_HOME=$spark_home SPARK_LOCAL_IP=$host SPARK_LOG_DIR=$run_dir
  export SPARK_DAEMON_MEMORY=${SPARK_DAEMON_MEMORY:-512m}
  export PYSPARK_PYTHON=${PYSPARK_PYTHON:-$python}
  launch master org.apache.spark.deploy.master.Master --host "$host" --port "$port" --webui-port 0
  for _ in $(seq 1 60); do
    grep -q "I have been elected leader" "$run_dir/master.log" 2>/dev/null && break
    is_ours "$(cat "$run_dir/master.pid")" || { tail -n 30 "$run_dir/master.log" >&2; die "the master exited"; }
    sleep 0.5
  done
  for i in $(seq 1 "$workers"); do
    mkdir -p "$run_dir/work-$i"
    launch "worker-$i" org.apache.spark.deploy.worker.Worker "$master_url" --host "$host" \
      --cores "$cores" --memory "$memory" --webui-port 0 --work-dir "$run_dir/work-$i"
  done
  local waited=0
  while [ "$(registered)" -lt "$workers" ]; do
    if [ "$waited" -ge "$((timeout_s * 2))" ]; then
      for f in "$run_dir"/*.log; do echo "--- $f" >&2; tail -n 20 "$f" >&2; done
      stop >&2
      die "only $(registered) of $workers workers registered with $master_url after ${timeout_s}s"
    fi
    sleep 0.5; waited=$((waited + 1))
  done
  echo "started master and $workers workers ($cores core(s), $memory each); run folder $run_dir"
  echo "$master_url"
}

stop() {
  local f pid name left
  for f in $(pid_files); do
    pid=$(cat "$f"); name=$(basename "$f" .pid)
    if is_ours "$pid"; then kill -TERM "$pid" 2>/dev/null && echo "stopping $name (pid $pid)"; fi
  done
  for _ in $(seq 1 40); do
    left=0
    for f in $(pid_files); do is_ours "$(cat "$f")" && left=1; done
    [ "$left" -eq 0 ] && break
    sleep 0.5
  done
  for f in $(pid_files); do
    pid=$(cat "$f")
    if is_ours "$pid"; then kill -KILL "$pid" 2>/dev/null && echo "killed $(basename "$f" .pid) (pid $pid)"; fi
    rm -f "$f"
  done
}

status() {
  local f pid all=0 any=0
  for f in $(pid_files); do
    any=1; pid=$(cat "$f")
    if is_ours "$pid"; then echo "$(basename "$f" .pid): running (pid $pid)"
    else echo "$(basename "$f" .pid): not running (stale pid $pid)"; all=3; fi
  done
  [ "$any" -eq 1 ] || { echo "no cluster in $run_dir"; return 3; }
  return "$all"
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status [--workers N] [--port P] [--cores C] [--memory M]" >&2; exit 2 ;;
esac
