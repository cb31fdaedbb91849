"""The OpenStack inventory source through the real openstacksdk/keystoneauth over HTTP,
against the simulated cloud: both modes, two regions, pagination, every failure state of
issue 3 point 3 (unknown, never empty) and the failover list of point 4.

Expected addresses are written by hand from the scenario below.
"""

from __future__ import annotations

import gc
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nfs_exportd.model import InventorySnapshot
from nfs_exportd.read.inventory.openstack import OpenStackInventory, OpenStackSettings
from nfs_exportd_sim import SimCloud

PW = "secret-observer"
ADMIN_PW = "secret-admin"
SCENARIO: dict[str, Any] = {
    "regions": ["RegionOne", "RegionTwo"],
    "projects": [
        {"name": "admin"},
        {"name": "tools"},
        {"name": "paws"},
        {"name": "quarry", "enabled": False},
    ],
    "users": [
        {
            "name": "observer",
            "password": PW,
            "roles": [
                {"role": "reader", "system": "all"},
                {"role": "reader", "project": "tools"},
                {"role": "reader", "project": "paws"},
                {"role": "reader", "project": "quarry"},
            ],
        },
        {"name": "admin", "password": ADMIN_PW, "roles": [{"role": "admin", "project": "admin"}]},
    ],
    "servers": [
        {
            "name": "tools-1",
            "project": "tools",
            "region": "RegionOne",
            "addresses": ["172.16.0.5", {"addr": "203.0.113.5", "type": "floating"}],
        },
        {
            "name": "tools-2",
            "project": "tools",
            "region": "RegionTwo",
            "addresses": ["172.16.1.6", "fd00::6"],
        },
        {"name": "paws-1", "project": "paws", "region": "RegionOne", "addresses": ["172.16.0.7"]},
        {"name": "paws-2", "project": "paws", "region": "RegionTwo", "addresses": ["172.16.1.8"]},
    ],
}
EXPECTED = {
    "admin": set(),
    "tools": {"172.16.0.5", "172.16.1.6", "fd00::6"},
    "paws": {"172.16.0.7", "172.16.1.8"},
    "quarry": set(),
}
MODES = {
    # mode -> the clouds.yaml entry used for Nova/Neutron
    "all-projects": "admin",
    "per-project": "observer",
}


@pytest.fixture
def sim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SimCloud]:
    cloud = SimCloud(SCENARIO)
    cloud.start()
    try:
        write_clouds(cloud, tmp_path / "clouds.yaml", monkeypatch)
        yield cloud
    finally:
        cloud.stop()


def write_clouds(cloud: SimCloud, path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cloud.clouds_yaml(
        path,
        {
            "admin": {"user": "admin", "password": ADMIN_PW, "project": "admin"},
            "observer": {"user": "observer", "password": PW, "project": "tools"},
            "observer-system": {"user": "observer", "password": PW, "system_scope": "all"},
            "wrong-password": {"user": "admin", "password": "nope", "project": "admin"},
        },
    )
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(path))


def source(mode: str, **kw: Any) -> OpenStackInventory:
    settings: dict[str, Any] = {
        "clouds": (MODES[mode],),
        "identity_cloud": "observer-system",
        "mode": mode,
        "timeout": 5.0,
    }
    settings.update(kw)
    return OpenStackInventory(OpenStackSettings(**settings))


INTEREST = frozenset({"tools", "paws"})  # the projects with NFS volumes on this server


def read(src: OpenStackInventory) -> InventorySnapshot:
    """A cycle's read: per-project mode lists only the projects of interest."""
    return src.read(INTEREST if src.settings.mode == "per-project" else None)


def ips(snap: InventorySnapshot) -> dict[str, set[str]]:
    return {
        p: {str(a) for i in insts for a in i.addresses}
        for p, insts in snap.instances.items()
        if p in INTEREST or snap.project_complete(p)
    }


def expected(snap: InventorySnapshot) -> dict[str, set[str]]:
    return {p: v for p, v in EXPECTED.items() if p in INTEREST or snap.project_complete(p)}


