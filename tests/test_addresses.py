"""The one address grammar (issue 10, finding 1) and ownership per address (finding 2):
unit tests of ``nfs_exportd.addresses``, of the all-projects merge of Neutron ports and
Nova servers, and a fuzz test that feeds random text as fixed IPs, server and port names
and ids through the OpenStack source (its merge with the JSON the simulator serves, and
fewer examples through the real HTTP path against the simulator), decides, renders the
files and checks every line against a strict exports grammar and every client against
every claim."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nfs_exportd.addresses import (
    AddressError,
    canonical_address,
    is_canonical_address,
    parse_address,
    parse_network,
)
from nfs_exportd.decide.reconcile import DecideInput, Policy, decide
from nfs_exportd.errors import InventoryError
from nfs_exportd.exportsfile import ManagedFileError, parse, parse_lines, render
from nfs_exportd.model import (
    AddressClaim,
    ExportLine,
    ExportsFile,
    InstanceRecord,
    InventorySnapshot,
    ProjectRecord,
    ServedExport,
)
from nfs_exportd.read.inventory.openstack import OpenStackInventory, OpenStackSettings, merge_region
from nfs_exportd_sim import SimCloud

# --------------------------------------------------------------------------- the grammar

ACCEPTED = {
    "172.16.0.11": "172.16.0.11",
    "10.0.0.1": "10.0.0.1",
    "100.64.0.1": "100.64.0.1",  # shared address space: clouds use it
    "192.0.2.7": "192.0.2.7",  # documentation ranges are kept
    "fd00::11": "fd00::11",
    "FD00:0:0::0011": "fd00::11",  # canonical form
    "2001:db8::1": "2001:db8::1",
    "::ffff:172.16.0.11": "172.16.0.11",  # v4-mapped: the same NFS client as IPv4
    "::FFFF:AC10:000B": "172.16.0.11",
    "0:0:0:0:0:ffff:172.16.0.11": "172.16.0.11",
    "2002:ac10:b::1": "2002:ac10:b::1",  # 6to4 kept as it is
    "2001:0:4136:e378:8000:63bf:3fff:fdd2": "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
}
REFUSED = {
    "fe80::1%x *(rw,no_root_squash,insecure)": "zone id",
    "fd00::11%eth0": "zone id",
    "fd00::11%": "zone id",
    "172.16.0.11\n/ *(rw)": "whitespace",
    "172.16.0.11 ": "whitespace",
    " 172.16.0.11": "whitespace",
    "172.16.0.11\x00": "control",
    "\\057": "backslash",
    "1७2.16.0.11": "non-ASCII digit",
    "１72.16.0.11": "full-width digit",
    "172.16.0.0/24": "network",
    "tools-1.example": "name",
    "": "empty",
    "0.0.0.0": "unspecified",
    "::": "unspecified",
    "::ffff:0.0.0.0": "unspecified (mapped)",
    "0.1.2.3": "this network",
    "127.0.0.1": "loopback",
    "127.1.2.3": "loopback",
    "::1": "loopback",
    "::ffff:127.0.0.1": "loopback (mapped)",
    "224.0.0.1": "multicast",
    "ff02::1": "multicast",
    "255.255.255.255": "broadcast",
    "::ffff:255.255.255.255": "broadcast (mapped)",
    "240.0.0.1": "reserved",
    "169.254.1.1": "link-local",
    "fe80::1": "link-local",
    "::ffff:169.254.1.1": "link-local (mapped)",
    "fec0::1": "site-local",
    "::172.16.0.11": "IPv4-compatible (deprecated, reserved)",
    "100::1": "discard-only (reserved)",
    "64:ff9b::ac10:b": "NAT64 (reserved)",
    "172.016.0.11": "leading zeros",
    "1" * 46: "too long",
}


@pytest.mark.parametrize(("text", "canonical"), sorted(ACCEPTED.items()))
def test_accepted_addresses_are_canonical(text: str, canonical: str) -> None:
    assert canonical_address(text) == canonical
    assert is_canonical_address(canonical)
    assert is_canonical_address(text) == (text == canonical)


@pytest.mark.parametrize(("text", "why"), sorted(REFUSED.items()))
def test_refused_addresses_name_the_text(text: str, why: str) -> None:
    with pytest.raises(AddressError) as err:
        parse_address(text)
    msg = str(err.value)
    assert repr(text)[:60] in msg, msg  # the value, escaped
    assert "\n" not in msg  # one line, whatever the value holds
    assert isinstance(err.value, ValueError)
    assert not is_canonical_address(text)


@pytest.mark.parametrize("value", [None, 6, 3.5, b"172.16.0.11", ["172.16.0.11"], {"a": 1}])
def test_non_strings_are_refused(value: object) -> None:
    with pytest.raises(AddressError, match="not a string"):
        parse_address(value)


def test_networks_for_clients_in_force() -> None:
    assert str(parse_network("172.16.0.0/21")) == "172.16.0.0/21"
    assert str(parse_network("172.16.0.11/32")) == "172.16.0.11"
    assert str(parse_network("::ffff:172.16.0.11/128")) == "172.16.0.11"
    for bad in ("172.16.0.1/21", "fe80::%1/64", "::ffff:0:0/96", "224.0.0.0/4", "127.0.0.1/32"):
        with pytest.raises(AddressError):
            parse_network(bad)


def test_managed_file_clients_go_through_the_grammar() -> None:
    """Clients of files in force: v4-mapped read as IPv4 (so a conflict is seen), and a
    token outside the grammar is an error naming file:line (never silently kept)."""
    (line,) = parse_lines("tools.exports", ["/srv/tools/home -rw ::ffff:172.16.0.11 fd00::11"])
    assert line.clients == ("172.16.0.11", "fd00::11")
    header = "# nfs-exportd managed file, do not edit: project=tools\n"
    for bad in ("fe80::1%x", "127.0.0.1", "*(rw)"):
        with pytest.raises(ManagedFileError, match=r"tools.exports:2: client"):
            parse("tools.exports", f"{header}/srv/tools/home -rw 172.16.0.5 {bad}\n")


# --------------------------------------------------------------------------- the merge

TOOLS, PAWS, GHOST = "id-tools", "id-paws", "id-ghost"  # ghost: not listed by Keystone
PROJECTS = {
    TOOLS: ProjectRecord(TOOLS, "tools", True),
    PAWS: ProjectRecord(PAWS, "paws", True),
}


def port(
    pid: str, server: str, project: str, *ips: Any, owner: str = "compute:nova"
) -> dict[str, Any]:
    return {
        "id": pid,
        "device_id": server,
        "device_owner": owner,
        "project_id": project,
        "fixed_ips": [{"subnet_id": "s", "ip_address": ip} for ip in ips],
    }


def server(sid: str, project: str, status: str = "ACTIVE") -> dict[str, Any]:
    return {"id": sid, "name": sid, "status": status, "tenant_id": project}


def merge(
    ports: Sequence[dict[str, Any]],
    servers: Sequence[dict[str, Any]],
    fips: Sequence[dict[str, Any]] = (),
) -> InventorySnapshot:
    instances: dict[str, list[InstanceRecord]] = {}
    incomplete: dict[str, str] = {}
    claims: dict[str, list[AddressClaim]] = {}
    merge_region("R1", PROJECTS, ports, servers, fips, instances, incomplete, claims)
    by_name = {p.name: p for p in PROJECTS.values()}
    return InventorySnapshot(
        source="test",
        projects=by_name,
        instances={n: tuple(instances.get(n, ())) for n in by_name},
        incomplete=incomplete,
        claims={ip: tuple(c) for ip, c in claims.items()},
    )


def ips(snap: InventorySnapshot, project: str) -> set[str]:
    return {str(a) for i in snap.instances[project] for a in i.addresses}


def test_bad_fixed_ip_makes_only_its_instances_project_unknown() -> None:
    snap = merge(
        [
            port("p-t1", "t1", TOOLS, "172.16.0.11"),
            port("p-evil", "t1", TOOLS, "fe80::1%x *(rw,no_root_squash,insecure)"),
            port("p-w1", "w1", PAWS, "172.16.0.21"),
        ],
        [server("t1", TOOLS), server("w1", PAWS)],
    )
    assert set(snap.incomplete) == {"tools"}
    why = snap.incomplete["tools"]
    assert "p-evil" in why and "t1" in why and "fe80::1%x" in why, why
    assert snap.project_complete("paws") and ips(snap, "paws") == {"172.16.0.21"}
    assert ips(snap, "tools") == {"172.16.0.11"}  # the good one still claims
    assert not snap.claims


def test_bad_fixed_ip_on_a_foreign_port_holds_both_projects() -> None:
    snap = merge(
        [port("p-t1", "t1", TOOLS, "172.16.0.11"), port("p-x", "t1", PAWS, "172.16.0.11\n")],
        [server("t1", TOOLS)],
    )
    assert set(snap.incomplete) == {"tools", "paws"}
    assert "p-x" in snap.incomplete["paws"] and "'172.16.0.11\\n'" in snap.incomplete["paws"]


def test_v4_mapped_fixed_ip_is_the_ipv4_address() -> None:
    snap = merge(
        [
            port("p-t1", "t1", TOOLS, "172.16.0.11"),
            port("p-w1", "w1", PAWS, "::ffff:172.16.0.11"),
        ],
        [server("t1", TOOLS), server("w1", PAWS)],
    )
    assert ips(snap, "tools") == ips(snap, "paws") == {"172.16.0.11"}  # a conflict for decide


def test_port_of_one_project_on_a_server_of_another_is_a_claim_for_neither() -> None:
    snap = merge(
        [
            port("p-own", "t3", TOOLS, "172.16.0.13"),
            port("p-foreign", "t3", PAWS, "172.16.0.99"),  # listed after: used to win
        ],
        [server("t3", TOOLS)],
    )
    assert ips(snap, "tools") == {"172.16.0.13"}  # its own port stays its own
    assert ips(snap, "paws") == set()
    (claim,) = snap.claims["172.16.0.99"]
    assert claim.projects == ("paws", "tools")
    assert "p-foreign" in claim.detail and "t3" in claim.detail
    assert "project paws" in claim.detail and "project tools" in claim.detail


def test_port_of_an_unlisted_project_claims_its_address() -> None:
    snap = merge(
        [port("p-ghost", "g1", GHOST, "172.16.0.12")],
        [server("g1", GHOST)],
    )
    (claim,) = snap.claims["172.16.0.12"]
    assert claim.projects == ()
    assert "id-ghost" in claim.detail and "not listed by Keystone" in claim.detail
    assert all(not v for v in snap.instances.values())


def test_listed_port_on_a_server_of_an_unlisted_project_is_a_claim() -> None:
    snap = merge([port("p-t", "g1", TOOLS, "172.16.0.12")], [server("g1", GHOST)])
    assert ips(snap, "tools") == set()
    (claim,) = snap.claims["172.16.0.12"]
    assert claim.projects == ("tools",) and "not listed by Keystone" in claim.detail


def test_server_nova_does_not_list_goes_by_its_ports_when_they_agree() -> None:
    snap = merge(
        [
            port("p1", "stale", TOOLS, "172.16.0.14"),
            port("p2", "mixed", TOOLS, "172.16.0.15"),
            port("p3", "mixed", PAWS, "172.16.0.16"),
        ],
        [],
    )
    assert ips(snap, "tools") == {"172.16.0.14"}
    assert {"172.16.0.15", "172.16.0.16"} <= set(snap.claims)


def test_floating_ip_of_another_project_is_a_claim() -> None:
    fips = [
        {"id": "f1", "floating_ip_address": "203.0.113.5", "port_id": "p1", "project_id": TOOLS},
        {"id": "f2", "floating_ip_address": "203.0.113.6", "port_id": "p1", "project_id": PAWS},
        {"id": "f3", "floating_ip_address": "127.0.0.1", "port_id": "p2", "project_id": PAWS},
    ]
    snap = merge(
        [port("p1", "t1", TOOLS, "172.16.0.11"), port("p2", "w1", PAWS, "172.16.0.21")],
        [server("t1", TOOLS), server("w1", PAWS)],
        fips,
    )
    assert ips(snap, "tools") == {"172.16.0.11", "203.0.113.5"}
    assert snap.claims["203.0.113.6"][0].projects == ("paws", "tools")
    assert set(snap.incomplete) == {"paws"} and "f3" in snap.incomplete["paws"]


def test_a_malformed_port_record_still_fails_the_read() -> None:
    with pytest.raises(InventoryError, match="device_id"):
        merge([{"id": "p", "device_owner": "compute:nova", "fixed_ips": []}], [])


# --------------------------------------------------------------------------- the fuzz

# One strict line of a managed file, as exports(5) must read it: PATH -OPTIONS CLIENT...
HEADER_RE = re.compile(r"# nfs-exportd managed file, do not edit: project=[a-z][a-z0-9-]*")
LINE_RE = re.compile(r"(/[A-Za-z0-9_.-]+)+ -[a-z_]+(,[a-z_]+)*( [0-9a-f:.]+)+")
POOL = ["172.16.0.11", "172.16.0.12", "172.16.0.21", "fd00::11", "10.1.2.3"]
INJECT = [
    "fe80::1%x *(rw,no_root_squash,insecure)",
    "fd00::11%x *(rw,no_root_squash,insecure)",
    "fd00::12%x\n\\057 *(rw,no_root_squash)\n\\057srv\\057paws\\057home *(rw)",
    "fd00::11%x\n/ *(rw,no_root_squash)",
    "172.16.0.11 *(rw)",
    "::ffff:172.16.0.11",
    "::FFFF:172.16.0.12",
    "::ffff:127.0.0.1",
    "0.0.0.0",
    "*",
    "",
]
PIDS = [TOOLS, PAWS, "id-batch", GHOST, "id-ghost-2"]
NAMES = {TOOLS: "tools", PAWS: "paws", "id-batch": "batch"}
ROOT = "/srv"

texts = st.text(max_size=30) | st.binary(max_size=20).map(lambda b: b.decode("latin-1"))
fixed_ips = st.sampled_from(POOL) | st.sampled_from(INJECT) | texts
ids = st.sampled_from(["s1", "s2", "s3", "s4"]) | texts


@st.composite
def region_data(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    sids = draw(st.lists(ids, min_size=1, max_size=5, unique=True))
    servers = [
        {
            "id": sid,
            "name": draw(texts),
            "status": draw(st.sampled_from(["ACTIVE", "SHUTOFF", "BUILD", "ERROR"])),
            "tenant_id": draw(st.sampled_from(PIDS)),
        }
        for sid in sids
    ]
    ports = [
        port(
            draw(ids) + f"-{n}",
            draw(st.sampled_from(sids) | ids),
            draw(st.sampled_from(PIDS)),
            *draw(st.lists(fixed_ips, max_size=3)),
        )
        for n in range(draw(st.integers(0, 6)))
    ]
    return ports, servers


def _snapshot(ports: list[dict[str, Any]], servers: list[dict[str, Any]]) -> InventorySnapshot:
    projects = {pid: ProjectRecord(pid, name, True) for pid, name in NAMES.items()}
    instances: dict[str, list[InstanceRecord]] = {}
    incomplete: dict[str, str] = {}
    claims: dict[str, list[AddressClaim]] = {}
    try:
        merge_region("R1", projects, ports, servers, [], instances, incomplete, claims)
    except InventoryError as exc:
        return InventorySnapshot.unknown("fuzz", str(exc))
    return InventorySnapshot(
        source="fuzz",
        projects={p.name: p for p in projects.values()},
        instances={n: tuple(instances.get(n, ())) for n in NAMES.values()},
        incomplete=incomplete,
        claims={ip: tuple(c) for ip, c in claims.items()},
    )


IN_FORCE = {  # what was in force before: every pool address somewhere
    "tools": ("172.16.0.11", "fd00::11", "172.16.0.12"),
    "paws": ("172.16.0.21", "10.1.2.3"),
}


def raw_claims(
    ports: Sequence[dict[str, Any]], servers: Sequence[dict[str, Any]]
) -> dict[str, set[str]]:
    """The oracle, from the raw listings: address -> every project id that claims it (the
    port's project and its server's), whatever the source made of them."""
    tenant = {s["id"]: s["tenant_id"] for s in servers}
    out: dict[str, set[str]] = {}
    for pt in ports:
        for fixed in pt["fixed_ips"]:
            try:
                addr = canonical_address(fixed["ip_address"])
            except AddressError:
                continue
            out.setdefault(addr, set()).add(pt["project_id"])
            if pt["device_id"] in tenant:
                out[addr].add(tenant[pt["device_id"]])
    return out


def _render_and_check(snap: InventorySnapshot, raw: Mapping[str, set[str]]) -> None:
    """Decide from ``snap`` against IN_FORCE, render every file, check every line, and
    check every client against the oracle ``raw``."""
    private = {
        p: (ServedExport(p, "home", f"{ROOT}/{p}/home", "rw,sync,no_subtree_check"),)
        for p in ("tools", "paws")
    }
    in_force = {
        f"{p}.exports": ExportsFile(
            f"{p}.exports",
            "project",
            p,
            (ExportLine(f"{ROOT}/{p}/home", "rw,sync,no_subtree_check", clients),),
        )
        for p, clients in IN_FORCE.items()
    }
    plan = decide(DecideInput(private, (), snap, in_force), Policy(confirmations=1))
    owner_of: dict[str, set[str]] = {}
    for name, f in plan.files.items():
        if f is None:
            continue
        text = render(f)
        lines = text.split("\n")
        assert lines[-1] == "" and HEADER_RE.fullmatch(lines[0]), text
        if lines[1].startswith("# keystone-id="):  # the project's bound id, a comment
            assert re.fullmatch(r"# keystone-id=[A-Za-z0-9_-]{1,64}", lines[1]), text
            lines.pop(1)
        for line in lines[1:-1]:
            assert LINE_RE.fullmatch(line), f"{name}: {line!r}"
            for client in line.split(" ")[2:]:
                assert is_canonical_address(client), f"{name}: {client!r}"
                owner_of.setdefault(client, set()).add(f.owner)
    # no canonical address is exported for two projects ...
    assert all(len(o) == 1 for o in owner_of.values()), owner_of
    # ... nor for one while anything else claims it in this (complete) listing
    if snap.listing_complete:
        for client, (owner,) in ((c, tuple(o)) for c, o in owner_of.items()):
            for project, insts in snap.instances.items():
                if project != owner:
                    assert all(client not in map(str, i.addresses) for i in insts), client
            assert snap.projects is not None
            pid = snap.projects[owner].id
            # a claim that gives it to nobody may stand only if it is the owner's own id's
            # (its servers while a listing does not show it: the deletion rules apply)
            for c in snap.claims.get(client, ()):
                assert set(c.ids) == {pid}, (owner, client, c)
            # nothing comes from nowhere: an address of its own instances, or one it had
            own = {str(a) for i in snap.instances.get(owner, ()) for a in i.addresses}
            assert client in own | set(IN_FORCE.get(owner, ())), (owner, client)
            # and by the raw listings: claimed by this project's id alone, or by nobody
            assert raw.get(client, {pid}) == {pid}, (owner, client, raw[client])


@settings(
    max_examples=1000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(region_data())
def test_fuzz_merge_decide_render(data: tuple[list[dict[str, Any]], list[dict[str, Any]]]) -> None:
    ports, servers = data
    snap = _snapshot(ports, servers)
    for why in snap.incomplete.values():
        assert "\n" not in why and "\r" not in why  # messages stay one line
    _render_and_check(snap, raw_claims(ports, servers))


# -- the same through the real HTTP path: openstacksdk against the simulator

SIM_SCENARIO: dict[str, Any] = {
    "regions": ["R1"],
    "projects": [{"name": n} for n in ("admin", "tools", "paws", "ghost")],
    "users": [
        {"name": "admin", "password": "pw", "roles": [{"role": "admin", "project": "admin"}]}
    ],
    "servers": [
        {
            "id": "t1",
            "name": "t1",
            "project": "tools",
            "region": "R1",
            "addresses": ["172.16.0.11"],
        },
        {"id": "w1", "name": "w1", "project": "paws", "region": "R1", "addresses": ["172.16.0.21"]},
        {"id": "g1", "name": "g1", "project": "ghost", "region": "R1", "addresses": ["10.9.9.9"]},
    ],
}


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SimCloud, Path]]:
    sim = SimCloud(SIM_SCENARIO)
    sim.start()
    try:
        sim.delete_project("ghost")  # g1 is an orphan now: its port still claims
        clouds = tmp_path_factory.mktemp("clouds") / "clouds.yaml"
        sim.clouds_yaml(clouds, {"admin": {"user": "admin", "password": "pw", "project": "admin"}})
        yield sim, clouds
    finally:
        sim.stop()


http_port = st.tuples(
    st.sampled_from(["t1", "w1", "g1", "nowhere"]),
    st.sampled_from(["tools", "paws", None]),
    st.lists(fixed_ips, min_size=1, max_size=2),
)


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(http_port, max_size=3), texts)
def test_fuzz_through_the_real_openstack_source(
    cloud: tuple[SimCloud, Path],
    monkeypatch_module: pytest.MonkeyPatch,
    extra: list[tuple[str, str | None, list[str]]],
    name: str,
) -> None:
    sim, clouds = cloud
    monkeypatch_module.setenv("OS_CLIENT_CONFIG_FILE", str(clouds))
    added = []
    try:
        for device, project, texts_ in extra:
            kw: dict[str, Any] = {"project": project} if project else {}
            if device == "nowhere" and not project:
                kw = {"project_id": "id-unlisted"}
            added.append(sim.add_port(device, texts_, **kw))
        sim.state.servers["w1"].name = name  # any text as a server name
        sim.state._bump()
        snap = OpenStackInventory(OpenStackSettings(clouds=("admin",), timeout=5.0)).read()
        assert snap.listing_complete, snap.problem
        with sim.state.lock:
            served = [{"id": s.id, "tenant_id": s.project_id} for s in sim.state.servers.values()]
            raw = raw_claims(sim.state.region_ports("R1"), served)
        _render_and_check(snap, raw)
    finally:
        for pid in added:
            sim.remove_port(pid)


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


# --------------------------------------------------------------------------- every claim


def nova(sid: str, project: str, *addrs: str, status: str = "ACTIVE") -> dict[str, Any]:
    """A server as Nova lists it, with the addresses it shows."""
    nets = {"net": [{"addr": a, "OS-EXT-IPS:type": "fixed"} for a in addrs]}
    return {**server(sid, project, status), "addresses": nets}


@pytest.mark.parametrize(
    "owner", ["trunk:subport", "baremetal:none", "network:dhcp", "network:router_interface", ""]
)
def test_a_port_that_is_no_instances_claims_its_address(owner: str) -> None:
    """paws's tools-era address is now on a paws port that is not a compute port (a trunk
    subport: device_id is the trunk's id): it leaves tools at once; nobody gets it."""
    snap = merge(
        [
            port("p-w1", "w1", PAWS, "172.16.0.21"),
            port("p-sub", "trunk-1", PAWS, "172.16.0.11", owner=owner),
        ],
        [nova("w1", PAWS, "172.16.0.21")],
    )
    (claim,) = snap.claims["172.16.0.11"]
    assert claim.ids == (PAWS,) and claim.projects == ()
    assert "p-sub" in claim.detail and "project paws" in claim.detail
    assert ips(snap, "paws") == {"172.16.0.21"} and snap.project_complete("paws")
    plan = decide(
        DecideInput(PRIVATE, (), snap, in_force({"tools": ("172.16.0.11",)})),
        Policy(confirmations=3),
    )
    assert plan.files["tools.exports"] is None or "172.16.0.11" not in render(
        plan.files["tools.exports"]
    )


