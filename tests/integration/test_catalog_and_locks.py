"""The pieces under concurrent runs, without Spark: who holds the embedded catalogue, the publish lock
between processes, and the crash hook's fail-fast check."""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jobs.lake import catalog_server, faults, locks
from jobs.lake.settings import load_settings

HOLD_LOCK = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.lockf(fd, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(60)
"""


@pytest.fixture
def settings(tmp_path):
    return dataclasses.replace(load_settings(), home=tmp_path, lakehouse=tmp_path / "lakehouse")


def test_embedded_holder_names_the_process_holding_derbys_lock(settings):
    """Derby holds a POSIX write lock on dbex.lck while it has the database booted; a process doing
    the same stands in for it."""
    lock_file = catalog_server.metastore_path(settings) / "dbex.lck"
    lock_file.parent.mkdir(parents=True)
    assert catalog_server.embedded_holder(settings) is None
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(lock_file)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert catalog_server.embedded_holder(settings) == holder.pid
        with pytest.raises(catalog_server.CatalogBusy, match=f"open in pid {holder.pid}.*genrec catalog start"):
            catalog_server.check_embedded_free(settings)
        with pytest.raises(catalog_server.CatalogBusy, match="start the server once that process has ended"):
            catalog_server.start(settings)
    finally:
        holder.kill()
        holder.wait()
    assert catalog_server.embedded_holder(settings) is None


def test_a_stale_server_record_is_ignored(settings):
    settings.lakehouse.mkdir(parents=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    catalog_server.record_path(settings).write_text(
        f'{{"pid": {int(dead.stdout)}, "host": "127.0.0.1", "port": 1}}')
    assert catalog_server.address(settings) is None
    assert catalog_server.stop(settings) is None and not catalog_server.record_path(settings).exists()


def test_the_publish_lock_makes_a_second_process_wait(settings):
    waiter = """
import dataclasses, sys, time
from pathlib import Path
from jobs.lake import locks
from jobs.lake.settings import load_settings
s = dataclasses.replace(load_settings(), lakehouse=Path(sys.argv[1]))
with locks.exclusive(s, "publish"):
    print("acquired", time.time(), flush=True)
"""
    with locks.exclusive(settings, "publish"):
        held_at = time.time()
        proc = subprocess.Popen([sys.executable, "-c", waiter, str(settings.lakehouse)], stdout=subprocess.PIPE,
                                text=True, cwd=Path(__file__).resolve().parents[2])
        first = proc.stdout.readline()
        assert first.startswith("[genrec] waiting for the publish lock, held by") and f'"pid": {os.getpid()}' in first
        time.sleep(1.0)
        released_at = time.time()
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    acquired_at = float(out.split()[1])
    assert acquired_at >= released_at > held_at


def test_the_lock_times_out_with_its_holder_named(settings):
    with locks.exclusive(settings, "publish"):
        code = ("import dataclasses, sys; from pathlib import Path; from jobs.lake import locks; "
                "from jobs.lake.settings import load_settings; "
                "s = dataclasses.replace(load_settings(), lakehouse=Path(sys.argv[1]))\n"
                "with locks.exclusive(s, 'publish', wait_s=1): pass")
        proc = subprocess.run([sys.executable, "-c", code, str(settings.lakehouse)], capture_output=True, text=True,
                              cwd=Path(__file__).resolve().parents[2], timeout=60)
    assert proc.returncode != 0 and "LockTimeout" in proc.stderr and f'"pid": {os.getpid()}' in proc.stderr


def test_a_lock_dies_with_its_holder(settings):
    path = settings.lakehouse / "_locks" / "publish.lock"
    path.parent.mkdir(parents=True)
    code = ("import fcntl, sys, time\nf = open(sys.argv[1], 'a+')\nfcntl.flock(f, fcntl.LOCK_EX)\n"
            "print('held', flush=True)\ntime.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    holder.kill()  # SIGKILL: no cleanup runs
    holder.wait()
    with locks.exclusive(settings, "publish", wait_s=5):
        assert f'"pid": {os.getpid()}' in path.read_text()


def test_crash_points_fail_fast_on_a_typo(settings):
    faults.check(dataclasses.replace(settings, crash_at="after:publish"), ("ingest", "publish"))
    faults.check(dataclasses.replace(settings, crash_at="publish:item_sid"), ("publish",))
    with pytest.raises(ValueError, match="names no crash point"):
        faults.check(dataclasses.replace(settings, crash_at="after:pubilsh"), ("ingest", "publish"))


RUN_A, RUN_B = {"dag_id": "genrec_nightly", "run_id": "a"}, {"dag_id": "genrec_nightly", "run_id": "b"}


def test_the_map_lease_is_held_by_one_run_until_given_back(settings):
    ended = {"a": False, "b": False}
    is_ended = lambda owner: ended[owner["run_id"]]  # noqa: E731
    assert locks.take_lease(settings, "map_chain", RUN_A, is_ended) is None
    assert locks.take_lease(settings, "map_chain", RUN_A, is_ended) is None  # a retried task of the holder
    held = locks.take_lease(settings, "map_chain", RUN_B, is_ended)
    assert held["owner"] == RUN_A and held["since"]
    assert not locks.give_back_lease(settings, "map_chain", RUN_B)  # only the holder gives it back
    assert locks.give_back_lease(settings, "map_chain", RUN_A)
    assert locks.lease_holder(settings, "map_chain") is None
    assert locks.take_lease(settings, "map_chain", RUN_B, is_ended) is None


def test_a_lease_whose_run_ended_is_taken_over(settings):
    """A run whose teardown never ran (its process was killed) leaves the lease behind; once Airflow
    says that run ended, the next run takes the lease over and records from whom."""
    assert locks.take_lease(settings, "map_chain", RUN_A, lambda owner: False) is None
    assert locks.take_lease(settings, "map_chain", RUN_B, lambda owner: False)["owner"] == RUN_A
    assert locks.take_lease(settings, "map_chain", RUN_B, lambda owner: owner == RUN_A) is None
    assert locks.lease_holder(settings, "map_chain")["took_over_from"] == RUN_A
    assert not locks.give_back_lease(settings, "map_chain", RUN_A)  # A's late teardown leaves B's lease
    assert locks.lease_holder(settings, "map_chain")["owner"] == RUN_B


def test_of_many_processes_taking_the_lease_at_once_one_wins(settings):
    taker = """
import dataclasses, sys
from pathlib import Path
from jobs.lake import locks
from jobs.lake.settings import load_settings
s = dataclasses.replace(load_settings(), lakehouse=Path(sys.argv[1]))
owner = {"dag_id": "genrec_nightly", "run_id": sys.argv[2]}
print("won" if locks.take_lease(s, "map_chain", owner, lambda o: False) is None else "waits", flush=True)
"""
    settings.lakehouse.mkdir(parents=True)
    procs = [subprocess.Popen([sys.executable, "-c", taker, str(settings.lakehouse), f"run{i}"], text=True,
                              stdout=subprocess.PIPE, cwd=Path(__file__).resolve().parents[2]) for i in range(6)]
    verdicts = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert sorted(verdicts) == ["waits"] * 5 + ["won"], verdicts
    winner = f"run{verdicts.index('won')}"
    assert locks.lease_holder(settings, "map_chain")["owner"]["run_id"] == winner
