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

from conftest import Lab, use_sim_cloud, wait_for
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
        use_sim_cloud(lab, sim, monkeypatch, ADMIN_PW)
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
    prom = site.lab.root / "nfs_exportd.prom"
    site.lab.config["metrics"] = {"textfile": str(prom)}
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
    assert PASSWORD not in site.log()
    metrics = prom.read_text()
    for line in (
        "nfs_exportd_bus_connected 1.0",
        'nfs_exportd_notifications_total{event_type="compute.instance.create.end"} 1.0',
        'nfs_exportd_early_cycles_total{trigger="notification"} 1.0',
    ):
        assert line in metrics, metrics
    assert "nfs_exportd_last_notification_timestamp_seconds 0.0" not in metrics


EVENTS = [  # (exchange, topic, event type, payload) as the services publish them
    ("nova", "notifications", "compute.instance.create.end", {"instance_id": "x"}),
    ("nova", "notifications", "compute.instance.update", {"instance_id": "x", "state": "active"}),
    ("nova", "notifications", "compute.instance.delete.end", {"instance_id": "x"}),
    ("nova", "versioned_notifications", "instance.create.end", {"nova_object.data": {}}),
    ("nova", "versioned_notifications", "instance.update", {"nova_object.data": {}}),
    ("nova", "versioned_notifications", "instance.delete.end", {"nova_object.data": {}}),
    ("neutron", "notifications", "port.create.end", {"port": {"id": "p"}}),
    ("neutron", "notifications", "port.update.end", {"port": {"id": "p"}}),
    ("neutron", "notifications", "port.delete.end", {"port_id": "p"}),
    ("keystone", "notifications", "identity.project.created", {"resource_info": "x"}),
    ("keystone", "notifications", "identity.project.updated", {"resource_info": "x"}),
    ("keystone", "notifications", "identity.project.deleted", {"resource_info": "x"}),
]  # fmt: skip


def test_each_event_type_triggers_a_cycle_and_others_are_counted_not_acted_on(
    site: Site,
) -> None:
    site.start(topics=["notifications", "versioned_notifications"])
    started(site)
    for exchange, topic, event_type, payload in EVENTS:
        before = early_cycles(site)
        site.cloud.notify(exchange, event_type, payload, topic=topic)
        wait_for(lambda b=before: early_cycles(site) > b, f"an early cycle after {event_type}", 8)
    events = site.triggers()["bus"]["events"]
    assert set(events) == {e[2] for e in EVENTS}, events
    # other event types are counted and ignored: no cycle
    before = early_cycles(site)
    site.cloud.notify("nova", "compute.instance.exists", {"instance_id": "x"})
    site.cloud.notify("neutron", "network.create.end", {"network": {}})
    wait_for(lambda: site.triggers()["bus"]["ignored"] >= 2, "the ignored events counted", 8)
    time.sleep(1.0)  # longer than debounce + gap: a cycle would have started
    assert early_cycles(site) == before


def test_a_second_consumer_gets_its_own_copy(site: Site) -> None:
    """The daemon listens in a pool of its own: another consumer (here a second
    oslo.messaging listener in another pool, as ceilometer would be) still gets every
    message."""
    import oslo_messaging
    from oslo_config import cfg

    conf = cfg.ConfigOpts()
    conf([], project="other-consumer", default_config_files=[], default_config_dirs=[])
    got: list[str] = []

    class Endpoint:
        def info(self, ctxt: Any, publisher_id: str, event_type: str, payload: Any,
                 metadata: Any) -> None:  # fmt: skip
            got.append(event_type)

    transport = oslo_messaging.get_notification_transport(conf, url=site.broker.url)
    other = oslo_messaging.get_notification_listener(
        transport,
        [oslo_messaging.Target(topic="notifications", exchange="nova")],
        [Endpoint()],
        executor="threading",
        pool="ceilometer-like",
    )
    other.start()
    try:
        site.start()
        started(site)
        site.cloud.create_server("tools-2", "tools", addresses=["172.16.0.9"])
        wait_for(lambda: (site.tools, "172.16.0.9") in site.lab.in_force(), "the export", 8)
        wait_for(lambda: "compute.instance.create.end" in got, "the other consumer's copy", 8)
        wait_for(lambda: bool(site.triggers()["bus"]["events"]), "the count saved", 8)
        events = site.triggers()["bus"]["events"]
        assert events.get("compute.instance.create.end") == 1, events
    finally:
        other.stop()
        other.wait()
        transport.cleanup()


def test_reused_address_leaves_the_old_project_within_seconds(site: Site) -> None:
    site.start()
    started(site)
    assert (site.paws, "172.16.0.7") in site.lab.in_force()
    site.cloud.move_ip("172.16.0.7", "t1")  # paws-1's address now on a tools server
    took = within(
        10,
        lambda: (
            (site.paws, "172.16.0.7") not in site.lab.in_force()
            and (site.tools, "172.16.0.7") in site.lab.in_force()
        ),
        "the conflict removal",
    )
    assert took < 5, site.log()


