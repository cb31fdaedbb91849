"""The daemon's commands load only what they use: no command imports the simulator
(``nfs_exportd_sim``, a distribution of its own that production never installs), and the
read-only ones (the Icinga ``check`` runs every minute) do not load ``http.server`` either.

Each command runs as a real process (``python -X importtime -m nfs_exportd.cli``), whose
import log names every module it loaded."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import Lab

FORBIDDEN = ("nfs_exportd_sim", "http.server")


def loaded(lab: Lab, *args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run ``nfs-exportd --config LAB ARGS``; its result and the modules it imported."""
    lab.write()
    command = ["-m", "nfs_exportd.cli", "--config", str(lab.config_path), *args]
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", *command],
        capture_output=True,
        text=True,
        timeout=120,
    )
    modules = {
        line.rsplit("|", 1)[1].strip()
        for line in proc.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    return proc, modules


def forbidden(modules: set[str]) -> list[str]:
    return sorted(m for m in modules for f in FORBIDDEN if m == f or m.startswith(f + "."))


@pytest.fixture
def synced(lab: Lab) -> Lab:
    """A server with one applied cycle, so that status and check have something to say."""
    lab.add_project("tools", 50380)
    lab.add_instance("i-1", "tools", "172.16.0.5")
    assert lab.cli("sync") == 0
    return lab


@pytest.mark.parametrize("command", [["check"], ["plan"], ["plan", "--json"], ["status"]])
def test_read_only_commands_load_no_simulator_and_no_http_server(
    synced: Lab, command: list[str]
) -> None:
    proc, modules = loaded(synced, *command)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    # the log is the command's own: it names the modules that did its work
    own = {
        "check": "nfs_exportd.ops.check",
        "plan": "nfs_exportd.cycle",
        "status": "nfs_exportd.memory.status",
    }
    assert {"nfs_exportd.config", f"nfs_exportd.commands.{command[0]}", own[command[0]]} <= modules
    # and only its own command module
    others = sorted(
        m
        for m in modules
        if m.startswith("nfs_exportd.commands.")
        and m not in {f"nfs_exportd.commands.{command[0]}", "nfs_exportd.commands.common"}
    )
    assert others == [], others
    assert not forbidden(modules), f"'{' '.join(command)}' loaded {forbidden(modules)}"


def test_the_log_would_show_http_server(synced: Lab) -> None:
    """The control: a sync that writes the metrics textfile loads prometheus_client, and
    with it http.server, and the import log shows it (so an empty finding above means
    something).  Still no simulator."""
    synced.config["metrics"] = {"textfile": str(synced.root / "nfs_exportd.prom")}
    root = ["--allow-root"] if os.geteuid() == 0 else []
    proc, modules = loaded(synced, *root, "sync")
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    assert forbidden(modules) == ["http.server"]


@pytest.mark.parametrize("command", ["check", "status"])
def test_check_and_status_load_no_cloud_client_and_no_cycle(synced: Lab, command: str) -> None:
    """They read state_dir only: no cloud client, no read/apply layer, no cycle (the
    Icinga check runs every minute, and must answer when the cloud libraries are broken)."""
    proc, modules = loaded(synced, command)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    heavy = (
        "openstack",
        "keystoneauth1",
        "nfs_exportd.cycle",
        "nfs_exportd.read",
        "nfs_exportd.apply",
    )
    found = sorted(m for m in modules for h in heavy if m == h or m.startswith(h + "."))
    assert found == [], f"'{command}' loaded {found}"


BUS_MODULES = ("oslo_messaging", "oslo_config", "kombu", "amqp", "eventlet")


@pytest.mark.parametrize("command", [["check"], ["status"], ["plan"]])
def test_notifications_on_costs_the_other_commands_nothing(synced: Lab, command: list[str]) -> None:
    """With notifications enabled only ``run`` loads oslo.messaging (and kombu, eventlet):
    the Icinga check, status and plan load none of it (issue 16)."""
    synced.config["notifications"] = {
        "enabled": True,
        "transport_url": "rabbit://nfs:secret-pw@127.0.0.1:5672/",
    }
    proc, modules = loaded(synced, *command)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    found = sorted(m for m in modules for h in BUS_MODULES if m == h or m.startswith(h + "."))
    assert found == [], f"'{' '.join(command)}' loaded {found}"
    assert "secret-pw" not in proc.stdout + proc.stderr
