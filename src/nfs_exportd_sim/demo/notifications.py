"""The demo's notification step: ``nfs-exportd run`` listening to the cloud's message bus.

A real RabbitMQ (Debian's rabbitmq-server, ``nfs_exportd_sim.rabbit``: its own node,
port, data directory and cookie), the simulated cloud publishing the notifications Nova
and Neutron publish (oslo.messaging's Notifier), and the daemon as a real process with
``notifications.enabled``: an instance is created, and its address is in force within
seconds, long before the next regular cycle (``interval_seconds`` 60).  Without
rabbitmq-server the step says in one line that it is skipped and why.  Everything it
starts is stopped by pid, also on an error or Ctrl-C.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from nfs_exportd import yamlsafe

from ..cloud import SimCloud
from ..rabbit import RABBITMQ_SERVER, Broker, BrokerFailed, launch


def banner(text: str) -> None:
    print(f"\n=== {text}", flush=True)


def _wait(cond: Any, timeout: float) -> float | None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if cond():
            return time.monotonic() - t0
        time.sleep(0.05)
    return None


def _bus_state(state_dir: Path) -> str:
    try:
        return str(json.loads((state_dir / "triggers.json").read_text())["bus"]["state"])
    except (OSError, ValueError, KeyError):
        return ""


def show_notifications(root: Path, sim: SimCloud) -> None:
    banner("8. run with notifications: the cloud's message bus brings the next cycle forward")
    logging.getLogger("oslo_service").setLevel(logging.CRITICAL)  # its backend notices
    if not RABBITMQ_SERVER.exists():
        print(
            f"notifications step skipped: {RABBITMQ_SERVER} is missing (make system-deps as root)"
        )
        return
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import oslo_messaging  # noqa: F401
    except Exception as exc:  # e.g. a system python mixing its own OpenSSL bindings in
        why = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
        print(f"notifications step skipped: oslo.messaging cannot be imported here ({why})")
        return
    try:
        broker = launch()
    except BrokerFailed as exc:
        print(f"notifications step skipped: RabbitMQ did not start: {str(exc)[:300]}")
        return
    proc: subprocess.Popen[str] | None = None
    try:
        proc = _run(root, sim, broker)
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        broker.close()
        bus, sim.bus = sim.bus, None
        if bus is not None:
            bus.close()


def _run(root: Path, sim: SimCloud, broker: Broker) -> subprocess.Popen[str]:
    sim.connect_bus(broker.url)
    cfg: Any = yamlsafe.loads((root / "config.yaml").read_text(), "config.yaml")
    cfg["notifications"] = {
        "enabled": True,
        "transport_url": broker.url,
        "pool": "nfs-exportd-demo",
    }
    config = root / "config-notifications.yaml"
    config.write_text(json.dumps(cfg, indent=1))  # JSON is YAML
    print(f"RabbitMQ on 127.0.0.1:{broker.port} (its own node, data directory and cookie)")
    print("config-notifications.yaml: the demo's config plus")
    print(f"  notifications: {{enabled: true, transport_url: rabbit://nfs-exportd:***@127.0.0.1:"
          f"{broker.port}/nfs-test, pool: nfs-exportd-demo}}")  # fmt: skip
    cmd = [sys.executable, "-m", "nfs_exportd.cli", "--config", str(config)]
    cmd += ["--allow-root"] if os.geteuid() == 0 else []
    print(f"$ nfs-exportd --config {config.name} run &", flush=True)
    log = (root / "run-notifications.log").open("w")
    proc = subprocess.Popen([*cmd, "run"], stdout=log, stderr=subprocess.STDOUT, text=True)
    state = root / "state"
    if _wait(lambda: _bus_state(state) == "connected", 60) is None:
        print(f"the listener did not connect within 60 s; see {root / 'run-notifications.log'}")
        return proc
    time.sleep(1.0)
    etab = root / "sandbox" / "lib" / "etab"
    path = str(root / "srv" / "tools" / "home")

    def in_force() -> bool:
        for line in etab.read_text().splitlines():
            p, _, rest = line.rpartition("\t")
            if p == path and rest.partition("(")[0] == "172.16.0.20":
                return True
        return False

    t0 = time.monotonic()
    sim.create_server("tools-worker-11", "tools", addresses=["172.16.0.20"])
    print("the cloud: tools-worker-11 (172.16.0.20) created; Nova and Neutron publish "
          "compute.instance.create.end and port.create.end")  # fmt: skip
    if _wait(in_force, 30) is None:
        print("-> not exported within 30 s: see " + str(root / "run-notifications.log"))
    else:
        took = time.monotonic() - t0  # from before the change
        print(f"-> 172.16.0.20 may mount {path} after {took:.1f} s, through a notification "
              "(the next regular cycle was up to 60 s away)")  # fmt: skip
    time.sleep(0.5)
    lines = (root / "run-notifications.log").read_text().splitlines()
    shown = [
        ln for ln in lines if "notifications:" in ln or "early cycle" in ln or "172.16.0.20" in ln
    ]
    print("the daemon's log:")
    for line in shown[:8]:
        print(f"  {line}")
    return proc