def test_a_projects_own_router_port_does_not_take_its_instances_address() -> None:
    """Overlapping isolated networks of one project: its router's address is also one of
    its instances' addresses; the instance keeps it (a claim by the project alone)."""
    snap = merge(
        [
            port("p-t1", "t1", TOOLS, "172.16.0.11"),
            port("p-r", "router-1", TOOLS, "172.16.0.11", owner="network:router_interface"),
            port("p-fip", "fip-1", "", "172.16.0.12", owner="network:floatingip"),
        ],
        [nova("t1", TOOLS, "172.16.0.11")],
    )
    assert ips(snap, "tools") == {"172.16.0.11"} and not snap.claims


def test_nova_addresses_are_claims_when_no_port_of_the_server_shows_them() -> None:
    """A stale Neutron still shows tools's port on t1, deleted; Nova shows the address on
    paws's w1 (and one no port shows): exported for neither."""
    snap = merge(
        [port("p-t1", "t1", TOOLS, "172.16.0.11"), port("p-w1", "w1", PAWS, "172.16.0.21")],
        [nova("w1", PAWS, "172.16.0.21", "172.16.0.11", "172.16.0.99")],
    )
    assert ips(snap, "paws") == {"172.16.0.21"}
    for ip in ("172.16.0.11", "172.16.0.99"):
        (claim,) = snap.claims[ip]
        assert claim.ids == (PAWS,) and "Nova shows on server w1" in claim.detail
    assert "172.16.0.21" not in snap.claims  # confirmed by its port
    plan = decide(
        DecideInput(PRIVATE, (), snap, in_force({"tools": ("172.16.0.11",)})),
        Policy(confirmations=3),
    )
    assert any(h.client == "172.16.0.11" for h in plan.holds)  # ip-conflict, named


