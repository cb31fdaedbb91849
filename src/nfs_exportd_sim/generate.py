"""Generate a realistic cloud of any size: the benchmark's 1,000 projects and 10,000
instances, or the demo's ten.

Realistic where it matters to an inventory: instances are spread unevenly (a few large
projects, a long tail of small ones and some empty ones, like a real community cloud),
regions are uneven, addresses are unique (fixed IPv4 from 172.16.0.0/12, some IPv6
fixed from fd00::/8 on the same port, a few floating from 203.0.113.0/24 which is used
for nothing else), and the same seed always gives the same cloud.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from typing import Any

from .scenario import Scenario, parse_scenario

OBSERVER_PASSWORD = "observer-secret"
ADMIN_PASSWORD = "admin-secret"
NETWORK = "lan-flat-cloudinstances2b"

_STEMS = (
    "tools",
    "deployment-prep",
    "wikidata-query",
    "quarry",
    "paws",
    "huggle",
    "integration",
    "mwoffliner",
    "maps",
    "video",
    "wikilabels",
    "cloudinfra",
    "testlabs",
    "bastion",
    "search",
    "ores",
    "analytics",
    "dumps",
    "toolsbeta",
    "wikistats",
    "sre-sandbox",
    "account-creation",
    "commonsarchive",
    "catgraph",
    "cyberbot",
    "dwl",
    "editor-engagement",
    "glam",
    "gratitude",
    "hashtags",
    "language",
    "librarybase",
    "mediawiki-vagrant",
    "openstreetmap",
    "pagemigration",
    "puppet-diffs",
    "reading-web",
    "recommendation-api",
    "shinken",
    "signwriting",
    "striker",
    "suggestbot",
    "twl",
    "undo",
    "visualeditor",
    "webperf",
    "wikiapiary",
    "wikisource",
    "xtools",
    "zuul",
    "codesearch",
    "citoid",
)
_SUFFIXES = ("dev", "staging", "test", "prod", "lab", "bots", "api", "web", "db", "ci")
_ROLES = ("web", "worker", "db", "k8s-node", "bastion", "build", "cache", "proxy", "app")


def _project_names(n: int, rng: random.Random) -> list[str]:
    names: list[str] = []
    seen: set[str] = set()
    stems = list(_STEMS)
    rng.shuffle(stems)
    i = 0
    while len(names) < n:
        stem = stems[i % len(stems)]
        rnd = i // len(stems)
        if rnd == 0:
            name = stem
        elif rnd <= len(_SUFFIXES):
            name = f"{stem}-{_SUFFIXES[(rnd - 1 + i) % len(_SUFFIXES)]}"
        else:
            name = f"{stem}-{rnd}"
        i += 1
        if name not in seen and name != "admin":
            seen.add(name)
            names.append(name)
    return names


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def generate(
    projects: int,
    instances: int,
    regions: Sequence[str] = ("RegionOne", "RegionTwo"),
    seed: int = 0,
) -> Scenario:
    """A cloud with ``projects`` projects (plus an ``admin`` project) and ``instances``
    servers.  Users: ``observer`` (system reader and reader on every project, password
    OBSERVER_PASSWORD) and ``admin`` (admin on ``admin``, password ADMIN_PASSWORD)."""
    if projects < 1 and instances > 0:
        raise ValueError("instances need at least one project")
    if not regions:
        raise ValueError("at least one region")
    if instances > 4096 * 253:
        raise ValueError("at most 1,036,288 instances fit in 172.16.0.0/12")
    rng = random.Random(seed)
    names = _project_names(projects, rng)
    project_list: list[dict[str, Any]] = [
        {"id": uuid.UUID(int=rng.getrandbits(128)).hex, "name": n, "enabled": True} for n in names
    ]
    project_list.append({"id": uuid.UUID(int=rng.getrandbits(128)).hex, "name": "admin"})
    # Zipf-like sizes over a shuffled order: a few big projects, a long tail, some empty.
    weights = [1.0 / (rank + 1) ** 1.1 for rank in range(projects)]
    rng.shuffle(weights)
    owners = rng.choices(range(projects), weights=weights, k=instances) if instances else []
    region_weights = [3.0 if i == 0 else 1.0 for i in range(len(regions))]
    v4_slots = rng.sample(range(4096 * 253), instances)
    floating_slots = rng.sample(range(2, 255), min(253, instances // 20))
    floating_for = set(rng.sample(range(instances), len(floating_slots)))
    floating_iter = iter(floating_slots)
    per_project: dict[int, int] = {}
    servers: list[dict[str, Any]] = []
    for i, owner in enumerate(owners):
        project = names[owner]
        per_project[owner] = per_project.get(owner, 0) + 1
        region_idx = rng.choices(range(len(regions)), weights=region_weights)[0]
        block, host = divmod(v4_slots[i], 253)
        v4 = f"172.{16 + block // 256}.{block % 256}.{host + 2}"
        addresses: list[dict[str, str]] = [{"addr": v4, "type": "fixed", "network": NETWORK}]
        if rng.random() < 0.3:
            v6 = f"fd00:10:{region_idx:x}::{block:x}:{host + 2:x}"
            addresses.append({"addr": v6, "type": "fixed", "network": NETWORK})
        if i in floating_for:
            fip = f"203.0.113.{next(floating_iter)}"
            addresses.append({"addr": fip, "type": "floating", "network": NETWORK})
        role = _ROLES[rng.randrange(len(_ROLES))]
        servers.append(
            {
                "id": _uuid(rng),
                "name": f"{project}-{role}-{per_project[owner]}",
                "project": project,
                "region": regions[region_idx],
                "status": "SHUTOFF" if rng.random() < 0.05 else "ACTIVE",
                "addresses": addresses,
            }
        )
    users = [
        {
            "name": "observer",
            "password": OBSERVER_PASSWORD,
            "roles": [{"role": "reader", "system": "all"}]
            + [{"role": "reader", "project": p["name"]} for p in project_list],
        },
        {
            "name": "admin",
            "password": ADMIN_PASSWORD,
            "roles": [{"role": "admin", "project": "admin"}],
        },
    ]
    return parse_scenario(
        {
            "regions": list(regions),
            "projects": project_list,
            "users": users,
            "servers": servers,
        },
        f"generate(projects={projects}, instances={instances}, seed={seed})",
    )
