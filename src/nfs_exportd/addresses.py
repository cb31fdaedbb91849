"""The one address grammar: what may stand as a client in an exports line (pure).

Every address the daemon reads (static inventory, Neutron fixed IPs, Nova addresses in
per-project mode, floating IPs, the clients of the managed files in force) goes through
``parse_address``; nothing else turns text into an address.  Python's
``ipaddress.ip_address`` alone is not a grammar for exports: it accepts an IPv6 zone id of
almost any text (``fe80::1%x *(rw,no_root_squash)`` parses, and exportfs reads the rest
as a second client), and it keeps ``::ffff:a.b.c.d`` distinct from ``a.b.c.d`` although
the kernel's NFS server matches an IPv4 client as exactly that v4-mapped address.

Accepted: a plain unicast address, written only with ASCII hex digits, ``:`` and ``.``
(at most 45 characters, the longest IPv6 text), returned in canonical ``ipaddress`` form.
IPv4-mapped IPv6 is turned into its IPv4 address *before* any other check or comparison.

Refused, and why:

* a zone id (``%``), whitespace, control characters, non-ASCII, ``/`` or any other
  character: not an address, and the way to inject a second client or an option list;
* unspecified (``0.0.0.0``, ``::``) and ``0.0.0.0/8`` ("this network", a source-only
  address that no client ever mounts from);
* loopback (``127.0.0.0/8``, ``::1``): would export to the NFS server itself;
* multicast, and the IPv4 limited broadcast ``255.255.255.255``: not one host;
* link-local (``169.254.0.0/16``, ``fe80::/10``): meaningless without a zone id, and never
  a cloud port's fixed address;
* reserved (``240.0.0.0/4``; IPv6 blocks IANA has not assigned for unicast, which include
  the deprecated IPv4-compatible form ``::a.b.c.d``, NAT64's ``64:ff9b::/96`` (a
  translator's view of IPv4 hosts, never a port's own address) and ``100::/64``
  discard-only);
* site-local ``fec0::/10``: deprecated by RFC 3879 and ambiguous between sites.

A network (``ADDRESS/PREFIX``: public exports, clients of files in force) is refused when
it overlaps any range above: ``::/64`` and ``::/80`` hold ``::ffff:0:0/96``, the whole
IPv4 Internet as the NFS server matches it, ``0.0.0.0/0`` holds loopback.  An IPv4
network must miss ``0.0.0.0/8``, ``127.0.0.0/8``, ``169.254.0.0/16`` and
``224.0.0.0/3``; an IPv6 one must lie inside ``2000::/3`` (global unicast) or
``fc00::/7`` (unique local).

Kept as they are (not refused, not rewritten): 6to4 (``2002::/16``) and Teredo
(``2001::/32``).  They embed an IPv4 address, but the NFS
server does not treat them as that IPv4 client, so each is a distinct host; rewriting them
would export to a different machine, and refusing them would guess at a site's network.
Private, shared (``100.64.0.0/10``) and documentation ranges are kept: clouds use them.
"""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache

from .model import IPAddress, IPNetwork

MAX_TEXT = 45  # len("ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255")
ADDRESS_CHARS = re.compile(r"[0-9A-Fa-f:.]{2,45}")  # always fullmatch: "$" allows "\n"
NETWORK_CHARS = re.compile(r"[0-9A-Fa-f:.]{2,45}/[0-9]{1,3}")
THIS_NETWORK = ipaddress.IPv4Network("0.0.0.0/8")
SITE_LOCAL = ipaddress.IPv6Network("fec0::/10")
# Networks (public exports, clients in force) may not overlap what ``refusal`` refuses.
V4_SPECIAL = (
    (THIS_NETWORK, "'this network'"),
    (ipaddress.IPv4Network("127.0.0.0/8"), "loopback"),
    (ipaddress.IPv4Network("169.254.0.0/16"), "link-local"),
    (ipaddress.IPv4Network("224.0.0.0/4"), "multicast"),
    (ipaddress.IPv4Network("240.0.0.0/4"), "reserved, and the broadcast address"),
)
# IPv6 outside these is unspecified, loopback, mapped, link- or site-local, multicast or
# reserved (every block IANA has not assigned for unicast, as ``is_reserved`` says)
V6_UNICAST = (ipaddress.IPv6Network("2000::/3"), ipaddress.IPv6Network("fc00::/7"))


class AddressError(ValueError):
    """Text that is not an address the daemon may export to; the message names it."""


def shown(text: object) -> str:
    """The offending value for a one-line message: escaped (``repr``) and bounded."""
    r = repr(text)
    return r if len(r) <= 80 else r[:77] + "..."


# A cycle meets each address several times (the inventory, every file in force, every
# rendered line): answers for text are remembered, bounded (a pure function of the text;
# refusals are not remembered and are computed again).  ``run`` forgets them after every
# cycle (``clear_caches``): a long-running daemon keeps no addresses of cycles past.
CACHE_SIZE = 1 << 18


