"""The OpenStack source against a real Keystone (issue 6).

Keystone 30 from PyPI runs under gunicorn on 127.0.0.1 for the whole session
(``tests/keystone_lab``: a cached venv, a fresh sqlite database per session).  Nova and
Neutron stay simulated, registered in the real Keystone's catalog, and validate the real
tokens against it as keystonemiddleware does (``nfs_exportd_sim.external``).  Every test
gets its own projects and users (names prefixed ``kN-``) and its own simulated cloud whose
projects carry the real Keystone's ids; the daemon runs through its CLI (``sync``, or
``run`` as a process) with the real exportfs in its sandbox.

What the real Keystone teaches, and each test pins: listing all projects needs a
system-scoped reader (403 otherwise); a token whose project was disabled or deleted gets
404, and keystoneauth re-authenticates only on 401; a wrong password, and a user without
roles asking for a scope, get 401.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from conftest import Lab, finished, wait_for, watch_held
from keystone_lab.real_keystone import REGION, SERVICE_PASSWORD, SERVICE_USER, RealKeystone
from nfs_exportd.model import InventorySnapshot
from nfs_exportd.read.inventory.openstack import OpenStackInventory, OpenStackSettings
from nfs_exportd_sim import ExternalKeystone, ServiceUser, SimCloud

pytest_plugins = ("keystone_lab.plugin",)

PW = {"admin": "adm-pw", "observer": "obs-pw", "reader": "rdr-pw", "nobody": "nob-pw"}
SERVERS = {  # short project name -> {server: addresses}
    "tools": {"tools-1": ["172.16.0.5"], "tools-2": ["172.16.0.6", "fd00::6"]},
    "paws": {"paws-1": ["172.16.0.7"]},
}
NEW_PAWS = "172.16.0.8"
_seq = itertools.count(1)


@dataclass
class Site:
    """One test's slice of the real Keystone, its simulated Nova/Neutron, and a lab."""

    ks: RealKeystone
    lab: Lab
    sim: SimCloud
    prefix: str
    ids: dict[str, str]  # short project name -> Keystone id
    users: dict[str, str]  # short user name -> Keystone id
    clouds: Path
    home: dict[str, str]  # short project name -> exported path

    def name(self, short: str) -> str:
        return self.prefix + short

    def pairs(self, ips: dict[str, set[str]]) -> set[tuple[str, str]]:
        return {(self.home[p], ip) for p, addrs in ips.items() for ip in addrs}

    def write_clouds(self, passwords: dict[str, str] | None = None) -> None:
        """clouds.yaml for this site's users; ``passwords`` overrides some (by user)."""
        pw = {**PW, **(passwords or {})}

        def entry(user: str, **scope: str) -> dict[str, Any]:
            auth = {
                "auth_url": self.ks.url,
                "username": self.name(user),
                "password": pw[user],
                "user_domain_id": "default",
                **scope,
            }
            return {
                "auth_type": "password",
                "auth": auth,
                "identity_api_version": 3,
                "interface": "public",
                "region_name": REGION,
            }

        def project(short: str) -> dict[str, str]:
            return {"project_name": self.name(short), "project_domain_id": "default"}

        doc = {
            "clouds": {
                # all-projects: a project-scoped admin (stock Nova and Neutron policy)
                "nfs": entry("admin", **project("ops")),
                # Keystone listing: the recommended system-scoped reader
                "nfs-observer": entry("observer", system_scope="all"),
                # per-project mode: a reader in each project; also a project-scoped token
                # for the identity listing, which stock policy refuses
                "nfs-reader": entry("reader", **project("tools")),
                "nfs-reader-system": entry("reader", system_scope="all"),
                "nfs-nobody": entry("nobody", system_scope="all"),
            }
        }
        self.clouds.write_text(yaml.safe_dump(doc, sort_keys=False))

    def source(self, **kw: Any) -> OpenStackInventory:
        """The OpenStack source in this process (for what the CLI does not show)."""
        settings: dict[str, Any] = {
            "clouds": ("nfs",),
            "identity_cloud": "nfs-observer",
            "timeout": 5.0,
        }
        settings.update(kw)
        return OpenStackInventory(OpenStackSettings(**settings))

    def recreate_project(self, short: str, role: str, user: str) -> None:
        """A project deleted and created again under the same name gets a new id."""
        self.ids[short] = self.ks.create_project(self.name(short))
        self.ks.grant(self.users[user], role, project_id=self.ids[short])


