"""The two outage reports behind nfs-exportd (the Keystone upgrade, the network failover)
replayed against it: the simulated cloud through the real openstacksdk, the real
exportfs, and (for the first) the real ``run`` loop.

Each test follows its report's timeline; the lines quoted in the docstrings are the
report's own.  What must come out differently this time: zero (path, client) pairs lost
while the control plane is sick, a status that says why nothing moves, and the changes
that piled up meanwhile applied once it is healthy again.
"""

from __future__ import annotations

import ipaddress
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conftest import HOST, Lab, wait_for, watch_held
from nfs_exportd_sim import SimCloud

PW = {"admin": "admin-pw", "novaobserver": "observer-pw"}
R1, R2 = "RegionOne", "RegionTwo"
NFS_PROJECTS = ("tools", "paws", "quarry")  # "all NFS attached OpenStack projects"
SCENARIO: dict[str, Any] = {
    "regions": [R1, R2],
    "projects": [{"name": n} for n in ("admin", *NFS_PROJECTS)],
    "users": [
        {
            "name": "admin",
            "password": PW["admin"],
            "roles": [{"role": "admin", "project": "admin"}],
        },
        {
            "name": "novaobserver",
            "password": PW["novaobserver"],
            "roles": [
                {"role": "reader", "system": "all"},
                *({"role": "reader", "project": p} for p in NFS_PROJECTS),
            ],
        },
    ],
    "servers": [
        {"id": "tools-1", "name": "tools-1", "project": "tools", "region": R1,
         "addresses": ["172.16.0.11", "fd00::11"]},
        {"id": "tools-2", "name": "tools-2", "project": "tools", "region": R1,
         "addresses": ["172.16.0.12"]},
        {"id": "tools-3", "name": "tools-3", "project": "tools", "region": R2,
         "addresses": ["172.16.1.13"]},
        {"id": "paws-1", "name": "paws-1", "project": "paws", "region": R1,
         "addresses": ["172.16.0.21"]},
        {"id": "paws-2", "name": "paws-2", "project": "paws", "region": R2,
         "addresses": ["172.16.1.22"]},
        {"id": "quarry-1", "name": "quarry-1", "project": "quarry", "region": R1,
         "addresses": ["172.16.0.31"]},
        {"id": "quarry-2", "name": "quarry-2", "project": "quarry", "region": R2,
         "addresses": ["172.16.1.32"]},
    ],
}  # fmt: skip
BEFORE = {
    "tools": {"172.16.0.11", "fd00::11", "172.16.0.12", "172.16.1.13"},
    "paws": {"172.16.0.21", "172.16.1.22"},
    "quarry": {"172.16.0.31", "172.16.1.32"},
}
# What happens in the cloud while the control plane is sick: tools-2 is deleted and a new
# paws instance starts.  Neither may take effect before the cloud can be read again.
NEW_PAWS = "172.16.0.23"
AFTER = {**BEFORE, "tools": BEFORE["tools"] - {"172.16.0.12"}, "paws": BEFORE["paws"] | {NEW_PAWS}}


def life_goes_on(sim: SimCloud) -> None:
    sim.delete_server("tools-2")
    sim.create_server("paws-3", "paws", region=R1, addresses=[NEW_PAWS], server_id="paws-3")


@dataclass
class Site:
    lab: Lab
    sim: SimCloud
    clouds: Path
    home: dict[str, str]

    def pairs(self, ips: dict[str, set[str]]) -> set[tuple[str, str]]:
        return {(self.home[p], ip) for p, addrs in ips.items() for ip in addrs}


@pytest.fixture
def site(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    sim = SimCloud(SCENARIO)
    sim.start()
    try:
        clouds = lab.root / "clouds.yaml"
        sim.clouds_yaml(
            clouds,
            {
                "nfs": {"user": "admin", "password": PW["admin"], "project": "admin"},
                "novaobserver": {
                    "user": "novaobserver",
                    "password": PW["novaobserver"],
                    "project": "tools",
                },
                "novaobserver-system": {
                    "user": "novaobserver",
                    "password": PW["novaobserver"],
                    "system_scope": "all",
                },
            },
        )
        monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(clouds))
        lab.config["inventory"] = {
            "source": "openstack",
            "cloud": "nfs",
            "identity_cloud": "novaobserver-system",
            "timeout_seconds": 5,
        }
        lab.config["safety"] = {
            "removal_confirmations": 2,
            "max_removal_fraction": 0.5,
            "min_removal_count": 2,
            "removal_min_age_seconds": 0,
        }
        home = {}
        for gid, name in enumerate(NFS_PROJECTS, start=50380):
            lab.add_project(name, gid)
            home[name] = lab.srv(name, "home")
        yield Site(lab, sim, clouds, home)
    finally:
        sim.stop()