def clear_caches() -> None:
    """Forget every remembered answer (the next cycle computes them again)."""
    _parse_address.cache_clear()
    _parse_network.cache_clear()
    _network_text.cache_clear()


def parse_address(text: object) -> IPAddress:
    """The canonical unicast address ``text`` stands for, or AddressError naming it."""
    if not isinstance(text, str):
        raise AddressError(f"address {shown(text)} is not a string")
    return _parse_address(text)


@lru_cache(maxsize=CACHE_SIZE)
def _parse_address(text: str) -> IPAddress:
    if not ADDRESS_CHARS.fullmatch(text):
        raise AddressError(
            f"address {shown(text)} is not a plain IP address (only hex digits, ':' and '.'; "
            "no zone id, whitespace or other characters)"
        )
    try:
        addr: IPAddress = ipaddress.ip_address(text)
    except ValueError:
        raise AddressError(f"address {shown(text)} is not an IP address") from None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped  # the same client to the NFS server: compare as IPv4
    why = refusal(addr)
    if why:
        raise AddressError(f"address {shown(text)} is {why}; only unicast host addresses")
    return addr


def canonical_address(text: object) -> str:
    """``parse_address`` as canonical text (what an exports line and a claim use)."""
    return str(parse_address(text))


def is_canonical_address(text: str) -> bool:
    """True only for text that ``canonical_address`` returns unchanged (the renderer's
    second guard: a token that is not exactly this never reaches a file)."""
    try:
        return canonical_address(text) == text
    except AddressError:
        return False


def refusal(addr: IPAddress) -> str | None:
    """Why an (already mapped-to-IPv4) address is refused, or None."""
    if addr.is_unspecified:
        return "unspecified"
    if addr.is_loopback:
        return "loopback"
    if addr.is_multicast:
        return "multicast"
    if addr.is_link_local:
        return "link-local"
    if isinstance(addr, ipaddress.IPv4Address):
        if int(addr) == 0xFFFFFFFF:
            return "the broadcast address"
        if addr in THIS_NETWORK:
            return "in 0.0.0.0/8 ('this network')"
    elif addr in SITE_LOCAL:
        return "site-local (deprecated)"
    if addr.is_reserved:
        return "reserved"
    return None


def parse_network(text: object) -> IPAddress | IPNetwork:
    """A client that is either an address (``parse_address``) or a network written as
    ``ADDRESS/PREFIX`` with no host bits set; a ``/32`` or ``/128`` is its address."""
    if not isinstance(text, str) or "/" not in text:
        return parse_address(text)
    return _parse_network(text)


def canonical_network(text: object) -> str:
    """``parse_network`` as canonical text: what a client in a file in force is compared
    as, and what the renderer demands each client token be exactly."""
    if not isinstance(text, str):
        return str(parse_network(text))  # raises AddressError naming it
    return _network_text(text)


@lru_cache(maxsize=CACHE_SIZE)  # each client is read in force, then rendered: once per text
def _network_text(text: str) -> str:
    return str(parse_network(text))


@lru_cache(maxsize=CACHE_SIZE)
def _parse_network(text: str) -> IPAddress | IPNetwork:
    if not NETWORK_CHARS.fullmatch(text):
        raise AddressError(f"network {shown(text)} is not ADDRESS/PREFIX")
    try:
        net: IPNetwork = ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        raise AddressError(f"network {shown(text)}: {exc}") from None
    if net.prefixlen == net.max_prefixlen:
        return parse_address(str(net.network_address))
    if isinstance(net, ipaddress.IPv6Network) and net.network_address.ipv4_mapped is not None:
        raise AddressError(f"network {shown(text)} is IPv4-mapped; write it as IPv4")
    why = network_refusal(net)
    if why:
        raise AddressError(f"network {shown(text)} {why}; only ranges of unicast host addresses")
    return net


def network_refusal(net: IPNetwork) -> str | None:
    """Why a network is refused, or None: it must not overlap any range ``refusal``
    refuses for an address (a client inside it would be exported to)."""
    if isinstance(net, ipaddress.IPv4Network):
        for special, what in V4_SPECIAL:
            if net.overlaps(special):
                return f"overlaps {special} ({what})"
        return None
    if not any(net.subnet_of(ok) for ok in V6_UNICAST):
        return (
            "is not inside 2000::/3 or fc00::/7 (it overlaps unspecified, loopback, "
            "IPv4-mapped, link-local, site-local, multicast or reserved space)"
        )
    return None


def client_covers(client: str, ip: IPAddress) -> bool:
    """Whether an exports client (an address or a CIDR, as written in force) covers
    ``ip``: how ``explain`` and ``diagnose`` find the line a refused or asked-for address
    falls under.  A host name or wildcard covers nothing here (never ours to write)."""
    try:
        return ip in ipaddress.ip_network(client, strict=False)
    except ValueError:
        return False