@pytest.fixture
def site(real_keystone: RealKeystone, lab: Lab, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    ks = real_keystone
    if not ks.running:  # a test that stopped it and failed before starting it again
        ks.start()
    prefix = f"k{next(_seq)}-"
    ids = {short: ks.create_project(prefix + short) for short in ("ops", "tools", "paws")}
    users = {short: ks.create_user(prefix + short, pw) for short, pw in PW.items()}
    ks.grant(users["admin"], "admin", project_id=ids["ops"])
    ks.grant(users["observer"], "reader", system=True)
    for short in SERVERS:
        ks.grant(users["reader"], "reader", project_id=ids[short])
    scenario = {
        "regions": [REGION],
        "projects": [{"id": ids[s], "name": prefix + s} for s in ids],
        "servers": [
            {"id": prefix + srv, "name": prefix + srv, "project": prefix + short,
             "addresses": addrs}
            for short, servers in SERVERS.items()
            for srv, addrs in servers.items()
        ],
    }  # fmt: skip
    sim = SimCloud(
        scenario,
        external_keystone=ExternalKeystone(ks.url, ServiceUser(SERVICE_USER, SERVICE_PASSWORD)),
    )
    sim.start()
    try:
        ks.point_catalog(sim.compute_url(REGION), sim.network_url(REGION))
        clouds = lab.root / "clouds.yaml"
        home = {}
        for gid, short in enumerate(SERVERS, start=50380):
            lab.add_project(prefix + short, gid)
            home[short] = lab.srv(prefix + short, "home")
        s = Site(ks, lab, sim, prefix, ids, users, clouds, home)
        s.write_clouds()
        monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(clouds))
        lab.config["inventory"] = {
            "source": "openstack",
            "cloud": "nfs",
            "identity_cloud": "nfs-observer",
            "timeout_seconds": 5,
        }
        lab.config["safety"] = {"removal_confirmations": 2, "removal_min_age_seconds": 0}
        yield s
    finally:
        sim.stop()


BEFORE = {p: {a for addrs in servers.values() for a in addrs} for p, servers in SERVERS.items()}
AFTER = {"tools": {"172.16.0.5"}, "paws": {"172.16.0.7", NEW_PAWS}}


def life_goes_on(site: Site) -> None:
    """While the daemon cannot read the cloud: tools-2 goes, a paws instance comes."""
    site.sim.delete_server(site.name("tools-2"))
    site.sim.create_server(site.name("paws-2"), site.name("paws"), addresses=[NEW_PAWS])


def converges(site: Site) -> None:
    """Once the cloud can be read again: the addition at once, the removal after its two
    confirmations."""
    lab = site.lab
    assert lab.cli("sync") == 3
    assert lab.in_force() == site.pairs(BEFORE) | site.pairs({"paws": {NEW_PAWS}})
    assert set(lab.status()["holds_by_reason"]) == {"pending-confirmation"}
    assert lab.cli("sync") == 0
    assert lab.in_force() == site.pairs(AFTER)


def assert_held(site: Site, before: set[tuple[str, str]], *needles: str) -> dict[str, Any]:
    """One ``sync``: held (exit 3), nothing changed, the listing unknown, and the status
    says why (every needle in the problem)."""
    lab = site.lab
    assert lab.cli("sync") == 3
    assert lab.in_force() == before
    st = lab.status()
    assert st["last_cycle"]["result"] == "held"
    assert st["inventory"]["complete"] is False
    assert set(st["holds_by_reason"]) == {"unknown-inventory"}
    assert st["plan"]["changes"] == []
    for needle in needles:
        assert needle in st["inventory"]["problem"], st["inventory"]["problem"]
    return st


