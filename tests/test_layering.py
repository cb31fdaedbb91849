"""The decide layer imports nothing that does I/O or resolves names (issue 2).

Two independent checks: what importing ``nfs_exportd.decide`` actually loads (in a fresh
interpreter), and what the source of ``src/nfs_exportd/decide/*.py`` says it imports.
Both look at the tree this test file lives in.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
DECIDE_DIR = SRC / "nfs_exportd" / "decide"
DECIDE_FILES = sorted(DECIDE_DIR.glob("*.py"))

# Loaded modules that must not appear (a name or any of its submodules).
FORBIDDEN_LOADED = (
    "socket",
    "subprocess",
    "urllib",
    "http",
    "ssl",
    "requests",
    "openstack",
    "keystoneauth1",
    "shutil",
    "nfs_exportd.apply",
    "nfs_exportd.read.inventory",
    "nfs_exportd.memory.state",
    "nfs_exportd.cycle",
    "nfs_exportd.cli",
)
# Modules the decide source must not import, directly or as ``from X import ...``.
FORBIDDEN_IMPORTS = ("os", "io", "pathlib", "socket", "subprocess", "time", "random")

PROBE = """
import json, sys
forbidden = json.loads(sys.argv[1])
before = {m for m in sys.modules if any(m == f or m.startswith(f + ".") for f in forbidden)}
import nfs_exportd.decide
import nfs_exportd.decide.plan
import nfs_exportd.decide.reconcile
assert nfs_exportd.decide.__file__.startswith(sys.argv[2]), nfs_exportd.decide.__file__
loaded = sorted(m for m in sys.modules if any(m == f or m.startswith(f + ".") for f in forbidden))
print(json.dumps({"before": sorted(before), "loaded": loaded}))
"""


def test_importing_decide_loads_no_io_or_network_module() -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH", "")) if p)
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(FORBIDDEN_LOADED), str(DECIDE_DIR)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    # the interpreter itself starts clean, so anything listed came from the decide import
    assert result["before"] == []
    assert result["loaded"] == [], f"importing nfs_exportd.decide loaded {result['loaded']}"


def _imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "__import__"
        ):
            out.append((node.lineno, "__import__(...)"))
    return out


def _violations(source: str, filename: str) -> list[str]:
    tree = ast.parse(source, filename=filename)
    found = []
    for lineno, module in _imported_modules(tree):
        top = module.split(".")[0]
        if top in FORBIDDEN_IMPORTS or module == "__import__(...)":
            found.append(f"{filename}:{lineno}: imports {module}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            if (isinstance(func, ast.Name) and func.id == "open") or (
                isinstance(func, ast.Attribute)
                and func.attr == "open"
                and isinstance(func.value, ast.Name)
                and func.value.id in {"builtins", "io", "os"}
            ):
                found.append(f"{filename}:{node.lineno}: calls open()")
    return found


def test_decide_files_found() -> None:
    names = {p.name for p in DECIDE_FILES}
    assert {"__init__.py", "plan.py", "reconcile.py"} <= names


@pytest.mark.parametrize("path", DECIDE_FILES, ids=[p.name for p in DECIDE_FILES])
def test_decide_source_imports_no_io_module(path: Path) -> None:
    assert _violations(path.read_text(), str(path.relative_to(ROOT))) == []


@pytest.mark.parametrize(
    "snippet",
    [
        "import os",
        "import os.path",
        "from os import path",
        "import io as _io",
        "from pathlib import Path",
        "import socket",
        "import subprocess",
        "from time import monotonic",
        "import random",
        "def f():\n    import time\n",
        "def f(p):\n    return open(p).read()\n",
        "__import__('socket')",
    ],
)
def test_the_source_check_catches(snippet: str) -> None:
    """The AST check itself is not blind (a broken check would pass on any source)."""
    assert _violations(snippet, "snippet.py")
