"""The ``run`` loop as a real process (signals, reload, errors), and sync as a non-root user."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from conftest import HOST, SANDBOX, Lab, require_exportfs, wait_for

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def daemon(lab: Lab) -> Iterator[Callable[[], subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []

    def start() -> subprocess.Popen[str]:
        proc = lab.start_run()
        procs.append(proc)
        return proc

    yield start
    for proc in procs:  # stop only what we started, by its pid
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_run_loop_reloads_survives_errors_and_stops_cleanly(
    lab: Lab, daemon: Callable[[], subprocess.Popen[str]]
) -> None:
    lab.add_project("tools", 50380)
    lab.add_instance("i-1", "tools", "172.16.0.5")
    home = lab.srv("tools", "home")
    proc = daemon()
    wait_for(lambda: lab.in_force() == {(home, "172.16.0.5")}, "first cycle")

    # The inventory changes: a later cycle picks it up without a restart.
    lab.add_instance("i-2", "tools", "172.16.0.6")
    lab.write()
    wait_for(lambda: (home, "172.16.0.6") in lab.in_force(), "second instance exported")

    # SIGHUP with an invalid config: reported as config-invalid, the old config keeps running.
    good_config = lab.config_path.read_text()
    lab.config_path.write_text(good_config + "no_such_key: 1\n")
    proc.send_signal(signal.SIGHUP)
    wait_for(
        lambda: "config-invalid" in str(lab.status().get("holds_by_reason", {})),
        "config-invalid hold",
    )
    assert proc.poll() is None
    lab.add_instance("i-3", "tools", "172.16.0.7")
    (lab.root / "inventory.yaml").write_text(yaml.safe_dump(lab.inventory, sort_keys=False))
    wait_for(lambda: (home, "172.16.0.7") in lab.in_force(), "old config still syncing")

    # A valid config on the next SIGHUP clears the hold.
    lab.config_path.write_text(good_config)
    proc.send_signal(signal.SIGHUP)
    wait_for(lambda: lab.status().get("holds_by_reason") == {}, "config-invalid cleared")

    # A cycle that fails (exports_dir vanished) is logged; the loop goes on.
    moved = lab.root / "moved-exports.d"
    lab.exports_dir.rename(moved)
    wait_for(lambda: lab.status().get("last_cycle", {}).get("result") == "error", "failed cycle")  # type: ignore[union-attr]
    assert proc.poll() is None
    moved.rename(lab.exports_dir)
    wait_for(lambda: lab.status().get("last_cycle", {}).get("result") == "ok", "recovered")  # type: ignore[union-attr]

    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert "exports_dir does not exist" in out
    assert "config-invalid" in out
    assert "stopped" in out


def test_sigterm_lets_the_cycle_in_progress_finish(
    lab: Lab, daemon: Callable[[], subprocess.Popen[str]], tmp_path: Path
) -> None:
    lab.add_project("tools", 50380)
    lab.add_instance("i-1", "tools", "172.16.0.5")
    home = lab.srv("tools", "home")
    # exportfs that takes 2 s: SIGTERM arrives while it runs.
    slow = tmp_path / "slow-exportfs"
    marker = tmp_path / "exportfs-started"
    slow.write_text(f'#!/bin/sh\ntouch {marker}\nsleep 2\nexec {SANDBOX} "$@"\n')
    slow.chmod(0o755)
    lab.config["exportfs_command"] = [str(slow), str(lab.root / "sb")]
    proc = daemon()
    wait_for(marker.exists, "exportfs started")
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert lab.in_force() == {(home, "172.16.0.5")}  # the cycle finished its apply
    assert lab.status().get("last_cycle", {}).get("result") == "ok"  # type: ignore[union-attr]


def _system_python() -> str:
    """An interpreter a non-root user can execute (the venv's may live under /root)."""
    for cand in ("/usr/bin/python3.11", "/usr/bin/python3"):
        if os.access(cand, os.X_OK):
            return cand
    pytest.fail("no system python3.11 for the unprivileged test (Debian package python3)")


def test_sync_works_unprivileged_through_the_command_prefix() -> None:
    """sync as uid 65534 that owns exports_dir and state_dir; only exportfs is privileged
    (here through a user namespace in exportfs-sandbox, in production sudo -n)."""
    require_exportfs()
    if shutil.which("setpriv") is None:
        pytest.fail("setpriv is missing (util-linux)")
    if os.geteuid() != 0:
        pytest.fail("this test switches to uid 65534 and needs to start as root (CI runs as root)")
    root = Path(tempfile.mkdtemp(prefix="nfs-exportd-unpriv-", dir="/tmp"))
    try:
        os.chmod(root, 0o755)
        (root / "sb" / "exports.d").mkdir(parents=True)
        (root / "srv" / "tools" / "home").mkdir(parents=True)
        home = str(root / "srv" / "tools" / "home")
        (root / "projects.yaml").write_text(
            yaml.safe_dump({"tools": {"gid": 50380, "mounts": {"home": f"{HOST}:{home}"}}})
        )
        (root / "inventory.yaml").write_text(
            yaml.safe_dump(
                {
                    "projects": [{"id": "p1", "name": "tools", "enabled": True}],
                    "instances": [
                        {
                            "id": "i-1",
                            "name": "tools-1",
                            "project": "tools",
                            "status": "ACTIVE",
                            "addresses": ["172.16.0.5"],
                        }
                    ],
                }
            )
        )
        (root / "config.yaml").write_text(
            yaml.safe_dump(
                {
                    "projects_file": "projects.yaml",
                    "serve": {"hosts": [HOST], "roots": [str(root / "srv")]},
                    "inventory": {"source": "static", "file": "inventory.yaml"},
                    "exports_dir": "sb/exports.d",
                    "state_dir": "state",
                    "etab_file": "sb/lib/etab",
                    "exportfs_command": [str(SANDBOX), str(root / "sb")],
                    "maintenance_file": "maintenance",
                }
            )
        )
        (root / "state").mkdir()
        for dirpath, dirnames, filenames in os.walk(root):
            for name in [*dirnames, *filenames]:
                os.chown(os.path.join(dirpath, name), 65534, 65534)
        site = next((REPO / ".venv" / "lib").glob("python3*/site-packages"))
        env = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "PYTHONPATH": f"{REPO / 'src'}:{site}",
            "HOME": "/nonexistent",
        }
        cmd = [
            "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
            _system_python(), "-m", "nfs_exportd.cli", "--config", str(root / "config.yaml"),
        ]  # fmt: skip
        proc = subprocess.run(
            [*cmd, "sync"], env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert proc.returncode == 0, proc.stderr
        assert "sync ok" in proc.stdout
        etab = (root / "sb" / "lib" / "etab").read_text()
        assert f"{home}\t172.16.0.5(" in etab
        assert (root / "sb" / "exports.d" / "tools.exports").stat().st_uid == 65534
        # the lock and the counters belong to the unprivileged user too
        assert (root / "state" / "counters.json").stat().st_uid == 65534
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_a_second_run_is_refused_but_a_sync_runs_between_cycles(
    lab: Lab, daemon: Callable[[], subprocess.Popen[str]]
) -> None:
    """``run`` holds run.lock for its life (one daemon per state_dir) and the state lock
    only during a cycle, so a sync (or rollback, release, adopt) runs between cycles."""
    lab.config["interval_seconds"] = 30  # long sleeps: the state lock is free meanwhile
    lab.add_project("tools", 50380)
    lab.add_instance("i-1", "tools", "172.16.0.5")
    home = lab.srv("tools", "home")
    first = daemon()
    wait_for(lambda: lab.in_force() == {(home, "172.16.0.5")}, "first cycle")
    second = daemon()
    out, _ = second.communicate(timeout=30)
    assert second.returncode == 1, out
    assert f"(pid {first.pid}) is running the run loop" in out
    lab.add_instance("i-2", "tools", "172.16.0.6")
    assert lab.cli("sync") == 0  # between the daemon's cycles
    assert (home, "172.16.0.6") in lab.in_force()
    assert first.poll() is None
    first.send_signal(signal.SIGTERM)
    out, _ = first.communicate(timeout=30)
    assert first.returncode == 0, out
