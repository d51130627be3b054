"""A real Airflow 3 (infra/airflow.sh: API server, scheduler with the LocalExecutor, DAG processor,
triggerer) runs genrec's DAGs in their own processes: a scheduled nightly run, genrec_retrain started
by the map Asset, and a backfill over three dates, three runs at a time, created through the REST API
beside the scheduled run. The runs overlap and take the map lease in turn. With --backfill-twice (as
`make test-airflow` runs it) the backfill is repeated with reprocess_behavior=completed and the tables
compared. Headless Chromium renders the DAG's grid page and saves a screenshot.

The server gets its own AIRFLOW_HOME and GENREC_HOME; `infra/airflow.sh` serves that lakehouse's
catalogue to the tasks (and to a `genrec sql` the test runs during the backfill); the test process
reads the Delta tables by path. Also `make test-airflow`.
"""
from __future__ import annotations

import contextlib
import dataclasses
import http.server
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import REPO, genrec_cli

pytestmark = [pytest.mark.slow, pytest.mark.airflow]

AIRFLOW_SH = REPO / "infra" / "airflow.sh"
DATES = [date(2026, 1, 20) + timedelta(days=i) for i in range(3)]  # inside the synthetic data's range
CONF = {"profile": "tiny", "dataset": "synthetic", "overrides": []}
# The screenshot stays after the run (git-ignored); docs/img holds the one the README shows.
ARTIFACTS = REPO / "test-artifacts"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, root: Path):
        self.airflow_home, self.genrec_home = root / "airflow", root / "genrec"
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = os.environ | {
            "AIRFLOW_HOME": str(self.airflow_home), "AIRFLOW_PORT": str(self.port),
            "GENREC_HOME": str(self.genrec_home), "GENREC_DAG_PROFILE": "tiny", "GENREC_DAG_DATASET": "synthetic",
            "GENREC_VENV_BIN": str(Path(sys.executable).parent),
            # The scheduler looks for new DAG runs and files often enough for a test.
            "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": "10"}
        self._token = None

    def sh(self, verb: str, timeout: int = 300) -> subprocess.CompletedProcess:
        return subprocess.run([str(AIRFLOW_SH), verb], env=self.env, capture_output=True, text=True, timeout=timeout)

    def pids(self) -> list[int]:
        run = self.airflow_home / "run"
        return [int(p.read_text()) for p in sorted(run.glob("*.pid"))] if run.is_dir() else []

    def token(self) -> str:
        if self._token is None:
            login = json.loads((self.airflow_home / "simple_auth_manager_passwords.json.generated").read_text())
            user, password = next(iter(login.items()))
            self._token = self.call("POST", "/auth/token", {"username": user, "password": password},
                                    auth=False)["access_token"]
        return self._token

    def call(self, method: str, path: str, body: dict | None = None, auth: bool = True) -> dict:
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self.token()}"
        req = urllib.request.Request(self.url + path, method=method, headers=headers,
                                     data=None if body is None else json.dumps(body).encode())
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                return json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as e:
            raise AssertionError(f"{method} {path}: HTTP {e.code}: {e.read()[:2000]!r}") from e

    def runs(self, dag_id: str) -> list[dict]:
        return self.call("GET", f"/api/v2/dags/{dag_id}/dagRuns?limit=100&order_by=run_after")["dag_runs"]

    def wait(self, dag_id: str, done, what: str, timeout_s: float) -> list[dict]:
        """Polls the DAG's runs until done(runs) holds; a failed run fails the test with its task states."""
        deadline = time.monotonic() + timeout_s
        while True:
            runs = self.runs(dag_id)
            failed = [r for r in runs if r["state"] == "failed"]
            if failed:
                raise AssertionError(f"{dag_id} run failed: {failed[0]['dag_run_id']}: {self.task_states(failed[0])}"
                                     f"\n{self.task_logs_hint()}")
            if done(runs):
                return runs
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}: "
                                     f"{[(r['dag_run_id'], r['state']) for r in runs]}")
            time.sleep(5)

    def task_states(self, run: dict) -> dict:
        tis = self.call("GET", f"/api/v2/dags/{run['dag_id']}/dagRuns/{run['dag_run_id']}/taskInstances")
        return {t["task_id"]: t["state"] for t in tis["task_instances"]}

    def task_logs_hint(self) -> str:
        return f"task logs under {self.airflow_home / 'logs'}"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if shutil.which("chromium") is None:
        pytest.fail("chromium is not installed; `make install` installs it (apt-get install chromium)")
    srv = Server(tmp_path_factory.mktemp("airflow-server"))
    # What a deployment has before its first night: the history cleaned once and sequences built.
    load = subprocess.run(genrec_cli() + ["ingest", "--profile", "tiny", "--home", str(srv.genrec_home)],
                          env=srv.env, capture_output=True, text=True, timeout=900)
    assert load.returncode == 0, load.stderr[-3000:]
    started = srv.sh("start")
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        assert f"UI {srv.url}" in started.stdout and "login" in started.stdout
        assert srv.sh("status").returncode == 0
        # The tasks' lakehouse is served to many processes (tasks of both DAGs, and readers).
        catalogue = json.loads((srv.genrec_home / "lakehouse" / "_catalog_server.json").read_text())
        assert _alive(catalogue["pid"])
        yield srv
    finally:
        pids = srv.pids()
        record = srv.genrec_home / "lakehouse" / "_catalog_server.json"
        if record.exists():
            pids.append(json.loads(record.read_text())["pid"])
        stopped = srv.sh("stop", timeout=120)
        assert stopped.returncode == 0, stopped.stderr
        still = [p for p in pids if _alive(p)]
        assert not still, f"processes left running after stop: {still}"
        assert not record.exists()
        assert srv.sh("status").returncode == 3


