"""`make demo` runs python -m nfs_exportd_sim.demo against the simulated cloud through the
real openstacksdk: it must apply, hold on Keystone's 401, confirm the removal, and fall
back to rendering the files (saying why) where exportfs cannot run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import require_exportfs


def _demo(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nfs_exportd_sim.demo", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
        check=False,
    )


def test_demo_applies_and_confirms_the_removal(tmp_path: Path) -> None:
    require_exportfs()
    proc = _demo(tmp_path)
    assert proc.returncode == 0, proc.stderr
    tools = (tmp_path / "demo" / "sandbox" / "exports.d" / "tools.exports").read_text()
    assert "172.16.0.19" in tools  # the instance created during the demo
    assert "172.16.0.12" not in tools  # the one deleted, after 3 confirmations
    # held: the removal twice (pending), Keystone's 401 once (unknown-inventory)
    assert proc.stdout.count("(exit 3)") == 3
    assert "held: unknown-inventory=" in proc.stdout
    assert "inventory: openstack:demo-admin  complete: False" in proc.stdout
    assert "NFS-EXPORTD OK - in sync" in proc.stdout
    assert "172.16.0.19 is instance tools-worker-10" in proc.stdout
    assert "172.16.0.12 is not an address of any instance" in proc.stdout
    assert "baseline" in proc.stdout and "instance-gone" in proc.stdout
    etab = (tmp_path / "demo" / "sandbox" / "lib" / "etab").read_text()
    assert f"{tmp_path / 'demo' / 'srv' / 'tools' / 'home'}\t172.16.0.19(" in etab


def test_demo_renders_and_says_why_when_exportfs_cannot_run(tmp_path: Path) -> None:
    proc = _demo(tmp_path, EXPORTFS_BIN=str(tmp_path / "no-exportfs"))
    assert proc.returncode == 0, proc.stderr
    assert "cannot apply with the real exportfs here" in proc.stdout
    assert "no-exportfs is not installed" in proc.stdout
    assert "# nfs-exportd managed file, do not edit: project=tools" in proc.stdout
    assert not list((tmp_path / "demo" / "sandbox" / "exports.d").glob("*.exports"))
