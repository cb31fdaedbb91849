"""Value objects shared by the read, decide and apply layers.

Everything here is immutable and does no I/O.  Addresses are ``ipaddress`` objects from
the moment they are read, so that nothing downstream can ever hand a host *name* to
exportfs (which would resolve it, and silently drop it when DNS fails).
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

HEADER_PREFIX = "# nfs-exportd managed file, do not edit: "
KEYSTONE_ID_PREFIX = "# keystone-id="  # the second line of a project file (a comment)
EXPORTS_SUFFIX = ".exports"
PUBLIC_FILE_PREFIX = "public-"


# exactly the dotted quads ``ipaddress`` accepts (ASCII digits, 0-255, no leading zero)
_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])"
_IPV4 = re.compile(rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}")


@lru_cache(maxsize=1 << 18)  # asked for every client of every rendered line: once per text
def client_sort_key(client: str) -> tuple[int, int, str]:
    """IPv4 first, then IPv6, each in numeric order; networks after single addresses.

    A plain IPv4 address (nearly every client) is keyed from its four numbers: the same
    key ``ipaddress`` gives, at a fraction of its cost (a cycle keys every client)."""
    m = _IPV4.fullmatch(client)
    if m is not None:
        a, b, c, d = (int(g) for g in m.groups())
        return (4, 0, f"{(a << 24) | (b << 16) | (c << 8) | d:040d}/032")
    try:
        net = ipaddress.ip_network(client, strict=False)
    except ValueError:
        return (9, 0, client)
    single = net.prefixlen == net.max_prefixlen
    return (net.version, 0 if single else 1, f"{int(net.network_address):040d}/{net.prefixlen:03d}")


def sorted_clients(clients: frozenset[str] | set[str]) -> tuple[str, ...]:
    return tuple(sorted(clients, key=client_sort_key))


# --------------------------------------------------------------------------- projects file


@dataclass(frozen=True)
class Mount:
    """One volume of one project: ``VOLUME: "HOST:/PATH"`` in the projects file."""

    project: str
    volume: str
    host: str
    path: str


@dataclass(frozen=True)
class ProjectSpec:
    name: str
    gid: int
    mounts: tuple[Mount, ...]
    skipped: tuple[str, ...] = ()  # volumes given as ``true`` (handled elsewhere)
    keystone_id: str | None = None  # ``id:``: the Keystone id this name stands for


@dataclass(frozen=True)
class PublicExport:
    """A shared volume exported to CIDR ranges (e.g. a scratch area)."""

    name: str
    path: str
    clients: tuple[str, ...]  # canonical ipaddress text, networks or single addresses
    options: str


@dataclass(frozen=True)
class ServedExport:
    """A private export this server is responsible for: one path of one project."""

    project: str
    volume: str
    path: str
    options: str


# --------------------------------------------------------------------------- inventory


@dataclass(frozen=True)
class ProjectRecord:
    id: str
    name: str
    enabled: bool


@dataclass(frozen=True)
class InstanceRecord:
    id: str
    name: str
    project: str
    status: str
    addresses: tuple[IPAddress, ...]


@dataclass(frozen=True)
class AddressClaim:
    """A claim on an address by something that is not one listed project's instance: a
    port (or server) of a project Keystone does not list, or a port of one project on a
    server of another.  Every claim counts: such an address is exported for nobody and
    leaves any project's exports at once (``ip-conflict``)."""

    detail: str  # who claims it: port, server and project ids, one line
    projects: tuple[str, ...] = ()  # the listed projects involved (named in the report)
    # every Keystone project id involved (port, server, floating IP), listed or not: a
    # claim whose only id is the id a project's name is bound to is that project's own
    # (its servers while Keystone does not list it), not another project's
    ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class InventorySnapshot:
    """What the cloud told us in one read, with completeness made explicit.

    ``projects`` is ``None`` when the project listing itself is unknown; then no project's
    membership may change.  A project is *complete* only when the listing is complete,
    the project is in it, and its instance data was read completely.
    """

    source: str
    projects: Mapping[str, ProjectRecord] | None
    instances: Mapping[str, tuple[InstanceRecord, ...]]
    incomplete: Mapping[str, str] = field(default_factory=dict)  # project -> why unknown
    problem: str | None = None  # why the whole snapshot (or the listing) is unknown
    # canonical address -> claims on it that give it to nobody (see AddressClaim)
    claims: Mapping[str, tuple[AddressClaim, ...]] = field(default_factory=dict)
    # canonical address -> whose floating IP it is, when floating IPs are not read
    # (inventory.include_floating_ips off): never exported, only explained
    floating: Mapping[str, str] = field(default_factory=dict)

    @property
    def listing_complete(self) -> bool:
        return self.projects is not None and self.problem is None

    def project_complete(self, name: str) -> bool:
        return (
            self.listing_complete
            and self.projects is not None
            and name in self.projects
            and name not in self.incomplete
        )

    @classmethod
    def unknown(cls, source: str, problem: str) -> InventorySnapshot:
        return cls(source=source, projects=None, instances={}, problem=problem)


# --------------------------------------------------------------------------- exports in force


@dataclass(frozen=True)
class ExportLine:
    path: str
    options: str
    clients: tuple[str, ...]


class FileKind(enum.Enum):
    """Whose a managed file is: its header says ``project=NAME`` or ``public=NAME``.

    A plain Enum, not a str one: ``mypy --strict`` then refuses ``kind == "project"`` (a
    misspelt literal included) as a comparison that is never true.  The header's word
    is ``.value``."""

    PROJECT = "project"
    PUBLIC = "public"

    def __str__(self) -> str:
        # in a message or a key it is the header's word, never "FileKind.PROJECT"
        return self.value

    def filename(self, owner: str) -> str:
        """The only name a managed file of this kind and owner may have."""
        prefix = "" if self is FileKind.PROJECT else PUBLIC_FILE_PREFIX
        return prefix + owner + EXPORTS_SUFFIX


@dataclass(frozen=True)
class ExportsFile:
    """One managed file: its owner (``project=`` or ``public=``) and its lines."""

    filename: str
    kind: FileKind
    owner: str
    lines: tuple[ExportLine, ...]
    # a project file's Keystone id (its ``# keystone-id=`` line): the binding of the name
    # survives a lost state_dir, so a recreated project never inherits the volumes
    keystone_id: str | None = None

    def __post_init__(self) -> None:
        # the header's word is accepted (FileKind("project")); any other word is a
        # ValueError here, never a file that is silently neither kind
        object.__setattr__(self, "kind", FileKind(self.kind))

    @property
    def is_project(self) -> bool:
        return self.kind is FileKind.PROJECT

    def pairs(self) -> frozenset[tuple[str, str]]:
        return frozenset((line.path, c) for line in self.lines for c in line.clients)


class Maintenance(enum.Enum):
    OFF = "off"
    HOLD = "hold"  # removals held, additions apply
    FREEZE = "freeze"  # nothing changes


@dataclass(frozen=True)
class PairKey:
    """A (path, client) pair that belongs to one managed file."""

    owner: str  # project name, or "public:NAME"
    path: str
    client: str

    def as_text(self) -> str:
        """The order the counters file is written in (its JSON keeps the three fields)."""
        return f"{self.owner}\t{self.path}\t{self.client}"