# ----------------------------------------------------------------------------- run mode


def _stop(proc: subprocess.Popen[str]) -> tuple[int | None, str]:
    """SIGTERM (the daemon finishes its cycle), then SIGKILL if it does not stop: only
    this process, by its pid."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=10)
        return proc.returncode, out
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate(timeout=20)
        return None, out


def _replay_failover(
    site: Site,
    capsys: pytest.CaptureFixture[str],
    faults: tuple[dict[str, Any], ...] = ({"service": "identity", "status": 401},),
) -> None:
    lab, sim = site.lab, site.sim
    proc = lab.start_run({"OS_CLIENT_CONFIG_FILE": str(site.clouds)})
    stopped: tuple[int | None, str] | None = None
    try:
        # before: the daemon runs and everything NFS-attached is exported
        wait_for(lambda: lab.in_force() == site.pairs(BEFORE), "the first cycle", 30)
        wait_for(lambda: lab.status().get("last_cycle", {}).get("result") == "ok", "ok", 10)

        # 11:54 UTC labstore1005 nfs-exportd fails to get project list from keystone
        for spec in faults:
            sim.add_fault(**spec)
        life_goes_on(sim)
        statuses = watch_held(site.lab, site.pairs(BEFORE), cycles=4, timeout=20)  # interval 1 s
        for st in statuses:
            assert st["last_cycle"]["result"] == "held"
            assert st["inventory"]["complete"] is False
            assert "401" in st["inventory"]["problem"]  # the status says why
            assert set(st["holds_by_reason"]) == {"unknown-inventory"}
            assert st["plan"]["changes"] == []  # neither the removal nor the addition
        capsys.readouterr()
        assert lab.cli("status") == 0  # read-only: runs beside the daemon's lock
        text = capsys.readouterr().out
        assert "complete: False" in text and "401" in text and "unknown-inventory=" in text

        # 12:18 UTC Andrew merged (nfs-exportd: use cloudcontrol1004 endpoint for now)
        # -- here: the service name answers again, from the healthy controller
        sim.clear_faults()

        # 12:29 UTC stashbot joins ... indicating that Toolforge is indeed good
        wait_for(lambda: lab.in_force() == site.pairs(AFTER), "the pending changes", 30)
        wait_for(lambda: lab.status().get("last_cycle", {}).get("result") == "ok", "ok", 10)
        st = lab.status()
        assert st["holds_by_reason"] == {} and st["inventory"]["complete"] is True
    finally:
        stopped = _stop(proc)
    rc, out = stopped
    assert rc == 0, f"the daemon did not stop on SIGTERM (killed):\n{out[-3000:]}"
    assert "401" in out


def test_seed_002_keystone_401_to_everything_during_failover(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    """Seed 002, the control-plane failover (``run`` every second, per-project listings
    with a reader in each project, as the original ``novaobserver`` did):

        • We are trying to upgrade cloudcontrol1003 from Debian Jessie to Debian Stretch
        • That involves reallocating control plane workload to cloudcontrol1004
        • The reallocation caused issues in NFS, affecting all NFS attached OpenStack projects
        • 11:54 UTC labstore1005 nfs-exportd fails to get project list from keystone
        • We don't know why keystone @ cloudcontrol1003 refused to auth queries when we
          started failovering the service to cloudcontrol1004.
        • 12:18 UTC Andrew merged (nfs-exportd: use cloudcontrol1004 endpoint for now)
        • 12:49 UTC Brooke merges (nfs-exportd: if auth errors happen, do not proceed)

    The old Keystone answers 401 to everything (version discovery included) for several
    cycles, while instances come and go.  Zero pairs are lost; every cycle is held with
    reason ``unknown-inventory`` and the status says 401; when Keystone answers again the
    addition and (after its confirmations) the removal happen, without a restart.
    """
    site.lab.config["inventory"].update(cloud="novaobserver", mode="per-project")
    _replay_failover(site, capsys)


def test_seed_002_failover_401_to_every_authenticated_request(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    """Seed 002 again, in the all-projects mode, with the old controller refusing every
    token and every authenticated request (Keystone, and Nova and Neutron, which validate
    tokens against it) but still serving the unauthenticated version documents:

        • 11:54 UTC labstore1005 nfs-exportd fails to get project list from keystone
        • 11:55 UTC labstore1004 nfs-exportd fails to get project list from keystone
        • 12:34 UTC Brooke identifies some code in nfs-exportd that can be improved to
          handle a situation in which keystone returns 401 (not authed)
    """
    _replay_failover(
        site,
        capsys,
        faults=(
            {"service": "identity", "path_regex": "/v3/.", "status": 401},
            {"service": "compute", "status": 401},
            {"service": "network", "status": 401},
        ),
    )


# ----------------------------------------------------------------------------- DNS


class Resolver:
    """``socket.getaddrinfo`` for this process: IP literals pass through; host names are
    answered from a table (never asked of a real DNS server), or fail when the outage is
    on.  Every name asked is recorded."""

    def __init__(self, table: dict[str, str]) -> None:
        self.table = table
        self.up = True
        self.asked: list[str] = []
        self.real = socket.getaddrinfo

    def __call__(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        try:
            ipaddress.ip_address(name)
            return self.real(host, port, *args, **kwargs)
        except (TypeError, ValueError):
            pass
        self.asked.append(str(name))
        if self.up and name in self.table:
            return self.real(self.table[name], port, *args, **kwargs)
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")


def _sync(lab: Lab) -> int:
    """``nfs-exportd sync`` in-process (the patched resolver must reach it), under a
    watchdog so that a hang fails the test instead of the run."""
    out: list[int] = []
    t = threading.Thread(target=lambda: out.append(lab.cli("sync")), daemon=True)
    t.start()
    t.join(60)
    assert not t.is_alive(), "nfs-exportd sync hung"
    return out[0]


def test_dns_outage_every_name_lookup_fails(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    """Seed 000 (the network failover during the OpenStack upgrade) took DNS down with it:

        • 15:50 Lots of things are starting to break and throw alerts. NFS, and the Cloud
          DNS recursors all use ACLs based on the origination IP of incoming traffic.
          ... CI jobs fail due to DNS resolution failures.
        • 16:00 ... Andrew hacks the DNS recursors to allow traffic with any origination
          IP; this resolves some of the outage (DNS and LDAP) but NFS is still inaccessible.

    And a weakness of the original daemon the reports do not name: it decides which
    volumes a server exports by resolving a host name at run time, so when DNS fails the
    server's exports are dropped.  Here clouds.yaml names the control plane by its service name,
    and while every name lookup fails, several cycles lose zero pairs and say why; the
    served volumes are chosen by text match (``serve.hosts`` is never resolved) and only
    IP literals reach exportfs.  When DNS is back the pending changes happen.
    """
    lab, sim = site.lab, site.sim
    service = "openstack.svc.example"  # the service name, not one controller's host
    port = sim.base_url.rsplit(":", 1)[1]
    text = site.clouds.read_text()
    site.clouds.write_text(text.replace(f"127.0.0.1:{port}/identity", f"{service}:{port}/identity"))
    resolver = Resolver({service: "127.0.0.1"})
    monkeypatch.setattr(socket, "getaddrinfo", resolver)

    assert _sync(lab) == 0
    before = site.pairs(BEFORE)
    assert lab.in_force() == before
    assert service in resolver.asked  # the name really is looked up

    # 15:50 ... CI jobs fail due to DNS resolution failures.
    resolver.up = False
    resolver.asked.clear()
    life_goes_on(sim)
    for _ in range(4):
        assert _sync(lab) == 3
        assert lab.in_force() == before  # zero pairs lost
        st = lab.status()
        assert st["last_cycle"]["result"] == "held"
        assert st["inventory"]["complete"] is False
        assert service in st["inventory"]["problem"]  # which name could not be resolved
        assert set(st["holds_by_reason"]) == {"unknown-inventory"}
        assert st["plan"]["changes"] == []
    assert set(resolver.asked) == {service}, resolver.asked  # never serve.hosts
    assert HOST not in resolver.asked
    for _, client in lab.in_force():
        ipaddress.ip_address(client)
    for content in lab.files().values():
        assert service not in content and HOST not in content

    # 16:00 ... this resolves some of the outage (DNS and LDAP)
    resolver.up = True
    assert _sync(lab) == 3  # the addition now; the removal is 1 of 2
    assert lab.in_force() == before | site.pairs({"paws": {NEW_PAWS}})
    assert set(lab.status()["holds_by_reason"]) == {"pending-confirmation"}
    assert _sync(lab) == 0
    assert lab.in_force() == site.pairs(AFTER)
    assert lab.status()["holds_by_reason"] == {}