def test_a_server_without_a_port_still_makes_its_project_unknown() -> None:
    snap = merge([], [nova("w1", PAWS, "172.16.0.21")])
    assert set(snap.incomplete) == {"paws"} and "no port" in snap.incomplete["paws"]


def test_a_server_listed_twice_for_two_projects_is_nobodys() -> None:
    snap = merge(
        [port("p-s1", "s1", TOOLS, "172.16.0.11")],
        [nova("s1", PAWS, "172.16.0.11"), nova("s1", TOOLS, "172.16.0.11")],
    )
    assert ips(snap, "tools") == set()
    assert set(snap.incomplete) == {"tools", "paws"}
    assert "listed twice" in snap.incomplete["tools"]


def test_allowed_address_pairs() -> None:
    """paws's port may send as tools's address: a claim (tools's export leaves at once);
    a /32 is an address; a wider CIDR is not claimed (documented); the port's own address
    as a pair takes nothing from its own instance."""
    pw = port("p-w1", "w1", PAWS, "172.16.0.21")
    pw["allowed_address_pairs"] = [
        {"ip_address": "172.16.0.11", "mac_address": "fa:16:3e:00:00:01"},
        {"ip_address": "172.16.0.12/32"},
        {"ip_address": "10.0.0.0/24"},
        {"ip_address": "172.16.0.21"},
    ]
    snap = merge([port("p-t1", "t1", TOOLS, "172.16.0.11"), pw], [server("t1", TOOLS),
                  server("w1", PAWS)])  # fmt: skip
    assert ips(snap, "tools") == {"172.16.0.11"} and ips(snap, "paws") == {"172.16.0.21"}
    assert {ip for ip in snap.claims} == {"172.16.0.11", "172.16.0.12"}
    assert all(c.ids == (PAWS,) for cs in snap.claims.values() for c in cs)
    assert "allowed address pair" in snap.claims["172.16.0.11"][0].detail
    plan = decide(
        DecideInput(PRIVATE, (), snap, in_force({"tools": ("172.16.0.11",)})),
        Policy(confirmations=3),
    )
    assert plan.files["tools.exports"] is None or "172.16.0.11" not in render(
        plan.files["tools.exports"]
    )