def complete(snap: InventorySnapshot) -> InventorySnapshot:
    assert snap.listing_complete and not snap.incomplete, snap.problem or snap.incomplete
    return snap


def unknown(snap: InventorySnapshot) -> str:
    """The whole snapshot is unknown, never empty."""
    assert snap.projects is None and not snap.listing_complete and not dict(snap.instances)
    assert snap.problem
    return snap.problem


# ----------------------------------------------------------------------------- listing


def test_every_project_is_listed_enabled_and_disabled(site: Site) -> None:
    """A system-scoped reader sees every project Keystone has, disabled ones with
    ``enabled: false``; a disabled project keeps its exports (the default)."""
    ks, lab = site.ks, site.lab
    attic = site.ids["attic"] = ks.create_project(site.name("attic"), enabled=False)
    site.sim.add_project(site.name("attic"), project_id=attic, enabled=False)
    site.sim.create_server(site.name("attic-1"), site.name("attic"), addresses=["172.16.0.9"])
    lab.add_project(site.name("attic"), 50390)
    site.home["attic"] = lab.srv(site.name("attic"), "home")

    snap = complete(site.source().read())
    assert snap.projects is not None
    listed = {p.id: (p.name, p.enabled) for p in snap.projects.values()}
    assert listed == ks.list_projects()  # all of them, as the admin sees them
    assert listed[attic] == (site.name("attic"), False)
    assert listed[site.ids["tools"]] == (site.name("tools"), True)
    addrs = {str(a) for i in snap.instances[site.name("tools")] for a in i.addresses}
    assert addrs == BEFORE["tools"]

    assert lab.cli("sync") == 0
    assert lab.in_force() == site.pairs({**BEFORE, "attic": {"172.16.0.9"}})
    assert lab.status()["inventory"]["complete"] is True


def test_deleted_project_is_removed_only_after_its_confirmations(site: Site) -> None:
    """Deleted in Keystone between two cycles (its servers stay, as in a real cloud): the
    project's exports go after ``removal_confirmations`` complete listings without it,
    with reason ``project-deleted``, and not one cycle earlier."""
    lab = site.lab
    lab.config["safety"]["removal_confirmations"] = 3
    assert lab.cli("sync") == 0
    before = lab.in_force()
    assert before == site.pairs(BEFORE)
    site.ks.delete_project(site.ids["paws"])
    for _ in range(2):
        assert lab.cli("sync") == 3
        assert lab.in_force() == before
        st = lab.status()
        assert st["inventory"]["complete"] is True
        assert set(st["holds_by_reason"]) == {"pending-confirmation"}
    assert lab.cli("sync") == 0
    assert lab.in_force() == site.pairs({"tools": BEFORE["tools"]})
    assert f"{site.name('paws')}.exports" not in lab.files()
    reasons = {c["reason"] for c in lab.status()["plan"]["changes"]}
    assert reasons == {"project-deleted"}


# ----------------------------------------------------------------------------- 401 and 403


@pytest.mark.parametrize("user", ["observer", "admin"])
def test_wrong_password_holds_and_changes_nothing(site: Site, user: str) -> None:
    """401 from Keystone, for the identity listing (observer) or for the token Nova and
    Neutron need (admin): held, nothing changes; the right password converges."""
    lab = site.lab
    assert lab.cli("sync") == 0
    before = lab.in_force()
    life_goes_on(site)
    site.write_clouds({user: "not-the-password"})
    for _ in range(2):
        assert_held(site, before, "HTTP 401", "wrong user or password")
    site.write_clouds()
    converges(site)


def test_user_without_roles_gets_no_scoped_token(site: Site) -> None:
    """A user with no role assignment is 401 for a system or a project scope."""
    ks = site.ks
    for scope in (
        {"system": {"all": True}},
        {"project": {"id": site.ids["tools"]}},
    ):
        r = ks.http.post(
            f"{ks.url}/auth/tokens",
            json={"auth": {
                "identity": {"methods": ["password"], "password": {"user": {
                    "name": site.name("nobody"), "domain": {"id": "default"},
                    "password": PW["nobody"]}}},
                "scope": scope}},
            timeout=10,
        )  # fmt: skip
        assert r.status_code == 401, (scope, r.text)
    lab = site.lab
    assert lab.cli("sync") == 0
    before = lab.in_force()
    life_goes_on(site)
    lab.config["inventory"]["identity_cloud"] = "nfs-nobody"
    assert_held(site, before, "HTTP 401", "no role on the scope asked for")


