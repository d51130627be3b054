# genrec: `make demo` and `make test` each set up everything from a fresh clone (venv, pinned
# packages, Delta jars) and then run. Caches stay inside the project (.cache/) unless GENREC_CACHE
# points elsewhere.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
CACHE ?= $(or $(GENREC_CACHE),$(CURDIR)/.cache)
STAMP := $(VENV)/.installed
JARS_STAMP := $(CACHE)/jars/.fetched

export GENREC_CACHE := $(CACHE)
export PIP_CACHE_DIR := $(CACHE)/pip
export UV_CACHE_DIR := $(CACHE)/uv
export AIRFLOW_HOME ?= $(CURDIR)/airflow_home
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AIRFLOW__CORE__DAGS_FOLDER ?= $(CURDIR)/dags
export AIRFLOW__CORE__PARALLELISM := 4
export AIRFLOW__API__HOST := 127.0.0.1
export MLFLOW_DISABLE_TELEMETRY := true
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export SPARK_LOCAL_IP := 127.0.0.1
export TOKENIZERS_PARALLELISM := false
export PYTHONDONTWRITEBYTECODE :=

.PHONY: install chromium demo test test-fast test-airflow test-crash bench bench-tokenize bench-clean bench-churn bench-rec bench-items airflow-up airflow-down jars clean-outputs help

help:
	@echo "make demo   install everything, then run the pipeline on the built-in synthetic data"
	@echo "make test   install everything, then run the test suite"
	@echo "make test-airflow  the real-server Airflow test alone (backfill over the REST API, UI screenshot)"
	@echo "make test-crash  kill the pipeline at every stage boundary and inside publish; reruns converge"
	@echo "make bench  run the benchmarks"
	@echo "make bench-tokenize  tokenizer zoo: SID quality on real catalogues, speed against raw FAISS"
	@echo "make bench-clean  cleaning throughput vs a plain parquet copy at 1e6, 1e7, 1e8 events"
	@echo "make bench-churn  two Beauty nights: SID churn and quality of assign, aligned and plain refits"
	@echo "make bench-rec  popularity, SASRec and the generative model on Beauty, Yelp, Scientific"
	@echo "make bench-items  the item side from 1e5 to 1e7 items: embed, assignment, driver memory"
	@echo "make airflow-up  start a local Airflow 3 (UI, scheduler, DAG processor, triggerer) with genrec's DAGs"
	@echo "make airflow-down  stop it"

install: $(STAMP) $(JARS_STAMP)

$(STAMP): requirements.lock pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (genrec needs Python 3.11)"; exit 1; }
	@command -v java >/dev/null || { echo "error: java not found (Spark needs Java 17)"; exit 1; }
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q uv==0.13.9
	$(VENV)/bin/uv pip install --python $(VENV)/bin/python --compile-bytecode -r requirements.lock
	$(VENV)/bin/uv pip install --python $(VENV)/bin/python --compile-bytecode --no-deps -e .
	touch $@

jars: $(JARS_STAMP)

$(JARS_STAMP): infra/delta_jars.env infra/fetch_delta_jars.sh
	@command -v mvn >/dev/null || { echo "error: mvn not found (needed once to fetch the Delta jars)"; exit 1; }
	infra/fetch_delta_jars.sh $(CACHE)
	touch $@

# Headless Chromium renders the Airflow UI in the real-server test (Debian's package; needs root once).
chromium:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing chromium (Debian package) for the Airflow UI test"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "error: chromium not found; install Debian's chromium (sudo apt-get install chromium)"; exit 1; \
	  fi; }

demo: install
	$(VENV)/bin/genrec run

test: install chromium
	$(VENV)/bin/python -m pytest -q --durations=15

# Starts infra/airflow.sh on a free port with its own homes, backfills genrec_nightly over 3 dates, 3
# runs at a time, through the REST API beside the scheduled run, checks genrec_retrain ran from the
# map Asset and the runs took the map lease in turn, and (here, not in `make test`) repeats the
# backfill and compares the tables; screenshots the grid page into test-artifacts/ and stops every
# process it started (about 40 min on 2 cores; `make test` runs it without the repeat, about 26).
test-airflow: install chromium
	$(VENV)/bin/python -m pytest -q -s tests/dags/test_airflow_server.py --backfill-twice

# The pipeline killed at every stage boundary and inside publish, rerun, and compared with an
# uninterrupted run (~9 min on 2 cores; make test runs only the crash inside publish).
test-crash: install
	$(VENV)/bin/python -m pytest -q tests/integration/test_crash_safety.py --crash-chain

test-fast: install
	$(VENV)/bin/python -m pytest -q tests/unit

bench: install
	$(VENV)/bin/python benchmarks/rq_encode.py

# Generates the synthetic events once per size (about 2 GB at 1e8, under $(CACHE)/bench/clean), then
# times the clean stage against a plain parquet copy; writes benchmarks/results/clean_scaling.json.
# On 2 cores 1e6 and 1e7 take about 8 min; 1e8 adds about 40 min. SIZES="1e6 1e7" for the short run.
SIZES ?= 1e6 1e7 1e8
bench-clean: install
	$(VENV)/bin/python benchmarks/clean_scaling.py --sizes $(SIZES)

# Every quantizer x collision strategy on Beauty and Scientific, peers' SIDs, and 10^6-vector speed
# against raw FAISS; writes benchmarks/results/tokenize.json (about 45 min on 2 cores).
bench-tokenize: install
	$(VENV)/bin/python benchmarks/tokenizer_zoo.py

# Two nights of Amazon Beauty (needs ../shared/data): churn of the old items' SIDs and map quality for
# assign, aligned refit and unaligned refit against a cold fit; writes benchmarks/results/churn.json
# (about 15 min on 2 cores).
bench-churn: install
	$(VENV)/bin/python benchmarks/sid_churn.py

# Popularity, SASRec and the generative SID model on the same maps and splits of ../shared/data
# (full ranking, all test users, both history settings); writes benchmarks/results/recommender.json.
# The issue's budgets (SASRec 30 min, generative 60 min per dataset) make it hours on 2 cores:
# narrow it with BENCH_REC_ARGS, e.g. "--datasets beauty --minutes sasrec=15,sid_item=25".
BENCH_REC_ARGS ?=
bench-rec: install
	$(VENV)/bin/python benchmarks/recommender.py $(BENCH_REC_ARGS)

# The item side's cost: the embed stage against the bare encoder (10^5 catalogue texts), then tokenize,
# gate and publish on synthetic vectors at each size, with Spark assignment against raw FAISS per core
# and peak driver RSS; writes benchmarks/results/items_scale.json. 1e5 and 1e6 take about 25 min on
# 2 cores; 1e7 writes 15 GB of vectors and adds about an hour. Narrow it with BENCH_ITEMS_ARGS.
BENCH_ITEMS_ARGS ?=
bench-items: install
	$(VENV)/bin/python benchmarks/items_scale.py $(BENCH_ITEMS_ARGS)

# A real Airflow on 127.0.0.1:8080 (AIRFLOW_PORT) with AIRFLOW_HOME=airflow_home; the DAGs' tasks use
# the lakehouse and MLflow store of GENREC_HOME (this folder by default). Prints the UI login.
airflow-up: install
	infra/airflow.sh start

airflow-down:
	infra/airflow.sh stop

clean-outputs:
	rm -rf lakehouse mlruns checkpoints airflow_home spark-warehouse metastore_db derby.log
