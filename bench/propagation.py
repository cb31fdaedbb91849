"""Propagation: how long a change in the cloud takes to be in force on the NFS server,
with notifications, with change polling, and with plain polling (issue 16, "Goals").

    .venv/bin/python bench/propagation.py [--projects 1000] [--instances 10000]
                                          [--samples 20] [--plain-samples 6] [--quick]

One simulated cloud (``nfs_exportd_sim``, 2 regions) publishing its notifications on a
real RabbitMQ (Debian's rabbitmq-server, started here on a free 127.0.0.1 port), and the
real daemon (``nfs-exportd run``, a process of its own, the real exportfs in its
sandbox) serving the home volumes of two projects of the cloud.  For each variant:

* **new instance**: a server created in project A; latency = until its address is in
  the etab for A's volume;
* **address reused**: an address of a server of project B moved to a server of A;
  latency = until the etab no longer has it for B's volume (``ip-conflict``);

both made at the same moment, the samples spaced at random (so that they land at every
phase of the cycle).
Variants: ``notifications`` (the defaults of ``early_cycles``), ``change-polling``
(``poll_seconds`` 5, no bus), ``plain`` (``interval_seconds`` 60, nothing else).
Then the **storm**: 10,000 notifications within a minute, with the cycles and the
control-plane requests counted; and the cost of change polling while nothing changes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
HOST = "nfs-1.svc.example"
REGIONS = ("RegionOne", "RegionTwo")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def p95(values: list[float]) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(0.95 * len(s)) - 1))] if s else float("nan")


def stats(values: list[float]) -> dict[str, float]:
    s = sorted(values)
    if not s:
        return {"n": 0}
    return {
        "n": len(s),
        "min": round(s[0], 2),
        "p50": round(s[len(s) // 2], 2),
        "p95": round(p95(s), 2),
        "max": round(s[-1], 2),
    }


_ETAB_CACHE: dict[Path, tuple[tuple[int, int], set[tuple[str, str]]]] = {}


def etab_pairs(etab: Path) -> set[tuple[str, str]]:
    """(path, client) pairs in force; parsed again only when the file changed (the
    watcher must not take the CPU the daemon and the simulator need)."""
    try:
        st = etab.stat()
        key = (st.st_mtime_ns, st.st_size)
        cached = _ETAB_CACHE.get(etab)
        if cached is not None and cached[0] == key:
            return cached[1]
        text = etab.read_text()
    except FileNotFoundError:
        return set()
    out = set()
    for line in text.splitlines():
        if line.strip():
            path, _, rest = line.rpartition("\t")
            out.add((path, rest.partition("(")[0]))
    _ETAB_CACHE[etab] = (key, out)
    return out


def wait_until(cond: Callable[[], bool], timeout: float) -> float | None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if cond():
            return time.monotonic() - t0
        time.sleep(0.02)
    return None


class Site:
    """The cloud, the broker and the daemon's files in ``work``."""

    def __init__(self, work: Path, projects: int, instances: int) -> None:
        from nfs_exportd_sim import ADMIN_PASSWORD, OBSERVER_PASSWORD, SimCloud, generate
        from nfs_exportd_sim.rabbit import launch

        self.work = work
        t0 = time.monotonic()
        self.broker = launch()
        log(f"broker up in {time.monotonic() - t0:.1f} s")
        self.cloud = SimCloud(
            generate(projects, instances, regions=REGIONS, seed=16), bus_url=self.broker.url
        )
        self.cloud.start()
        st = self.cloud.state
        with st.lock:
            by_project: dict[str, list[str]] = {}
            for s in st.servers.values():
                if s.region == REGIONS[0]:
                    by_project.setdefault(s.project_id, []).append(s.id)
            names = {p.id: p.name for p in st.projects.values()}
        ranked = sorted(by_project, key=lambda pid: -len(by_project[pid]))
        self.a, self.b = names[ranked[0]], names[ranked[1]]
        self.a_servers = by_project[ranked[0]]
        self.b_servers = list(by_project[ranked[1]])
        self.srv = work / "srv"
        self.sandbox = work / "sb"
        (self.sandbox / "exports.d").mkdir(parents=True)
        for p in (self.a, self.b):
            (self.srv / p / "home").mkdir(parents=True)
        (work / "projects.yaml").write_text(
            yaml.safe_dump(
                {
                    p: {"gid": 50000 + i, "mounts": {"home": f"{HOST}:{self.srv / p / 'home'}"}}
                    for i, p in enumerate((self.a, self.b))
                }
            )
        )
        self.cloud.clouds_yaml(
            work / "clouds.yaml",
            {
                "nfs": {"user": "admin", "password": ADMIN_PASSWORD, "project": "admin"},
                "nfs-observer": {
                    "user": "observer", "password": OBSERVER_PASSWORD, "system_scope": "all",
                },
            },
        )  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def etab(self) -> Path:
        return self.sandbox / "lib" / "etab"

    def path(self, project: str) -> str:
        return str(self.srv / project / "home")

    def start_daemon(self, variant: str, extra: dict[str, Any] | None = None) -> None:
        from nfs_exportd_sim.sandbox import SANDBOX

        state = self.work / f"state-{variant}"
        config: dict[str, Any] = {
            "projects_file": "projects.yaml",
            "serve": {"hosts": [HOST], "roots": [str(self.srv)]},
            "inventory": {
                "source": "openstack",
                "cloud": "nfs",
                "identity_cloud": "nfs-observer",
                "timeout_seconds": 30,
            },
            "exports_dir": str(self.sandbox / "exports.d"),
            "state_dir": str(state),
            "etab_file": str(self.etab),
            "exportfs_command": [str(SANDBOX), str(self.sandbox)],
            "maintenance_file": str(self.work / "maintenance"),
            "interval_seconds": 60,
            "metrics": {"textfile": str(self.work / f"{variant}.prom")},
        }
        if variant == "notifications":
            config["notifications"] = {
                "enabled": True,
                "transport_url": self.broker.url,
                "pool": "nfs-exportd-bench",
            }
        elif variant == "change-polling":
            config["change_polling"] = {"enabled": True}
        config.update(extra or {})
        path = self.work / f"config-{variant}.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        env = {**os.environ, "OS_CLIENT_CONFIG_FILE": str(self.work / "clouds.yaml")}
        cmd = [sys.executable, "-m", "nfs_exportd.cli", "--config", str(path)]
        cmd += ["--allow-root"] if os.geteuid() == 0 else []
        out = (self.work / f"daemon-{variant}.log").open("wb")
        self.proc = subprocess.Popen([*cmd, "run"], stdout=out, stderr=subprocess.STDOUT, env=env)
        status = state / "status.json"
        if wait_until(lambda: status.exists(), 300) is None:
            raise RuntimeError(f"{variant}: no first cycle within 300 s")
        if variant == "notifications":
            trig = state / "triggers.json"

            def connected() -> bool:
                try:
                    return bool(json.loads(trig.read_text())["bus"]["state"] == "connected")
                except (OSError, ValueError, KeyError):
                    return False

            if wait_until(connected, 60) is None:
                raise RuntimeError("the daemon's listener did not connect")

    def stop_daemon(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def close(self) -> None:
        self.stop_daemon()
        self.cloud.stop()
        self.broker.close()

    # ------------------------------------------------------------------ changes
    def change_both(self, timeout: float) -> tuple[float | None, float | None]:
        """At the same moment, a new server of A and an address of B moved to a server of
        A; the seconds until each is in force (None: not within ``timeout``)."""
        sid = self.b_servers.pop()
        addr = next(a.addr for a in self.cloud.state.servers[sid].addresses if a.type == "fixed")
        gone = (self.path(self.b), addr)
        if gone not in etab_pairs(self.etab):
            raise RuntimeError(f"{gone} is not in force before the change")
        t0 = time.monotonic()
        new_sid = self.cloud.create_server(f"bench-{random.getrandbits(32):08x}", self.a)
        self.cloud.move_ip(addr, random.choice(self.a_servers))
        new = (self.path(self.a), self.cloud.state.servers[new_sid].addresses[0].addr)
        took: dict[str, float] = {}
        while time.monotonic() - t0 < timeout and len(took) < 2:
            pairs = etab_pairs(self.etab)
            now = time.monotonic() - t0
            if "new" not in took and new in pairs:
                took["new"] = now
            if "reuse" not in took and gone not in pairs:
                took["reuse"] = now
            time.sleep(0.02)
        return took.get("new"), took.get("reuse")


def measure(
    site: Site, variant: str, samples: int, spacing: tuple[float, float], timeout: float
) -> dict[str, Any]:
    site.start_daemon(variant)
    new: list[float] = []
    reuse: list[float] = []
    missed = 0
    try:
        for i in range(samples):
            time.sleep(random.uniform(*spacing))
            t_new, t_reuse = site.change_both(timeout)
            for took, out in ((t_new, new), (t_reuse, reuse)):
                if took is None:
                    missed += 1
                else:
                    out.append(took)
            shown = ", ".join("missed" if t is None else f"{t:.2f} s" for t in (t_new, t_reuse))
            log(f"{variant} {i + 1}/{samples}: new instance, address reused: {shown}")
    finally:
        site.stop_daemon()
    return {
        "new_instance": stats(new),
        "address_reused": stats(reuse),
        "missed": missed,
        "raw_new": [round(v, 3) for v in new],
        "raw_reuse": [round(v, 3) for v in reuse],
    }


def storm(site: Site, events: int, seconds: float) -> dict[str, Any]:
    """``events`` notifications spread over ``seconds``; cycles and requests counted."""
    site.start_daemon("notifications")
    state = site.work / "state-notifications"
    try:
        time.sleep(2)
        site.cloud.reset_counts()
        before = json.loads((state / "triggers.json").read_text())["early_cycles"]
        t0 = time.monotonic()
        payload = {"port": {"id": "p"}}
        for i in range(events):
            site.cloud.notify("neutron", "port.update.end", payload)
            ahead = t0 + (i + 1) * seconds / events - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
        sent = time.monotonic() - t0
        time.sleep(max(0.0, 60 - sent) + 10)  # the minute, and the last cycle
        trig = json.loads((state / "triggers.json").read_text())
        counts = site.cloud.counts()
    finally:
        site.stop_daemon()
    requests = sum(v for k, v in counts.items() if k != "tokens_issued")
    window = time.monotonic() - t0
    return {
        "events": events,
        "sent_in_s": round(sent, 1),
        "received": sum(trig["bus"]["events"].values()),
        "early_cycles": trig["early_cycles"] - before,
        "early_deferred": trig["early_deferred"],
        "requests": requests,
        "requests_per_minute": round(requests * 60 / window, 1),
        "window_s": round(window, 1),
    }


def polling_cost(site: Site, seconds: float) -> dict[str, Any]:
    """Requests per minute of change polling (defaults) while nothing changes."""
    site.start_daemon("change-polling")
    try:
        time.sleep(3)
        site.cloud.reset_counts()
        time.sleep(seconds)
        counts = site.cloud.counts()
    finally:
        site.stop_daemon()
    requests = sum(v for k, v in counts.items() if k != "tokens_issued")
    return {
        "seconds": seconds,
        "requests": requests,
        "per_minute": round(requests * 60 / seconds, 1),
        "by_endpoint": {k: v for k, v in counts.items() if v},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--projects", type=int, default=1000)
    p.add_argument("--instances", type=int, default=10000)
    p.add_argument("--samples", type=int, default=20)
    p.add_argument("--plain-samples", type=int, default=5)
    p.add_argument("--storm", type=int, default=10000)
    p.add_argument("--quick", action="store_true", help="small cloud, few samples (< 3 min)")
    p.add_argument(
        "--only",
        choices=("notifications", "change-polling", "plain", "storm", "cost"),
        action="append",
        help="run only these parts (repeatable; default: all)",
    )
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    if args.quick:
        args.projects, args.instances, args.samples, args.plain_samples = 50, 500, 4, 0
        args.storm = 1000
    with tempfile.TemporaryDirectory(prefix="nfs-exportd-propagation-") as tmp:
        site = Site(Path(tmp), args.projects, args.instances)
        try:
            result: dict[str, Any] = {
                "cloud": {
                    "projects": args.projects,
                    "instances": args.instances,
                    "regions": list(REGIONS),
                },
                "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
            }
            parts = set(args.only or ("notifications", "change-polling", "plain", "storm", "cost"))
            if "notifications" in parts:
                result["notifications"] = measure(site, "notifications", args.samples, (1, 5), 60)
            if "change-polling" in parts:
                result["change_polling"] = measure(site, "change-polling", args.samples, (0, 6), 60)
            if "plain" in parts and args.plain_samples:
                result["plain"] = measure(site, "plain", args.plain_samples, (0, 30), 150)
            if "storm" in parts:
                result["storm"] = storm(site, args.storm, 60 if not args.quick else 10)
            if "cost" in parts:
                result["change_polling_cost"] = polling_cost(site, 60 if not args.quick else 10)
        finally:
            site.close()
    text = json.dumps(result, indent=1)
    out = args.out or HERE / "results" / f"propagation-{time.strftime('%Y-%m-%d')}.json"
    if (not args.quick and not args.only) or args.out:
        out.write_text(text + "\n")
        log(f"written {out}")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