def assert_complete(snap: InventorySnapshot) -> None:
    """Complete for every project the read was about."""
    assert snap.problem is None, snap.problem
    assert snap.listing_complete
    for name, why in snap.incomplete.items():  # only the projects it was not asked about
        assert name not in INTEREST and why == "not listed in per-project mode", (name, why)


@pytest.mark.parametrize("mode", sorted(MODES))
def test_ips_per_project_both_regions(sim: SimCloud, mode: str) -> None:
    snap = read(source(mode))
    assert_complete(snap)
    assert ips(snap) == expected(snap)  # fixed IPv4 and IPv6; floating 203.0.113.5 ignored
    assert snap.projects is not None
    assert snap.projects["quarry"].enabled is False  # listed (system reader) though disabled
    assert {i.name for i in snap.instances["tools"]} == {"tools-1", "tools-2"}


@pytest.mark.parametrize("mode", sorted(MODES))
def test_floating_ips_only_when_asked(sim: SimCloud, mode: str) -> None:
    snap = read(source(mode, include_floating_ips=True))
    assert_complete(snap)
    assert ips(snap)["tools"] == EXPECTED["tools"] | {"203.0.113.5"}


@pytest.mark.parametrize("mode", sorted(MODES))
def test_one_region_only(sim: SimCloud, mode: str) -> None:
    snap = read(source(mode, regions=("RegionTwo",)))
    assert_complete(snap)
    assert ips(snap)["tools"] == {"172.16.1.6", "fd00::6"}
    assert "compute RegionOne GET /servers/detail" not in sim.counts(by_region=True)


@pytest.mark.parametrize("mode", sorted(MODES))
def test_pagination_across_pages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    scenario = dict(SCENARIO)
    scenario["settings"] = {"nova_max_limit": 2, "neutron_page_size": 2}
    scenario["servers"] = [
        *SCENARIO["servers"],
        *[
            {"name": f"paws-x{n}", "project": "paws", "region": "RegionOne",
             "addresses": [f"172.16.2.{n}"]}
            for n in range(1, 8)
        ],
    ]  # fmt: skip
    with SimCloud(scenario) as cloud:
        write_clouds(cloud, tmp_path / "clouds.yaml", monkeypatch)
        snap = read(source(mode))
        counts = cloud.counts(by_region=True)
    assert_complete(snap)
    assert ips(snap)["paws"] == EXPECTED["paws"] | {f"172.16.2.{n}" for n in range(1, 8)}
    # RegionOne holds 9 servers: 5 pages of 2 in all-projects mode
    if mode == "all-projects":
        assert counts["compute RegionOne GET /servers/detail"] >= 5
        assert counts["network RegionOne GET /ports"] >= 5


def test_all_projects_request_budget(sim: SimCloud) -> None:
    src = source("all-projects")
    assert_complete(src.read())
    sim.reset_counts()
    assert_complete(src.read())  # second cycle: tokens reused
    counts = sim.counts()
    assert counts["tokens_issued"] == 0
    assert counts["identity GET /projects"] == 1
    assert counts["compute GET /servers/detail"] == 2  # one page per region
    assert counts["network GET /ports"] == 2


def test_per_project_reuses_tokens(sim: SimCloud) -> None:
    src = source("per-project")
    assert_complete(read(src))
    sim.reset_counts()
    snap = read(src)
    assert_complete(snap)
    assert sim.counts()["tokens_issued"] == 0
    assert sim.counts()["compute GET /servers/detail"] == 4  # 2 projects x 2 regions
    # projects it was not asked about are unknown, not empty
    assert "quarry" in snap.incomplete


# --------------------------------------------------------------------------- failures


def unknown(snap: InventorySnapshot) -> str:
    """The whole snapshot is unknown: no listing, no instances (never an empty answer)."""
    assert snap.projects is None and not snap.listing_complete
    assert dict(snap.instances) == {}
    assert snap.problem
    return snap.problem


