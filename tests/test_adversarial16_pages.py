"""Adversarial tests of the page decoders (``read/inventory/pages.py``) and the typed fast
paths of ``_RegionMerge``: each case is a page written by hand (keys given twice,
escapes, numbers and nesting at ``json``'s limits, bytes that are no UTF-8, charsets),
read as ``_json_or_error`` and ``merge_region`` read it, against ``resp.json()`` and
the checked paths on ``json``'s dicts (the reference)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import requests

from nfs_exportd import errors
from nfs_exportd.model import AddressClaim, InstanceRecord, IPAddress, ProjectRecord
from nfs_exportd.read.inventory import pages
from nfs_exportd.read.inventory.openstack import (
    _json_or_error,
    _RegionMerge,
    list_all,
    merge_region,
)

PROJECTS = {p: ProjectRecord(p, f"name-{p}", True) for p in ("pa", "pb")}
CHAINS = {"ports": pages.PORTS, "servers": pages.SERVERS, "floatingips": pages.FLOATING_IPS}


URL = "http://127.0.0.1/x"


def response(body: bytes, content_type: str | None, url: str = URL) -> Any:
    resp = requests.Response()
    resp._content = body
    resp.status_code = 200
    if content_type is not None:
        resp.headers["Content-Type"] = content_type
    resp.encoding = requests.utils.get_encoding_from_headers(resp.headers)
    resp.url = url
    return resp


def keep(page: Any, key: str) -> Any:
    """A page with only what is read: the listing and its links, the items' keys read
    (``json``'s answer holds every key; the decoders' only these)."""
    if not isinstance(page, dict) or not isinstance(page.get(key), list):
        return page
    fields = pages.READ[key]
    out = {k: v for k, v in page.items() if k in (key, f"{key}_links")}
    out[key] = [
        {k: v for k, v in pages.plain(i).items() if k in fields}
        if isinstance(i, dict | pages.Struct)
        else i
        for i in page[key]
    ]
    return out


def read(body: bytes, key: str, content_type: str | None = "application/json") -> Any:
    """The page as ``_json_or_error`` reads it (typed items as dicts), or its error."""
    try:
        return keep(_json_or_error(response(body, content_type), key, CHAINS[key]), key)
    except errors.InventoryError as exc:
        return (type(exc), str(exc))


def reference(body: bytes, key: str, content_type: str | None = "application/json") -> Any:
    """The page as ``resp.json()`` reads it."""
    try:
        return keep(response(body, content_type).json(), key)
    except ValueError as exc:
        return (errors.InventoryBadData, f"{key}: malformed JSON ({exc}) (GET {URL})")


def normal(page: Any, key: str) -> Any:
    """A read page with the defaults ``plain`` may leave out put back (what the checked
    paths read a missing key as)."""
    if not isinstance(page, dict) or not isinstance(page.get(key), list):
        return page
    out = []
    for item in page[key]:
        if not isinstance(item, dict):
            out.append(item)
            continue
        item = dict(item)
        if key == "ports":
            if not item.get("allowed_address_pairs"):
                item.pop("allowed_address_pairs", None)
            if isinstance(item.get("fixed_ips"), list):
                item["fixed_ips"] = [
                    {"ip_address": f.get("ip_address")} if isinstance(f, dict) else f
                    for f in item["fixed_ips"]
                ]
        if key == "servers" and isinstance(item.get("addresses"), dict):
            item["addresses"] = {
                n: [
                    {"addr": e.get("addr"), "t": e.get("OS-EXT-IPS:type", "fixed")}
                    if isinstance(e, dict)
                    else e
                    for e in es
                ]
                if isinstance(es, list)
                else es
                for n, es in item["addresses"].items()
            }
        out.append(item)
    return {**page, key: out}


def same(body: bytes, key: str, content_type: str | None = "application/json") -> None:
    assert normal(read(body, key, content_type), key) == normal(
        reference(body, key, content_type), key
    )


SERVER = '{"id": "s1", "status": "ACTIVE", "tenant_id": "pa", "name": "vm", %s}'


def servers_page(fragment: str) -> bytes:
    return ('{"servers": [' + SERVER % fragment + "]}").encode("utf-8", "surrogateescape")


# ------------------------------------------------------------------ JSON syntax
@pytest.mark.parametrize(
    "fragment",
    [
        r'"flavor": "\q"',  # invalid escape in a key read by nobody
        r'"flavor": "\u12"',
        '"flavor": 01',
        '"flavor": +1',
        '"flavor": 1.',
        '"flavor": .5',
        '"flavor": 1e',
        '"flavor": -',
        '"flavor": [1,]',
        '"flavor": {"a": 1,}',
        '"flavor": tru',
        '"flavor": "a\nb"',  # raw control characters in a string
        '"flavor": "a\tb"',
        '"flavor": "a\x00b"',
        '"x": 1, "status": "AC\nTIVE"',
        '"flavor": {1: 2}',
        "'flavor': 1",
        '\x0b"flavor": 1',  # whitespace json does not take
        '\x0c"flavor": 1',
        '\u00a0"flavor": 1',
        '"flavor": Infinity',
        '"flavor": NaN',
        r'"flavor": "\ud800"',  # lone surrogate
        '"project_id": 1e400',  # json: inf
        '"project_id": -1e-400',  # json: -0.0
        '"project_id": 123456789012345678901234567890',
        '"project_id": -0',
        '"project_id": -0.0',
        '"project_id": 0.1000000000000000055511151231257827',
        '"project_id": 2.4703282292062328e-324',
        '"project_id": ' + "9" * 4300,  # json's largest integer
        '"project_id": ' + "9" * 4301,  # json refuses (int_max_str_digits)
        '"name": "\udcc0\udcaf"',  # overlong UTF-8 in a key read: replaced by requests
        '"name": "\udced\udca0\udc80"',  # an encoded surrogate
        '"name": "\udcff"',
        '"flavor": "\udcff", "name": "caf\u00e9"',  # not UTF-8 in a key skipped
        r'"name": "\ud83d\ude00"',  # a surrogate pair
        r'"na\u0000me": "x", "name": "\u0000"',
        '"": 1, "ID": "s9", "Id": "s8"',
    ],
)
def test_json_syntax_and_numbers_read_as_json(fragment: str) -> None:
    same(servers_page(fragment), "servers")


def test_a_page_json_refuses_only_for_pythons_own_limits_is_read_as_json_reads_it() -> None:
    """A >4,300-digit integer in a key never read: ``json`` refuses the page only for
    CPython's ``int_max_str_digits`` (a guard against slow int parsing, no JSON rule);
    the decoders skip it unparsed.  Taken on purpose: the keys read are exactly what
    ``json`` gives without that limit, and a refusal would hold the whole read for a
    value nobody reads."""
    import sys

    body = servers_page('"flavor": ' + "9" * 4301)
    assert reference(body, "servers")[0] is errors.InventoryBadData  # json's own limit
    saved = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    try:
        want = reference(body, "servers")
    finally:
        sys.set_int_max_str_digits(saved)
    assert normal(read(body, "servers"), "servers") == normal(want, "servers")


@pytest.mark.parametrize(
    "fragment",
    [
        r'"\u0069d": "s2"',  # keys written with escapes
        r'"tenant\u005fid": "pb"',
        r'"st\u0061tus": "SHUTOFF"',
        r'"addresses": {"n": [{"addr": "10.0.0.1", "OS-EXT-IPS\u003atype": "floating"}]}',
        r'"addresses": {"n": [{"addr": "10.0.0.1", "type": "floating"}]}',
        '"id": "s2"',  # given twice: the last wins
        '"tenant_id": null',
        '"tenant_id": ""',
        '"name": null',
        '"addresses": {"n": [{"addr": "10.0.0.1"}], "n": [{"addr": "10.0.0.2"}]}',
        '"addresses": {"n": [{"addr": "10.0.0.1", "addr": "10.0.0.2"}]}',
        '"addresses": {"n": [{"addr": "10.0.0.1", "OS-EXT-IPS:type": "floating", '
        '"OS-EXT-IPS:type": "fixed"}]}',
        '"addresses": {"n": [{"addr": "10.0.0.1", "OS-EXT-IPS:type": "fixed", '
        '"OS-EXT-IPS:type": "floating"}]}',
        '"addresses": {"n": [{"addr": "10.0.0.1", "OS-EXT-IPS:type": null}]}',
        '"addresses": {"n": [{"addr": "10.0.0.1", "OS-EXT-IPS:type": 4}]}',
        '"addresses": {"n": [{"addr": "10.0.0.1", "OS-EXT-IPS:type": ""}]}',
        '"addresses": {"n": [{"addr": "10.0.0.1", "OS-EXT-IPS:type": "FIXED"}]}',
        '"addresses": {"n": [{"addr": "10.0.0.1", "OS-EXT-IPS:type": "fixed", "x": 1}]}',
        '"addresses": null',
        '"addresses": {"n": null}',
        '"addresses": {"n": [{"addr": null}]}',
        '"addresses": {"n": [{}]}',
        '"addresses": {"": []}',
    ],
)
def test_keys_escaped_or_given_twice_read_as_json(fragment: str) -> None:
    same(servers_page(fragment), "servers")


@pytest.mark.parametrize(
    "body",
    [
        b'{"servers": [], "servers": [{"id": "s1", "status": "ACTIVE"}]}',
        b'{"servers": [{"id": "s1", "status": "ACTIVE"}], "servers": []}',
        b'{"servers": [{"id": "s1", "status": "ACTIVE"}], "servers": null}',
        b'{"servers": null, "servers": [{"id": "s1", "status": "ACTIVE"}]}',
        b'{"servers": [], "servers_links": [{"rel": "next", "href": "x"}], "servers_links": []}',
        b'{"servers": [], "servers_links": null}',
        b'{"servers": [], "servers_links": 1e400}',
        b'{"servers": [], "servers_links": [1, 2], "x": ' + b"9" * 4300 + b"}",
        b'{"servers": []}\n\r\t ',
        b' \n{"servers": []}',
        b'{"servers": []}\x00',
        b'{"servers": [{"id": "s1", "status": "ACTIVE"}]}{"servers": []}',
        b"\xef\xbb\xbf" + b'{"servers": []}',  # a byte-order mark
        '{"servers": []}'.encode("utf-16"),
        '{"servers": [{"id": "s1", "status": "ACTIVE"}]}'.encode("utf-16-le"),
        b'{"servers": [{"id": "s1", "status": "ACTIVE", "name": "\xef\xbb\xbf"}]}',
        b"",
        b"null",
        b"[]",
    ],
)
def test_whole_pages_read_as_json(body: bytes) -> None:
    same(body, "servers")


@pytest.mark.parametrize(
    "item",
    [
        '{"id": "p1", "device_id": "s1", "device_owner": "compute:nova", "project_id": "pa", '
        '"fixed_ips": [{"ip_address": "10.0.0.1", "ip_address": "10.0.0.2"}]}',
        '{"id": "p1", "device_id": "s1", "device_owner": "compute:nova", "project_id": "pa", '
        '"fixed_ips": [{"ip_address": "10.0.0.1"}], "fixed_ips": []}',
        '{"id": "p1", "device_id": "s1", "device_owner": "compute:nova", "project_id": "", '
        '"tenant_id": "pb", "fixed_ips": [{"ip_address": "10.0.0.1"}]}',
        '{"id": "p1", "device_id": "s1", "device_owner": "compute:nova", "project_id": "pa", '
        '"tenant_id": "pb", "fixed_ips": [{"ip_address": "10.0.0.1"}]}',
        '{"id": "p1", "device_id": "s1", "device_owner": "compute:nova", "tenant_id": 5, '
        '"fixed_ips": [{"ip_address": "10.0.0.1", "subnet_id": "\udcff"}]}',
        '{"id": "p1", "device_id": "s1", "device_owner": "compute:nova", "project_id": "pa", '
        '"fixed_ips": [{"ip_address": "10.0.0.1"}], "allowed_address_pairs": null}',
        '{"id": "p1", "device_id": "s1", "device_owner": "compute:nova", "project_id": "pa", '
        '"fixed_ips": [{"ip_address": "10.0.0.1"}], "allowed_address_pairs": [{}, 5, null]}',
        '{"id": "p1", "device_id": "s1", "device_owner": "compute:nova", "project_id": "pa", '
        r'"fixed_ips": [{"ip_address": "10.0.0.1"}, {"ip\u005faddress": "10.0.0.9"}]}',
    ],
)
def test_port_items_read_as_json(item: str) -> None:
    same(('{"ports": [' + item + "]}").encode("utf-8", "surrogateescape"), "ports")


# ------------------------------------------------------------------ charsets
@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        'application/json; charset="utf-8"',
        "application/json; charset='UTF-8'",
        "application/json; charset=utf-8; foo=bar",
        "application/json;charset=UTF8",
        "application/json; charset=utf8mb4",
        "application/json; charset=cp65001",
        "application/json; charset=latin-1",
        "application/json; charset=utf-16",
        "text/plain",
        "application/octet-stream",
        None,
    ],
)
@pytest.mark.parametrize(
    "junk",
    [b"", b"\xff", b"\xe9", b"\xc0\xaf", b"\xed\xa0\x80"],
)
def test_a_page_in_any_charset_reads_as_requests_reads_it(
    content_type: str | None, junk: bytes
) -> None:
    """Non-ASCII text in the keys read, bytes that are no UTF-8 in a key skipped: what
    ``resp.json()`` makes of the page, whatever the charset (declared or not)."""
    body = (
        b'{"servers": [{"id": "s\xc3\xa9", "status": "ACTIVE", "tenant_id": "pa", '
        b'"name": "caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac", "flavor": "' + junk + b'"}]}'
    )
    same(body, "servers", content_type)


# ------------------------------------------------------------------ nesting
def test_nesting_at_jsons_recursion_limit_is_read_as_json_reads_it_deeper() -> None:
    """At the depth where ``resp.json()`` (called as ``_json_or_error`` calls it) fails
    with RecursionError (Python's stack, no JSON rule), the decoders, nearer the stack's
    top, may still take the page: then what they give is what ``json`` gives with more
    stack.  Much deeper, msgspec refuses too and ``json``'s RecursionError is the read's
    (the crash handler makes it unknown data)."""
    import sys

    depth = 900
    while True:  # the shallowest depth json refuses, from the frame _json_or_error runs in
        body = b'{"servers": [], "flavor": ' + b"[" * depth + b"]" * depth + b"}"
        try:
            _json_or_error(response(body, "text/plain"), "servers", CHAINS["servers"])
        except RecursionError:
            break
        depth += 1
        assert depth < 5000
    got = _json_or_error(response(body, "application/json"), "servers", CHAINS["servers"])
    saved = sys.getrecursionlimit()
    sys.setrecursionlimit(saved + 1000)
    try:
        assert keep(got, "servers") == keep(response(body, "application/json").json(), "servers")
    finally:
        sys.setrecursionlimit(saved)
    deep = 100_000
    body = b'{"servers": [], "flavor": ' + b"[" * deep + b"]" * deep + b"}"
    with pytest.raises(RecursionError):
        _json_or_error(response(body, "application/json"), "servers", CHAINS["servers"])


# ------------------------------------------------------------------ merge
def merge_pages(
    ports: bytes, servers: bytes, fips: bytes | None, fast: bool, known: Any = None
) -> tuple[Any, ...]:
    """``merge_region`` on pages: with the fast paths off on ``json``'s dicts (the
    reference), or on, on the items ``_json_or_error`` gives."""
    instances: dict[str, list[InstanceRecord]] = {}
    incomplete: dict[str, str] = {}
    claims: dict[str, list[AddressClaim]] = {}
    floating: dict[str, str] = {}

    def items(body: bytes | None, key: str) -> list[Any]:
        if body is None:
            return []
        if fast:
            return list(_json_or_error(response(body, "application/json"), key, CHAINS[key])[key])
        return list(response(body, "application/json").json()[key])

    saved, _RegionMerge.fast = _RegionMerge.fast, fast
    try:
        merge_region(
            "r1",
            PROJECTS,
            items(ports, "ports"),
            items(servers, "servers"),
            items(fips, "floatingips"),
            instances,
            incomplete,
            claims,
            floating,
            known,
        )
    except errors.InventoryError as exc:
        return (type(exc), str(exc))
    finally:
        _RegionMerge.fast = saved
    return (instances, incomplete, claims, floating)


PORT = (
    '{"id": "%s", "device_id": "%s", "device_owner": "compute:nova", "project_id": "%s", '
    '"fixed_ips": [{"ip_address": "%s"}]%s}'
)


def port(pid: str, dev: str, proj: str, addr: str, extra: str = "") -> str:
    return PORT % (pid, dev, proj, addr, extra)


def page(key: str, *items: str) -> bytes:
    text = '{"' + key + '": [' + ", ".join(items) + "]}"
    return text.encode("utf-8", "surrogateescape")


SRV = '{"id": "%s", "status": "ACTIVE", "tenant_id": "%s", "name": "vm", "addresses": %s%s}'


def srv(sid: str, proj: str, addresses: str, extra: str = "") -> str:
    return SRV % (sid, proj, addresses, extra)


MERGES: list[tuple[str, bytes, bytes, bytes | None]] = [
    (
        "server listed twice, second by project_id only",
        page("ports", port("p1", "s1", "pa", "10.0.0.1")),
        page(
            "servers",
            srv("s1", "pa", '{"n": [{"addr": "10.0.0.1"}]}'),
            '{"id": "s1", "status": "ACTIVE", "project_id": "pb", "name": "vm"}',
        ),
        None,
    ),
    (
        "tenant_id empty, project_id another project",
        page("ports", port("p1", "s1", "pa", "10.0.0.1")),
        page(
            "servers",
            '{"id": "s1", "status": "ACTIVE", "tenant_id": "", "name": "vm", '
            '"addresses": {"n": [{"addr": "10.0.0.1"}]}, "project_id": "pb"}',
        ),
        None,
    ),
    (
        "tenant_id and project_id disagree",
        page("ports", port("p1", "s1", "pa", "10.0.0.1")),
        page("servers", srv("s1", "pa", '{"n": [{"addr": "10.0.0.1"}]}', ', "project_id": "pb"')),
        None,
    ),
    (
        "tenant_id given twice: the last is another project",
        page("ports", port("p1", "s1", "pa", "10.0.0.1")),
        page("servers", srv("s1", "pa", '{"n": [{"addr": "10.0.0.1"}]}', ', "tenant_id": "pb"')),
        None,
    ),
    (
        "port project given twice",
        page("ports", port("p1", "s1", "pa", "10.0.0.1", ', "project_id": "pb"')),
        page("servers", srv("s1", "pa", '{"n": [{"addr": "10.0.0.1"}]}')),
        None,
    ),
    (
        "fixed IP given twice in one object",
        page(
            "ports",
            port(
                "p1", "s1", "pa", '10.0.0.1"}, {"ip_address": "10.0.0.2", "ip_address": "10.0.0.3'
            ),
        ),
        page("servers", srv("s1", "pa", '{"n": [{"addr": "10.0.0.1"}, {"addr": "10.0.0.3"}]}')),
        None,
    ),
    (
        "Nova address type given twice, last floating",
        page("ports", port("p1", "s1", "pa", "10.0.0.1")),
        page(
            "servers",
            srv(
                "s1",
                "pa",
                '{"n": [{"addr": "10.0.0.1", "OS-EXT-IPS:type": "fixed", '
                '"OS-EXT-IPS:type": "floating"}]}',
            ),
        ),
        page("floatingips"),
    ),
    (
        "Nova network given twice, last another address",
        page("ports", port("p1", "s1", "pa", "10.0.0.1")),
        page(
            "servers",
            srv("s1", "pa", '{"n": [{"addr": "10.0.0.1"}], "n": [{"addr": "10.0.0.9"}]}'),
        ),
        None,
    ),
    (
        "Nova address type escaped: floating",
        page("ports", port("p1", "s1", "pa", "10.0.0.1"), port("p2", "s1", "pa", "10.0.0.2")),
        page(
            "servers",
            srv(
                "s1",
                "pa",
                r'{"n": [{"addr": "10.0.0.1"}, {"addr": "10.0.0.2", '
                r'"OS-EXT-IPS\u003atype": "floating"}]}',
            ),
        ),
        page("floatingips"),
    ),
    (
        "server id escaped, port device_id plain",
        page("ports", port("p1", "s1", "pa", "10.0.0.1")),
        page("servers", srv(r"\u0073\u0031", "pa", '{"n": [{"addr": "10.0.0.1"}]}')),
        None,
    ),
    (
        "Nova address text differs from the port's (same address)",
        page("ports", port("p1", "s1", "pa", "fd00::1")),
        page("servers", srv("s1", "pa", '{"n": [{"addr": "FD00:0::1"}]}')),
        None,
    ),
    (
        "id null: the checked path names it",
        page("ports", port("p1", "s1", "pa", "10.0.0.1").replace('"p1"', "null")),
        page("servers", srv("s1", "pa", '{"n": [{"addr": "10.0.0.1"}]}')),
        None,
    ),
    (
        "not UTF-8 in a server name (replaced) and in a key skipped",
        page("ports", port("p1", "s1", "pa", "10.0.0.1", ', "binding:profile": "\udcff"')),
        page(
            "servers", srv("s1", "pa", '{"n": [{"addr": "10.0.0.1"}]}', ', "x": "\udcff"')
        ).replace(b'"vm"', b'"v\xffm"'),
        None,
    ),
    (
        "lone surrogate in the port's device_id and the server id",
        page("ports", port("p1", r"s\ud800", "pa", "10.0.0.1")),
        page("servers", srv(r"s\ud800", "pa", '{"n": [{"addr": "10.0.0.1"}]}')),
        None,
    ),
    (
        "floating IP of another project, ports typed",
        page("ports", port("p1", "s1", "pa", "10.0.0.1")),
        page(
            "servers",
            srv(
                "s1",
                "pa",
                '{"n": [{"addr": "10.0.0.1"}, {"addr": "203.0.113.5", '
                '"OS-EXT-IPS:type": "floating"}]}',
            ),
        ),
        page(
            "floatingips",
            '{"id": "f1", "port_id": "p1", "project_id": "pb", '
            '"floating_ip_address": "203.0.113.5", "tenant_id": "pa"}',
        ),
    ),
    (
        "floating IP's port id given twice",
        page("ports", port("p1", "s1", "pa", "10.0.0.1"), port("p2", "s2", "pb", "10.0.0.2")),
        page(
            "servers",
            srv("s1", "pa", '{"n": [{"addr": "10.0.0.1"}]}'),
            srv("s2", "pb", '{"n": [{"addr": "10.0.0.2"}]}'),
        ),
        page(
            "floatingips",
            '{"id": "f1", "port_id": "p1", "port_id": "p2", "project_id": "pa", '
            '"floating_ip_address": "203.0.113.5"}',
        ),
    ),
]


@pytest.mark.parametrize(("ports", "servers", "fips"), [m[1:] for m in MERGES],
                         ids=[m[0] for m in MERGES])  # fmt: skip
def test_merge_on_hand_written_pages(ports: bytes, servers: bytes, fips: bytes | None) -> None:
    try:
        want = merge_pages(ports, servers, fips, fast=False)
    except ValueError:
        pytest.fail("the case must be JSON")
    assert merge_pages(ports, servers, fips, fast=True) == want


def test_a_long_page_merges_as_json() -> None:
    """5,000 typed ports and servers, a few odd ones among them."""
    n = 5000
    ports, servers = [], []
    for i in range(n):
        addr = f"10.{i // 65536}.{i // 256 % 256}.{i % 256 + (1 if i % 256 == 0 else 0)}"
        proj = "pa" if i % 3 else "pb"
        ports.append(port(f"p{i}", f"s{i}", proj, addr))
        odd = i % 997 == 5
        servers.append(srv(f"s{i}", "pb" if odd else proj, f'{{"n": [{{"addr": "{addr}"}}]}}'))
    p, s = page("ports", *ports), page("servers", *servers)
    assert merge_pages(p, s, None, fast=True) == merge_pages(p, s, None, fast=False)


def test_known_addresses_across_reads_change_nothing() -> None:
    """Answers kept from one read to the next, with the projects of two addresses
    swapped: the second read answers as with none kept, and a refused text is never
    kept."""
    known: dict[str, IPAddress] = {}
    one = page(
        "ports",
        port("p1", "s1", "pa", "10.0.0.1"),
        port("p2", "s2", "pa", "fe80::1"),
        port("p3", "s3", "pb", "::ffff:10.0.0.3"),
    )
    s1 = page(
        "servers",
        srv("s1", "pa", '{"n": [{"addr": "10.0.0.1"}]}'),
        srv("s2", "pa", '{"n": [{"addr": "fe80::1"}]}'),
        srv("s3", "pb", '{"n": [{"addr": "::ffff:10.0.0.3"}]}'),
    )
    merge_pages(one, s1, None, fast=True, known=known)
    assert set(known) == {"10.0.0.1", "::ffff:10.0.0.3"}  # the refusal is not kept
    two = page(
        "ports",
        port("p1", "s1", "pb", "10.0.0.1"),
        port("p3", "s3", "pa", "::ffff:10.0.0.3"),
        port("p4", "s4", "pa", "10.0.0.3"),
    )
    s2 = page(
        "servers",
        srv("s1", "pb", '{"n": [{"addr": "10.0.0.1"}]}'),
        srv("s3", "pa", '{"n": [{"addr": "::ffff:10.0.0.3"}]}'),
        srv("s4", "pa", '{"n": [{"addr": "10.0.0.3"}]}'),
    )
    assert merge_pages(two, s2, None, fast=True, known=known) == merge_pages(
        two, s2, None, fast=False
    )  # the bound: tests/test_inventory_known.py


# ------------------------------------------------------------------ paging with Structs
def fake_neutron(pages_by_marker: dict[str | None, bytes], seen: list[Any]) -> Callable[..., Any]:
    def get(path: str, params: dict[str, Any] | None = None, **kw: Any) -> Any:
        marker = (params or {}).get("marker")
        seen.append(marker)
        return response(pages_by_marker[marker], "application/json", f"http://127.0.0.1{path}")

    return get


P1 = port("p1", "s1", "pa", "10.0.0.1")
P2 = port("p2", "s2", "pa", "10.0.0.2")
NEXT = ', "ports_links": [{"rel": "next", "href": "http://127.0.0.1/ports?limit=1%s"}]'


@pytest.mark.parametrize(
    "by_marker",
    [
        {None: b'{"ports": [' + P1.encode() + b", " + P2.encode() + b"]}"},  # limit ignored
        {
            None: ('{"ports": [' + P1 + "]" + NEXT % "" + "}").encode(),
            "p1": ('{"ports": [' + P2 + "]}").encode(),
        },
        {
            None: ('{"ports": [' + P1 + "]" + NEXT % "&marker=p1" + "}").encode(),
            "p1": ('{"ports": [' + P2 + "]" + NEXT % "&marker=p1" + "}").encode(),
        },  # the same marker again
        {
            None: ('{"ports": [' + P1 + "]" + NEXT % "" + "}").encode(),
            "p1": ('{"ports": [' + P1 + "]" + NEXT % "" + "}").encode(),
        },  # the same last item again
        {
            None: ('{"ports": [' + P1.replace('"p1"', "null") + "]" + NEXT % "" + "}").encode(),
            "None": ('{"ports": [' + P2 + "]}").encode(),
        },  # a last item without id
        {
            None: ('{"ports": [' + P1.replace('"p1"', "7") + "]" + NEXT % "" + "}").encode(),
            "7": ('{"ports": [' + P2 + "]}").encode(),
        },
        {None: ('{"ports": []' + NEXT % "" + "}").encode()},
    ],
)
def test_paging_with_typed_items_as_with_json(by_marker: dict[str | None, bytes]) -> None:
    def run(decoders: pages.Decoders) -> Any:
        seen: list[Any] = []
        try:
            got = list_all(fake_neutron(by_marker, seen), "/ports", "ports", {}, 1, "r1 ports",
                           decoders)  # fmt: skip
        except errors.InventoryError as exc:
            return (type(exc), str(exc), seen)
        except KeyError as exc:  # a marker the fake does not know
            return ("asked", str(exc), seen)
        return ("read", normal({"ports": [pages.plain(i) for i in got]}, "ports"), seen)

    assert run(pages.PORTS) == run(())


# ------------------------------------------------------------------ messages naming a record
NOVA_EXTRA = ', "flavor": {"vcpus": 2}, "links": [], "image": ""'


@pytest.mark.parametrize(
    ("ports", "servers"),
    [
        (  # a Nova server without an id, with keys never read (Nova sends them all)
            page("ports", port("p1", "s1", "pa", "10.0.0.1")),
            page("servers", '{"status": "ACTIVE", "tenant_id": "pa", "name": "vm"' + NOVA_EXTRA
                 + "}"),
        ),
        (  # an id given twice, the last null
            page("ports", port("p1", "s1", "pa", "10.0.0.1")),
            page("servers", srv("s1", "pa", "{}", NOVA_EXTRA + ', "id": null')),
        ),
        (  # a port without fixed_ips, keys never read (a Neutron that ignores ``fields``)
            page("ports", '{"id": "p1", "name": "n", "device_owner": "network:dhcp", '
                 '"mac_address": "fa:16:3e:00:00:01", "project_id": "pa"}'),
            page("servers"),
        ),
    ],
)  # fmt: skip
def test_a_record_named_in_an_error_is_named_as_json_reads_it(ports: bytes, servers: bytes) -> None:
    assert merge_pages(ports, servers, None, fast=True) == merge_pages(
        ports, servers, None, fast=False
    )
