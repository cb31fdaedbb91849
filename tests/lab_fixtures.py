"""Fixtures of the data-path lab (nfs_exportd_sim.lab): import what a test module needs,
e.g. ``from lab_fixtures import ganesha_lo``.  A lab that cannot start FAILS the test
with its output (never a skip); everything is stopped by pid and namespace name in the
fixtures' finalizers, also when the test failed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from nfs_exportd_sim.lab.ganesha import GaneshaServer
from nfs_exportd_sim.lab.netns import loopback_netns
from nfs_exportd_sim.lab.proc import LabError


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.fail(
            "the data-path lab needs root (network and mount namespaces, NFS servers): "
            "run the tests as root"
        )


@contextmanager
def lab_errors() -> Iterator[None]:
    """A LabError becomes a test failure carrying the component's output."""
    try:
        yield
    except LabError as e:
        pytest.fail(f"the lab could not start or answer: {e}", pytrace=False)


def scratch_tree(root: Path, files: dict[str, str]) -> Path:
    """Files (relative path -> content) under ``root``, directories 0755 and files 0644
    so that a squashed client (anonymous uid) can read them; returns ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    for rel, content in files.items():
        f = root / rel
        d = f.parent
        d.mkdir(parents=True, exist_ok=True)
        while d != root:
            d.chmod(0o755)
            d = d.parent
        f.write_text(content)
        f.chmod(0o644)
    return root


def ganesha_export(
    export_id: int, path: str, pseudo: str, clients: list[str], access: str = "RW"
) -> str:
    """A hand-written EXPORT block (as tests write them; the backend renders its own)."""
    return (
        f'EXPORT {{\n  Export_Id = {export_id};\n  Path = "{path}";\n'
        f'  Pseudo = "{pseudo}";\n  Protocols = 3, 4;\n  Access_Type = None;\n'
        "  FSAL { Name = VFS; }\n"
        f"  CLIENT {{ Clients = {', '.join(clients)}; Access_Type = {access}; }}\n}}\n"
    )


@pytest.fixture(scope="module")
def ganesha_lo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GaneshaServer]:
    """NFS-Ganesha alone in a loopback-only namespace (127.0.0.1), one per test module;
    its conf_dir starts empty.  Clients run in the same namespace: ``ganesha_lo.netns``."""
    require_root()
    work = tmp_path_factory.mktemp("ganesha")
    with lab_errors(), loopback_netns("gan") as ns, GaneshaServer(work, ns.name) as server:
        yield server
