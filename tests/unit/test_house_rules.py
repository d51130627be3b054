"""The layout's rules, checked on the source tree: rooms import only downward, no file name is used
twice across layers, the core does no I/O, and every GENREC_* variable is read in one settings module
and documented in the README."""
from __future__ import annotations

import ast
import re
from collections import Counter
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LAYERS = ("genrec_core", "schemas", "jobs", "dags")
# A room may import the rooms listed for it (and itself); genrec_core and schemas import no jobs code.
ALLOWED = {
    "jobs/lake": {"jobs/lake"},
    "jobs/transforms": {"jobs/transforms"},
    "jobs/sources": {"jobs/sources", "jobs/lake"},
    "jobs/stages": {"jobs/stages", "jobs/lake", "jobs/transforms", "jobs/sources"},
    "jobs/cli": {"jobs/cli", "jobs/stages", "jobs/lake", "jobs/sources", "jobs/transforms"},
    # MLflow pyfunc wrappers: they run inside mlflow.pyfunc.load_model, reading a registered folder.
    "jobs/serving": {"jobs/serving", "jobs/lake"},
    "dags": {"jobs/stages"},
    "jobs": set(),
    "genrec_core": set(),
    "schemas": set(),
}


def _sources(*roots: str) -> list[Path]:
    return sorted(p for r in roots for p in (REPO / r).rglob("*.py"))


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def _room(path: Path) -> str:
    parts = path.relative_to(REPO).parts
    return "/".join(parts[:2]) if parts[0] == "jobs" and len(parts) > 2 else parts[0]


@pytest.mark.parametrize("path", _sources(*LAYERS), ids=lambda p: str(p.relative_to(REPO)))
def test_rooms_import_only_downward(path):
    room = _room(path)
    if room not in ALLOWED:
        pytest.fail(f"{path.relative_to(REPO)} lies outside the known rooms {sorted(ALLOWED)}")
    used = {"/".join(m.split(".")[:2]) for m in _imports(path) if m.split(".")[0] == "jobs"}
    used = {u for u in used if u in ALLOWED}  # `from jobs import x` names a room through x
    assert used <= ALLOWED[room] | {room}, f"{room} imports {sorted(used - ALLOWED[room] - {room})}"


def test_no_module_name_is_used_twice_across_layers():
    names = Counter(p.stem for p in _sources(*LAYERS) if p.stem not in ("__init__", "__main__"))
    assert [n for n, c in names.items() if c > 1] == []


def test_the_core_does_no_io():
    forbidden = re.compile(r"\bopen\(|os\.environ|getenv\(|\.read_text\(|\.write_text\(|\.read_bytes\(|"
                           r"\.write_bytes\(|time\.time\(|datetime\.now\(|\bnp\.save|\bnp\.load\((?!io\.BytesIO)")
    found = [f"{p.relative_to(REPO)}:{i}: {line.strip()}" for p in _sources("genrec_core")
             for i, line in enumerate(p.read_text().splitlines(), 1)
             if forbidden.search(line) and not line.lstrip().startswith("#")]
    assert found == []


def test_environment_is_read_in_one_place_and_documented():
    from jobs.lake.settings import ENVIRONMENT

    reads = re.compile(r"(environ\.get|getenv)\(\s*[\"'](GENREC_\w+)|environ\[[\"'](GENREC_\w+)[\"']\]\s*(?!=)")
    readers = {p.relative_to(REPO).as_posix() for p in _sources(*LAYERS) if reads.search(p.read_text())}
    assert readers <= {"jobs/lake/settings.py"}
    in_settings = {m[1] or m[2] for m in reads.findall((REPO / "jobs/lake/settings.py").read_text())}
    in_settings |= set(re.findall(r'_(?:int|flag)\("(GENREC_\w+)"', (REPO / "jobs/lake/settings.py").read_text()))
    assert in_settings == set(ENVIRONMENT)
    readme = (REPO / "README.md").read_text()
    assert [v for v in ENVIRONMENT if f"`{v}`" not in readme] == []


_IMPORT_EACH = """
import importlib, sys, traceback
failures = []
for name in sys.argv[1:]:
    for loaded in [m for m in sys.modules if m.split(".")[0] in ("genrec_core", "schemas")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception as exc:
        failures.append(f"{name}: {type(exc).__name__}: {exc}")
print("\\n".join(failures))
sys.exit(1 if failures else 0)
"""


def test_every_core_module_imports_on_its_own():
    """Cycles show up when a module is the first of its package to be imported, so each is imported
    into a fresh genrec_core, in a child process (third-party packages stay loaded there, which keeps
    it fast, and this test session's modules stay untouched)."""
    import subprocess
    import sys

    modules = [".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
               for p in _sources("genrec_core", "schemas") if p.stem != "__main__"]
    proc = subprocess.run([sys.executable, "-c", _IMPORT_EACH, *modules], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