def test_malformed_messages_change_nothing_and_are_counted(site: Site) -> None:
    site.start()
    started(site)
    before = site.lab.in_force()
    bus = site.cloud.bus
    assert bus is not None
    bus.raw("nova", "notifications.info", b"\x00not json at all")
    bus.raw("nova", "notifications.info", json.dumps({"oslo.version": "9.0", "oslo.message": "{}"}))
    bus.raw("neutron", "notifications.info", json.dumps({"oslo.version": "2.0",
            "oslo.message": json.dumps({"event_type": 42, "payload": "x"})}))  # fmt: skip
    bus.raw("keystone", "notifications.info", json.dumps({"event_type": "port.update.end"}))
    wait_for(lambda: site.triggers().get("bus", {}).get("malformed", 0) >= 1, "counted", 8)
    assert site.lab.in_force() == before
    assert site.proc is not None and site.proc.poll() is None
    # and the listener still works
    site.cloud.create_server("tools-2", "tools", addresses=["172.16.0.9"])
    wait_for(lambda: (site.tools, "172.16.0.9") in site.lab.in_force(), "the export", 8)
    assert site.bus_state() == "connected"


def test_a_storm_costs_a_bounded_number_of_cycles(site: Site) -> None:
    """2,000 notifications in a few seconds: at most one early cycle per
    ``min_gap_seconds`` (+1 for the debounce window and one for a trigger that came
    during the last cycle)."""
    site.lab.config["early_cycles"] = {"debounce_seconds": 0.2, "min_gap_seconds": 1.0}
    site.start()
    started(site)
    before = early_cycles(site)
    t0 = time.monotonic()
    payload = {"port": {"id": "p"}}
    for _ in range(2000):
        site.cloud.notify("neutron", "port.update.end", payload)
    wait_for(
        lambda: site.triggers().get("bus", {}).get("events", {}).get("port.update.end", 0) >= 2000,
        "all 2,000 received",
        30,
    )
    took = time.monotonic() - t0
    time.sleep(2.5)  # let the last early cycle run
    cycles = early_cycles(site) - before
    assert 1 <= cycles <= int(took / 1.0) + 3, (cycles, took)


def test_early_cycles_never_confirm_a_removal_faster_than_the_interval(site: Site) -> None:
    """Two confirmations, spacing 30 s (half the interval): a dozen early cycles in a few
    seconds after the instance is gone count as one confirmation at most."""
    site.lab.config["safety"] = {"removal_confirmations": 2, "confirmation_spacing_seconds": 30}
    site.start()
    started(site)
    time.sleep(0.6)
    site.cloud.delete_server("t1")
    for _ in range(6):
        before = early_cycles(site)
        site.cloud.notify("nova", "compute.instance.delete.end", {"instance_id": "t1"})
        wait_for(lambda b=before: early_cycles(site) > b, "an early cycle", 8)
    assert (site.tools, "172.16.0.5") in site.lab.in_force()
    holds = site.lab.status()["holds_by_reason"]
    assert holds.get("pending-confirmation", 0) >= 1, holds


def test_broker_restarted_mid_run(site: Site) -> None:
    """The daemon keeps its interval while the bus is gone, loses nothing, reconnects by
    itself, and notifications bring cycles forward again."""
    site.lab.config["interval_seconds"] = 3
    site.start()
    started(site)
    before = site.lab.in_force()
    site.broker.stop()
    wait_for(lambda: site.bus_state() == "disconnected", "the listener to notice", 15)
    cycles = site.lab.status()["last_cycle"]["finished"]
    wait_for(lambda: site.lab.status()["last_cycle"]["finished"] > cycles, "a regular cycle", 8)
    assert site.lab.in_force() == before
    site.broker.start()
    wait_for(lambda: site.bus_state() == "connected", "the listener to reconnect", 20)
    site.lab.config["interval_seconds"] = INTERVAL
    site.cloud.create_server("tools-2", "tools", addresses=["172.16.0.9"])
    wait_for(lambda: (site.tools, "172.16.0.9") in site.lab.in_force(), "the export", 8)
    log = site.log()
    assert log.count("notifications: disconnected") == 1, log
    assert log.count("notifications: connected") == 2, log


def test_bus_down_from_the_start_keeps_the_interval(site: Site) -> None:
    from rabbit_lab.broker import free_port

    site.lab.config["interval_seconds"] = 2
    site.start(
        transport_url=f"rabbit://nfs-exportd:{PASSWORD}@127.0.0.1:{free_port()}/nfs-test",
        warning_after_seconds=1,
    )
    wait_for(lambda: site.bus_state() == "disconnected", "the listener to give up a try", 15)
    first = site.lab.status()["last_cycle"]["finished"]
    wait_for(lambda: site.lab.status()["last_cycle"]["finished"] > first, "a regular cycle", 8)
    assert (site.tools, "172.16.0.5") in site.lab.in_force()
    time.sleep(1.1)
    assert site.lab.cli("check") == 1
    assert PASSWORD not in site.log()


def test_wrong_credentials_are_named_in_status_and_check(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    url = site.broker.transport_url(password="wrong-bus-pw")
    site.start(transport_url=url, warning_after_seconds=1)
    wait_for(lambda: site.bus_state() == "refused", "the refusal", 15)
    assert (site.tools, "172.16.0.5") in site.lab.in_force()  # cycles go on
    time.sleep(1.1)
    capsys.readouterr()
    assert site.lab.cli("status") == 0
    out = capsys.readouterr().out
    assert "refused our credentials" in out and "notifications.transport_url" in out, out
    assert site.lab.cli("check") == 1
    check_line = capsys.readouterr().out
    assert "refuses our credentials" in check_line, check_line
    assert site.lab.cli("status", "--json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["triggers"]["bus"]["state"] == "refused"
    for text in (site.log(), out, check_line, json.dumps(doc)):
        assert "wrong-bus-pw" not in text
    assert site.log().count("notifications: refused") == 1, site.log()
