"""The house plan holds: the import-linter contracts in ``.importlinter`` pass on this
tree, and each one fails, naming itself, when a forbidden import is planted in a copy of
it (absolute, relative and nested imports alike: a contract blind to one kind would pass
anything of that kind).

What import-linter cannot see - what importing ``nfs_exportd.decide`` loads at run time,
and calls to ``open()`` in decide - is checked here directly.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
CONFIG = ROOT / ".importlinter"
LINT = Path(sys.executable).parent / "lint-imports"
DECIDE_DIR = SRC / "nfs_exportd" / "decide"

LAYERS = "Layers: cli > commands > cycle > ops > read, apply, memory > decide > shared modules"
INDEPENDENT = "read, apply and memory are independent of each other"
DECIDE_PURE = "decide does no I/O: no network, process, file-system or outer-layer module"
NO_SIM = "no production module imports the simulator (nfs_exportd_sim)"


def lint(root: Path) -> tuple[int, str]:
    """lint-imports over the tree at ``root`` (its src and its .importlinter); the exit
    code and the report with its whitespace folded (rich wraps long names)."""
    env = dict(os.environ, PYTHONPATH=str(root / "src"), COLUMNS="300", NO_COLOR="1")
    proc = subprocess.run(
        [str(LINT), "--no-cache", "--no-logo", str(root / ".importlinter")],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return proc.returncode, " ".join((proc.stdout + proc.stderr).split())


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of src and .importlinter to plant imports in."""
    shutil.copytree(SRC, tmp_path / "src", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(CONFIG, tmp_path / ".importlinter")
    return tmp_path


def test_the_contracts_hold_on_this_tree() -> None:
    code, out = lint(ROOT)
    assert code == 0, out
    for name in (LAYERS, INDEPENDENT, DECIDE_PURE, NO_SIM):
        assert f"{name} KEPT" in out, out
    assert "4 kept, 0 broken" in out, out


def test_make_test_runs_the_contracts() -> None:
    make = (ROOT / "Makefile").read_text()
    assert "$(BIN)/lint-imports" in make
    assert "test: lint" in make


PLANTS = [
    # (file under src/nfs_exportd, line appended, contracts that must break)
    ("decide/diff.py", "from ..apply import exportfs", {DECIDE_PURE, LAYERS}),
    ("decide/diff.py", "import subprocess", {DECIDE_PURE}),
    ("decide/bounds.py", "from nfs_exportd.memory import state", {DECIDE_PURE, LAYERS}),
    (
        "decide/claims.py",
        "def f() -> None:\n    from ..killpoints import kill_point",
        {DECIDE_PURE},
    ),
    ("decide/plan.py", "from urllib.parse import urlsplit", {DECIDE_PURE}),
    ("cli.py", "import nfs_exportd_sim", {NO_SIM}),
    ("ops/check.py", "from nfs_exportd_sim.cloud import SimCloud", {NO_SIM}),
    ("read/projects.py", "from ..memory import state", {INDEPENDENT}),
    ("apply/pending.py", "from ..read import exportsdir", {INDEPENDENT}),
    ("memory/journal.py", "from ..apply.exportfs import ExportfsBackend", {INDEPENDENT}),
    ("model.py", "from . import cycle", {LAYERS}),
    ("read/inventory/static.py", "from ...ops import metrics", {LAYERS}),
    ("cycle.py", "from .commands import plan", {LAYERS}),
]


@pytest.mark.parametrize(
    ("where", "line", "broken"), PLANTS, ids=[f"{w}: {s}" for w, s, _ in PLANTS]
)
def test_a_planted_import_breaks_its_contract(
    tree: Path, where: str, line: str, broken: set[str]
) -> None:
    path = tree / "src" / "nfs_exportd" / where
    path.write_text(path.read_text() + "\n\n" + line + "\n")
    code, out = lint(tree)
    assert code != 0, out
    # (a planted import can break more than these: through it, one layer now reaches others)
    for name in broken:
        assert f"{name} BROKEN" in out, out


# -- what import-linter cannot see ---------------------------------------------------

# Loaded modules that must not appear after importing decide (a name or its submodules).
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
    "nfs_exportd_sim",
    "nfs_exportd.read",
    "nfs_exportd.apply",
    "nfs_exportd.memory",
    "nfs_exportd.cycle",
    "nfs_exportd.cli",
)

PROBE = """
import json, sys
forbidden = json.loads(sys.argv[1])
def hits():
    return sorted(m for m in sys.modules if any(m == f or m.startswith(f + ".") for f in forbidden))
before = hits()
import nfs_exportd.decide
import nfs_exportd.decide.plan
import nfs_exportd.decide.reconcile
import nfs_exportd.decide.restore
assert nfs_exportd.decide.__file__.startswith(sys.argv[2]), nfs_exportd.decide.__file__
print(json.dumps({"before": before, "loaded": hits()}))
"""


def test_importing_decide_loads_no_io_or_network_module() -> None:
    """At run time too (an import made through importlib, or by a module decide loads
    from outside the package, would escape the contracts)."""
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH", "")) if p),
    )
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
    assert result["before"] == []  # the interpreter starts clean
    assert result["loaded"] == [], f"importing nfs_exportd.decide loaded {result['loaded']}"


def opens_or_imports_at_run_time(source: str, filename: str) -> list[str]:
    """Calls the contracts cannot see: ``open()`` and imports by name at run time."""
    found = []
    for node in ast.walk(ast.parse(source, filename=filename)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
        if name in {"open", "__import__", "import_module"}:
            found.append(f"{filename}:{node.lineno}: calls {name}()")
    return found


@pytest.mark.parametrize("path", sorted(DECIDE_DIR.glob("*.py")), ids=lambda p: p.name)
def test_decide_opens_no_file(path: Path) -> None:
    assert opens_or_imports_at_run_time(path.read_text(), path.name) == []


@pytest.mark.parametrize(
    "snippet",
    [
        "def f(p):\n    return open(p).read()\n",
        "import io\nio.open('x')\n",
        "__import__('socket')",
        "import importlib\nimportlib.import_module('socket')\n",
    ],
)
def test_the_open_check_is_not_blind(snippet: str) -> None:
    assert opens_or_imports_at_run_time(snippet, "snippet.py")
