"""The multi-client catalogue: a Derby network server over the lakehouse's own metastore files.

Embedded Derby lets one JVM at a time open the Hive metastore, so `genrec sql` could not run while a
pipeline wrote, and Airflow tasks had to queue. `genrec catalog start` serves the very same folder
(lakehouse/_metastore) from one Derby network server on 127.0.0.1, and records its pid and port in
lakehouse/_catalog_server.json. Every genrec process of that lakehouse then connects to it; without a
live server they open the files embedded, as before, so `make demo` needs no set-up. Path-based
Delta reads (`delta.`/path``) never touch the catalogue and work either way.

The server jars (derbynet, derbyclient) come from Maven Central through infra/fetch_delta_jars.sh,
at the version of the Derby engine that pyspark bundles: one engine writes the files in both modes.
"""
from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path
from typing import Optional

HOST = "127.0.0.1"
CLIENT_DRIVER = "org.apache.derby.jdbc.ClientDriver"
# From pyspark's jars folder, and from the jar cache (Maven Central).
ENGINE_JARS = ("derby", "derbyshared", "derbytools")
SERVER_JARS = ("derbynet", "derbyclient")


class CatalogServerError(RuntimeError):
    """The catalogue server cannot be started, reached or stopped."""


class CatalogBusy(CatalogServerError):
    """Another process has the catalogue open embedded, and there is no server to share it through."""


def record_path(settings) -> Path:
    return settings.lakehouse / "_catalog_server.json"


def log_path(settings) -> Path:
    return settings.lakehouse / "_catalog_server.log"


def metastore_path(settings) -> Path:
    return settings.lakehouse / "_metastore"


def _pyspark_jars() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent / "jars"


def derby_version() -> str:
    """The Derby version pyspark bundles (its metastore engine), e.g. '10.16.1.1'."""
    found = sorted(_pyspark_jars().glob("derby-*.jar"))
    if not found:
        raise CatalogServerError(f"no derby-*.jar in {_pyspark_jars()}; is pyspark installed?")
    return found[0].stem.removeprefix("derby-")


def client_jar(settings) -> Path:
    return _jar(settings.jars_dir, "derbyclient", derby_version())


def _jar(folder: Path, artifact: str, version: str) -> Path:
    jar = folder / f"{artifact}-{version}.jar"
    if not jar.is_file():
        raise CatalogServerError(
            f"{jar} is missing. Run `make jars` (infra/fetch_delta_jars.sh) to fetch "
            f"org.apache.derby:{artifact}:{version} from Maven Central.")
    return jar


def classpath(settings) -> str:
    version = derby_version()
    jars = [_jar(_pyspark_jars(), a, version) for a in ENGINE_JARS]
    jars += [_jar(settings.jars_dir, a, version) for a in SERVER_JARS]
    return os.pathsep.join(str(j) for j in jars)


