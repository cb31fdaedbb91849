"""Adversarial tests of issue 15's all-projects read: the merge fast paths of
``_RegionMerge`` against its checked paths on inputs the fixture test's generator does
not make, and ``_read_whole`` (the one-read body hook) against requests' own read."""

from __future__ import annotations

import random
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from nfs_exportd.model import ProjectRecord
from nfs_exportd.read.inventory.openstack import _RegionMerge
from test_parser_fixtures import merged, typed_only

# texts that are the same address written differently, other servers' addresses,
# refused ones and non-strings
TEXTS: list[Any] = [
    "10.0.0.1", "10.0.0.2", "::ffff:10.0.0.1", "fd00::2", "FD00::2", "fd00:0::2",
    "203.0.113.5", "fe80::1", "10.0.0.1%eth0", " 10.0.0.1", "010.0.0.1", 7, None,
]  # fmt: skip


def hostile_region(rng: random.Random) -> tuple[dict[str, ProjectRecord], dict[str, Any]]:
    """Few servers, many ports each: shared and duplicated addresses, duplicate port ids,
    ports of several projects on one server, floating IPs Nova also shows, servers listed
    twice in any order, Nova entries that are no objects, servers with project_id only."""
    pick, coin = rng.choice, rng.random
    pids = ["p0", "p1", "p2", "p3"]
    projects = {p: ProjectRecord(p, f"name-{p}", True) for p in pids[:3]}
    sids = [f"s{i}" for i in range(rng.randrange(1, 5))]
    owner = {sid: pick(pids) for sid in [*sids, "s9"]}  # most ports and listings agree
    ports: list[dict[str, Any]] = []
    fips: list[dict[str, Any]] = []
    for n in range(rng.randrange(1, 10)):
        fixed: list[Any] = [
            {"ip_address": pick(TEXTS[:7]) if coin() < 0.3 else f"10.2.{n}.{k}"}
            for k in range(rng.randrange(3))
        ]
        port: dict[str, Any] = {
            "id": f"port{rng.randrange(6)}",  # duplicate ids
            "device_id": pick(sids) if coin() < 0.99 else pick(["", None, 3]),
            "device_owner": "compute:nova"
            if coin() < 0.85
            else pick(["compute:", "baremetal:none"]),
            "fixed_ips": fixed if coin() < 0.99 else pick([None, {}, "10.0.0.1"]),
        }
        key = "project_id" if coin() < 0.8 else "tenant_id"
        port[key] = (owner[port["device_id"]] if port["device_id"] in owner and coin() < 0.8
                     else pick(pids) if coin() < 0.95 else pick(["", None]))  # fmt: skip
        if coin() < 0.1:
            port["allowed_address_pairs"] = pick([[], {}, "", [{"ip_address": pick(TEXTS)}]])
        ports.append(port)
        if coin() < 0.25:
            fips.append({
                "id": f"fip{n}", "port_id": port["id"], "project_id": pick(pids),
                "floating_ip_address": pick(["203.0.113.5", "203.0.113.6", "10.0.0.1", 7]),
            })  # fmt: skip
    servers: list[dict[str, Any]] = []
    for _ in range(rng.randrange(1, 7)):
        sid = pick([*sids, "s9"])
        shown = [f.get("ip_address") for p in ports if p["device_id"] == sid
                 and isinstance(p["fixed_ips"], list) for f in p["fixed_ips"]
                 if isinstance(f, dict)]  # fmt: skip
        entries: list[Any] = []
        for text in shown:
            e: dict[str, Any] = {"addr": text if coin() < 0.9 else pick(TEXTS)}
            if coin() < 0.8:
                e["OS-EXT-IPS:type"] = "fixed" if coin() < 0.9 else pick(["floating", None])
            entries.append(e)
        if coin() < 0.2:
            entries.append({"addr": pick(TEXTS), "OS-EXT-IPS:type": pick(["fixed", "floating"])})
        if coin() < 0.02:
            entries.append(pick(["10.0.0.1", None, ["x"]]))
        srv: dict[str, Any] = {
            "id": sid,
            "status": pick(["ACTIVE"] * 5 + ["SHUTOFF", "UNKNOWN", "DELETED", "BUILD", "Active"]),
        }
        if coin() < 0.9:
            srv["name"] = f"vm-{sid}" if coin() < 0.9 else pick([None, 5, ""])
        key = pick(["tenant_id", "tenant_id", "project_id"])
        srv[key] = owner[sid] if coin() < 0.8 else pick(pids) if coin() < 0.95 else pick(["", None])
        if coin() < 0.95:
            srv["addresses"] = (
                {"net": entries} if coin() < 0.9 else {"a": entries[:1], "b": entries[1:]}
            )
        servers.append(srv)
    return projects, {
        "ports": ports,
        "servers": servers,
        "floatingips": fips if coin() < 0.6 else [],
    }


