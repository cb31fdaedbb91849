"""The page decoders (``read/inventory/pages.py``) take a page only to give what ``json``
gives for the keys read, or refuse it (the next decoder, at last ``json``, decides).

A property over generated pages (items with the keys read, of every JSON type, with
keys the decoders skip, keys given twice, escapes and non-ASCII text) compares each
decoder with ``json.loads``; named cases pin what ``json`` takes and the decoders must
leave to it."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nfs_exportd.errors import InventoryBadData
from nfs_exportd.read.inventory import pages
from nfs_exportd.read.inventory.openstack import _json_or_error, _utf8

FIELDS = pages.READ
CHAINS = {"ports": pages.PORTS, "servers": pages.SERVERS, "floatingips": pages.FLOATING_IPS}

# ------------------------------------------------------------------ generated pages
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
    st.sampled_from(["10.0.0.1", "fd00::1", "compute:nova", "fixed", "floating", "ACTIVE"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(
            st.sampled_from(["addr", "ip_address", "OS-EXT-IPS:type", "x"]), inner, max_size=3
        ),
    ),
    max_leaves=8,
)


def typed_value(key: str) -> st.SearchStrategy[Any]:
    """A value of the type the typed decoders want for ``key`` (most of the time)."""
    fixed = st.fixed_dictionaries(
        {"ip_address": st.sampled_from(["10.0.0.1", "fd00::2", "x"])},
        optional={"subnet_id": st.text(max_size=4)},
    )
    nova = st.fixed_dictionaries(
        {"addr": st.sampled_from(["10.0.0.1", "fd00::2"])},
        optional={"OS-EXT-IPS:type": st.sampled_from(["fixed", "floating"]), "version": st.just(4)},
    )  # fmt: skip
    return {
        "fixed_ips": st.lists(fixed, max_size=2),
        "allowed_address_pairs": st.lists(
            st.fixed_dictionaries({"ip_address": values}), max_size=1
        ),
        "addresses": st.dictionaries(st.sampled_from(["net", "lan"]), st.lists(nova, max_size=2),
                                     max_size=2),
    }.get(key, st.text(max_size=6))  # fmt: skip


def encode(value: Any, dup: bool) -> str:
    return json.dumps(value, ensure_ascii=dup)


@st.composite
def page_texts(draw: st.DrawFn) -> tuple[str, str]:
    """(listing key, page text): items whose keys may repeat (the text is written by
    hand, so that a key can be given twice), values typed or anything."""
    key = draw(st.sampled_from(sorted(FIELDS)))
    items = []
    for _ in range(draw(st.integers(0, 4))):
        if draw(st.integers(0, 19)) == 0:
            items.append(encode(draw(values), False))  # not an object
            continue
        # half of them with every key read (then more, or some again), so that the typed
        # decoders take a good share of the pages
        names = (sorted(FIELDS[key]) if draw(st.booleans()) else []) + draw(
            st.lists(st.sampled_from([*sorted(FIELDS[key]), "links", "flavor"]), max_size=5)
        )
        pairs = []
        for name in names:
            typed = draw(st.integers(0, 9)) > 0
            val = draw(typed_value(name) if typed else values)
            pairs.append(f"{json.dumps(name)}: {encode(val, draw(st.booleans()))}")
        items.append("{" + ", ".join(pairs) + "}")
    links = encode(draw(values), False)
    extra = ', "more": {"a": [1, 2.5, null]}' if draw(st.booleans()) else ""
    return key, f'{{"{key}": [{", ".join(items)}], "{key}_links": {links}{extra}}}'


def typed_view(key: str, item: dict[str, Any]) -> dict[str, Any]:
    """``item`` as the checked paths read it: the keys read, nested objects with their
    keys read, and a default (no allowed address pairs, a "fixed" address) the same as
    none (``plain`` may leave one out)."""
    out = {k: v for k, v in item.items() if k in FIELDS[key]}
    if key == "ports":
        out["fixed_ips"] = [{"ip_address": f["ip_address"]} for f in out["fixed_ips"]]
        if out.get("allowed_address_pairs") == []:
            del out["allowed_address_pairs"]
    if key == "servers" and "addresses" in out:
        out["addresses"] = {
            net: [
                {"addr": e["addr"]}
                | ({} if e.get("OS-EXT-IPS:type", "fixed") == "fixed" else
                   {"OS-EXT-IPS:type": e["OS-EXT-IPS:type"]})
                for e in entries
            ]
            for net, entries in out["addresses"].items()
        }  # fmt: skip
    return out


def fast_view(key: str, item: Any) -> tuple[Any, ...]:
    """What the fast paths read of a typed item (its attributes), or of ``json``'s dict
    with the defaults the checked paths give a missing key."""
    if isinstance(item, pages.Struct):
        get = lambda k, d=pages.UNSET: getattr(item, k)  # noqa: E731
    else:
        get = item.get
    if key == "ports":
        fixed = get("fixed_ips")
        return (get("id"), get("device_id"), get("device_owner"), get("project_id", pages.UNSET),
                get("tenant_id", pages.UNSET), get("allowed_address_pairs", []),
                [f.ip_address if isinstance(f, pages.Struct) else f["ip_address"]
                 for f in fixed])  # fmt: skip
    nets = get("addresses", pages.UNSET)
    if isinstance(nets, dict):
        nets = {
            n: [(e.addr, e.type) if isinstance(e, pages.Struct) else
                (e["addr"], e.get("OS-EXT-IPS:type", "fixed")) for e in entries]
            for n, entries in nets.items()
        }  # fmt: skip
    return (get("id"), get("status"), get("tenant_id", pages.UNSET),
            get("project_id", pages.UNSET), get("name", pages.UNSET), nets)  # fmt: skip


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(page_texts())
def test_each_decoder_gives_what_json_gives_or_refuses(case: tuple[str, str]) -> None:
    key, text = case
    want = json.loads(text)
    body = text.encode()
    items_are_objects = all(isinstance(i, dict) for i in want[key])
    for decoder in CHAINS[key]:
        try:
            got = decoder.decode(body)
        except pages.msgspec.DecodeError:
            continue
        assert items_are_objects  # an item that is no object is json's to refuse
        assert set(got) == {k for k in want if k in (key, f"{key}_links")}
        assert got.get(f"{key}_links") == want.get(f"{key}_links")
        for have, ref in zip(got[key], want[key], strict=True):
            if isinstance(have, pages.Struct):
                assert typed_view(key, pages.plain(have)) == typed_view(key, ref)
                assert fast_view(key, have) == fast_view(key, ref)
                assert pages.item_id(have) == ref["id"]
            else:
                assert have == {k: v for k, v in ref.items() if k in FIELDS[key]}
                assert pages.item_id(have) == ref.get("id")
    # the chain as a whole: None only when json must say what is wrong
    assert (pages.decode(body, CHAINS[key]) is None) == (not items_are_objects)


@pytest.mark.parametrize(("typed", "key"), [(pages.Port, "ports"), (pages.Server, "servers")])
def test_a_typed_item_keeps_the_keys_its_fields_decoder_keeps(typed: Any, key: str) -> None:
    """Both decoders of a listing keep the same keys: a page read typed or as dicts gives
    the checked paths the same record (the two declarations are written apart)."""
    names = {f.encode_name for f in pages.msgspec.structs.fields(typed)}
    assert names == pages.READ[key]


def test_the_typed_decoder_takes_a_plain_cloud_page() -> None:
    """The common page (Nova's and Neutron's shapes) is typed: the fast paths see it."""
    ports = {"ports": [{"id": "p1", "device_id": "s1", "device_owner": "compute:nova",
                        "project_id": "a", "fixed_ips": [{"subnet_id": "x",
                        "ip_address": "10.0.0.1"}], "allowed_address_pairs": []}]}  # fmt: skip
    servers = {"servers": [{"id": "s1", "status": "ACTIVE", "tenant_id": "a", "name": "vm",
                            "addresses": {"net": [{"addr": "10.0.0.1", "version": 4,
                            "OS-EXT-IPS:type": "fixed"}]}, "flavor": {"vcpus": 2}}]}  # fmt: skip
    port = pages.decode(json.dumps(ports).encode(), pages.PORTS)["ports"][0]
    server = pages.decode(json.dumps(servers).encode(), pages.SERVERS)["servers"][0]
    assert type(port) is pages.Port and type(server) is pages.Server
    assert server.addresses["net"][0].type == "fixed"


@pytest.mark.parametrize(
    "body",
    [
        b'\xef\xbb\xbf{"servers": []}',  # a byte-order mark: json (through requests) strips it
        b'{"servers": [{"id": NaN}]}',  # json takes NaN
        b'{"servers": [{"id": "\\ud800"}]}',  # json takes a lone surrogate
        b'{"servers": [{"id": "\xff"}]}',  # not UTF-8: requests decodes it with replacement
        b'{"servers": ["s1"]}',  # an item that is no object: json's answer, then bad data
        b'{"servers": {"id": "s1"}}',  # no list
        b'["servers"]',
        b'{"servers": []} trailing',
    ],
)
def test_what_only_json_may_judge_is_left_to_it(body: bytes) -> None:
    for chain in (pages.SERVERS, pages.SERVER_FIELDS):
        assert pages.decode(body, chain) is None


def test_a_key_given_twice_reads_as_json_reads_it() -> None:
    """The last value wins, in the typed and the field decoders, as in ``json``."""
    body = b'{"servers": [{"id": "a", "status": "ACTIVE", "tenant_id": "x", "tenant_id": "y"}]}'
    for chain in (pages.SERVERS, pages.SERVER_FIELDS):
        item = pages.decode(body, chain)["servers"][0]
        assert pages.plain(item)["tenant_id"] == json.loads(body)["servers"][0]["tenant_id"]


@pytest.mark.parametrize(
    ("encoding", "utf8"),
    [(None, False), ("utf-8", True), ("UTF8", True), ("utf_8", True), ("ISO-8859-1", False),
     ("utf-8-sig", False), ("no-such-charset", False)],
)  # fmt: skip
def test_only_a_utf8_body_reaches_the_page_decoders(encoding: str | None, utf8: bool) -> None:
    assert _utf8(encoding) is utf8


def response(body: bytes, content_type: str) -> requests.Response:
    resp = requests.Response()
    resp._content = body
    resp.status_code = 200
    resp.headers["Content-Type"] = content_type
    resp.encoding = requests.utils.get_encoding_from_headers(resp.headers)
    resp.url = "http://127.0.0.1/compute/v2.1/servers/detail"
    return resp


def test_a_body_in_another_charset_is_read_as_requests_reads_it() -> None:
    """A server that declares Latin-1: the name is what ``resp.json()`` makes of it, not
    what a UTF-8 reading would."""
    body = '{"servers": [{"id": "s1", "status": "ACTIVE", "name": "vé"}]}'.encode()
    latin = response(body, "application/json; charset=ISO-8859-1")
    got = _json_or_error(latin, "servers", pages.SERVERS)
    assert got["servers"][0]["name"] == latin.json()["servers"][0]["name"] == "vÃ©"
    plain = response(body, "application/json")
    assert (
        pages.plain(_json_or_error(plain, "servers", pages.SERVERS)["servers"][0])["name"] == "vé"
    )


def test_a_page_no_decoder_takes_is_judged_by_json() -> None:
    with pytest.raises(InventoryBadData, match="servers: malformed JSON"):
        _json_or_error(response(b'{"servers": [', "application/json"), "servers", pages.SERVERS)
