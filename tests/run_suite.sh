#!/usr/bin/env bash
# The whole suite, as `make test` runs it. The real-server Airflow test (tests/dags/test_airflow_server.py)
# runs alongside the rest, in a pytest of its own: it spends about 35 minutes mostly waiting for Airflow
# tasks, one at a time, each starting its own Spark process, so running it after the rest would nearly
# double the suite's time on 2 cores. Its output follows the rest's; the exit status is the first failure.
set -uo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
server_test=tests/dags/test_airflow_server.py
log=test-artifacts/airflow-server-test.log
mkdir -p test-artifacts

"$python" -m pytest -q "$server_test" > "$log" 2>&1 &
server_pid=$!
# Ctrl-C reaches the server test as well, so its fixture stops the Airflow processes it started.
trap 'kill -INT "$server_pid" 2>/dev/null' INT TERM

"$python" -m pytest -q --durations=15 --ignore="$server_test" "$@"
rest=$?

echo
echo "== waiting for the real-server Airflow test (running alongside since the start; log: $log)"
wait "$server_pid"
server=$?
cat "$log"
[ "$rest" -ne 0 ] && exit "$rest"
exit "$server"
