"""What a page of a Neutron or Nova listing is decoded into: the fields this package
reads, and no others.

At 100,000 instances Nova's answers are 170 MB, most of it fields never read (flavor,
image, links, metadata...), and building all of it as Python objects cost more CPU than
the rest of the read.  A page is decoded (``decode``) by the first of its decoders that
takes it:

1. *typed*: every item a ``msgspec.Struct`` whose fields have the types the fast paths of
   ``openstack.merge_region`` need (``Port``, ``Server``).  One item of another shape
   (a field of another type, a missing id, a down Nova cell's server without a name)
   and the whole page goes to the next decoder;
2. *fields*: every item a dict of the keys read (``PortFields``, ``ServerFields``...),
   their values decoded whole, as ``json`` decodes them;
3. the caller's ``json`` decoding (``resp.json()``), for anything else: another charset,
   a byte-order mark, a lone surrogate, NaN, an item that is not an object...

Every other key is skipped unread.  A decoder either takes a page and gives what
``json`` gives for those keys, or refuses it (``msgspec.DecodeError``), so what is
accepted, refused and said about a page does not depend on which one took it
(``tests/test_pages.py`` compares them).  The checked paths read dicts: ``plain`` turns
a typed item back into one, with the same keys and values.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypedDict

import msgspec
from msgspec import UNSET, Struct, UnsetType

__all__ = ["Struct"]  # what a typed item is (``isinstance``)


# ---------------------------------------------------------------- typed (the fast paths)
class FixedIP(msgspec.Struct, gc=False):
    ip_address: str


class Port(msgspec.Struct, gc=False, omit_defaults=True):
    """A Neutron port; ``project_id`` and ``tenant_id`` as the checked path reads them."""

    id: str
    device_id: str
    device_owner: str
    fixed_ips: list[FixedIP]
    project_id: str | UnsetType = UNSET
    tenant_id: Any = UNSET  # Neutron before project_id
    allowed_address_pairs: list[Any] = []


class NovaAddress(msgspec.Struct, gc=False, omit_defaults=True):
    addr: str
    type: str = msgspec.field(default="fixed", name="OS-EXT-IPS:type")


class Server(msgspec.Struct, gc=False, omit_defaults=True):
    """A Nova server of ``GET /servers/detail``."""

    id: str
    status: str
    tenant_id: str | UnsetType = UNSET
    project_id: Any = UNSET
    name: str | UnsetType = UNSET
    addresses: dict[str, list[NovaAddress]] | UnsetType = UNSET


class PortPage(TypedDict, total=False):
    ports: list[Port]
    ports_links: Any


class ServerPage(TypedDict, total=False):
    servers: list[Server]
    servers_links: Any


# ---------------------------------------------------------------- fields (dicts)
class PortFields(TypedDict, total=False):
    id: Any
    device_id: Any
    device_owner: Any
    project_id: Any
    tenant_id: Any
    fixed_ips: Any
    allowed_address_pairs: Any


class ServerFields(TypedDict, total=False):
    id: Any
    status: Any
    tenant_id: Any
    project_id: Any
    name: Any
    addresses: Any


class FloatingIPFields(TypedDict, total=False):
    id: Any
    floating_ip_address: Any
    port_id: Any
    project_id: Any
    tenant_id: Any


class PortFieldsPage(TypedDict, total=False):
    ports: list[PortFields]
    ports_links: Any


class ServerFieldsPage(TypedDict, total=False):
    servers: list[ServerFields]
    servers_links: Any


class FloatingIPFieldsPage(TypedDict, total=False):
    floatingips: list[FloatingIPFields]
    floatingips_links: Any


# listing key -> the keys of an item a decoder keeps (what a message may show of it)
READ: dict[str, frozenset[str]] = {
    "ports": frozenset(PortFields.__annotations__),
    "servers": frozenset(ServerFields.__annotations__),
    "floatingips": frozenset(FloatingIPFields.__annotations__),
}

Decoders = tuple["msgspec.json.Decoder[Any]", ...]

# all-projects mode: the merge's fast paths take typed items
PORTS: Decoders = (msgspec.json.Decoder(PortPage), msgspec.json.Decoder(PortFieldsPage))
SERVERS: Decoders = (msgspec.json.Decoder(ServerPage), msgspec.json.Decoder(ServerFieldsPage))
# per-project mode (``servers_of`` reads dicts) and floating IPs
SERVER_FIELDS: Decoders = (msgspec.json.Decoder(ServerFieldsPage),)
FLOATING_IPS: Decoders = (msgspec.json.Decoder(FloatingIPFieldsPage),)


def decode(body: bytes, decoders: Sequence[msgspec.json.Decoder[Any]]) -> Any:
    """The page as the first decoder that takes it gives it; None when none does (the
    caller decodes it with ``json``, and says what is wrong with it)."""
    for decoder in decoders:
        try:
            return decoder.decode(body)
        except msgspec.DecodeError:  # ValidationError included
            continue
    return None


def plain(item: Any) -> Any:
    """A typed item as the dict ``json`` would have given for the keys read (a default
    left out is read as missing, which the checked paths read as that same default);
    anything else as it is."""
    if isinstance(item, msgspec.Struct):
        return msgspec.to_builtins(item)
    return item


def item_id(item: Any) -> Any:
    """An item's ``id`` (None when it has none), typed or not."""
    if isinstance(item, dict):
        return item.get("id")
    return getattr(item, "id", None)