@pytest.mark.parametrize("mode", sorted(MODES))
def test_401_on_every_auth(sim: SimCloud, mode: str) -> None:
    sim.add_fault(service="identity", method="POST", path_regex="auth/tokens", status=401)
    problem = unknown(read(source(mode)))
    # the entry Keystone refused comes first, with its config key (issue 14)
    assert problem.startswith("clouds.yaml entry '"), problem
    assert "(inventory.identity_cloud): projects: authentication failed: Unauthorized: " in (
        problem
    ), problem


def test_403_on_project_listing_names_the_role(sim: SimCloud) -> None:
    problem = unknown(source("all-projects", identity_cloud="observer").read())
    assert "403" in problem and "system-scoped reader" in problem


def test_403_from_nova_for_a_system_scoped_token(sim: SimCloud) -> None:
    """Stock policy: listing every project's ports/servers needs a project-scoped admin."""
    problem = unknown(source("all-projects", clouds=("observer-system",)).read())
    assert "HTTP 403" in problem


def test_401_for_one_project_in_per_project_mode(sim: SimCloud) -> None:
    src = source("per-project")
    assert_complete(read(src))
    sim.add_fault(service="compute", region="RegionTwo", status=401, path_regex="servers")
    # every project's RegionTwo listing fails: each project unknown, the listing known
    snap = read(src)
    assert snap.listing_complete
    assert {"tools", "paws"} <= set(snap.incomplete)
    assert "401" in snap.incomplete["tools"]


def test_per_project_without_a_role_names_the_project(sim: SimCloud) -> None:
    snap = source("per-project").read(frozenset({"tools", "admin"}))
    assert snap.listing_complete
    assert set(snap.incomplete) >= {"admin"}
    assert "tools" not in snap.incomplete
    why = snap.incomplete["admin"]
    assert why.startswith("service catalog: authentication failed: Unauthorized: User "), why
    assert f"has no access to project {sim.project_id('admin')} (HTTP 401)" in why, why


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize(
    ("fault", "needle"),
    [
        ({"status": 500, "after": 1}, "500"),
        ({"status": 503, "after": 1}, "503"),
        ({"malformed": True}, "malformed"),
        ({"truncated": True}, "Connection broken: IncompleteRead("),
        ({"drop": True}, "Remote end closed connection without response"),
        ({"delay": 3.0}, "timed out"),
        ({"body": {"servers": [{"name": "no-id"}]}, "status": 200}, "without 'id'"),
        ({"body": {"oops": []}, "status": 200}, "no 'servers' list"),
    ],
)
def test_nova_failures_are_unknown_never_empty(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
    fault: dict[str, Any],
    needle: str,
) -> None:
    scenario = dict(SCENARIO)
    scenario["settings"] = {"nova_max_limit": 1}  # page 2 exists for every listing
    with SimCloud(scenario) as cloud:
        write_clouds(cloud, tmp_path / "clouds.yaml", monkeypatch)
        cloud.add_fault(service="compute", path_regex="servers/detail", **fault)
        snap = read(source(mode, timeout=1.0))
    if mode == "all-projects":
        assert needle in unknown(snap)
    else:
        assert snap.listing_complete
        bad = {p: why for p, why in snap.incomplete.items() if p in INTEREST}
        assert bad, "a failing project listing must make projects unknown"
        assert all(needle in why for why in bad.values()), bad


@pytest.mark.parametrize(
    ("fault", "needle"),
    [
        ({"status": 503}, "503"),
        ({"malformed": True}, "malformed"),
        ({"body": {"projects": [], "truncated": True}, "status": 200}, "truncated"),
        ({"body": {"projects": [{"id": "x"}]}, "status": 200}, "without 'name'"),
        ({"drop": True}, "projects: cannot connect: Unable to establish connection to http"),
    ],
)
def test_keystone_failures_hold_everything(
    sim: SimCloud, fault: dict[str, Any], needle: str
) -> None:
    sim.add_fault(service="identity", method="GET", path_regex="projects$", **fault)
    assert needle in unknown(source("all-projects").read())