PRIVATE = {
    p: (ServedExport(p, "home", f"{ROOT}/{p}/home", "rw,sync,no_subtree_check"),)
    for p in ("tools", "paws")
}


def in_force(clients: Mapping[str, Sequence[str]]) -> dict[str, ExportsFile]:
    return {
        f"{p}.exports": ExportsFile(
            f"{p}.exports",
            "project",
            p,
            (ExportLine(f"{ROOT}/{p}/home", "rw,sync,no_subtree_check", tuple(c)),),
        )
        for p, c in clients.items()
    }


@pytest.mark.parametrize(
    "text",
    ["::/64", "::/80", "::/0", "fe80::/10", "fe80::/64", "169.254.0.0/16", "0.0.0.0/0",
     "64:ff9b::/96", "ff00::/8", "240.0.0.0/8", "fec0::/10", "127.0.0.0/16", "128.0.0.0/1"],
)  # fmt: skip
def test_networks_overlapping_special_space_are_refused(text: str) -> None:
    with pytest.raises(AddressError, match="network"):
        parse_network(text)


def test_networks_of_unicast_space_are_kept() -> None:
    for text in ("10.0.0.0/8", "172.16.0.0/12", "2001:db8::/32", "fd00::/8", "2000::/3"):
        assert str(parse_network(text)) == text