def test_observer_without_system_scope_is_incomplete_and_named(site: Site) -> None:
    """A project-scoped reader gets 403 on ``GET /v3/projects``: the listing is unknown,
    nothing changes, and the status names the role it lacks and the one it has.  The
    same user with the reader role on the system (the recommended set-up) converges."""
    lab = site.lab
    assert lab.cli("sync") == 0
    before = lab.in_force()
    life_goes_on(site)
    lab.config["inventory"]["identity_cloud"] = "nfs-reader"
    for _ in range(2):
        assert_held(
            site,
            before,
            "HTTP 403",
            "identity:list_projects",
            "system-scoped reader",
            "reader role on the system scope",
            "system_scope: all",
            f"scoped to project '{site.name('tools')}' with roles reader",
        )
    site.ks.grant(site.users["reader"], "reader", system=True)
    lab.config["inventory"]["identity_cloud"] = "nfs-reader-system"
    converges(site)


# ----------------------------------------------------------------------------- 404


@pytest.mark.parametrize("change", ["disable", "delete"])
def test_token_of_a_gone_project_is_dropped(site: Site, change: str) -> None:
    """The all-projects token (also used for the listing here) is scoped to a project that
    is then disabled or deleted: Keystone answers 404 to it, which keystoneauth does not
    renew.  The source drops that connection, so the next read authenticates afresh (401
    while the project is gone) and recovers once it is back, in the same process."""
    src = site.source(identity_cloud=None)
    complete(src.read())
    if change == "disable":
        site.ks.set_project_enabled(site.ids["ops"], False)
    else:
        site.ks.delete_project(site.ids["ops"])
    problem = unknown(src.read())
    assert "projects: HTTP 404" in problem, problem
    # not stuck with the dead token: a new login, refused while the project is gone
    problem = unknown(src.read())
    assert "HTTP 401" in problem and "HTTP 404" not in problem, problem
    if change == "disable":
        site.ks.set_project_enabled(site.ids["ops"], True)
    else:
        site.recreate_project("ops", "admin", "admin")
    snap = complete(src.read())
    assert snap.projects is not None and site.name("ops") in snap.projects
    assert snap.projects[site.name("ops")].id == site.ids["ops"]


def test_per_project_token_of_a_disabled_project(site: Site) -> None:
    """Per-project mode: Nova (keystonemiddleware) refuses the token of a project that was
    disabled (401); only that project is unknown, the others are read; re-enabled, it is
    read again by the same source."""
    src = site.source(clouds=("nfs-reader",), mode="per-project")
    interest = frozenset(site.name(p) for p in SERVERS)

    def unknown_of_interest(snap: InventorySnapshot) -> dict[str, str]:
        assert snap.listing_complete, snap.problem
        return {p: why for p, why in snap.incomplete.items() if p in interest}

    assert unknown_of_interest(src.read(interest)) == {}
    site.ks.set_project_enabled(site.ids["tools"], False)
    snap = src.read(interest)
    missing = unknown_of_interest(snap)
    assert set(missing) == {site.name("tools")}
    assert "HTTP 401" in missing[site.name("tools")]
    paws = {str(a) for i in snap.instances[site.name("paws")] for a in i.addresses}
    assert paws == BEFORE["paws"]
    site.ks.set_project_enabled(site.ids["tools"], True)
    snap = src.read(interest)
    assert unknown_of_interest(snap) == {}
    tools = {str(a) for i in snap.instances[site.name("tools")] for a in i.addresses}
    assert tools == BEFORE["tools"]


# ----------------------------------------------------------------------------- run mode