def test_truncated_project_listing_from_list_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scenario = dict(SCENARIO)
    scenario["settings"] = {"keystone_list_limit": 2}
    with SimCloud(scenario) as cloud:
        write_clouds(cloud, tmp_path / "clouds.yaml", monkeypatch)
        assert "truncated" in unknown(source("all-projects").read())


def test_neutron_page_2_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scenario = dict(SCENARIO)
    scenario["settings"] = {"neutron_page_size": 1}
    with SimCloud(scenario) as cloud:
        write_clouds(cloud, tmp_path / "clouds.yaml", monkeypatch)
        cloud.add_fault(service="network", path_regex="ports", status=500, after=1)
        assert "500" in unknown(source("all-projects").read())


def test_broken_pagination_is_incomplete(sim: SimCloud) -> None:
    href = f"{sim.compute_url('RegionOne')}/servers/detail?limit=1000&marker=loop"
    body = {
        "servers": [{"id": "loop", "name": "x", "status": "ACTIVE", "tenant_id": "t"}],
        "servers_links": [{"rel": "next", "href": href}],
    }
    sim.add_fault(service="compute", region="RegionOne", path_regex="servers/detail",
                  status=200, body=body)  # fmt: skip
    assert "pagination" in unknown(source("all-projects").read())


@pytest.mark.parametrize("mode", sorted(MODES))
def test_down_cell_makes_that_project_unknown(sim: SimCloud, mode: str) -> None:
    tools_1 = next(s for s in sim.state.servers.values() if s.name == "tools-1")
    sim.set_down([tools_1.id])
    snap = read(source(mode))
    assert snap.listing_complete
    assert set(snap.incomplete) & INTEREST == {"tools"}
    assert "down Nova cell" in snap.incomplete["tools"]
    assert ips(snap)["paws"] == EXPECTED["paws"]


@pytest.mark.parametrize("mode", sorted(MODES))
def test_server_without_addresses_makes_its_project_unknown(sim: SimCloud, mode: str) -> None:
    sim.create_server("paws-3", "paws", region="RegionOne", addresses=[])
    snap = read(source(mode))
    assert set(snap.incomplete) & INTEREST == {"paws"}
    assert ips(snap)["tools"] == EXPECTED["tools"]


def test_keystone_connection_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cloud = SimCloud(SCENARIO)
    cloud.start()
    write_clouds(cloud, tmp_path / "clouds.yaml", monkeypatch)
    cloud.stop()  # nothing listens there any more
    assert "connect" in unknown(source("all-projects").read()).lower()