@pytest.mark.parametrize(
    "options", ["rw,fsid=0x(1)", "rw,no_root_squash,insecure_locks=*", "rw,,sync", "-rw"]
)
def test_options_of_a_file_in_force_are_checked_when_read(options: str) -> None:
    header = "# nfs-exportd managed file, do not edit: project=tools"
    text = f"{header}\n/srv/tools/home -{options} 172.16.0.11\n"
    with pytest.raises(ManagedFileError, match=r"^tools\.exports:2: options"):
        parse("tools.exports", text)


# -- names, paths and options: the projects file and the config, then decide and render

NASTY = st.sampled_from(
    ["", " ", "\n", "\t", "*", "(rw)", "#", "\\057", "..", ".", "/", "%", "'", '"', "é", "\x00"]
)
# the exports grammar at its widest: what validate.py and config.check_options allow
ANY_HEADER_RE = re.compile(
    r"# nfs-exportd managed file, do not edit: project=[A-Za-z0-9_][A-Za-z0-9_.-]*"
)
OPT = r"[a-z0-9_]+(=[A-Za-z0-9_:./@+-]+)?"
ANY_LINE_RE = re.compile(rf"(/[A-Za-z0-9_.+@,=:-]+)+ -{OPT}(,{OPT})*( [0-9a-f:.]+)+")
fragment = st.one_of(NASTY, st.text(max_size=8), st.from_regex(r"[a-z0-9._-]{1,8}", fullmatch=True))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.lists(fragment, min_size=1, max_size=3).map("".join),
    volume=st.lists(fragment, min_size=1, max_size=3).map("".join),
    path=st.lists(fragment, min_size=1, max_size=4).map(lambda parts: "/".join(parts)),
    options=st.one_of(st.just("rw,sync"), st.lists(fragment, min_size=1, max_size=3).map(",".join)),
)
def test_fuzz_names_paths_and_options_never_shape_a_line(
    name: str, volume: str, path: str, options: str
) -> None:
    """Random text as a project name, volume name, path (projects file) and option list
    (config): refused where it is read (ValueError, ConfigError, pydantic's error), or
    every rendered line matches the exports grammar.  Nothing in between."""
    from pydantic import ValidationError

    from nfs_exportd.config import ExportOptionsConfig
    from nfs_exportd.errors import ConfigError
    from nfs_exportd.read.projects import parse_projects, served_exports

    host = "nfs-1.svc.example"
    try:
        projects = parse_projects(
            {name: {"gid": 50001, "mounts": {volume: f"{host}:{path}"}}}, "projects.yaml"
        )
        opts = ExportOptionsConfig.model_validate({"default": options})
        served = served_exports(projects, [host], opts, {}, "config.yaml")
    except (ValueError, ConfigError, ValidationError):
        return  # refused where it was read, naming it
    snap = InventorySnapshot(
        source="fuzz",
        projects={p: ProjectRecord(f"id-{i}", p, True) for i, p in enumerate(served.private)},
        instances={
            p: (InstanceRecord("i-1", "vm", p, "ACTIVE", (parse_address("172.16.0.5"),)),)
            for p in served.private
        },
    )
    plan = decide(DecideInput(served.private, (), snap, {}), Policy(confirmations=1))
    for fname, f in plan.files.items():
        if f is None:
            continue
        lines = render(f).split("\n")
        assert ANY_HEADER_RE.fullmatch(lines[0]), lines
        assert lines[-1] == ""
        for line in lines[1:-1]:
            if line.startswith("# keystone-id="):
                continue
            assert ANY_LINE_RE.fullmatch(line), f"{fname}: {line!r}"
            assert ".." not in line.split(" ")[0].split("/"), line
