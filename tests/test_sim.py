"""The simulated cloud, exercised through the real openstacksdk/keystoneauth over HTTP.

If the SDK works against the simulator unmodified, the inventory's tests against it mean
something: these tests pin the wire behaviour the inventory depends on (scopes, policies,
pagination, down cells, changes-since, faults as the SDK sees them).
"""

from __future__ import annotations

import ipaddress
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import openstack
import openstack.connection
import openstack.exceptions
import pytest
import requests
import yaml
from keystoneauth1 import exceptions as ksa_exc

from nfs_exportd_sim import ScenarioError, SimCloud, generate, load_scenario, parse_scenario
from nfs_exportd_sim.cli import main

PW = "secret"
# openstacksdk warns about its own internals on every call
pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::PendingDeprecationWarning"),
]


def _server(name: str, project: str, region: str, *addrs: str | dict[str, str]) -> dict[str, Any]:
    return {
        "id": f"srv-{name}",
        "name": name,
        "project": project,
        "region": region,
        "addresses": list(addrs),
    }


SCENARIO: dict[str, Any] = {
    "regions": ["RegionOne", "RegionTwo"],
    "projects": [
        {"id": "p-alpha", "name": "alpha"},
        {"id": "p-beta", "name": "beta"},
        {"id": "p-gamma", "name": "gamma", "enabled": False},
        {"id": "p-admin", "name": "admin"},
    ],
    "users": [
        {
            "name": "observer",
            "password": PW,
            "roles": [
                {"role": "reader", "system": "all"},
                {"role": "reader", "project": "alpha"},
                {"role": "reader", "project": "beta"},
            ],
        },
        {"name": "admin", "password": PW, "roles": [{"role": "admin", "project": "admin"}]},
        {"name": "alice", "password": PW, "roles": [{"role": "member", "project": "alpha"}]},
    ],
    "servers": [
        _server(
            "a-1",
            "alpha",
            "RegionOne",
            "172.16.0.11",
            "fd00:10::11",
            {"addr": "203.0.113.11", "type": "floating"},
        ),
        *[_server(f"a-{i}", "alpha", "RegionOne", f"172.16.0.{10 + i}") for i in range(2, 6)],
        *[_server(f"b-{i}", "beta", "RegionOne", f"172.16.1.{i}") for i in range(1, 4)],
        _server("a-6", "alpha", "RegionTwo", "172.16.2.6"),
        _server("b-4", "beta", "RegionTwo", "172.16.2.4"),
        _server("b-5", "beta", "RegionTwo", "172.16.2.5"),
    ],
    "settings": {"nova_max_limit": 3, "neutron_page_size": 3},
}

ENTRIES = {
    "admin": {"user": "admin", "password": PW, "project": "admin"},
    "system": {"user": "observer", "password": PW, "system_scope": "all"},
    "reader-alpha": {"user": "observer", "password": PW, "project": "alpha"},
    "alice": {"user": "alice", "password": PW, "project": "alpha"},
}


@pytest.fixture
def cloud() -> Iterator[SimCloud]:
    sim = SimCloud(SCENARIO)
    sim.start()
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture
def clouds(cloud: SimCloud, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = cloud.clouds_yaml(tmp_path / "clouds.yaml", ENTRIES)
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(path))
    return path


def connect(name: str, **kw: Any) -> openstack.connection.Connection:
    return openstack.connect(cloud=name, **kw)


def raw(conn: openstack.connection.Connection, url: str, **kw: Any) -> requests.Response:
    """A request with the connection's token, bypassing the SDK's parsing."""
    headers = {"X-Auth-Token": conn.session.get_token(), **kw.pop("headers", {})}
    return requests.get(url, headers=headers, timeout=5, **kw)


# ---------------------------------------------------------------------- identity