def _stop(proc: subprocess.Popen[str]) -> tuple[int | None, str]:
    """SIGTERM (the daemon ends its cycle), SIGKILL if it does not stop; by pid."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=20)
        return proc.returncode, out
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate(timeout=20)
        return None, out


def _ok(lab: Lab) -> bool:
    return lab.status().get("last_cycle", {}).get("result") == "ok"


def _between_cycles(lab: Lab) -> None:
    """Return just after a cycle ended (cycles last well under the 1 s interval), so that
    a change made now is seen whole by the next cycle, not by half of a running one."""
    last = finished(lab)
    wait_for(lambda: finished(lab) > last, "the end of a cycle", 10)


def test_keystone_stopped_mid_run_holds_and_its_restart_is_picked_up(site: Site) -> None:
    """``run``: Keystone stops (the process, not an injected fault) while instances come
    and go: every cycle holds and nothing changes; Keystone starts again on the same port
    and the daemon, not restarted, applies what piled up."""
    ks, lab = site.ks, site.lab
    proc = lab.start_run({"OS_CLIENT_CONFIG_FILE": str(site.clouds)})
    try:
        wait_for(lambda: lab.in_force() == site.pairs(BEFORE), "the first cycle", 30)
        wait_for(lambda: _ok(lab), "an ok cycle", 10)
        _between_cycles(lab)
        token = ks.token(site.name("reader"), PW["reader"], {"project": {"id": site.ids["tools"]}})
        ks.stop()
        # keystonemiddleware in front of Nova cannot validate it: 503, not 401
        http = requests.Session()
        http.trust_env = False
        r = http.get(
            site.sim.compute_url(REGION) + "/servers", headers={"X-Auth-Token": token}, timeout=10
        )
        assert r.status_code == 503 and "temporarily unavailable" in r.text, r.text
        life_goes_on(site)
        statuses = watch_held(site.lab, site.pairs(BEFORE), cycles=3)
        for st in statuses:
            assert st["last_cycle"]["result"] == "held"
            assert st["inventory"]["complete"] is False
            assert set(st["holds_by_reason"]) == {"unknown-inventory"}
            assert st["plan"]["changes"] == []
            # Keystone refuses connections; Nova and Neutron, asked to validate a token
            # while it stops, answer 503 as keystonemiddleware does
            problem = st["inventory"]["problem"]
            assert "cannot connect" in problem or "HTTP 503" in problem, problem
        assert "projects: cannot connect" in statuses[-1]["inventory"]["problem"]
        ks.start()
        wait_for(lambda: lab.in_force() == site.pairs(AFTER), "the changes that piled up", 30)
        wait_for(lambda: _ok(lab), "an ok cycle", 10)
        assert lab.status()["inventory"]["complete"] is True
    finally:
        rc, out = _stop(proc)
        ks.start()  # for the tests after this one, whatever happened
    assert rc == 0, out[-3000:]


def test_run_survives_its_project_deleted_and_recreated(site: Site) -> None:
    """``run`` in all-projects mode with one project-scoped admin for everything: the
    project of its token is deleted (404 from Keystone, 401 from Nova and Neutron), held
    with nothing changed; created again (a new id, the role granted again), the same
    daemon process recovers and applies what piled up."""
    lab = site.lab
    lab.config["inventory"]["identity_cloud"] = None
    proc = lab.start_run({"OS_CLIENT_CONFIG_FILE": str(site.clouds)})
    try:
        wait_for(lambda: lab.in_force() == site.pairs(BEFORE), "the first cycle", 30)
        wait_for(lambda: _ok(lab), "an ok cycle", 10)
        _between_cycles(lab)
        site.ks.delete_project(site.ids["ops"])
        life_goes_on(site)
        problems = [
            st["inventory"]["problem"] for st in watch_held(site.lab, site.pairs(BEFORE), 3)
        ]
        assert "HTTP 404" in problems[0], problems
        assert all("HTTP 401" in p for p in problems[1:]), problems  # new logins, refused
        site.recreate_project("ops", "admin", "admin")
        wait_for(lambda: lab.in_force() == site.pairs(AFTER), "the changes that piled up", 30)
        wait_for(lambda: _ok(lab), "an ok cycle", 10)
    finally:
        rc, out = _stop(proc)
    assert rc == 0, out[-3000:]


# ----------------------------------------------------------------------------- the simulator


def test_sim_validates_the_real_keystone_tokens(site: Site) -> None:
    """keystonemiddleware's answers in front of the simulated Nova and Neutron: no token,
    a forged or a revoked one: 401; scope and roles come from the validated token."""
    ks, sim = site.ks, site.sim
    nova = sim.compute_url(REGION) + "/servers/detail"
    ports = sim.network_url(REGION) + "/v2.0/ports"
    http = requests.Session()
    http.trust_env = False

    def get(url: str, token: str | None, **params: str) -> requests.Response:
        headers = {"X-Auth-Token": token} if token else {}
        return http.get(url, headers=headers, params=params, timeout=10)

    def tok(user: str, scope: dict[str, Any]) -> str:
        return ks.token(site.name(user), PW[user], scope)

    reader = tok("reader", {"project": {"id": site.ids["tools"]}})
    admin = tok("admin", {"project": {"id": site.ids["ops"]}})
    system = tok("observer", {"system": {"all": True}})

    assert get(nova, None).status_code == 401
    assert get(nova, "gAAAAA-not-a-token").status_code == 401
    r = get(nova, reader)
    assert r.status_code == 200
    assert {s["name"] for s in r.json()["servers"]} == {site.name("tools-1"), site.name("tools-2")}
    assert get(nova, reader, all_tenants="1").status_code == 403  # stock policy: admin only
    r = get(nova, admin, all_tenants="1")
    assert r.status_code == 200 and len(r.json()["servers"]) == 3
    assert get(nova, system).status_code == 403  # Nova's policies are project-scoped
    r = get(ports, reader)
    assert r.status_code == 200
    assert {p["project_id"] for p in r.json()["ports"]} == {site.ids["tools"]}

    ks.api("DELETE", "/auth/tokens", headers={"X-Subject-Token": reader})  # revoked
    assert get(nova, reader).status_code == 401
    assert get(ports, reader).status_code == 401
    assert get(nova, admin, all_tenants="1").status_code == 200


def test_sim_serve_with_keystone_url(site: Site, tmp_path: Path) -> None:
    """``nfs-exportd-sim serve --keystone-url``: prints the endpoints to register and
    validates tokens against that Keystone."""
    ks = site.ks
    scenario = tmp_path / "cloud.yaml"
    scenario.write_text(
        yaml.safe_dump(
            {
                "regions": [REGION],
                "projects": [{"id": site.ids["tools"], "name": site.name("tools")}],
                "servers": [
                    {"name": "a", "project": site.name("tools"), "addresses": ["10.0.0.1"]}
                ],
            }
        )
    )
    cmd = [sys.executable, "-m", "nfs_exportd_sim", "serve", "--scenario", str(scenario),
           "--keystone-url", ks.url, "--keystone-user", SERVICE_USER]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "NFS_EXPORTD_SIM_KEYSTONE_PASSWORD"}
    no_pw = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)
    assert no_pw.returncode == 2 and "NFS_EXPORTD_SIM_KEYSTONE_PASSWORD" in no_pw.stderr
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "NFS_EXPORTD_SIM_KEYSTONE_PASSWORD": SERVICE_PASSWORD},
    )
    try:
        assert proc.stdout is not None
        doc = yaml.safe_load("".join(proc.stdout.readline() for _ in range(4)))
        compute = doc["endpoints"][REGION]["compute"]
        token = ks.token(site.name("reader"), PW["reader"], {"project": {"id": site.ids["tools"]}})
        http = requests.Session()
        http.trust_env = False
        r = http.get(f"{compute}/servers", headers={"X-Auth-Token": token}, timeout=10)
        assert r.status_code == 200 and [s["name"] for s in r.json()["servers"]] == ["a"]
        r = http.get(f"{compute}/servers", headers={"X-Auth-Token": "forged"}, timeout=10)
        assert r.status_code == 401
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)
    assert proc.returncode == 0