def _stat(pid: int) -> list[str]:
    """/proc/PID/stat after the command name: [state, ppid, ...]; [] when there is no such process."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    except (OSError, IndexError):
        return []


def _alive(pid: int) -> bool:
    """A running Derby server with this pid (not a zombie, not another program reusing the pid)."""
    stat = _stat(pid)
    try:
        return bool(stat) and stat[0] != "Z" and b"NetworkServerControl" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _wait_gone(pid: int, timeout_s: float) -> bool:
    """Waits up to timeout_s for the server to end; True once it has."""
    deadline = time.monotonic() + timeout_s
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def _answers(port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def _read_record(settings) -> Optional[dict]:
    try:
        return json.loads(record_path(settings).read_text())
    except (OSError, ValueError):
        return None


def address(settings) -> Optional[dict]:
    """The live server of this lakehouse ({pid, host, port, ...}), or None: then Spark opens the
    metastore embedded. A record whose process is gone is stale and ignored."""
    record = _read_record(settings)
    if not record or not _alive(int(record["pid"])):
        return None
    if not _answers(int(record["port"])):
        return None
    return record


def jdbc_url(settings, record: dict) -> str:
    return f"jdbc:derby://{record['host']}:{record['port']}/{metastore_path(settings)};create=true"


def _java() -> str:
    home = os.environ.get("JAVA_HOME")
    return str(Path(home) / "bin" / "java") if home else "java"


def embedded_holder(settings) -> Optional[int]:
    """The pid of the process (a Spark JVM) that has the metastore open embedded, or None.

    An embedded Derby engine holds a POSIX write lock on the database's dbex.lck while it has the
    database booted; F_GETLK asks who holds it without taking it."""
    lock_file = metastore_path(settings) / "dbex.lck"
    try:
        fd = os.open(lock_file, os.O_RDONLY)
    except OSError:
        return None
    try:
        query = struct.pack("hhqqi", fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
        kind, _, _, _, pid = struct.unpack("hhqqi", fcntl.fcntl(fd, fcntl.F_GETLK, query))
    except OSError:
        return None
    finally:
        os.close(fd)
    return None if kind == fcntl.F_UNLCK else pid


def describe_process(pid: int) -> str:
    """'pid N (its parent's command line)': the JVM's parent is the genrec or pyspark process."""
    stat = _stat(pid)
    try:
        parent = stat[1]
        cmd = Path(f"/proc/{parent}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        return f"pid {pid} (started by pid {parent}: {cmd[:160]})"
    except (OSError, IndexError):
        return f"pid {pid}"


def check_embedded_free(settings) -> None:
    """CatalogBusy if another process has the metastore open embedded (Derby admits one)."""
    holder = embedded_holder(settings)
    if holder is not None:
        raise CatalogBusy(
            f"the catalogue {metastore_path(settings)} is open in {describe_process(holder)}; the embedded "
            f"catalogue admits one process at a time. Wait for that process to end, or share the catalogue "
            f"among processes: `genrec catalog start` (while no genrec process runs on this lakehouse).")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def start(settings, port: Optional[int] = None, timeout_s: float = 60.0) -> dict:
    """Starts the server of this lakehouse (or returns the running one's record).

    Start it while no genrec process has the catalogue open embedded: Derby lets one engine hold the
    files, and connections through the server fail until that process ends."""
    running = address(settings)
    if running:
        return {**running, "already_running": True}
    holder = embedded_holder(settings)
    if holder is not None:
        raise CatalogBusy(f"the catalogue {metastore_path(settings)} is open embedded in "
                          f"{describe_process(holder)}; start the server once that process has ended")
    settings.lakehouse.mkdir(parents=True, exist_ok=True)
    port = port or _free_port()
    if _answers(port):
        raise CatalogServerError(f"port {port} on {HOST} is taken; choose another with --port")
    cmd = [_java(), "-cp", classpath(settings), f"-Dderby.system.home={settings.lakehouse}",
           "-Dderby.drda.host=" + HOST, "org.apache.derby.drda.NetworkServerControl", "start",
           "-h", HOST, "-p", str(port), "-noSecurityManager"]
    with open(log_path(settings), "ab") as log:
        # Its own session: the server outlives the command that started it, and a terminal's ^C.
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    deadline = time.monotonic() + timeout_s
    while not _answers(port):
        if proc.poll() is not None:
            raise CatalogServerError(f"the Derby network server exited with code {proc.returncode}; "
                                     f"see {log_path(settings)}")
        if time.monotonic() > deadline:
            proc.kill()
            raise CatalogServerError(f"the Derby network server did not answer on {HOST}:{port} within "
                                     f"{timeout_s:.0f} s; see {log_path(settings)}")
        time.sleep(0.2)
    record = {"pid": proc.pid, "host": HOST, "port": port, "metastore": str(metastore_path(settings)),
              "derby_version": derby_version(), "log": str(log_path(settings))}
    tmp = record_path(settings).with_suffix(".json.part")
    tmp.write_text(json.dumps(record, indent=1))
    tmp.replace(record_path(settings))
    return {**record, "already_running": False}


def stop(settings, timeout_s: float = 30.0) -> Optional[dict]:
    """Stops this lakehouse's server by its recorded pid (Derby's shutdown command, then TERM, then KILL,
    each given timeout_s); returns the record of what was stopped, or None if nothing ran. Clients
    still connected lose the catalogue."""
    record = _read_record(settings)
    if record is None:
        return None
    pid = int(record["pid"])
    if not _alive(pid):  # a stale record: the server died (or the machine restarted)
        record_path(settings).unlink(missing_ok=True)
        return None
    # Derby's own shutdown first: it checkpoints the metastore, so the next boot skips recovery.
    try:
        subprocess.run([_java(), "-cp", classpath(settings), "org.apache.derby.drda.NetworkServerControl",
                        "shutdown", "-h", record["host"], "-p", str(record["port"])],
                       capture_output=True, timeout=timeout_s)
    except (subprocess.TimeoutExpired, CatalogServerError, OSError):
        pass
    if not _wait_gone(pid, timeout_s):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        if not _wait_gone(pid, timeout_s):
            os.kill(pid, signal.SIGKILL)
            _wait_gone(pid, float("inf"))
    record_path(settings).unlink(missing_ok=True)
    return record
