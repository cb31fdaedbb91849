"""Fixture tests of the pure parsers, pyinfra style: given these facts (a file under
``tests/fixtures/<parser>/``), expect these (the ``.yaml`` next to it).

The parsers are otherwise reached only through HTTP (the simulated cloud) or the real
exportfs; here each case is one real answer (see ``tests/fixtures/README.md`` for where
they come from), so a new case is two files and no code.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from nfs_exportd import errors
from nfs_exportd.apply.exportfs import parse_etab, parse_stderr
from nfs_exportd.model import AddressClaim, InstanceRecord, ProjectRecord
from nfs_exportd.read.inventory import pages
from nfs_exportd.read.inventory.openstack import (
    _RegionMerge,
    merge_region,
    parse_projects,
    servers_of,
)

FIXTURES = Path(__file__).parent / "fixtures"


def cases(parser: str) -> list[Any]:
    """(input file, expected) per case of one parser, named by the case."""
    folder = FIXTURES / parser
    out = []
    for expected in sorted(folder.glob("*.yaml")):
        (given,) = [p for p in folder.glob(expected.stem + ".*") if p.suffix != ".yaml"]
        want = yaml.safe_load(expected.read_text())
        out.append(pytest.param(given, want, id=expected.stem))
    assert out, f"no cases in {folder}"
    return out


def raised(want: dict[str, Any], call: Callable[[], Any]) -> Any:
    """Run ``call``; when the case expects an error, check its type and whole message."""
    if "error" not in want:
        return call()
    kind = getattr(errors, want["error"]["type"])
    with pytest.raises(kind) as caught:
        call()
    assert type(caught.value) is kind
    assert str(caught.value) == want["error"]["message"]
    return None


def instance(rec: InstanceRecord) -> dict[str, Any]:
    return {
        "id": rec.id,
        "name": rec.name,
        "status": rec.status,
        "addresses": [str(a) for a in rec.addresses],
    }


# --------------------------------------------------------------------------- exportfs


@pytest.mark.parametrize(("given", "want"), cases("exportfs_stderr"))
def test_exportfs_stderr(given: Path, want: dict[str, Any]) -> None:
    """exportfs's stderr -> messages: errors and warnings, attributed to an exports
    file and line, or to an export path, where exportfs says which."""
    got = [
        {k: v for k, v in vars(m).items() if v not in (None, False)}
        for m in parse_stderr(given.read_text())
    ]
    assert got == want["messages"]


@pytest.mark.parametrize(("given", "want"), cases("etab"))
def test_etab(given: Path, want: dict[str, Any]) -> None:
    """/var/lib/nfs/etab -> (path, client) pairs with their options."""
    got = parse_etab(given.read_text())
    assert {f"{path} {client}": sorted(opts) for (path, client), opts in got.items()} == (
        want["pairs"] or {}
    )


# --------------------------------------------------------------------------- OpenStack


@pytest.mark.parametrize(("given", "want"), cases("keystone_projects"))
def test_keystone_projects(given: Path, want: dict[str, Any]) -> None:
    """Keystone's GET /v3/projects answer -> projects by id (and their domains)."""
    got = raised(want, lambda: parse_projects(json.loads(given.read_text())))
    if got is not None:
        records, domains = got
        assert {
            pid: {"name": r.name, "enabled": r.enabled, "domain": domains[pid]}
            for pid, r in records.items()
        } == want["projects"]
        assert all(r.id == pid for pid, r in records.items())


@pytest.mark.parametrize(("given", "want"), cases("nova_servers"))
def test_nova_servers(given: Path, want: dict[str, Any]) -> None:
    """A project-scoped Nova page (per-project mode) -> that project's instances, and
    what makes the project unknown."""
    facts = want["given"]
    project = ProjectRecord(facts["project"]["id"], facts["project"]["name"], True)
    servers = json.loads(given.read_text())["servers"]
    bad: list[str] = []
    got = raised(
        want,
        lambda: servers_of(
            project, facts["region"], servers, bad, facts.get("include_floating_ips", False)
        ),
    )
    if got is not None:
        assert [instance(r) for r in got] == want["instances"]
        assert all(r.project == project.name for r in got)
        assert bad == want["bad"]