@pytest.fixture
def fast_instances() -> Iterator[list[int]]:
    """Counts the instances the fast path of ``read_servers`` made (kept or not)."""
    made = [0]
    orig = _RegionMerge.own_servers

    def own_servers(self: _RegionMerge) -> None:
        made[0] += sum(pts[0].instance is not None for pts in self.by_server.values())
        orig(self)

    _RegionMerge.own_servers = own_servers  # type: ignore[method-assign]
    yield made
    _RegionMerge.own_servers = orig  # type: ignore[method-assign]


def test_fast_paths_on_hostile_regions(fast_instances: list[int]) -> None:
    """Same instances, unknowns (same first reason), claims, floating names and errors with
    the fast paths on and off, over regions built to make them diverge; the fast path of
    the instance is really taken (not just instances made by the checked path)."""
    rng = random.Random(1515)
    # half of them without the items the typed page decoders refuse: one such item makes
    # its whole page dicts, read by the checked paths alone
    regions = [hostile_region(rng) for _ in range(4000)]
    regions += [typed_only(hostile_region(rng)) for _ in range(4000)]
    for projects, page in regions:
        want = merged(projects, page, fast=False)
        assert merged(projects, page, fast=True) == want, page
    assert fast_instances[0] > 300


# --------------------------------------------------------------------------- _read_whole

BODY = b'{"servers": [{"id": "s1"}]}'


@pytest.fixture
def raw_server() -> Iterator[tuple[list[bytes], str]]:
    """A one-request-at-a-time HTTP server on 127.0.0.1 that sends the raw heads queued
    in its list (then closes the connection): headers requests itself never sends."""
    heads: list[bytes] = []
    sock = socket.create_server(("127.0.0.1", 0))
    sock.settimeout(10)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                if heads:
                    conn.sendall(heads.pop(0))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield heads, f"http://127.0.0.1:{sock.getsockname()[1]}/servers"
    stop.set()
    socket.create_connection(sock.getsockname(), timeout=5).close()  # wakes accept()
    thread.join(10)
    sock.close()


def _get(url: str, hook: bool) -> tuple[str, Any]:
    import requests

    from nfs_exportd.read.inventory.openstack import _observed

    try:
        resp = _observed(
            "compute", requests.get, url, timeout=10, **({} if hook else {"hooks": {}})
        )
        return ("ok", resp.json())
    except Exception as exc:
        return ("error", type(exc).__name__)


@pytest.mark.parametrize(
    "length",
    [b"\xb2", b"\xb9", b"+27", b" 27", b"027", b"27, 27", b"-1", b"1e3", b"0x1b"],
    ids=["superscript-2", "superscript-1", "plus", "space", "zero", "twice", "neg", "exp", "hex"],
)
def test_read_whole_answers_as_requests_for_odd_content_lengths(
    raw_server: tuple[list[bytes], str], length: bytes
) -> None:
    """A Content-Length http.client does not take as a number (a Latin-1 superscript
    digit is ``str.isdigit`` but no ``int``) is read up to the close, as requests reads
    it: the one-read hook never turns a readable answer into an error."""
    heads, url = raw_server
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
    for _ in range(2):
        heads.append(head + b"Content-Length: " + length + b"\r\n\r\n" + BODY)
    want = _get(url, hook=False)
    assert _get(url, hook=True) == want


def test_read_whole_short_body_fails_as_requests_does(raw_server: tuple[list[bytes], str]) -> None:
    """A body cut short of its Content-Length is the same error with and without the
    hook (never a truncated body parsed as the answer)."""
    heads, url = raw_server
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
    for _ in range(2):
        heads.append(head + b"Content-Length: 4000\r\n\r\n" + BODY)
    want = _get(url, hook=False)
    assert want[0] == "error"
    assert _get(url, hook=True) == want


def _gzip(data: bytes) -> bytes:
    import gzip

    return gzip.compress(data)


@pytest.mark.parametrize(
    "answer",
    [
        # gzip: the length is the compressed body's; the answer is the decoded one
        b"Content-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s" % (len(_gzip(BODY)), _gzip(BODY)),
        # chunked with a (wrong) Content-Length too: the chunks win
        b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n%x\r\n%s\r\n0\r\n\r\n"
        % (len(BODY), BODY),
        # a body longer than its Content-Length: cut at the length (bad JSON both ways)
        b"Content-Length: 10\r\n\r\n" + BODY,
        b"Content-Length: 0\r\n\r\n" + BODY,
    ],
    ids=["gzip", "chunked", "longer", "zero"],
)
def test_read_whole_answers_as_requests_for_odd_bodies(
    raw_server: tuple[list[bytes], str], answer: bytes
) -> None:
    heads, url = raw_server
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
    heads.extend([head + answer, head + answer])
    want = _get(url, hook=False)
    assert _get(url, hook=True) == want