def test_dns_failure_for_the_auth_host(
    sim: SimCloud, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS cannot fail for real here without touching the network, so name lookups of the
    auth host fail in-process (socket.getaddrinfo) exactly as a resolver outage does."""
    port = sim.base_url.rsplit(":", 1)[1]
    text = (tmp_path / "clouds.yaml").read_text()
    (tmp_path / "clouds.yaml").write_text(
        text.replace(f"127.0.0.1:{port}", f"keystone.cloud.example:{port}")
    )
    real = socket.getaddrinfo

    def failing(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "keystone.cloud.example":
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", failing)
    problem = unknown(source("all-projects").read())
    assert problem.startswith("projects: cannot connect: "), problem
    assert "Failed to resolve 'keystone.cloud.example'" in problem, problem


def test_tls_failure(sim: SimCloud, tmp_path: Path) -> None:
    text = (tmp_path / "clouds.yaml").read_text()
    (tmp_path / "clouds.yaml").write_text(text.replace("http://127.0.0.1", "https://127.0.0.1"))
    assert "TLS" in unknown(source("all-projects").read())


def cached_projects(src: OpenStackInventory) -> set[str]:
    """Project ids with a cached (per-project scoped) connection."""
    return {key[1].split("/")[0] for key in src._clients.conns if key[1]}


def test_token_of_a_deleted_project_is_not_kept(sim: SimCloud) -> None:
    """per-project: a project deleted after its token was issued is no longer listed,
    so never read again: its cached connection is forgotten with it."""
    src = source("per-project")
    assert_complete(read(src))
    paws = sim.project_id("paws")
    assert paws in cached_projects(src)
    sim.delete_project("paws")
    snap = read(src)
    assert snap.projects is not None and "paws" not in snap.projects
    assert_complete(snap)
    assert cached_projects(src) == {sim.project_id("tools")}


def test_token_of_a_disabled_project_is_dropped(sim: SimCloud) -> None:
    """per-project: a project disabled after its token was issued is still listed, and
    its listing fails on authentication (Nova refuses the token, keystoneauth cannot get
    a new one): that project is unknown in this cycle and its connection is dropped, so
    the next cycle asks for a new token instead of reusing the dead one."""
    src = source("per-project")
    assert_complete(read(src))
    paws = sim.project_id("paws")
    assert paws in cached_projects(src)
    sim.disable_project("paws")
    snap = read(src)
    assert snap.project_complete("tools") and not snap.project_complete("paws")
    assert snap.incomplete["paws"].startswith(
        f"RegionOne servers of paws: authentication failed: Unauthorized: Project {paws} "
        "is disabled (HTTP 401)"
    ), snap.incomplete["paws"]
    assert cached_projects(src) == {sim.project_id("tools")}
    sim.enable_project("paws")  # a new token next cycle
    assert_complete(read(src))
    assert paws in cached_projects(src)


# --------------------------------------------------------------------------- failover


def test_cloud_list_first_complete_answer_wins(sim: SimCloud) -> None:
    src = source("all-projects", clouds=("wrong-password", "admin"))
    snap = src.read()
    assert_complete(snap)
    assert snap.source == "openstack:admin"
    assert src.last_cloud == "admin"
    assert ips(snap) == expected(snap)


def test_cloud_list_all_failing_is_unknown(sim: SimCloud) -> None:
    src = source("all-projects", clouds=("wrong-password", "observer-system"))
    unknown(src.read())
    assert src.last_cloud is None


def test_credentials_rotate_after_an_auth_failure(
    sim: SimCloud, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """clouds.yaml is re-read after an authentication failure."""
    src = source("all-projects", clouds=("wrong-password",))
    unknown(src.read())
    text = (tmp_path / "clouds.yaml").read_text()
    fixed = text.replace("password: nope", f"password: {ADMIN_PW}")
    assert fixed != text
    (tmp_path / "clouds.yaml").write_text(fixed)
    assert_complete(src.read())


def test_keystone_next_link_is_not_a_complete_listing(sim: SimCloud) -> None:
    """Keystone does not page /v3/projects: a next link (a proxy, an extension) means
    this page may not be all of it; the projects not on it must not count as absent."""
    base = sim.base_url + "/identity/v3/projects"
    page = [{"id": sim.project_id("tools"), "name": "tools", "enabled": True,
             "domain_id": "default"}]  # fmt: skip
    links = {"self": base, "previous": None, "next": base + "?marker=x"}
    sim.add_fault(service="identity", method="GET", path_regex="v3/projects$", status=200,
                  body={"projects": page, "links": links})  # fmt: skip
    why = unknown(source("all-projects").read())
    assert "next page" in why and "marker=x" in why


def test_per_project_listing_with_another_projects_server(sim: SimCloud) -> None:
    """A project-scoped Nova listing that shows a server of another project (a policy
    or proxy gone wrong): that project is unknown, naming the server; never its instance."""
    paws_1 = next(s for s in sim.state.servers.values() if s.name == "paws-1")
    body = {"servers": [{"id": paws_1.id, "name": "paws-1", "status": "ACTIVE",
                         "tenant_id": paws_1.project_id,
                         "addresses": {"net": [{"addr": "172.16.0.7", "version": 4,
                                                "OS-EXT-IPS:type": "fixed"}]}}]}  # fmt: skip
    sim.add_fault(service="compute", region="RegionOne", path_regex="servers/detail",
                  status=200, body=body)  # fmt: skip
    snap = read(source("per-project"))
    assert "tools" in snap.incomplete and paws_1.id in snap.incomplete["tools"]
    assert "172.16.0.7" not in {str(a) for i in snap.instances["tools"] for a in i.addresses}
    assert snap.project_complete("paws")


def test_allowed_address_pairs_are_read_and_claim(sim: SimCloud) -> None:
    """The pair is asked for (``fields=``) and read: paws-1 may send as tools-1's
    address, which then belongs to nobody."""
    paws_1 = next(s for s in sim.state.servers.values() if s.name == "paws-1")
    # the simulator's derived port records are shared until the next change: set a pair
    for p in sim.state.region_ports("RegionOne"):
        if p["device_id"] == paws_1.id:
            p["allowed_address_pairs"] = [{"ip_address": "172.16.0.5", "mac_address": "x"}]
    snap = read(source("all-projects"))
    assert_complete(snap)
    (claim,) = snap.claims["172.16.0.5"]
    assert claim.ids == (paws_1.project_id,) and "allowed address pair" in claim.detail


# --------------------------------------------------------------------------- a crash


def test_a_crash_in_the_read_is_not_a_timeout(
    sim: SimCloud, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """A bug in the read (planted: the merge raises) is said as a crash naming the
    exception, at once, not as a deadline missed; the tokens stay cached (it is not an
    auth error); the traceback goes through our logger (redacted), never raw stderr."""
    from nfs_exportd.logs import MASK, register_secret, setup_logging
    from nfs_exportd.read.inventory import openstack

    register_secret("crash-secret-value")
    setup_logging("text", False)
    src = source("all-projects", read_deadline=300.0)
    assert_complete(src.read())
    cached = dict(src._clients.conns)
    assert cached

    def broken(*args: Any, **kwargs: Any) -> None:
        raise KeyError("fixed_ips of crash-secret-value")

    monkeypatch.setattr(openstack, "merge_region", broken)
    started = time.monotonic()
    problem = unknown(src.read())
    assert time.monotonic() - started < 30
    assert problem.startswith("inventory read crashed: KeyError: "), problem
    assert "did not finish" not in problem
    assert src._clients.conns == cached  # not an auth error: no token dropped
    err = capfd.readouterr().err
    assert "ERROR inventory read crashed: KeyError" in err
    assert 'raise KeyError("fixed_ips of' in err  # the traceback, through the handler
    assert "crash-secret-value" not in err and MASK in err
    assert "Exception in thread" not in err  # nothing raw from threading.excepthook


def test_a_read_past_its_deadline_is_abandoned_with_its_tokens(sim: SimCloud) -> None:
    """The other side of the crash test: a read that hangs is a timeout, and its
    connections go with the stuck thread."""
    src = source("all-projects", read_deadline=0.5)
    assert_complete(src.read())
    assert src._clients.conns
    sim.add_fault(service="identity", method="GET", path_regex="projects$", delay=2.0)
    problem = unknown(src.read())
    assert problem == "inventory read did not finish within 0.5 s; abandoned"
    assert not src._clients.conns
    assert gc.isenabled()  # the collector the read paused is on again, the thread stuck


def test_the_collector_is_paused_during_a_read_only(
    sim: SimCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read pauses the cyclic garbage collector (it rescanned the heap of decoded
    answers over and over: half the read's CPU at 100,000 instances) and turns it on
    again after a read and after a crash."""
    from nfs_exportd.read.inventory import openstack

    seen: list[bool] = []
    merge = openstack.merge_region

    def watched(*args: Any, **kwargs: Any) -> None:
        seen.append(gc.isenabled())
        merge(*args, **kwargs)

    monkeypatch.setattr(openstack, "merge_region", watched)
    src = source("all-projects", read_deadline=300.0)
    assert gc.isenabled()
    assert_complete(src.read())
    assert seen and not any(seen)
    assert gc.isenabled()

    def broken(*args: Any, **kwargs: Any) -> None:
        raise KeyError("planted")

    monkeypatch.setattr(openstack, "merge_region", broken)
    assert unknown(src.read()).startswith("inventory read crashed: KeyError")
    assert gc.isenabled()