def test_project_and_system_scope(cloud: SimCloud, clouds: Path) -> None:
    admin = connect("admin")
    access = admin.session.auth.get_access(admin.session)
    assert access.project_name == "admin" and access.project_id == "p-admin"
    assert set(access.role_names) == {"admin", "member", "reader"}  # implied roles
    system = connect("system")
    access = system.session.auth.get_access(system.session)
    assert access.system_scoped and access.role_names == ["reader"]
    regions = {e["region_id"] for s in access.service_catalog.catalog for e in s["endpoints"]}
    assert regions == {"RegionOne", "RegionTwo"}
    names = {p.name for p in system.identity.projects()}
    assert names == {"alpha", "beta", "gamma", "admin"}
    assert {p.name for p in system.identity.projects(is_enabled=False)} == {"gamma"}
    assert [p.id for p in system.identity.projects(name="beta")] == ["p-beta"]
    assert [r.id for r in system.identity.regions()] == ["RegionOne", "RegionTwo"]
    assert {p.name for p in admin.identity.projects()} == names  # an admin may list too


def test_wrong_password_and_scope_without_role_are_401(
    cloud: SimCloud, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entries = {
        "bad-pw": {"user": "alice", "password": "nope", "project": "alpha"},
        "no-role": {"user": "alice", "password": PW, "project": "beta"},
        "disabled": {"user": "admin", "password": PW, "project": "gamma"},
    }
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(cloud.clouds_yaml(tmp_path / "c", entries)))
    for name in entries:
        with pytest.raises(ksa_exc.Unauthorized):
            list(connect(name).identity.regions())


def test_project_reader_may_not_list_projects(cloud: SimCloud, clouds: Path) -> None:
    with pytest.raises(openstack.exceptions.ForbiddenException):
        list(connect("reader-alpha").identity.projects())
    # but may read its own project
    assert connect("reader-alpha").identity.get_project("p-alpha").name == "alpha"


def test_keystone_truncates_at_list_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scenario = {**SCENARIO, "settings": {"keystone_list_limit": 2}}
    with SimCloud(scenario) as sim:
        monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(sim.clouds_yaml(tmp_path / "c", ENTRIES)))
        conn = connect("system")
        body = raw(conn, f"{sim.auth_url}/projects").json()
        assert len(body["projects"]) == 2 and body["truncated"] is True
        # the SDK does not look at "truncated": it silently returns the short list
        assert len(list(conn.identity.projects())) == 2
        assert "truncated" not in raw(conn, f"{sim.auth_url}/projects?name=beta").json()


def test_version_discovery_documents(cloud: SimCloud) -> None:
    root = requests.get(f"{cloud.base_url}/identity", timeout=5)
    assert root.status_code == 300
    assert root.json()["versions"]["values"][0]["links"][0]["href"] == f"{cloud.auth_url}/"
    nova = requests.get(f"{cloud.base_url}/compute/RegionTwo", timeout=5).json()
    v21 = next(v for v in nova["versions"] if v["id"] == "v2.1")
    assert (v21["min_version"], v21["version"]) == ("2.1", "2.96")
    neutron = requests.get(cloud.network_url("RegionOne"), timeout=5).json()
    assert neutron["versions"][0]["links"][0]["href"] == f"{cloud.network_url('RegionOne')}/v2.0/"


# ---------------------------------------------------------------------- compute


def test_servers_all_projects_paginated_in_both_regions(cloud: SimCloud, clouds: Path) -> None:
    one = list(
        connect("admin", region_name="RegionOne").compute.servers(details=True, all_projects=True)
    )
    assert Counter(s.project_id for s in one) == {"p-alpha": 5, "p-beta": 3}
    # 8 servers at max_limit 3: pages of 3, 3, 2
    assert cloud.counts(by_region=True)["compute RegionOne GET /servers/detail"] == 3
    a1 = next(s for s in one if s.name == "a-1")
    entries = a1.addresses["private"]
    assert [(e["addr"], e["version"], e["OS-EXT-IPS:type"]) for e in entries] == [
        ("172.16.0.11", 4, "fixed"),
        ("fd00:10::11", 6, "fixed"),
        ("203.0.113.11", 4, "floating"),
    ]
    assert all(e["OS-EXT-IPS-MAC:mac_addr"].startswith("fa:16:3e:") for e in entries)
    two = list(
        connect("admin", region_name="RegionTwo").compute.servers(details=True, all_projects=True)
    )
    assert sorted(s.name for s in two) == ["a-6", "b-4", "b-5"]
    # a full last page still carries a next link (as in Nova): one more, empty request
    assert cloud.counts(by_region=True)["compute RegionTwo GET /servers/detail"] == 2
    beta = connect("admin", region_name="RegionOne").compute.servers(
        all_projects=True, project_id="p-beta"
    )
    assert sorted(s.name for s in beta) == ["b-1", "b-2", "b-3"]