def _alive(pid: int) -> bool:
    """Running, not a zombie that merely waits for its parent to read its exit status."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def _delta(spark, srv: Server, table):
    return spark.read.format("delta").load(str(srv.genrec_home / "lakehouse" / table.name))


def _snapshot(spark, srv: Server) -> dict:
    """The tables a nightly run owns, as sorted rows."""
    from schemas import tables as S

    rows = lambda df: sorted(map(tuple, df.collect()))  # noqa: E731
    return {"clean": rows(_delta(spark, srv, S.INTERACTIONS_CLEAN)),
            "sequences": rows(_delta(spark, srv, S.USER_SEQUENCES)),
            "item_sid": rows(_delta(spark, srv, S.ITEM_SID)),
            "maps": rows(_delta(spark, srv, S.SID_MAP_VERSIONS).select("map_version", "n_items", "mode")),
            "audit": rows(_delta(spark, srv, S.INGEST_AUDIT).where("stage = 'ingest' AND source = 'events'")
                          .select("scope", "input_rows", "output_rows", "quarantined_rows", "removed_rows"))}


def _create_backfill(srv: Server) -> int:
    """Creates the backfill over DATES through the REST API; -> its id."""
    body = {"dag_id": "genrec_nightly", "from_date": f"{DATES[0]}T00:00:00Z", "to_date": f"{DATES[-1]}T00:00:00Z",
            "max_active_runs": 3, "reprocess_behavior": "completed", "dag_run_conf": CONF}
    for attempt in range(12):
        try:
            backfill = srv.call("POST", "/api/v2/backfills", body)
            break
        except AssertionError as e:
            # On SQLite Airflow refuses to create a backfill while another writer holds the database
            # (HTTP 503, "Database is locked"); a client asks again.
            if "HTTP 503" not in str(e) or attempt == 11:
                raise
            time.sleep(5)
    return backfill["id"]


def _await_backfill(srv: Server, backfill_id: int, timeout_s: float) -> list[dict]:
    """Waits until Airflow completes the backfill; -> its runs, each a success."""
    deadline = time.monotonic() + timeout_s
    while srv.call("GET", f"/api/v2/backfills/{backfill_id}")["completed_at"] is None:
        srv.wait("genrec_nightly", lambda rs: True, "", 60)  # fails at once on a failed run
        if time.monotonic() > deadline:
            raise AssertionError(f"backfill {backfill_id} not complete after {timeout_s:.0f}s: "
                                 f"{[(r['dag_run_id'], r['state']) for r in srv.runs('genrec_nightly')]}")
        time.sleep(5)
    runs = [r for r in srv.runs("genrec_nightly") if r["run_type"] == "backfill"]
    assert sorted(r["logical_date"][:10] for r in runs) == [d.isoformat() for d in DATES]
    assert {r["state"] for r in runs} == {"success"}, [(r["dag_run_id"], srv.task_states(r)) for r in runs]
    return runs


def test_backfill_over_the_rest_api_rewrites_its_dates_and_converges(server, spark, capsys, pytestconfig):
    say = _reporter(capsys)
    t0 = time.monotonic()
    # The backfill starts beside the nightly's scheduled run (today: no events in scope), three dates at
    # a time: ingests go one by one, and each run's map chain waits for the map lease. The first map
    # published emits the Asset event that starts genrec_retrain.
    first = _create_backfill(server)
    retrain = server.wait("genrec_retrain", lambda rs: rs and rs[0]["state"] == "success", "genrec_retrain", 1800)
    assert {r["run_type"] for r in retrain} == {"asset_triggered"}, retrain
    say(f"genrec_retrain (asset-triggered) done after {time.monotonic() - t0:.0f} s")
    # A reader queries the tasks' lakehouse while the backfill writes it.
    query = subprocess.run(genrec_cli() + ["sql", "SELECT count(*) FROM genrec.item_sid", "--output", "csv"],
                           env=server.env, capture_output=True, text=True, timeout=600)
    assert query.returncode == 0 and int(query.stdout.splitlines()[1]) > 0, query.stderr[-3000:]
    busy = server.call("GET", f"/api/v2/backfills/{first}")["completed_at"] is None
    say(f"`genrec sql` answered during the backfill: {busy}")

    # The repeat costs another ~10 minutes of Spark tasks: `make test-airflow` runs it; `make test`
    # keeps to one backfill (tests/integration/test_ingest.py checks daily reruns converge).
    attempts = ("first", "repeat") if pytestconfig.getoption("backfill_twice") else ("first",)
    snapshots = []
    for attempt in attempts:
        backfill_id = first if attempt == "first" else _create_backfill(server)
        runs = _await_backfill(server, backfill_id, 3000)
        say(f"{attempt} backfill: {time.monotonic() - t0:.0f} s after it was created")
        t0 = time.monotonic()
        for r in sorted(runs, key=lambda r: r["logical_date"]):
            say(f"  {r['logical_date'][:10]}: {r.get('duration') or 0:.0f} s ({r['start_date']} -> {r['end_date']})")
        snapshots.append(_snapshot(spark, server))
    server.wait("genrec_nightly", lambda rs: any(r["run_type"] == "scheduled" and r["state"] == "success"
                                                 for r in rs), "the scheduled nightly run", 1800)
    _assert_runs_overlapped_but_held_the_lease_in_turn(server, say)

    # Each date's run cleaned that date (and the late-event window before it) and audited it.
    from schemas import tables as S

    audit = _delta(spark, server, S.INGEST_AUDIT).where("stage = 'ingest' AND source = 'events'").collect()
    for d in DATES:
        rows = [a for a in audit if a.scope != "all" and max(json.loads(a.scope)) == d.isoformat()]
        assert rows and all(a.input_rows == a.output_rows + a.quarantined_rows + a.removed_rows for a in rows), d
    per_date = {r.event_date: r["count"] for r in _delta(spark, server, S.INTERACTIONS_CLEAN)
                .groupBy("event_date").count().collect()}
    assert all(per_date.get(d, 0) > 0 for d in DATES), per_date
    # Repeating the backfill converges: the tables a nightly run owns are identical.
    assert all(later == snapshots[0] for later in snapshots[1:])


# The tasks of a run that touch the lakehouse as a whole, from the map lease's setup to its teardown.
LEASED = ("sequences", "embed", "tokenize", "gate", "publish", "announce_map", "recommend")


def _stamp(text: str | None) -> float | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() if text else None


def _assert_runs_overlapped_but_held_the_lease_in_turn(srv: Server, say) -> None:
    """Every nightly run's leased tasks ran inside a span no other run's leased tasks entered, while
    the runs themselves overlapped: concurrency in ingest and in waiting, turns in the map chain."""
    spans, lives = {}, {}
    for run in srv.runs("genrec_nightly"):
        tis = srv.call("GET", f"/api/v2/dags/genrec_nightly/dagRuns/{run['dag_run_id']}/taskInstances")
        leased = [t for t in tis["task_instances"] if t["task_id"] in LEASED and t["start_date"]]
        spans[run["dag_run_id"]] = (min(_stamp(t["start_date"]) for t in leased),
                                    max(_stamp(t["end_date"]) for t in leased))
        lives[run["dag_run_id"]] = (_stamp(run["start_date"]), _stamp(run["end_date"]))
    order = sorted(spans, key=lambda r: spans[r][0])
    for before, after in zip(order, order[1:]):
        assert spans[before][1] <= spans[after][0], (f"{before} and {after} were in the map chain at once", spans)
    overlapping = sum(1 for a in lives for b in lives if a < b and lives[a][0] < lives[b][1] and lives[b][0] < lives[a][1])
    assert overlapping > 0, lives
    say(f"map lease taken in turn by {' -> '.join(r.split('__')[-1][:10] for r in order)}; "
        f"{overlapping} pair(s) of runs overlapped")
    # Every run gave the lease back.
    from jobs.lake.locks import lease_holder
    from jobs.lake.settings import load_settings
    from jobs.stages.orchestration import MAP_LEASE

    settings = dataclasses.replace(load_settings(), lakehouse=srv.genrec_home / "lakehouse")
    assert lease_holder(settings, MAP_LEASE) is None


def test_the_dag_grid_page_shows_the_runs(server, capsys):
    """Chromium renders the UI's grid page of genrec_nightly, logged in, and saves a screenshot; the
    runs page lists the backfill's runs (this test follows the backfill test in this module)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "airflow_nightly_grid.png"
    args = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1600,1000",
            f"--user-data-dir={server.airflow_home / 'chromium'}", "--virtual-time-budget=20000"]
    with _logged_in(server, "/dags/genrec_nightly") as grid:
        subprocess.run(args + [f"--screenshot={shot}", grid], capture_output=True, timeout=180, check=True)
        page = _text(subprocess.run(args + ["--dump-dom", grid], capture_output=True, text=True,
                                    timeout=180, check=True).stdout)
    with _logged_in(server, "/dags/genrec_nightly/runs") as runs_url:
        runs = _text(subprocess.run(args + ["--dump-dom", runs_url], capture_output=True, text=True,
                                    timeout=180, check=True).stdout)
    _reporter(capsys)(f"screenshot of the grid page: {shot}")
    assert shot.stat().st_size > 20_000
    assert "genrec_nightly" in page and "announce_map" in page and "Schedule" in page, page[:2000]
    for d in DATES:
        assert f"backfill__{d.isoformat()}" in runs, runs[:3000]


def _reporter(capsys):
    """Prints to the terminal even under `pytest -q`: run times and the screenshot's path."""
    def say(line: str) -> None:
        with capsys.disabled():
            print(f"\n[airflow-server] {line}", end="", flush=True)
    return say


@contextlib.contextmanager
def _logged_in(server: Server, path: str):
    """A local page that stores the API token in the UI's `_token` cookie and opens `path`.

    Cookies are kept per host, not per port, so a page served from another port of 127.0.0.1 can
    set the cookie that the Airflow UI reads: the same login the UI's own form performs.
    """
    target = server.url + path
    page = (f"<script>document.cookie='_token={server.token()}; path=/; SameSite=Lax';"
            f"location.replace({json.dumps(target)});</script>").encode()

    class Login(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Login)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/login"
    finally:
        httpd.shutdown()
        httpd.server_close()


def _text(html: str) -> str:
    html = re.sub(r"<(script|style)\b.*?</\1>", " ", html, flags=re.S)
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())
