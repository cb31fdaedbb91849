"""Fixtures of the data-path lab (nfs_exportd_sim.lab): import what a test module needs,
e.g. ``from lab_fixtures import ganesha_lo``.  A lab that cannot start FAILS the test
with its output (never a skip); everything is stopped by pid and namespace name in the
fixtures' finalizers, also when the test failed.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from jeepney.wrappers import DBusErrorResponse

from nfs_exportd_sim.lab.ganesha import GaneshaServer
from nfs_exportd_sim.lab.mountd import MountdServer
from nfs_exportd_sim.lab.netns import loopback_netns
from nfs_exportd_sim.lab.network import VM, LabNetwork
from nfs_exportd_sim.lab.proc import LabError
from nfs_exportd_sim.sandbox import SANDBOX


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


# -- the whole lab: router, VMs, Ganesha and rpc.mountd (appended after cd55cb4) ----------


@dataclass
class DataLab:
    """One running lab: ``net`` (router, VMs a1 .11 and a2 .12 of project A, b1 .21 of
    B), ``ganesha`` on the server net, ``mountd`` deciding from the etab that the
    exportfs sandbox ``sandbox`` keeps, and ``srv`` (scratch tree for exported paths)."""

    net: LabNetwork
    ganesha: GaneshaServer
    mountd: MountdServer
    sandbox: Path
    srv: Path

    def vm(self, name: str) -> VM:
        return self.net.vms[name]

    def exportfs(self, *args: str) -> None:
        """The sandboxed exportfs over this lab's etab (what rpc.mountd reads)."""
        res = subprocess.run(
            [str(SANDBOX), str(self.sandbox), *args], capture_output=True, text=True, timeout=60
        )
        if res.returncode != 0:
            pytest.fail(f"exportfs {' '.join(args)}: {res.stderr.strip()}")

    def reset(self) -> None:
        """No exports anywhere (between tests): empty exports.d + exportfs -ra, every
        Ganesha export but the pseudo root removed and its file deleted."""
        for f in (self.sandbox / "exports.d").iterdir():
            f.unlink()
        self.exportfs("-ra")
        for export_id in self.ganesha.exports():
            if export_id != 0:
                with contextlib.suppress(DBusErrorResponse):
                    self.ganesha.call("RemoveExport", "q", export_id)
        for f in self.ganesha.conf_dir.iterdir():
            f.unlink()
        self.net.masquerade(False)


@pytest.fixture(scope="module")
def datalab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DataLab]:
    """The whole lab, one per test module (about 1 s to start, 3 s to stop); call
    ``datalab.reset()`` where a test must start from no exports."""
    require_root()
    work = tmp_path_factory.mktemp("datalab")
    sandbox = work / "sb"
    (sandbox / "exports.d").mkdir(parents=True)
    with (
        lab_errors(),
        LabNetwork() as net,
        GaneshaServer(work / "ganesha", net.server.name, net.server_ip) as ganesha,
        MountdServer(work / "mountd", net.knfs.name, sandbox, net.knfs_ip) as mountd,
    ):
        yield DataLab(net, ganesha, mountd, sandbox, scratch_tree(work / "srv", {}))