def test_servers_scoped_to_the_tokens_project(cloud: SimCloud, clouds: Path) -> None:
    conn = connect("alice", region_name="RegionOne")
    assert {s.project_id for s in conn.compute.servers(details=True)} == {"p-alpha"}
    # project_id without all_tenants is ignored, not honoured
    assert {s.project_id for s in conn.compute.servers(project_id="p-beta")} == {"p-alpha"}
    with pytest.raises(openstack.exceptions.ForbiddenException):
        list(conn.compute.servers(all_projects=True))  # member, not admin


def test_system_scope_is_refused_by_nova(cloud: SimCloud, clouds: Path) -> None:
    with pytest.raises(openstack.exceptions.ForbiddenException, match=r"Policy doesn.t allow"):
        list(connect("system", region_name="RegionOne").compute.servers(all_projects=True))


def test_down_cell_records(cloud: SimCloud, clouds: Path) -> None:
    cloud.set_down(["srv-a-2"])
    conn = connect("admin", region_name="RegionOne")
    servers = {s.id: s for s in conn.compute.servers(details=True, all_projects=True)}
    down = servers["srv-a-2"]
    assert down.status == "UNKNOWN" and down.project_id == "p-alpha"
    assert not down.addresses and down.name is None
    url = f"{cloud.compute_url('RegionOne')}/servers/detail?all_tenants=1"
    old = raw(conn, url, headers={"OpenStack-API-Version": "compute 2.68"})
    assert old.headers["OpenStack-API-Version"] == "compute 2.68"
    assert "srv-a-2" not in {s["id"] for s in old.json()["servers"]}  # silently omitted
    assert raw(conn, url, headers={"X-OpenStack-Nova-API-Version": "2.200"}).status_code == 406