@pytest.mark.parametrize(("given", "want"), cases("neutron_region"))
def test_neutron_region(given: Path, want: dict[str, Any]) -> None:
    """One region's Neutron ports, Nova servers and floating IPs (all-projects mode) ->
    instances per project, unknown projects, and claims on addresses."""
    facts = want["given"]
    projects = {pid: ProjectRecord(pid, p["name"], True) for pid, p in facts["projects"].items()}
    page = json.loads(given.read_text())
    instances: dict[str, list[InstanceRecord]] = {}
    incomplete: dict[str, str] = {}
    claims: dict[str, list[AddressClaim]] = {}
    raised(
        want,
        lambda: merge_region(
            facts["region"],
            projects,
            page["ports"],
            page["servers"],
            page.get("floatingips", []),
            instances,
            incomplete,
            claims,
        ),
    )
    if "error" in want:
        return
    assert {p: [instance(r) for r in recs] for p, recs in instances.items()} == want["instances"]
    assert incomplete == want["incomplete"]
    assert {
        ip: [{"detail": c.detail, "projects": list(c.projects), "ids": list(c.ids)} for c in cs]
        for ip, cs in claims.items()
    } == want["claims"]


@pytest.mark.parametrize("bad_id", ["f00 *(rw)", "a/b", "x" * 65, "", "é1"])
def test_a_keystone_id_outside_the_grammar_is_bad_data(bad_id: str) -> None:
    """The id is recorded in the managed file and decides ownership: a listing with a
    malformed id is bad data (unknown, the exports in force kept), never an id written
    into a file (the renderer would refuse every cycle)."""
    from nfs_exportd.errors import InventoryBadData
    from nfs_exportd.read.inventory.openstack import parse_projects

    body = {
        "projects": [
            {"id": "0a1b", "name": "tools", "enabled": True},
            {"id": bad_id, "name": "paws", "enabled": True},
        ]
    }
    with pytest.raises(InventoryBadData, match=r"paws.*malformed id"):
        parse_projects(body)


# --------------------------------------------------------------------------- merge fast paths

ADDRESS_TEXTS = [
    "10.0.0.1", "10.0.0.2", "10.0.0.3", "fd00::2", "FD00::2", "::ffff:10.0.0.1",
    "fe80::1", "127.0.0.1", "10.0.0.4%eth0", "10.0.0.1/32", "10.0.0.0/24", 7, None,
]  # fmt: skip


STATUSES = ["ACTIVE"] * 6 + ["SHUTOFF", "active", "UNKNOWN", "DELETED", "BUILD", "ERROR"]


def random_region(rng: random.Random) -> tuple[dict[str, ProjectRecord], dict[str, Any]]:
    """A small region where most ports and servers are the common case and the rest is
    anything ``merge_region`` must refuse, claim or name: ports without instances, pairs,
    unlisted projects, a port of one project on a server of another, servers listed
    twice, down or deleted, with addresses no port shows or without one a port shows,
    entries that are no objects, devices that are no strings, floating IPs (refused
    ones too)."""
    pids = [f"p{i}" for i in range(4)]
    projects = {pid: ProjectRecord(pid, f"name-{pid}", True) for pid in pids[:3]}
    pick, coin = rng.choice, rng.random
    ports, servers, fips = [], [], []
    for n in range(rng.randrange(1, 12)):
        sid, proj = f"srv{n % 9}", pick(pids)
        fixed: list[Any] = [{"ip_address": f"10.1.{n}.{k + 1}"} for k in range(rng.randrange(3))]
        if coin() < 0.3:
            fixed.append({"ip_address": pick(ADDRESS_TEXTS)} if coin() < 0.8 else "10.0.0.3")
        port: dict[str, Any] = {
            "id": f"port{n}" if coin() < 0.95 else n,
            "device_id": sid if coin() < 0.98 else pick([None, 9]),
            "device_owner": "compute:nova" if coin() < 0.8 else pick(["network:dhcp", ""]),
            "project_id": proj if coin() < 0.9 else pick(["", None]),
            "fixed_ips": fixed,
        }
        if coin() < 0.2:
            port["allowed_address_pairs"] = [{"ip_address": pick(ADDRESS_TEXTS)}]
        if coin() < 0.1:
            port["tenant_id"] = pick(pids)
        ports.append(port)
        if coin() < 0.3:
            fips.append(
                {"id": f"fip{n}", "port_id": port["id"], "project_id": pick(pids),
                 "floating_ip_address": f"203.0.113.{n + 1}" if coin() < 0.9 else "fe80::1"}
            )  # fmt: skip
    for n in range(rng.randrange(1, 12)):
        sid = f"srv{rng.randrange(10)}"
        shown = [f["ip_address"] for p in ports if p["device_id"] == sid for f in p["fixed_ips"]
                 if isinstance(f, dict)]  # fmt: skip
        # mostly its ports' project (else the fast path of the instance is seldom taken)
        of_ports = [p["project_id"] for p in ports if p["device_id"] == sid]
        # Nova may lag Neutron: an address a port shows (even one refused) may be missing
        entries: list[Any] = [{"addr": a, "OS-EXT-IPS:type": "fixed"} for a in shown
                              if coin() < 0.9]  # fmt: skip
        if coin() < 0.3:
            entries.append(
                {"addr": pick(ADDRESS_TEXTS), "OS-EXT-IPS:type": pick(["fixed", "floating"])}
            )
        if coin() < 0.1:
            entries.append({"addr": pick(ADDRESS_TEXTS)})
        if coin() < 0.03:
            entries.append(pick(["10.0.0.1", None]))  # not an object
        srv: dict[str, Any] = {
            "id": sid,
            "name": f"vm{n}" if coin() < 0.9 else None,
            "status": pick(STATUSES),
            "tenant_id": of_ports[0] if of_ports and of_ports[0] and coin() < 0.7 else pick(pids),
            "addresses": {"net": entries} if coin() < 0.9 else pick([None, {}, {"net": "x"}]),
        }  # fmt: skip
        servers.append(srv)
    return projects, {
        "ports": ports,
        "servers": servers,
        "floatingips": fips if coin() < 0.5 else [],
    }


