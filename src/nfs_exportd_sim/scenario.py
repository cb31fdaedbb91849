"""The simulated cloud's contents: a validated, YAML/JSON-loadable scenario.

A scenario names projects, users with their role assignments, and servers with their
addresses; Neutron ports and floating IPs are *derived* from the servers (one port per
fixed address, one floating-IP record per floating address), so a scenario cannot say
two contradictory things about who owns an address.  Validation is strict (unknown keys,
dangling references and duplicate addresses are errors) because a scenario with a typo
would otherwise silently test something else.
"""

from __future__ import annotations

import ipaddress
import uuid
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

# Deterministic ids: the same scenario always yields the same UUIDs, so tests can name them.
ID_NAMESPACE = uuid.UUID("6f1d3c2e-8a57-4b7e-9a43-2f0f6d1c5e01")

RoleName = Literal["admin", "member", "reader"]
AddressType = Literal["fixed", "floating"]


def stable_id(*parts: str) -> str:
    """A UUID (hex, no dashes, like Keystone ids) derived from ``parts``."""
    return uuid.uuid5(ID_NAMESPACE, "\x1f".join(parts)).hex


def stable_uuid(*parts: str) -> str:
    """A dashed UUID derived from ``parts`` (Nova and Neutron ids look like this)."""
    return str(uuid.uuid5(ID_NAMESPACE, "\x1f".join(parts)))


