"""The cloud's notifications as a trigger, over a real RabbitMQ (``tests/rabbit_lab``):
the simulated cloud publishes what Nova, Neutron and Keystone publish, with
oslo.messaging's own Notifier; ``nfs-exportd run`` listens with oslo.messaging's
notification listener in a pool of its own, and runs a full cycle early.

A notification is never evidence: every test checks the exports against what the
listing says, and the confirmation spacing holds for early cycles too.  The daemon runs
as a real process (``run``), the exportfs is the real one (sandboxed).
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from conftest import Lab, wait_for
from nfs_exportd_sim import SimCloud
from rabbit_lab.broker import PASSWORD, Broker

pytest_plugins = ("rabbit_lab.plugin",)

ADMIN_PW = "admin-pw"
INTERVAL = 60  # the regular interval: far beyond every wait below, so a cycle within
# a few seconds can only be an early one
SCENARIO = {
    "regions": ["RegionOne"],
    "projects": [{"name": "admin"}, {"name": "tools"}, {"name": "paws"}],
    "users": [
        {"name": "admin", "password": ADMIN_PW, "roles": [{"role": "admin", "project": "admin"}]},
        {"name": "observer", "password": "obs-pw", "roles": [{"role": "reader", "system": "all"}]},
    ],
    "servers": [
        {"id": "t1", "name": "tools-1", "project": "tools", "addresses": ["172.16.0.5"]},
        {"id": "p1", "name": "paws-1", "project": "paws", "addresses": ["172.16.0.7"]},
    ],
}  # fmt: skip


@dataclass
class Site:
    lab: Lab
    cloud: SimCloud
    broker: Broker
    proc: subprocess.Popen[str] | None = None
    output: list[str] = field(default_factory=list)

    @property
    def tools(self) -> str:
        return self.lab.srv("tools", "home")

    @property
    def paws(self) -> str:
        return self.lab.srv("paws", "home")

    def start(self, **notifications: Any) -> None:
        cfg = self.lab.config
        cfg["notifications"] = {
            "enabled": True,
            "transport_url": self.broker.url,
            "pool": "nfs-exportd-test",
            "retry_max_seconds": 2,
            **notifications,
        }
        clouds = str(self.lab.root / "clouds.yaml")
        self.proc = self.lab.start_run({"OS_CLIENT_CONFIG_FILE": clouds})
        out = self.proc.stdout
        assert out is not None

        def drain() -> None:
            for line in out:
                self.output.append(line)

        threading.Thread(target=drain, daemon=True).start()

    def log(self) -> str:
        return "".join(self.output)

    def triggers(self) -> dict[str, Any]:
        try:
            return dict(json.loads((self.lab.state_dir / "triggers.json").read_text()))
        except (FileNotFoundError, ValueError):
            return {}

    def bus_state(self) -> str:
        return str(self.triggers().get("bus", {}).get("state", ""))

    def cycles(self) -> int:
        return (
            self.log().count("INFO sync:")
            + self.log().count("INFO held:")
            + self.log().count("INFO ok:")
        )

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


@pytest.fixture
def site(lab: Lab, broker: Broker, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    sim = SimCloud(SCENARIO, bus_url=broker.url)
    sim.start()
    s = Site(lab, sim, broker)
    try:
        sim.clouds_yaml(
            lab.root / "clouds.yaml",
            {
                "nfs": {"user": "admin", "password": ADMIN_PW, "project": "admin"},
                "nfs-observer-system": {
                    "user": "observer", "password": "obs-pw", "system_scope": "all",
                },
            },
        )  # fmt: skip
        monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(lab.root / "clouds.yaml"))
        lab.config["inventory"] = {
            "source": "openstack",
            "cloud": "nfs",
            "identity_cloud": "nfs-observer-system",
            "timeout_seconds": 5,
        }
        lab.config["interval_seconds"] = INTERVAL
        lab.config["early_cycles"] = {"debounce_seconds": 0.2, "min_gap_seconds": 0.5}
        lab.add_project("tools", 50380)
        lab.add_project("paws", 52771)
        yield s
    finally:
        s.stop()
        sim.stop()


def started(s: Site) -> None:
    """The daemon's first cycle is done and its listener connected."""
    wait_for(lambda: s.lab.status().get("last_cycle") is not None, "the first cycle", 30)
    wait_for(lambda: s.bus_state() == "connected", "the listener to connect", 30)


def early_cycles(s: Site) -> int:
    return int(s.triggers().get("early_cycles", 0))


def within(seconds: float, cond: Callable[[], bool], what: str) -> float:
    t0 = time.monotonic()
    wait_for(cond, what, seconds)
    return time.monotonic() - t0


def test_new_instance_is_exported_within_seconds_through_a_notification(site: Site) -> None:
    site.start()
    started(site)
    assert (site.tools, "172.16.0.5") in site.lab.in_force()
    site.cloud.create_server("tools-2", "tools", addresses=["172.16.0.9"])
    took = within(10, lambda: (site.tools, "172.16.0.9") in site.lab.in_force(), "the export")
    assert took < 5, site.log()
    wait_for(lambda: early_cycles(site) >= 1, "triggers.json to count the early cycle", 5)
    events = site.triggers()["bus"]["events"]
    assert events.get("compute.instance.create.end", 0) >= 1, events
    assert events.get("port.create.end", 0) >= 1, events
    assert "rabbit-secret" not in site.log() and PASSWORD not in site.log()