def test_changes_since_returns_deleted_servers(cloud: SimCloud, clouds: Path) -> None:
    since = (datetime.now(UTC) - timedelta(seconds=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    cloud.delete_server("srv-b-1")
    conn = connect("admin", region_name="RegionOne")
    listed = {s.id: s.status for s in conn.compute.servers(all_projects=True, details=True)}
    assert "srv-b-1" not in listed
    changed = {
        s.id: s.status
        for s in conn.compute.servers(all_projects=True, details=True, changes_since=since)
    }
    assert changed == {"srv-b-1": "DELETED"}
    ports = conn.network.ports(device_id="srv-b-1")
    assert list(ports) == []


def test_build_hides_addresses(cloud: SimCloud, clouds: Path) -> None:
    cloud.set_status("srv-a-3", "BUILD")
    conn = connect("alice", region_name="RegionOne")
    assert conn.compute.get_server("srv-a-3").addresses == {}


# ---------------------------------------------------------------------- network


def test_ports_paginated_with_fields_and_filters(cloud: SimCloud, clouds: Path) -> None:
    conn = connect("admin", region_name="RegionOne")
    fields = ["id", "fixed_ips", "project_id", "device_id"]
    ports = list(conn.network.ports(device_owner="compute:nova", fields=fields))
    assert len(ports) == 8 and cloud.counts()["network GET /ports"] == 3  # 3 + 3 + 2
    a1 = next(p for p in ports if p.device_id == "srv-a-1")
    assert {f["ip_address"] for f in a1.fixed_ips} == {"172.16.0.11", "fd00:10::11"}
    assert a1.device_owner is None  # not asked for, not sent
    body = raw(
        conn,
        f"{cloud.network_url('RegionOne')}/v2.0/ports",
        params=[
            ("fields", "id"),
            ("project_id", "p-beta"),
            ("project_id", "p-gamma"),
            ("limit", "2"),
        ],
    ).json()
    assert all(set(p) == {"id"} for p in body["ports"]) and len(body["ports"]) == 2
    assert [link["rel"] for link in body["ports_links"]] == ["next", "previous"]
    bad = raw(conn, f"{cloud.network_url('RegionOne')}/v2.0/ports?colour=red")
    assert bad.status_code == 400 and "colour" in bad.json()["NeutronError"]["message"]
    own = connect("alice", region_name="RegionOne").network.ports()
    assert {p.project_id for p in own} == {"p-alpha"}
    fips = list(conn.network.ips())
    assert [(f.floating_ip_address, f.fixed_ip_address) for f in fips] == [
        ("203.0.113.11", "172.16.0.11")
    ]
    assert fips[0].port_id == a1.id
    aliases = {e.alias for e in conn.network.extensions()}
    assert {"pagination", "fields", "filter-validation"} <= aliases


def test_runtime_changes(cloud: SimCloud, clouds: Path) -> None:
    conn = connect("admin", region_name="RegionOne")
    sid = cloud.create_server("b-new", "beta", "RegionOne")
    (port,) = conn.network.ports(device_id=sid)
    new_ip = port.fixed_ips[0]["ip_address"]
    assert ipaddress.ip_address(new_ip) in ipaddress.ip_network("172.16.0.0/12")
    with pytest.raises(ValueError, match="belongs to"):
        cloud.create_server("dup", "alpha", "RegionOne", ["172.16.0.12"])
    cloud.move_ip("172.16.0.12", sid)  # a-2's address now belongs to beta
    owners = {f["ip_address"]: p.project_id for p in conn.network.ports() for f in p.fixed_ips}
    assert owners["172.16.0.12"] == "p-beta"
    assert not list(conn.network.ports(device_id="srv-a-2"))
    cloud.rename_project("beta", "beta2")
    system = connect("system")
    assert "beta2" in {p.name for p in system.identity.projects()}
    cloud.delete_project("beta2")
    assert "p-beta" not in {p.id for p in system.identity.projects()}


# ---------------------------------------------------------------------- tokens


def test_disabled_or_deleted_project_token_is_rejected(cloud: SimCloud, clouds: Path) -> None:
    alice = connect("alice", region_name="RegionOne")
    token = alice.session.get_token()
    assert list(alice.compute.servers())
    system = connect("system")
    validate = f"{cloud.auth_url}/auth/tokens"
    ok = raw(system, validate, headers={"X-Subject-Token": token})
    assert ok.status_code == 200 and ok.headers["X-Subject-Token"] == token
    assert ok.json()["token"]["project"]["id"] == "p-alpha"
    cloud.disable_project("alpha")
    assert raw(system, validate, headers={"X-Subject-Token": token}).status_code == 404
    nova = requests.get(
        f"{cloud.compute_url('RegionOne')}/servers", headers={"X-Auth-Token": token}, timeout=5
    )
    assert nova.status_code == 401 and "Keystone uri=" in nova.headers["WWW-Authenticate"]
    # keystoneauth re-authenticates once on a 401, and that fails too: the project is disabled
    with pytest.raises(ksa_exc.Unauthorized, match="disabled"):
        list(alice.compute.servers())
    cloud.enable_project("alpha")
    assert list(connect("alice", region_name="RegionOne").network.ports())
    cloud.delete_project("alpha")
    neutron = requests.get(
        f"{cloud.network_url('RegionOne')}/v2.0/ports", headers={"X-Auth-Token": token}, timeout=5
    )
    assert neutron.status_code == 401


def test_expired_token_is_rejected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with SimCloud({**SCENARIO, "settings": {"token_ttl_seconds": 1}}) as sim:
        monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(sim.clouds_yaml(tmp_path / "c", ENTRIES)))
        token = connect("alice").session.get_token()
        r = requests.get(
            f"{sim.compute_url('RegionOne')}/servers", headers={"X-Auth-Token": token}, timeout=5
        )
        assert r.status_code == 200  # still valid
        sim.state.clock = lambda: time.time() + 1.1  # its 1 s have passed
        r = requests.get(
            f"{sim.compute_url('RegionOne')}/servers", headers={"X-Auth-Token": token}, timeout=5
        )
        assert r.status_code == 401


# ---------------------------------------------------------------------- faults


FAULTS: list[tuple[dict[str, Any], type[BaseException]]] = [
    ({"status": 503}, openstack.exceptions.HttpException),
    ({"status": 401}, openstack.exceptions.HttpException),  # every try: reauth does not help
    ({"drop": True}, ksa_exc.ConnectFailure),
    ({"malformed": True}, ValueError),  # requests' JSONDecodeError
    ({"truncated": True}, ksa_exc.ConnectionError),
    ({"delay": 2.0}, ksa_exc.ConnectTimeout),  # client timeout 0.3 s
]


@pytest.mark.parametrize(("fault", "error"), FAULTS, ids=lambda v: str(v))
def test_fault_is_seen_by_the_sdk(
    cloud: SimCloud, clouds: Path, fault: dict[str, Any], error: type[BaseException]
) -> None:
    conn = connect("admin", region_name="RegionOne", api_timeout=0.3)
    assert len(list(conn.compute.servers(all_projects=True))) == 8
    # every page after the first fails: the listing is cut halfway
    rule = cloud.add_fault(
        service="compute", path_regex=r"/servers/detail\?.*marker=", region="RegionOne", **fault
    )
    seen = []
    with pytest.raises(error):
        for server in conn.compute.servers(details=True, all_projects=True):
            seen.append(server)
    assert len(seen) == 3  # the first page was yielded before the failure
    cloud.remove_fault(rule)
    assert len(list(conn.compute.servers(details=True, all_projects=True))) == 8


def test_fault_count_and_after(cloud: SimCloud, clouds: Path) -> None:
    conn = connect("admin", region_name="RegionOne")
    list(conn.network.ports())
    # matches only the first page of each listing (later pages have a query string)
    cloud.add_fault(
        service="network",
        method="GET",
        path_regex="/ports$",
        status=500,
        after=1,
        count=1,
        body={"NeutronError": {"message": "boom"}},
    )
    assert len(list(conn.network.ports())) == 8  # match 1: skipped (after=1)
    with pytest.raises(openstack.exceptions.HttpException, match="boom"):
        list(conn.network.ports())  # match 2: fires
    assert len(list(conn.network.ports())) == 8  # count=1 exhausted
    cloud.add_fault(service="identity", path_regex="auth/tokens", method="POST", status=503)
    with pytest.raises(ksa_exc.ServiceUnavailable):
        connect("alice").session.get_token()
    cloud.clear_faults()
    assert connect("alice").session.get_token()


def test_counts(cloud: SimCloud, clouds: Path) -> None:
    cloud.reset_counts()
    conn = connect("admin", region_name="RegionTwo")
    list(conn.compute.servers(details=True, all_projects=True))
    conn.compute.get_server("srv-a-6")
    list(conn.network.ports())
    counts = cloud.counts()
    assert counts["tokens_issued"] == 1 and counts["identity POST /auth/tokens"] == 1
    assert counts["compute GET /servers/detail"] == 2
    assert counts["compute GET /servers/{id}"] == 1
    assert counts["network GET /ports"] == 2  # a full page of 3, then an empty one
    assert cloud.counts(by_region=True)["network RegionTwo GET /ports"] == 2
    cloud.reset_counts()
    assert cloud.counts() == {"tokens_issued": 0}


def test_stop_closes_pooled_connections(clouds: Path, cloud: SimCloud) -> None:
    conn = connect("admin", region_name="RegionOne", api_timeout=2)
    list(conn.compute.servers())
    cloud.stop()
    with pytest.raises(ksa_exc.ConnectionError):
        list(conn.compute.servers())


# ---------------------------------------------------------------------- scenario, generator, CLI


def test_scenario_validation_names_the_problem(tmp_path: Path) -> None:
    bad = {**SCENARIO, "servers": [_server("x", "nosuch", "RegionOne")]}
    with pytest.raises(ScenarioError, match="unknown project 'nosuch'"):
        parse_scenario(bad)
    dup = {
        **SCENARIO,
        "servers": [
            _server("x", "alpha", "RegionOne", "172.16.0.1"),
            _server("y", "beta", "RegionOne", "172.16.0.1"),
        ],
    }
    with pytest.raises(ScenarioError, match="already belongs"):
        parse_scenario(dup)
    path = tmp_path / "s.yaml"
    path.write_text("regions: [RegionOne]\nprojects: [{name: x, colour: red}]\n")
    with pytest.raises(ScenarioError, match=r"s\.yaml: projects\.0\.colour"):
        load_scenario(path)


def test_generate_is_realistic_and_deterministic() -> None:
    sc = generate(60, 600, seed=3)
    assert sc == generate(60, 600, seed=3) and sc != generate(60, 600, seed=4)
    assert len(sc.projects) == 61 and {"observer", "admin"} == {u.name for u in sc.users}
    sizes = Counter(s.project for s in sc.servers)
    assert max(sizes.values()) > 5 * len(sc.servers) / 60  # uneven
    assert len(sizes) < 60  # some projects have no instance
    fixed = [
        ipaddress.ip_address(a.addr) for s in sc.servers for a in s.addresses if a.type == "fixed"
    ]
    floating = [
        ipaddress.ip_address(a.addr)
        for s in sc.servers
        for a in s.addresses
        if a.type == "floating"
    ]
    assert len(set(fixed)) == len(fixed) and len(set(floating)) == len(floating) > 0
    v4, v6 = ipaddress.ip_network("172.16.0.0/12"), ipaddress.ip_network("fd00::/8")
    assert all(ip in (v4 if ip.version == 4 else v6) for ip in fixed)
    assert any(ip.version == 6 for ip in fixed)
    assert all(ip in ipaddress.ip_network("203.0.113.0/24") for ip in floating)
    assert {s.region for s in sc.servers} == {"RegionOne", "RegionTwo"}
    observer = next(u for u in sc.users if u.name == "observer")
    assert len([r for r in observer.roles if r.project]) == 61
    assert any(r.system == "all" for r in observer.roles)


def test_cli_gen_writes_a_loadable_scenario(tmp_path: Path) -> None:
    out = tmp_path / "cloud.yaml"
    assert main(["gen", "--projects", "8", "--instances", "40", "-o", str(out)]) == 0
    assert load_scenario(out) == generate(8, 40)
    assert main(["serve", "--scenario", str(tmp_path / "nope")]) == 2
    assert main(["nonsense"]) == 2


def test_cli_serve_prints_clouds_yaml_and_stops_on_sigterm(tmp_path: Path) -> None:
    scenario = tmp_path / "s.json"
    scenario.write_text(
        '{"regions": ["RegionOne"], "projects": [{"name": "p"}], "users": '
        '[{"name": "u", "password": "pw", "roles": [{"role": "admin", '
        '"project": "p"}]}]}'
    )
    written = tmp_path / "clouds.yaml"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nfs_exportd_sim",
            "serve",
            "--scenario",
            str(scenario),
            "--clouds-yaml",
            str(written),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        banner = proc.stderr.readline()  # printed after the clouds.yaml
        assert "simulated cloud at http://127.0.0.1:" in banner
        entry = yaml.safe_load(written.read_text())["clouds"]["u"]
        auth_url = entry["auth"]["auth_url"]
        assert auth_url.startswith("http://127.0.0.1:") and entry["auth"]["project_name"] == "p"
        assert requests.get(auth_url, timeout=5).status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        stdout, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert stdout == written.read_text()


def test_clouds_yaml_is_what_openstacksdk_reads(cloud: SimCloud, tmp_path: Path) -> None:
    path = cloud.clouds_yaml(tmp_path / "clouds.yaml")  # default entries from the users
    doc = yaml.safe_load(path.read_text())
    assert set(doc["clouds"]) == {"observer", "observer-system", "admin", "alice"}
    env = {**os.environ, "OS_CLIENT_CONFIG_FILE": str(path)}
    code = (
        "import openstack; c = openstack.connect(cloud='observer-system'); "
        "print(sorted(p.name for p in c.identity.projects()))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert out.stdout.strip() == "['admin', 'alpha', 'beta', 'gamma']"