def as_read(items: list[Any], key: str, decoders: pages.Decoders) -> list[Any]:
    """``items`` as ``list_all`` reads them from a page holding them: through the page
    decoders (typed items or dicts of the fields read), else ``json``."""
    body = json.dumps({key: items}).encode()
    page = pages.decode(body, decoders)
    return list((page if page is not None else json.loads(body))[key])


def typed_only(
    region: tuple[dict[str, ProjectRecord], dict[str, Any]],
) -> tuple[dict[str, ProjectRecord], dict[str, Any]]:
    """The region without the ports and servers the typed decoders refuse."""
    projects, page = region

    def typed(key: str, item: Any, decoders: pages.Decoders) -> bool:
        return pages.decode(json.dumps({key: [item]}).encode(), decoders[:1]) is not None

    return projects, {
        **page,
        "ports": [p for p in page["ports"] if typed("ports", p, pages.PORTS)],
        "servers": [s for s in page["servers"] if typed("servers", s, pages.SERVERS)],
    }


def merged(projects: dict[str, ProjectRecord], page: dict[str, Any], fast: bool) -> tuple[Any, ...]:
    """``merge_region``'s results (or its error): with the fast paths off on the items as
    ``json`` decodes them (the reference), or on, on the items as the page decoders
    give them."""
    instances: dict[str, list[InstanceRecord]] = {}
    incomplete: dict[str, str] = {}
    claims: dict[str, list[AddressClaim]] = {}
    floating: dict[str, str] = {}
    ports, servers, fips = page["ports"], page["servers"], page.get("floatingips", [])
    if fast:
        ports = as_read(ports, "ports", pages.PORTS)
        servers = as_read(servers, "servers", pages.SERVERS)
        fips = as_read(fips, "floatingips", pages.FLOATING_IPS)
    saved, _RegionMerge.fast = _RegionMerge.fast, fast
    try:
        merge_region(
            "r1", projects, ports, servers, fips, instances, incomplete, claims, floating
        )  # fmt: skip
    except errors.InventoryError as exc:
        return (type(exc), str(exc))
    finally:
        _RegionMerge.fast = saved
    return (instances, incomplete, claims, floating)


def test_merge_fast_paths_answer_as_the_checked_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fast paths of ``merge_region`` (the common port, server and instance) give the
    same instances, unknown projects (same first reason), claims and errors as the
    checked paths alone: on the fixture and on many random regions."""
    fast_made = [0]  # instances the fast path of read_servers made (not the checked one)
    own_servers = _RegionMerge.own_servers

    def counted(self: _RegionMerge) -> None:
        fast_made[0] += sum(pts[0].instance is not None for pts in self.by_server.values())
        own_servers(self)

    monkeypatch.setattr(_RegionMerge, "own_servers", counted)
    fixtures = [
        ({pid: ProjectRecord(pid, p["name"], True) for pid, p in
          want["given"]["projects"].items()}, json.loads(given.read_text()))
        for given, want in (c.values for c in cases("neutron_region"))
    ]  # fmt: skip
    rng = random.Random(15)
    regions = fixtures + [random_region(rng) for _ in range(3000)]
    # a page with one item of another type is read as dicts, by the checked paths alone:
    # regions whose items are all typed reach the fast paths more often
    regions += [typed_only(random_region(rng)) for _ in range(3000)]
    for projects, page in regions:
        want = merged(projects, page, fast=False)
        assert merged(projects, page, fast=True) == want, page
    assert fast_made[0] > 400  # the common case is common here too
