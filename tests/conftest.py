"""Shared fixtures: a lab directory with config, projects file, static inventory, served
paths, and the real exportfs running in a private mount namespace (exportfs-sandbox).

Nothing here mocks exportfs: a test that needs it fails loudly if it cannot run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from nfs_exportd.cli import main
from nfs_exportd_sim.sandbox import SANDBOX

HOST = "nfs-1.svc.example"


def require_exportfs() -> None:
    if not Path("/usr/sbin/exportfs").exists():
        pytest.fail("/usr/sbin/exportfs is missing: run 'make test' (installs nfs-kernel-server)")
    if shutil.which("unshare") is None:
        pytest.fail("unshare is missing (util-linux)")


@dataclass
class Lab:
    """A scratch server: ``root/`` holds config.yaml, projects.yaml, inventory.yaml,
    ``sb/`` (the exportfs sandbox: sb/exports.d is exports_dir, sb/lib/etab the etab),
    ``state/`` and ``srv/`` (the exported paths)."""

    root: Path
    config: dict[str, Any] = field(default_factory=dict)
    projects: dict[str, Any] = field(default_factory=dict)
    inventory: dict[str, Any] = field(default_factory=dict)

    @property
    def config_path(self) -> Path:
        return self.root / "config.yaml"

    @property
    def exports_dir(self) -> Path:
        return self.root / "sb" / "exports.d"

    @property
    def etab(self) -> Path:
        return self.root / "sb" / "lib" / "etab"

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    def srv(self, *parts: str) -> str:
        """An exported path under this lab (created)."""
        p = self.root.joinpath("srv", *parts)
        p.mkdir(parents=True, exist_ok=True)
        return str(p)

    def write(self) -> None:
        """Write the lab's files.  The lab runs cycles back to back, so unless a test sets
        ``safety.confirmation_spacing_seconds`` every complete cycle counts (0)."""
        config = dict(self.config)
        safety = config.get("safety", {})
        if isinstance(safety, dict) and "confirmation_spacing_seconds" not in safety:
            config["safety"] = {**safety, "confirmation_spacing_seconds": 0}
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        (self.root / "projects.yaml").write_text(yaml.safe_dump(self.projects, sort_keys=False))
        (self.root / "inventory.yaml").write_text(yaml.safe_dump(self.inventory, sort_keys=False))

    def add_project(self, name: str, gid: int, volumes: dict[str, str] | None = None) -> None:
        """Project with volumes served here (paths under srv/NAME/VOLUME by default)."""
        volumes = volumes if volumes is not None else {"home": self.srv(name, "home")}
        self.projects[name] = {
            "gid": gid,
            "mounts": {v: f"{HOST}:{p}" for v, p in volumes.items()},
        }
        self.inventory["projects"].append({"id": f"id-{name}", "name": name, "enabled": True})

    def add_instance(self, iid: str, project: str, *addresses: str, status: str = "ACTIVE") -> None:
        self.inventory["instances"].append(
            {
                "id": iid,
                "name": f"{project}-{iid}",
                "project": project,
                "status": status,
                "addresses": list(addresses),
            }
        )

    def remove_instance(self, iid: str) -> None:
        self.inventory["instances"] = [i for i in self.inventory["instances"] if i["id"] != iid]

    def cli(self, *args: str, allow_root: bool = True) -> int:
        """Run the CLI in-process with this lab's config; returns the exit code."""
        self.write()
        pre = ["--config", str(self.config_path)]
        if allow_root and os.geteuid() == 0:
            pre.append("--allow-root")
        return main([*pre, *args])

    def files(self) -> dict[str, str]:
        return {p.name: p.read_text() for p in sorted(self.exports_dir.glob("*.exports"))}

    def in_force(self) -> set[tuple[str, str]]:
        """(path, client) pairs in the etab the real exportfs keeps."""
        if not self.etab.exists():
            return set()
        out = set()
        for line in self.etab.read_text().splitlines():
            if line.strip():
                path, _, rest = line.rpartition("\t")
                out.add((path, rest.partition("(")[0]))
        return out

    def status(self) -> dict[str, Any]:
        """state_dir/status.json as the daemon last wrote it ({} before the first cycle)."""
        try:
            return dict(json.loads((self.state_dir / "status.json").read_text()))
        except (FileNotFoundError, ValueError):
            return {}

    def start_run(self, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        """``nfs-exportd run`` as a real process; the caller stops it (SIGTERM, by pid)."""
        self.write()
        return subprocess.Popen(
            [sys.executable, "-m", "nfs_exportd.cli", "--config", str(self.config_path)]
            + (["--allow-root"] if os.geteuid() == 0 else [])
            + ["run"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **(env or {})},
        )

    def exportfs(self, *args: str) -> None:
        """Run the sandboxed exportfs directly (e.g. to set up a state by hand)."""
        subprocess.run([str(SANDBOX), str(self.root / "sb"), *args], check=True, timeout=60)


def finished(lab: Lab) -> float:
    """When the last cycle ended (status.json), 0.0 before the first one."""
    last = lab.status().get("last_cycle")
    return float(last.get("finished") or 0.0) if isinstance(last, dict) else 0.0


def watch_held(
    lab: Lab, before: set[tuple[str, str]], cycles: int, timeout: float = 30
) -> list[dict[str, Any]]:
    """Sample the etab and status.json of a running daemon until ``cycles`` new cycles
    have ended: every sample must show exactly ``before`` (nothing is lost while the
    control plane is sick).  Returns the statuses of those cycles, in order."""
    start = finished(lab)
    seen: dict[float, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    while len(seen) < cycles:
        assert lab.in_force() == before, "pairs changed while the cloud could not be read"
        st = lab.status()
        fin = st.get("last_cycle", {}).get("finished")
        if fin is not None and fin > start and fin not in seen:
            seen[fin] = st
        if time.monotonic() > deadline:
            raise AssertionError(
                f"only {len(seen)} of {cycles} cycles ended within {timeout:g} s: the run "
                f"loop stopped cycling (hung?); last status: {json.dumps(st)[:600]}"
            )
        time.sleep(0.05)
    return [seen[k] for k in sorted(seen)]


def use_sim_cloud(lab: Lab, sim: Any, monkeypatch: pytest.MonkeyPatch, admin_pw: str) -> None:
    """Point ``lab``'s config at the simulated cloud ``sim`` (a started SimCloud) in
    all-projects mode: clouds.yaml entries ``nfs`` (the project-scoped admin, password
    ``admin_pw``) and ``nfs-observer-system`` (a system-scoped reader for Keystone)."""
    sim.clouds_yaml(
        lab.root / "clouds.yaml",
        {
            "nfs": {"user": "admin", "password": admin_pw, "project": "admin"},
            "nfs-observer-system": {
                "user": "observer",
                "password": "obs-pw",
                "system_scope": "all",
            },
        },
    )
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(lab.root / "clouds.yaml"))
    lab.config["inventory"] = {
        "source": "openstack",
        "cloud": "nfs",
        "identity_cloud": "nfs-observer-system",
        "timeout_seconds": 5,
    }


def wait_for(cond: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    require_exportfs()
    root = tmp_path.resolve() / "lab"  # real paths: a symlink in them is path-unsafe
    (root / "sb" / "exports.d").mkdir(parents=True)
    lab = Lab(root)
    lab.config = {
        "projects_file": "projects.yaml",
        "serve": {"hosts": [HOST], "roots": [str(root / "srv")]},
        "inventory": {"source": "static", "file": "inventory.yaml"},
        "exports_dir": str(lab.exports_dir),
        "state_dir": str(lab.state_dir),
        "etab_file": str(lab.etab),
        "exportfs_command": [str(SANDBOX), str(root / "sb")],
        "exportfs_timeout_seconds": 30,
        "maintenance_file": str(root / "maintenance"),
        "interval_seconds": 1,
        "safety": {"removal_confirmations": 3, "max_removal_fraction": 0.25},
    }
    lab.inventory = {"projects": [], "instances": []}
    yield lab