class ScenarioError(ValueError):
    """A scenario file or mapping is invalid; the message names the file and the object."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Domain(_Model):
    id: str = "default"
    name: str = "Default"


class Project(_Model):
    id: str = ""
    name: str
    enabled: bool = True
    domain_id: str = "default"
    description: str = ""

    @model_validator(mode="after")
    def _default_id(self) -> Project:
        if not self.id:
            object.__setattr__(self, "id", stable_id("project", self.domain_id, self.name))
        return self


class RoleAssignment(_Model):
    """``{role, project: NAME}`` or ``{role, system: all}``: exactly one target."""

    role: RoleName
    project: str | None = None
    system: Literal["all"] | None = None

    @model_validator(mode="after")
    def _one_target(self) -> RoleAssignment:
        if (self.project is None) == (self.system is None):
            raise ValueError("a role assignment needs exactly one of 'project' or 'system: all'")
        return self


class User(_Model):
    name: str
    password: str
    domain_id: str = "default"
    id: str = ""
    roles: list[RoleAssignment] = Field(default_factory=list)

    @model_validator(mode="after")
    def _default_id(self) -> User:
        if not self.id:
            object.__setattr__(self, "id", stable_id("user", self.domain_id, self.name))
        return self


class Address(_Model):
    addr: str
    type: AddressType = "fixed"
    network: str = "private"

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, data: Any) -> Any:
        # "172.16.0.5" is shorthand for a fixed address on the default network
        return {"addr": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _valid(self) -> Address:
        try:
            ip = ipaddress.ip_address(self.addr)
        except ValueError as e:
            raise ValueError(f"addr {self.addr!r} is not an IP address") from e
        object.__setattr__(self, "addr", str(ip))
        return self

    @property
    def version(self) -> int:
        return ipaddress.ip_address(self.addr).version


class Server(_Model):
    id: str = ""
    name: str
    project: str  # project *name*
    region: str = ""  # empty: the scenario's first region
    status: str = "ACTIVE"
    addresses: list[Address] = Field(default_factory=list)
    down: bool = False
    created: str | None = None  # ISO 8601; default: staggered before the cloud starts
    availability_zone: str = "nova"


class DownCell(_Model):
    region: str = ""
    server_ids: list[str] = Field(default_factory=list)


class Settings(_Model):
    nova_max_limit: int = Field(1000, ge=1)  # Nova [api] max_limit
    neutron_page_size: int | None = Field(None, ge=1)  # Neutron pagination_max_limit
    keystone_list_limit: int | None = Field(None, ge=1)  # Keystone [DEFAULT] list_limit
    token_ttl_seconds: int = Field(3600, ge=1)
    changes_since_retention_seconds: int | None = Field(None, ge=0)  # None: keep forever


class Scenario(_Model):
    regions: list[str] = Field(default_factory=lambda: ["RegionOne"], min_length=1)
    domains: list[Domain] = Field(default_factory=lambda: [Domain()])
    projects: list[Project] = Field(default_factory=list)
    users: list[User] = Field(default_factory=list)
    servers: list[Server] = Field(default_factory=list)
    down_cells: list[DownCell] = Field(default_factory=list)
    settings: Settings = Field(default_factory=Settings)

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        _check_unique("region", self.regions)
        _check_unique("domain id", [d.id for d in self.domains])
        domains = {d.id for d in self.domains}
        _check_unique("project id", [p.id for p in self.projects])
        _check_unique("project name", [p.name for p in self.projects])
        for p in self.projects:
            if p.domain_id not in domains:
                raise ValueError(f"project {p.name!r}: unknown domain_id {p.domain_id!r}")
        names = {p.name for p in self.projects}
        _check_unique("user name", [u.name for u in self.users])
        for u in self.users:
            if u.domain_id not in domains:
                raise ValueError(f"user {u.name!r}: unknown domain_id {u.domain_id!r}")
            for r in u.roles:
                if r.project is not None and r.project not in names:
                    raise ValueError(f"user {u.name!r}: role on unknown project {r.project!r}")
        servers = [_normalised(s, self.regions[0]) for s in self.servers]
        object.__setattr__(self, "servers", servers)
        _check_unique("server id", [s.id for s in servers])
        used: dict[tuple[str, str], str] = {}
        for s in servers:
            where = f"server {s.name!r} ({s.id})"
            if s.project not in names:
                raise ValueError(f"{where}: unknown project {s.project!r}")
            if s.region not in self.regions:
                raise ValueError(f"{where}: unknown region {s.region!r}")
            for a in s.addresses:
                key = (s.region, a.addr)
                if key in used:
                    raise ValueError(
                        f"{where}: address {a.addr} in {s.region} already belongs to {used[key]}"
                    )
                used[key] = where
            if any(a.type == "floating" for a in s.addresses) and not any(
                a.type == "fixed" and a.version == 4 for a in s.addresses
            ):
                raise ValueError(f"{where}: a floating address needs a fixed IPv4 address")
        ids = {s.id for s in servers}
        for c in self.down_cells:
            if not c.region and not c.server_ids:
                raise ValueError("down_cells: each cell needs a region or server_ids")
            if c.region and c.region not in self.regions:
                raise ValueError(f"down_cells: unknown region {c.region!r}")
            for sid in c.server_ids:
                if sid not in ids:
                    raise ValueError(f"down_cells: unknown server id {sid!r}")
        return self


def _normalised(s: Server, default_region: str) -> Server:
    update: dict[str, str] = {}
    if not s.region:
        update["region"] = default_region
    if not s.id:
        update["id"] = stable_uuid("server", s.project, s.name)
    return s.model_copy(update=update) if update else s


def _check_unique(what: str, values: list[str]) -> None:
    seen: set[str] = set()
    for v in values:
        if v in seen:
            raise ValueError(f"duplicate {what} {v!r}")
        seen.add(v)


def parse_scenario(data: object, source: str = "scenario") -> Scenario:
    """Validate a loaded mapping; raise ScenarioError naming ``source`` and the bad key."""
    if isinstance(data, Scenario):
        return data
    if not isinstance(data, dict):
        raise ScenarioError(f"{source}: expected a mapping, got {type(data).__name__}")
    try:
        return Scenario.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}" for err in e.errors()
        )
        raise ScenarioError(f"{source}: {problems}") from None


def load_scenario(path: str | Path) -> Scenario:
    """Read a YAML or JSON scenario file (JSON is valid YAML)."""
    p = Path(path)
    try:
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # 10x faster on big clouds
        data = yaml.load(p.read_text(encoding="utf-8"), Loader=loader)
    except OSError as e:
        raise ScenarioError(f"{p}: cannot read: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        raise ScenarioError(f"{p}: not valid YAML/JSON: {e}") from None
    return parse_scenario(data, str(p))


def dump_scenario(scenario: Scenario) -> dict[str, Any]:
    """A plain mapping that ``parse_scenario`` turns back into the same scenario
    (defaults left out, to keep a 10,000-server file readable)."""
    return scenario.model_dump(mode="json", exclude_defaults=True)
