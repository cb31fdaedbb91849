"""The simulated cloud's mutable state: projects, users, servers, tokens.

One lock guards everything, because tests change the cloud (delete a server, disable a
project, move an address) while the HTTP threads serve listings, and a listing must see
either the old or the new cloud, never half of each.  Ports and floating IPs are derived
from the servers and cached per state version, so a 10,000-instance cloud answers pages
without rebuilding its indexes on every request.
"""

from __future__ import annotations

import ipaddress
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from .scenario import Address, Scenario, stable_id, stable_uuid

ROLE_IDS = {name: stable_id("role", name) for name in ("admin", "member", "reader")}
# Keystone's default implied roles: admin implies member implies reader.
IMPLIED = {
    "admin": ("admin", "member", "reader"),
    "member": ("member", "reader"),
    "reader": ("reader",),
}
FIXED_POOL = ipaddress.ip_network("172.16.0.0/12")


def iso(ts: float, micro: bool = False) -> str:
    """UTC ISO 8601 the way the services write it (Keystone with microseconds)."""
    dt = datetime.fromtimestamp(ts, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if micro else "%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> float:
    """Parse an ISO 8601 timestamp (naive means UTC, as in Nova); ValueError if invalid."""
    t = text.strip().replace(" ", "+")  # a '+' in an unencoded query string arrives as ' '
    if t.endswith("Z"):
        t = t[:-1] + "+00:00"
    dt = datetime.fromisoformat(t)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def mac_for(port_id: str) -> str:
    h = port_id.replace("-", "")
    return "fa:16:3e:" + ":".join(h[i : i + 2] for i in (0, 2, 4))


@dataclass
class ProjectRec:
    id: str
    name: str
    enabled: bool
    domain_id: str
    description: str = ""


@dataclass(frozen=True)
class Grant:
    role: str
    project_id: str | None  # None: system scope


@dataclass
class UserRec:
    id: str
    name: str
    password: str
    domain_id: str
    grants: list[Grant]


@dataclass
class ServerRec:
    id: str
    name: str
    project_id: str
    region: str
    status: str
    addresses: list[Address]
    down: bool
    created: float
    updated: float
    user_id: str
    availability_zone: str = "nova"
    deleted_at: float | None = None


@dataclass
class ExtraPort:
    """A port added by hand: its fixed IPs are raw values, never validated."""

    id: str
    device_id: str
    project_id: str
    region: str
    fixed_ips: list[Any]
    created: float


@dataclass(frozen=True)
class Token:
    id: str
    user_id: str
    project_id: str | None
    system: bool
    roles: tuple[str, ...]
    issued_at: float
    expires_at: float
    audit_id: str = field(default_factory=lambda: secrets.token_urlsafe(16)[:22])

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles


# How Nova and Neutron check a request's token: (token, "") or (None, why).  The simulated
# Keystone's tokens by default; a real Keystone's with ``SimCloud(external_keystone=...)``.
TokenCheck = Callable[[str | None], tuple[Token | None, str]]


def _check_floating(addresses: Sequence[Address], server: str) -> None:
    """A floating IP is NATed to a fixed IPv4 of the same server: it needs one."""
    if any(a.type == "floating" for a in addresses) and not any(
        a.type == "fixed" and a.version == 4 for a in addresses
    ):
        raise ValueError(f"server {server!r}: a floating address needs a fixed IPv4 address")


class CloudState:
    """Everything the three services read; every method takes the one lock."""

    def __init__(self, scenario: Scenario) -> None:
        self.lock = threading.RLock()
        # token issue and expiry times: tests move it forward instead of sleeping
        self.clock: Callable[[], float] = time.time
        self.scenario = scenario
        self.settings = scenario.settings
        self.regions: list[str] = list(scenario.regions)
        self.domains = {d.id: d for d in scenario.domains}
        self.projects: dict[str, ProjectRec] = {
            p.id: ProjectRec(p.id, p.name, p.enabled, p.domain_id, p.description)
            for p in scenario.projects
        }
        by_name = {p.name: p.id for p in scenario.projects}
        self.users: dict[str, UserRec] = {}
        for u in scenario.users:
            grants = [
                Grant(r.role, None if r.system else by_name[r.project or ""]) for r in u.roles
            ]
            self.users[u.id] = UserRec(u.id, u.name, u.password, u.domain_id, grants)
        now = time.time()
        down_ids = {sid for c in scenario.down_cells for sid in c.server_ids}
        # a down cell without server ids takes down every server of its region
        down_regions = {c.region for c in scenario.down_cells if not c.server_ids}
        self.servers: dict[str, ServerRec] = {}
        n = len(scenario.servers)
        for i, s in enumerate(scenario.servers):
            created = parse_time(s.created) if s.created else now - 3600 - (n - i)
            self.servers[s.id] = ServerRec(
                id=s.id,
                name=s.name,
                project_id=by_name[s.project],
                region=s.region,
                status=s.status,
                addresses=list(s.addresses),
                down=s.down or s.id in down_ids or s.region in down_regions,
                created=created,
                updated=created,
                user_id=stable_id("user", "default", f"{s.project}-owner"),
                availability_zone=s.availability_zone,
            )
        self.deleted: dict[str, ServerRec] = {}
        # ports added by hand (``add_port``): raw data a broken or hostile cloud could serve
        self.extra_ports: dict[str, ExtraPort] = {}
        self.tokens: dict[str, Token] = {}
        self.version = 0
        self._cache_version = -1
        self._cache: dict[str, Any] = {}

    # ------------------------------------------------------------------ lookups

    def project_by_name(self, name: str) -> ProjectRec:
        for p in self.projects.values():
            if p.name == name:
                return p
        raise KeyError(f"no project named {name!r}")

    def find_user(self, name: str, domain_id: str) -> UserRec | None:
        for u in self.users.values():
            if u.name == name and u.domain_id == domain_id:
                return u
        return None

    def domain_id_for(self, ident: dict[str, Any] | None) -> str | None:
        """A Keystone ``domain`` object (``{"id"}`` or ``{"name"}``) to a domain id."""
        if not isinstance(ident, dict):
            return None
        if isinstance(ident.get("id"), str):
            return ident["id"] if ident["id"] in self.domains else None
        for d in self.domains.values():
            if d.name == ident.get("name"):
                return d.id
        return None

    # ------------------------------------------------------------------ tokens

    def issue_token(self, user: UserRec, project_id: str | None, system: bool) -> Token:
        roles: list[str] = []
        for g in user.grants:
            if (system and g.project_id is None) or (
                not system and project_id is not None and g.project_id == project_id
            ):
                roles.extend(r for r in IMPLIED[g.role] if r not in roles)
        now = self.clock()
        tok = Token(
            id="gAAAAA" + secrets.token_urlsafe(96),  # Fernet tokens are this long
            user_id=user.id,
            project_id=project_id,
            system=system,
            roles=tuple(roles),
            issued_at=now,
            expires_at=now + self.settings.token_ttl_seconds,
        )
        with self.lock:
            self.tokens[tok.id] = tok
        return tok

    def check_token(self, token_id: str | None) -> tuple[Token | None, str]:
        """(token, "") when the token is usable; (None, why) otherwise."""
        if not token_id:
            return None, "no token"
        with self.lock:
            tok = self.tokens.get(token_id)
            if tok is None:
                return None, "unknown token"
            if tok.expires_at <= self.clock():
                return None, "token expired"
            if tok.project_id is not None:
                p = self.projects.get(tok.project_id)
                if p is None:
                    return None, f"project {tok.project_id} not found"
                if not p.enabled:
                    return None, f"project {tok.project_id} is disabled"
            if tok.user_id not in self.users:
                return None, "user not found"
            return tok, ""

    # ------------------------------------------------------------------ derived views

    def _bump(self) -> None:
        self.version += 1

    def _derived(self) -> dict[str, Any]:
        """Per-region sorted servers, ports and floating IPs, rebuilt only after a change."""
        if self._cache_version == self.version:
            return self._cache
        servers: dict[str, list[ServerRec]] = {r: [] for r in self.regions}
        for s in self.servers.values():
            servers[s.region].append(s)
        for lst in servers.values():
            # Nova's default order: created_at desc, then id desc
            lst.sort(key=lambda s: (s.created, s.id), reverse=True)
        ports: dict[str, list[dict[str, Any]]] = {r: [] for r in self.regions}
        fips: dict[str, list[dict[str, Any]]] = {r: [] for r in self.regions}
        for s in self.servers.values():
            p, f = self._server_ports(s)
            ports[s.region].extend(p)
            fips[s.region].extend(f)
        for x in self.extra_ports.values():
            ports[x.region].append(self._extra_port(x))
        for r in self.regions:
            ports[r].sort(key=lambda p: str(p["id"]))
            fips[r].sort(key=lambda p: str(p["id"]))
        cache: dict[str, Any] = {"servers": servers, "ports": ports, "fips": fips}
        # per-project views, for project-scoped listings (a 1,000-project cycle asks for
        # each project separately: do not scan the whole region every time)
        for kind in ("servers", "ports", "fips"):
            by_project: dict[tuple[str, str], list[Any]] = {}
            for region, items in cache[kind].items():
                for item in items:
                    pid = item.project_id if kind == "servers" else item["project_id"]
                    by_project.setdefault((region, pid), []).append(item)
            cache[f"{kind}_by_project"] = by_project
        self._cache = cache
        self._cache_version = self.version
        return self._cache

    def _server_ports(self, s: ServerRec) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        by_net: dict[str, list[Address]] = {}
        for a in s.addresses:
            if a.type == "fixed":
                by_net.setdefault(a.network, []).append(a)
        ports: list[dict[str, Any]] = []
        v4_port: dict[str, tuple[str | None, str | None]] = {}  # network -> (port, fixed v4)
        ts = iso(s.created)
        for net, addrs in by_net.items():
            pid = stable_uuid("port", s.id, net)
            for a in addrs:
                if a.version == 4:
                    v4_port.setdefault(net, (pid, a.addr))
            ports.append(
                {
                    "id": pid,
                    "name": "",
                    "network_id": stable_uuid("network", s.region, net),
                    "tenant_id": s.project_id,
                    "project_id": s.project_id,
                    "mac_address": mac_for(pid),
                    "admin_state_up": True,
                    "status": "ACTIVE" if s.status == "ACTIVE" else "DOWN",
                    "device_id": s.id,
                    "device_owner": f"compute:{s.availability_zone}",
                    "fixed_ips": [
                        {
                            "subnet_id": stable_uuid("subnet", s.region, net, str(a.version)),
                            "ip_address": a.addr,
                        }
                        for a in addrs
                    ],
                    "allowed_address_pairs": [],
                    "extra_dhcp_opts": [],
                    "security_groups": [stable_uuid("secgroup", s.project_id, "default")],
                    "description": "",
                    "binding:vnic_type": "normal",
                    "port_security_enabled": True,
                    "tags": [],
                    "created_at": ts,
                    "updated_at": iso(s.updated),
                    "revision_number": 1,
                }
            )
        fips: list[dict[str, Any]] = []
        for a in s.addresses:
            if a.type != "floating":
                continue
            # NATed to a fixed IPv4 of the server; disassociated if it lost its last one
            fip_port, fixed = v4_port.get(a.network) or next(iter(v4_port.values()), (None, None))
            fips.append(
                {
                    "id": stable_uuid("fip", s.region, a.addr),
                    "floating_ip_address": a.addr,
                    "fixed_ip_address": fixed,
                    "port_id": fip_port,
                    "tenant_id": s.project_id,
                    "project_id": s.project_id,
                    "router_id": stable_uuid("router", s.region, s.project_id),
                    "floating_network_id": stable_uuid("network", s.region, "public"),
                    "status": "ACTIVE",
                    "description": "",
                    "dns_domain": "",
                    "dns_name": "",
                    "port_details": None,
                    "qos_policy_id": None,
                    "tags": [],
                    "created_at": ts,
                    "updated_at": iso(s.updated),
                    "revision_number": 1,
                }
            )
        return ports, fips

    def _extra_port(self, x: ExtraPort) -> dict[str, Any]:
        return {
            "id": x.id,
            "name": "",
            "network_id": stable_uuid("network", x.region, "extra"),
            "tenant_id": x.project_id,
            "project_id": x.project_id,
            "mac_address": mac_for(x.id),
            "admin_state_up": True,
            "status": "ACTIVE",
            "device_id": x.device_id,
            "device_owner": "compute:nova",
            "fixed_ips": [
                {"subnet_id": stable_uuid("subnet", x.region, "extra"), "ip_address": text}
                for text in x.fixed_ips
            ],
            "allowed_address_pairs": [],
            "extra_dhcp_opts": [],
            "security_groups": [],
            "description": "",
            "binding:vnic_type": "normal",
            "port_security_enabled": True,
            "tags": [],
            "created_at": iso(x.created),
            "updated_at": iso(x.created),
            "revision_number": 1,
        }

    def extra_addresses(self, server_id: str) -> list[str]:
        """The raw fixed IPs of the ports added by hand to a server (Nova shows them)."""
        with self.lock:
            return [t for x in self.extra_ports.values() if x.device_id == server_id
                    for t in x.fixed_ips]  # fmt: skip

    def add_port(
        self,
        device_id: str,
        fixed_ips: Sequence[Any],
        project: str | None = None,
        project_id: str | None = None,
        region: str | None = None,
        port_id: str | None = None,
    ) -> str:
        with self.lock:
            server = self.servers.get(device_id)
            if project is not None:
                project_id = self.project_by_name(project).id
            elif project_id is None:
                if server is None:
                    raise ValueError(f"no server {device_id!r}: name a project or project_id")
                project_id = server.project_id
            region = region or (server.region if server else self.regions[0])
            if region not in self.regions:
                raise ValueError(f"unknown region {region!r}")
            pid = port_id or stable_uuid("port", "extra", device_id, str(len(self.extra_ports)))
            if pid in self.extra_ports:
                raise ValueError(f"port id {pid} exists")
            self.extra_ports[pid] = ExtraPort(
                pid, device_id, project_id, region, list(fixed_ips), time.time()
            )
            self._bump()
            return pid

    def remove_port(self, port_id: str) -> None:
        with self.lock:
            del self.extra_ports[port_id]
            self._bump()

    def region_servers(self, region: str, project_id: str | None = None) -> list[ServerRec]:
        """Live servers of a region (of one project if given), newest first."""
        return self._view("servers", region, project_id)

    def region_ports(self, region: str, project_id: str | None = None) -> list[dict[str, Any]]:
        """Ports of a region's servers (of one project if given), by id."""
        return self._view("ports", region, project_id)

    def region_fips(self, region: str, project_id: str | None = None) -> list[dict[str, Any]]:
        return self._view("fips", region, project_id)

    def _view(self, kind: str, region: str, project_id: str | None) -> list[Any]:
        with self.lock:
            d = self._derived()
            if project_id is None:
                return list(d[kind][region])
            return list(d[f"{kind}_by_project"].get((region, project_id), []))

    def deleted_since(self, region: str, since: float) -> list[ServerRec]:
        with self.lock:
            keep = self.settings.changes_since_retention_seconds
            horizon = time.time() - keep if keep is not None else float("-inf")
            return [
                s
                for s in self.deleted.values()
                if s.region == region
                and s.deleted_at is not None
                and s.deleted_at >= max(since, horizon)
            ]

    # ------------------------------------------------------------------ runtime changes

    def _used(self, region: str) -> dict[str, str]:
        return {
            a.addr: s.id for s in self.servers.values() if s.region == region for a in s.addresses
        }

    def _free_fixed(self, region: str) -> str:
        used = self._used(region)
        for i, host in enumerate(FIXED_POOL.hosts()):
            if i > 1 and str(host) not in used:
                return str(host)
        raise RuntimeError("fixed address pool exhausted")

    def create_server(
        self,
        name: str,
        project: str,
        region: str | None = None,
        addresses: Sequence[Address | str | dict[str, str]] | None = None,
        status: str = "ACTIVE",
        server_id: str | None = None,
        down: bool = False,
    ) -> str:
        with self.lock:
            region = region or self.regions[0]
            if region not in self.regions:
                raise ValueError(f"unknown region {region!r}")
            pid = self.project_by_name(project).id
            sid = server_id or stable_uuid("server", project, name, secrets.token_hex(4))
            if sid in self.servers:
                raise ValueError(f"server id {sid} exists")
            if addresses is None:
                addrs = [Address(addr=self._free_fixed(region))]
            else:
                addrs = [
                    a if isinstance(a, Address) else Address.model_validate(a) for a in addresses
                ]
            _check_floating(addrs, name)
            used = self._used(region)
            for a in addrs:
                if a.addr in used:
                    raise ValueError(
                        f"address {a.addr} in {region} belongs to server {used[a.addr]}"
                    )
            now = time.time()
            self.servers[sid] = ServerRec(
                id=sid,
                name=name,
                project_id=pid,
                region=region,
                status=status,
                addresses=addrs,
                down=down,
                created=now,
                updated=now,
                user_id=stable_id("user", "default", f"{project}-owner"),
            )
            self._bump()
            return sid

    def delete_server(self, server_id: str) -> None:
        with self.lock:
            s = self.servers.pop(server_id)
            now = time.time()
            self.deleted[server_id] = replace(
                s, status="DELETED", deleted_at=now, updated=now, addresses=[]
            )
            self._bump()

    def move_ip(self, addr: str, to_server: str, network: str | None = None) -> None:
        with self.lock:
            addr = str(ipaddress.ip_address(addr))
            target = self.servers[to_server]
            owners = [
                s
                for s in self.servers.values()
                if s.region == target.region and any(a.addr == addr for a in s.addresses)
            ]
            if owners:
                moved = next(a for a in owners[0].addresses if a.addr == addr)
                if network:
                    moved = moved.model_copy(update={"network": network})
            else:
                moved = Address(addr=addr, network=network or "private")
            _check_floating([*target.addresses, moved], target.name)
            now = time.time()
            for s in owners:
                s.addresses = [a for a in s.addresses if a.addr != addr]
                s.updated = now
            target.addresses.append(moved)
            target.updated = now
            self._bump()

    def set_down(self, server_ids: Iterable[str], down: bool = True) -> None:
        with self.lock:
            for sid in server_ids:
                self.servers[sid].down = down
            self._bump()

    def set_status(self, server_id: str, status: str) -> None:
        with self.lock:
            s = self.servers[server_id]
            s.status = status
            s.updated = time.time()
            self._bump()

    def delete_project(self, name: str) -> None:
        with self.lock:
            p = self.project_by_name(name)
            del self.projects[p.id]
            self._bump()

    def set_project_enabled(self, name: str, enabled: bool) -> None:
        with self.lock:
            self.project_by_name(name).enabled = enabled
            self._bump()

    def rename_project(self, name: str, new_name: str) -> None:
        with self.lock:
            if any(p.name == new_name for p in self.projects.values()):
                raise ValueError(f"a project named {new_name!r} exists")
            self.project_by_name(name).name = new_name
            self._bump()

    def add_project(self, name: str, project_id: str | None = None, enabled: bool = True) -> str:
        with self.lock:
            if any(p.name == name for p in self.projects.values()):
                raise ValueError(f"a project named {name!r} exists")
            pid = project_id or stable_id("project", "default", name)
            self.projects[pid] = ProjectRec(pid, name, enabled, "default")
            self._bump()
            return pid
