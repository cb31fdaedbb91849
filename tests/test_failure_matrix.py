"""The failure matrix of issue 4: named scenarios, each driven through the simulated cloud
(real openstacksdk over HTTP, ``inventory.source: openstack``) and the real exportfs, one
``nfs-exportd sync`` at a time.

Every scenario has the same shape:

1. a baseline cycle puts the whole scenario cloud in force (exit 0, nothing held);
2. ``inject`` breaks something (a fault, a change in the cloud, the config, the state, the
   maintenance flag, exportfs) and usually also makes ordinary changes that are then
   *pending* (an instance deleted, two created);
3. ``during``: one expectation per cycle (at least two: after one cycle and after
   several), each with the exit code, the EXACT (path, client) pairs in the etab, the
   EXACT set of hold reasons in ``status.json`` ``holds_by_reason`` and, where it says
   something, the changes the cycle applied with their reasons;
4. ``clear`` removes the fault (or does what a human would: ``sync --force`` after
   reading the plan, waiting out an age);
5. ``after``: the pending changes DO happen, and the last cycle is clean (exit 0, no
   holds); a further cycle changes nothing and does not run exportfs.

The driver insists that the pairs at the end of ``after`` differ from those at the end of
``during``: a daemon that never changes anything fails every scenario.

Expected addresses are written by hand from ``SCENARIO`` below.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import shlex
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest

from conftest import HOST, SANDBOX, Lab
from nfs_exportd import cycle
from nfs_exportd_sim import SimCloud

HOST2 = "nfs-2.svc.example"
AUTH_HOST = "keystone.cloud.example"  # DNS scenario: a name only the test's resolver knows
ADMIN_PW = "admin-pw"
OBS_PW = "obs-pw"

# ---------------------------------------------------------------------------- the cloud
# tools (two volumes) and paws, wikidata on HOST; quarry and maps on HOST2; batch has many
# instances and no volume here (it makes "half the cloud" bigger than our own share).
T1, T1V6, T2, T3, T4 = "172.16.0.11", "fd00::11", "172.16.0.12", "172.16.0.13", "172.16.1.14"
P1, P2, P3 = "172.16.0.21", "172.16.0.22", "172.16.1.23"
Q1, Q2, Q3 = "172.16.0.31", "172.16.0.32", "172.16.1.33"
M1, M2, M3, M4 = "172.16.0.41", "172.16.0.42", "172.16.0.43", "172.16.0.44"
W1, W2, W3 = "172.16.0.51", "172.16.0.52", "172.16.0.53"
# created during a scenario
NEW_P, NEW_T, NEW_M, NEW_Q = "172.16.0.61", "172.16.0.62", "172.16.0.63", "172.16.0.64"
CLI_DEADLINE = 20  # seconds; the slowest healthy command here takes about 3
NFS_PROJECTS = ("tools", "paws", "quarry", "maps", "wikidata")


def _srv(sid: str, project: str, region: str, *addresses: str) -> dict[str, Any]:
    return {
        "id": sid,
        "name": sid,
        "project": project,
        "region": region,
        "addresses": list(addresses),
    }


R1, R2 = "RegionOne", "RegionTwo"
SCENARIO: dict[str, Any] = {
    "regions": [R1, R2],
    # small pages: every listing of a region has a page 2 (and 3, 4)
    "settings": {"nova_max_limit": 5, "neutron_page_size": 5},
    "projects": [{"name": n} for n in ("admin", *NFS_PROJECTS, "batch")],
    "users": [
        {"name": "admin", "password": ADMIN_PW, "roles": [{"role": "admin", "project": "admin"}]},
        {
            "name": "observer",
            "password": OBS_PW,
            "roles": [
                {"role": "reader", "system": "all"},
                *({"role": "reader", "project": p} for p in NFS_PROJECTS),
            ],
        },
    ],
    "servers": [
        _srv("tools-1", "tools", R1, T1, T1V6),
        _srv("tools-2", "tools", R1, T2),
        _srv("tools-3", "tools", R1, T3),
        _srv("tools-4", "tools", R2, T4),
        _srv("paws-1", "paws", R1, P1),
        _srv("paws-2", "paws", R1, P2),
        _srv("paws-3", "paws", R2, P3),
        _srv("quarry-1", "quarry", R1, Q1),
        _srv("quarry-2", "quarry", R1, Q2),
        _srv("quarry-3", "quarry", R2, Q3),
        _srv("maps-1", "maps", R1, M1),
        _srv("maps-2", "maps", R1, M2),
        _srv("maps-3", "maps", R1, M3),
        _srv("maps-4", "maps", R1, M4),
        _srv("wikidata-1", "wikidata", R1, W1),
        _srv("wikidata-2", "wikidata", R1, W2),
        _srv("wikidata-3", "wikidata", R1, W3),
        *(_srv(f"batch-{n}", "batch", R1, f"172.16.0.{100 + n}") for n in range(1, 5)),
        *(_srv(f"batch-{n}", "batch", R2, f"172.16.1.{100 + n}") for n in range(5, 17)),
    ],
}
REGION_TWO = ["tools-4", "paws-3", "quarry-3", *(f"batch-{n}" for n in range(5, 17))]
INSTANCES = 33  # 17 of the NFS projects + 16 of batch

# ---------------------------------------------------------------------------- expectations

PENDING = "pending-confirmation"
UNKNOWN_INV = "unknown-inventory"
UNKNOWN_PROJ = "unknown-project"
TOO_MUCH = "too-much-change"
SHRINK = "inventory-shrink"
CONFLICT = "ip-conflict"


@dataclass(frozen=True)
class Exp:
    """Expected exports: project -> its clients, on each of the project's served paths."""

    ips: Mapping[str, frozenset[str]]

    @staticmethod
    def of(m: Mapping[str, Iterable[str]]) -> Exp:
        return Exp({k: frozenset(v) for k, v in m.items()})

    def plus(self, project: str, *ips: str) -> Exp:
        return Exp.of({**self.ips, project: self.ips.get(project, frozenset()) | set(ips)})

    def minus(self, project: str, *ips: str) -> Exp:
        assert set(ips) <= self.ips[project], (project, ips)
        return Exp.of({**self.ips, project: self.ips[project] - set(ips)})

    def drop(self, *projects: str) -> Exp:
        return Exp.of({k: v for k, v in self.ips.items() if k not in projects})

    def __hash__(self) -> int:
        return hash(frozenset((k, v) for k, v in self.ips.items() if v))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Exp):
            return NotImplemented
        mine = {k: v for k, v in self.ips.items() if v}
        theirs = {k: v for k, v in other.ips.items() if v}
        return mine == theirs


BASE = Exp.of(
    {
        "tools": {T1, T1V6, T2, T3, T4},
        "paws": {P1, P2, P3},
        "quarry": {Q1, Q2, Q3},
        "maps": {M1, M2, M3, M4},
        "wikidata": {W1, W2, W3},
    }
)
BASE_PAIRS = 23  # tools 5 x 2 paths + 3 + 3 + 4 + 3: max_removal_fraction 0.25 -> 5.75

# The ordinary churn most scenarios add while their fault lasts: tools-2 deleted, one new
# instance in paws and one in tools.
CHURN_ADDS = BASE.plus("paws", NEW_P).plus("tools", NEW_T)
CHURNED = CHURN_ADDS.minus("tools", T2)

Change = tuple[str, str, str, str]  # project, client, action, reason (paths folded)
ADD_CHURN: frozenset[Change] = frozenset(
    {("paws", NEW_P, "add", "new-instance"), ("tools", NEW_T, "add", "new-instance")}
)
REMOVE_T2: frozenset[Change] = frozenset({("tools", T2, "remove", "instance-gone")})


# Where a Cycle's ``why`` must appear in status.json: the detail of a hold of one of
# the expected reasons, the last cycle's message, the inventory's problem (the whole
# snapshot unknown) or the reason one project is unknown.
WhyIn = Literal["hold", "message", "problem", "project"]


def why_texts(st: Mapping[str, Any], where: WhyIn, reasons: Iterable[str]) -> list[str]:
    """The texts of status.json that a ``why`` ``where`` is matched against."""
    inventory = st.get("inventory") or {}
    if where == "message":
        return [str((st.get("last_cycle") or {}).get("message"))]
    if where == "problem":
        return [str(inventory.get("problem"))]
    if where == "project":
        return [str(v) for v in (inventory.get("incomplete_projects") or {}).values()]
    wanted = set(reasons)
    holds = (st.get("plan") or {}).get("holds") or []
    return [str(h["detail"]) for h in holds if not wanted or h["reason"] in wanted]


@dataclass(frozen=True)
class Cycle:
    """One ``sync`` and what must hold after it."""

    rc: int
    pairs: Exp
    holds: frozenset[str] = frozenset()  # exact set of hold reasons (ignored when rc == 1)
    changes: frozenset[Change] | None = None  # exact, when given
    why: str = ""  # must appear (case-insensitive) in the field ``why_in`` names
    why_in: WhyIn = "hold"
    args: tuple[str, ...] = ()  # extra sync arguments
    force_checksum: bool = False  # read `plan --json --force`, then sync --force --plan-checksum
    before: Callable[[World], None] | None = None
    check: Callable[[World], None] | None = None


def cyc(
    rc: int,
    pairs: Exp,
    holds: Iterable[str] = (),
    changes: Iterable[Change] | None = None,
    **kw: Any,
) -> Cycle:
    return Cycle(rc, pairs, frozenset(holds), None if changes is None else frozenset(changes), **kw)


@dataclass(frozen=True)
class Scenario:
    name: str
    inject: Callable[[World], None]
    during: tuple[Cycle, ...]
    after: tuple[Cycle, ...]
    clear: Callable[[World], None] = field(default=lambda w: None)
    config: Mapping[str, Any] = field(default_factory=dict)  # deep-merged into the config
    plan_check: bool = True  # `plan --json` before the first cycle shows what sync does


# ---------------------------------------------------------------------------- the world


@dataclass
class World:
    lab: Lab
    sim: SimCloud
    mp: pytest.MonkeyPatch
    capsys: pytest.CaptureFixture[str]
    tmp: Path
    paths: dict[str, tuple[str, ...]]
    resolver: dict[str, bool] = field(default_factory=lambda: {"up": True})
    lookups: list[str] = field(default_factory=list)
    blocker: socket.socket | None = None

    @property
    def clouds(self) -> Path:
        return self.lab.root / "clouds.yaml"

    def pairs(self, exp: Exp) -> set[tuple[str, str]]:
        return {(p, ip) for proj, ips in exp.ips.items() for p in self.paths[proj] for ip in ips}

    def cli(self, *args: str) -> int:
        """``lab.cli`` under a watchdog: a command that hangs fails its scenario instead of
        the whole run (the stuck thread is a daemon and is left behind)."""
        result: list[int] = []
        errors: list[BaseException] = []

        def target() -> None:
            try:
                result.append(self.lab.cli(*args))
            except BaseException as exc:  # re-raised in the test's thread
                errors.append(exc)

        t = threading.Thread(target=target, name=f"nfs-exportd {args[0]}", daemon=True)
        t.start()
        t.join(CLI_DEADLINE)
        if t.is_alive():
            raise AssertionError(
                f"nfs-exportd {' '.join(args)} did not finish within {CLI_DEADLINE} s (hung)"
            )
        if errors:
            raise errors[0]
        return result[0]

    def plan(self, *args: str) -> dict[str, Any]:
        self.capsys.readouterr()
        assert self.cli("plan", "--json", *args) == 0
        out: dict[str, Any] = json.loads(self.capsys.readouterr().out)
        return out

    def sync(self, *args: str) -> int:
        return self.cli("sync", *args)

    def rewrite_clouds(self, old: str, new: str) -> None:
        text = self.clouds.read_text()
        assert old in text, old
        self.clouds.write_text(text.replace(old, new))

    def project_listing(self, exclude: Sequence[str] = ()) -> list[dict[str, Any]]:
        """Keystone ``GET /v3/projects`` records as the sim would give them."""
        with self.sim.state.lock:
            return [
                {
                    "id": p.id,
                    "name": p.name,
                    "enabled": p.enabled,
                    "domain_id": p.domain_id,
                    "is_domain": False,
                    "parent_id": p.domain_id,
                    "description": "",
                    "tags": [],
                    "options": {},
                }
                for p in self.sim.state.projects.values()
                if p.name not in exclude
            ]

    def exportfs_wrapper(self, body: str) -> Path:
        """exportfs_command: ``body`` runs while the file ``broken`` exists (``real`` is the
        sandboxed exportfs, ``$n`` the number of this call), then the real one."""
        script = self.tmp / "exportfs-wrapper"
        flag, calls = self.tmp / "broken", self.tmp / "calls"
        real = f"{shlex.quote(str(SANDBOX))} {shlex.quote(str(self.lab.root / 'sb'))}"
        script.write_text(
            "#!/bin/bash\n"
            f'real() {{ {real} "$@"; }}\n'
            f"n=$(( $(cat {calls} 2>/dev/null || echo 0) + 1 )); echo $n > {calls}\n"
            f"if [ -e {flag} ]; then\n{body}\nfi\n"
            f'exec {real} "$@"\n'
        )
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
        return script


def _merge(dst: dict[str, Any], src: Mapping[str, Any]) -> None:
    for k, v in src.items():
        if isinstance(v, Mapping) and isinstance(dst.get(k), dict):
            _merge(dst[k], v)
        else:
            dst[k] = copy.deepcopy(v)


@pytest.fixture
def world(
    lab: Lab,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> Iterator[World]:
    sim = SimCloud(SCENARIO)
    sim.start()
    w = World(lab, sim, monkeypatch, capsys, tmp_path, {})
    try:
        sim.clouds_yaml(
            w.clouds,
            {
                "nfs": {"user": "admin", "password": ADMIN_PW, "project": "admin"},
                "nfs-observer-system": {
                    "user": "observer",
                    "password": OBS_PW,
                    "system_scope": "all",
                },
                # per-project mode: the same reader, scoped to each project in turn
                "observer": {"user": "observer", "password": OBS_PW, "project": "paws"},
            },
        )
        monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(w.clouds))
        vols = {
            "tools": (HOST, ("home", "project")),
            "paws": (HOST, ("home",)),
            "quarry": (HOST2, ("home",)),
            "maps": (HOST2, ("home",)),
            "wikidata": (HOST, ("home",)),
        }
        for gid, (project, (host, volumes)) in enumerate(sorted(vols.items()), start=50000):
            mounts: dict[str, Any] = {v: f"{host}:{lab.srv(project, v)}" for v in volumes}
            if project == "wikidata":
                mounts["scratch"] = True  # handled elsewhere
            lab.projects[project] = {"gid": gid, "mounts": mounts}
            w.paths[project] = tuple(lab.srv(project, v) for v in volumes)
        lab.projects["video"] = {  # served by another NFS server: never exported here
            "gid": 50100,
            "mounts": {"home": "nfs-3.svc.example:/srv/video/home"},
        }
        lab.config["serve"]["hosts"] = [HOST, HOST2]
        lab.config["inventory"] = {
            "source": "openstack",
            "cloud": "nfs",
            "identity_cloud": "nfs-observer-system",
            "timeout_seconds": 5,
        }
        lab.config["safety"] = {
            "removal_confirmations": 2,
            "max_removal_fraction": 0.25,
            "min_removal_count": 2,
            "removal_min_age_seconds": 0,
            "confirmation_spacing_seconds": 0,  # syncs run back to back here
        }
        yield w
    finally:
        sim.stop()
        if w.blocker is not None:
            w.blocker.close()


# ---------------------------------------------------------------------------- building blocks


def seq(*steps: Callable[[World], object]) -> Callable[[World], None]:
    def run(w: World) -> None:
        for s in steps:
            s(w)

    return run


def fault(**kw: Any) -> Callable[[World], None]:
    def run(w: World) -> None:
        w.sim.add_fault(**kw)

    return run


def clear_faults(w: World) -> None:
    w.sim.clear_faults()


def churn(w: World) -> None:
    """Ordinary life in the cloud while something is broken."""
    w.sim.delete_server("tools-2")
    w.sim.create_server("paws-new", "paws", region=R1, addresses=[NEW_P], server_id="paws-new")
    w.sim.create_server("tools-new", "tools", region=R1, addresses=[NEW_T], server_id="tools-new")


def maintenance(text: str) -> Callable[[World], None]:
    def run(w: World) -> None:
        (w.lab.root / "maintenance").write_text(text)

    return run


def serve_only_host1(w: World) -> None:
    """The config is edited (and re-read by the next cycle): HOST2 is no longer served."""
    w.lab.config["serve"]["hosts"] = [HOST]


def create(name: str, project: str, region: str, *addresses: str) -> Callable[[World], None]:
    def run(w: World) -> None:
        w.sim.create_server(name, project, region=region, addresses=list(addresses), server_id=name)

    return run


def no_maintenance(w: World) -> None:
    p = w.lab.root / "maintenance"
    if p.is_dir():
        p.rmdir()
    else:
        p.unlink()


def reuse_t2_in_paws(w: World) -> None:
    """tools-2 is deleted and its address handed to a new instance of paws."""
    w.sim.delete_server("tools-2")
    w.sim.create_server("paws-reuse", "paws", region=R1, addresses=[T2], server_id="paws-reuse")


def delete(*sids: str) -> Callable[[World], None]:
    def run(w: World) -> None:
        for sid in sids:
            w.sim.delete_server(sid)

    return run


def restore_clouds(w: World) -> None:
    w.clouds.write_text((w.tmp / "clouds.good").read_text())


def save_clouds(w: World) -> None:
    (w.tmp / "clouds.good").write_text(w.clouds.read_text())


def file_absent(name: str) -> Callable[[World], None]:
    def check(w: World) -> None:
        assert name not in w.lab.files(), f"{name} should be gone: {sorted(w.lab.files())}"

    return check


def file_present(name: str) -> Callable[[World], None]:
    def check(w: World) -> None:
        assert name in w.lab.files(), f"{name} should exist: {sorted(w.lab.files())}"

    return check


def held_everything(
    name: str,
    inject: Callable[[World], None],
    why: str,
    clear: Callable[[World], None] = clear_faults,
    config: Mapping[str, Any] | None = None,
    args: tuple[str, ...] = (),
    plan_check: bool = True,
    check: Callable[[World], None] | None = None,
) -> Scenario:
    """The whole snapshot is unknown: nothing changes (not even additions), then the churn
    that happened meanwhile is applied once the cloud can be read again."""
    held = cyc(3, BASE, {UNKNOWN_INV}, (), why=why, why_in="problem", args=args, check=check)
    return Scenario(
        name,
        inject=seq(inject, churn),
        during=(held, held, held),
        clear=clear,
        after=(
            cyc(3, CHURN_ADDS, {PENDING}, ADD_CHURN),
            cyc(0, CHURNED, (), REMOVE_T2),
        ),
        config=config or {},
        plan_check=plan_check,
    )


def tools_unknown(
    name: str,
    inject: Callable[[World], None],
    why: str,
    clear: Callable[[World], None],
    config: Mapping[str, Any] | None = None,
) -> Scenario:
    """Only tools is unknown: tools keeps exactly what it has (its removal and its addition
    wait), paws gets its new instance at once."""
    held = cyc(3, BASE.plus("paws", NEW_P), {UNKNOWN_PROJ}, why=why, why_in="project")
    return Scenario(
        name,
        inject=seq(inject, churn),
        during=(
            cyc(
                3,
                BASE.plus("paws", NEW_P),
                {UNKNOWN_PROJ},
                {ADD_CHURN_PAWS},
                why=why,
                why_in="project",
            ),
            held,
            held,
        ),
        clear=clear,
        after=(
            cyc(3, CHURN_ADDS, {PENDING}, {("tools", NEW_T, "add", "new-instance")}),
            cyc(0, CHURNED, (), REMOVE_T2),
        ),
        config=config or {},
    )


ADD_CHURN_PAWS: Change = ("paws", NEW_P, "add", "new-instance")


# -- DNS, TLS, connection refused: transport failures of the auth host


def dns_outage(w: World) -> None:
    """clouds.yaml names the auth host; only this in-process resolver knows it (DNS never
    leaves the machine), and now it fails for it."""
    real = socket.getaddrinfo

    def resolver(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        try:
            if name is not None:
                ipaddress.ip_address(name)
            return real(host, port, *args, **kwargs)
        except ValueError:
            pass
        w.lookups.append(str(name))
        if name == AUTH_HOST and w.resolver["up"]:
            return real("127.0.0.1", port, *args, **kwargs)
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    w.mp.setattr(socket, "getaddrinfo", resolver)
    port = w.sim.base_url.rsplit(":", 1)[1]
    w.rewrite_clouds(f"127.0.0.1:{port}/identity", f"{AUTH_HOST}:{port}/identity")
    assert w.sync() == 0  # the name works while the resolver is up
    w.resolver["up"] = False


def dns_was_asked(w: World) -> None:
    """The auth host was looked up (and failed); the served host names never were: they
    are matched as text."""
    assert AUTH_HOST in w.lookups
    assert not {HOST, HOST2} & set(w.lookups), w.lookups


def dns_back(w: World) -> None:
    w.resolver["up"] = True


def connection_refused(w: World) -> None:
    """The auth URL points at a port that is bound but not listening: refused."""
    save_clouds(w)
    w.blocker = socket.socket()
    w.blocker.bind(("127.0.0.1", 0))
    port = w.sim.base_url.rsplit(":", 1)[1]
    dead = w.blocker.getsockname()[1]
    w.rewrite_clouds(f"127.0.0.1:{port}/identity", f"127.0.0.1:{dead}/identity")


def tls_failure(w: World) -> None:
    save_clouds(w)
    w.rewrite_clouds("auth_url: http://", "auth_url: https://")


def truncated_listing(w: World) -> None:
    listing = w.project_listing()
    w.sim.add_fault(
        service="identity",
        method="GET",
        path_regex="v3/projects$",
        status=200,
        body={"projects": listing[:3], "truncated": True},
    )


def broken_pagination(w: World) -> None:
    href = f"{w.sim.compute_url(R1)}/servers/detail?limit=5&marker=loop"
    w.sim.add_fault(
        service="compute",
        region=R1,
        path_regex="servers/detail",
        status=200,
        body={
            "servers": [{"id": "loop", "name": "x", "status": "ACTIVE", "tenant_id": "t"}],
            "servers_links": [{"rel": "next", "href": href}],
        },
    )


def revoke_tools_reader(w: World) -> None:
    tools = w.sim.project_id("tools")
    with w.sim.state.lock:
        user = w.sim.state.find_user("observer", "default")
        assert user is not None
        w.tmp.joinpath("grants").write_text(json.dumps([g.role for g in user.grants]))
        user.grants = [g for g in user.grants if g.project_id != tools]


def restore_tools_reader(w: World) -> None:
    from nfs_exportd_sim.state import Grant

    tools = w.sim.project_id("tools")
    with w.sim.state.lock:
        user = w.sim.state.find_user("observer", "default")
        assert user is not None
        user.grants.append(Grant("reader", tools))


def corrupt_counters(w: World) -> None:
    (w.lab.state_dir / "counters.json").write_text('{"schema": 1, "counters": [{"own')


def corrupt_kept_aside(w: World) -> None:
    aside = list(w.lab.state_dir.glob("counters.json.corrupt-*"))
    assert len(aside) == 1, sorted(p.name for p in w.lab.state_dir.iterdir())
    assert aside[0].read_text().startswith('{"schema": 1, "counters": [{"own')


def sync_held(n: int) -> Callable[[World], None]:
    def run(w: World) -> None:
        for _ in range(n):
            assert w.sync() == 3

    return run


def exportfs_broken(body: str, **config: Any) -> Callable[[World], None]:
    def run(w: World) -> None:
        w.lab.config["exportfs_command"] = [str(w.exportfs_wrapper(body))]
        w.lab.config.update(config)
        assert w.sync() == 0  # the wrapper passes through while not broken
        (w.tmp / "broken").touch()

    return run


def exportfs_fixed(w: World) -> None:
    (w.tmp / "broken").unlink()


def exportfs_error(what: str) -> Callable[[World], None]:
    def check(w: World) -> None:
        last = w.lab.status()["last_cycle"]
        assert last["result"] == "error", last
        assert what in last["message"] and "restored" in last["message"], last
        assert sorted(p.name for p in w.lab.exports_dir.iterdir()) == sorted(w.lab.files())

    return check


def status_maintenance(value: str) -> Callable[[World], None]:
    def check(w: World) -> None:
        assert w.lab.status()["maintenance"] == value

    return check


def region_two_empty(w: World) -> None:
    for service, path, key in (
        ("compute", "servers/detail", "servers"),
        ("network", "ports", "ports"),
    ):
        w.sim.add_fault(service=service, region=R2, path_regex=path, status=200, body={key: []})


def rename_in_projects_file(w: World) -> None:
    w.lab.projects["quarry-ng"] = w.lab.projects.pop("quarry")
    w.paths["quarry-ng"] = w.paths["quarry"]


def flaky_listing_without(project: str) -> Callable[[World], None]:
    """One complete-looking Keystone listing without ``project``, then the real ones."""

    def run(w: World) -> None:
        w.sim.add_fault(
            service=ID,
            method="GET",
            path_regex="v3/projects$",
            status=200,
            body={"projects": w.project_listing(exclude=(project,))},
            count=1,
        )

    return run


def advance_clock(seconds: float) -> Callable[[World], None]:
    """Move the clock decide counts with ``seconds`` forward (instead of sleeping)."""

    def advance(w: World) -> None:
        w.mp.setattr(cycle, "clock", lambda: time.time() + seconds)

    return advance


# ---------------------------------------------------------------------------- the matrix

ID = "identity"
S: list[Scenario] = [
    # --- the whole snapshot is unknown: nothing changes, not even additions
    held_everything(
        "keystone-401-on-every-auth",
        fault(service=ID, method="POST", path_regex="auth/tokens", status=401),
        why="401",
    ),
    held_everything(
        "keystone-401-to-everything-old-controller",
        fault(service=ID, status=401),
        why="401",
    ),
    held_everything(
        "keystone-401-with-sync-force",  # --force never releases a hold on unknown data
        fault(service=ID, method="POST", path_regex="auth/tokens", status=401),
        why="401",
        args=("--force",),
    ),
    held_everything(
        "keystone-403-on-project-listing",
        fault(service=ID, method="GET", path_regex="v3/projects$", status=403),
        why="403",
    ),
    held_everything(
        "keystone-connection-refused",
        connection_refused,
        why="connect",
        clear=restore_clouds,
    ),
    held_everything(
        "keystone-dns-failure-for-the-auth-host",
        dns_outage,
        why=AUTH_HOST,
        clear=dns_back,
        check=dns_was_asked,
    ),
    held_everything("keystone-tls-failure", tls_failure, why="TLS", clear=restore_clouds),
    held_everything(
        "keystone-timeout",
        fault(service=ID, method="GET", path_regex="v3/projects$", delay=2.0),
        why="timed out",
        config={"inventory": {"timeout_seconds": 1}},
    ),
    held_everything(
        "keystone-500-on-project-listing",
        fault(service=ID, method="GET", path_regex="v3/projects$", status=500),
        why="500",
    ),
    held_everything(
        "keystone-connection-dropped",
        fault(service=ID, method="GET", path_regex="v3/projects$", drop=True),
        why="projects",
    ),
    held_everything(
        "keystone-malformed-json",
        fault(service=ID, method="GET", path_regex="v3/projects$", malformed=True),
        why="malformed",
    ),
    held_everything("keystone-truncated-project-listing", truncated_listing, why="truncated"),
    held_everything(
        "keystone-answer-cut-short",
        fault(service=ID, method="GET", path_regex="v3/projects$", truncated=True),
        why="projects",
    ),
    held_everything(
        "nova-500-on-page-2",
        fault(service="compute", path_regex="servers/detail.*marker=", status=500),
        why="500",
    ),
    held_everything(
        "nova-503-on-page-2",
        fault(service="compute", path_regex="servers/detail.*marker=", status=503),
        why="503",
    ),
    held_everything(
        "neutron-503-on-page-2",
        fault(service="network", path_regex="ports.*marker=", status=503),
        why="503",
    ),
    held_everything(
        "neutron-500-on-page-3-of-region-two",
        fault(service="network", region=R2, path_regex="ports.*marker=", status=500, after=1),
        why="500",
        plan_check=False,  # `after` counts requests: the plan would shift it
    ),
    held_everything(
        "nova-malformed-json",
        fault(service="compute", path_regex="servers/detail", malformed=True),
        why="malformed",
    ),
    held_everything(
        "neutron-malformed-json",
        fault(service="network", path_regex="ports", malformed=True),
        why="malformed",
    ),
    held_everything(
        "nova-answer-cut-short-on-page-2",
        fault(service="compute", path_regex="servers/detail.*marker=", truncated=True),
        why="servers",
    ),
    held_everything(
        "nova-timeout",
        fault(service="compute", region=R2, path_regex="servers/detail", delay=2.0),
        why="timed out",
        config={"inventory": {"timeout_seconds": 1}},
    ),
    held_everything(
        "nova-403-all-tenants-policy",
        fault(service="compute", path_regex="servers/detail", status=403),
        why="403",
    ),
    held_everything("nova-broken-pagination", broken_pagination, why="pagination"),
    held_everything(
        "neutron-port-record-without-device-id",
        fault(
            service="network",
            region=R1,
            path_regex="ports",
            status=200,
            body={"ports": [{"id": "p", "device_owner": "compute:nova", "fixed_ips": []}]},
        ),
        why="device_id",
    ),
    held_everything(
        "keystone-401-per-project-mode",
        fault(service=ID, method="POST", path_regex="auth/tokens", status=401),
        why="401",
        config={"inventory": {"cloud": "observer", "mode": "per-project"}},
    ),
    # --- one project is unknown: it keeps exactly what it has, the others go on
    tools_unknown(
        "nova-down-cell",
        lambda w: w.sim.set_down(["tools-1"]),
        why="down Nova cell",
        clear=lambda w: w.sim.set_down(["tools-1"], False),
    ),
    tools_unknown(
        "per-project-401-for-one-project",
        revoke_tools_reader,
        why="401",
        clear=restore_tools_reader,
        config={"inventory": {"cloud": "observer", "mode": "per-project"}},
    ),
    tools_unknown(
        "active-server-without-port",
        create("tools-noport", "tools", R1),
        why="no port",
        clear=delete("tools-noport"),
    ),
    Scenario(
        "nova-down-cell-whole-region",  # tools, paws, quarry unknown; maps, wikidata go on
        inject=seq(
            lambda w: w.sim.set_down(REGION_TWO),
            delete("tools-2", "wikidata-3"),
            create("maps-new", "maps", R1, NEW_M),
        ),
        during=(
            cyc(3, BASE.plus("maps", NEW_M), {UNKNOWN_PROJ, PENDING}, why="down Nova cell"),
            cyc(
                3,
                BASE.plus("maps", NEW_M).minus("wikidata", W3),
                {UNKNOWN_PROJ},
                {("wikidata", W3, "remove", "instance-gone")},
            ),
            cyc(3, BASE.plus("maps", NEW_M).minus("wikidata", W3), {UNKNOWN_PROJ}, ()),
        ),
        clear=lambda w: w.sim.set_down(REGION_TWO, False),
        after=(
            cyc(3, BASE.plus("maps", NEW_M).minus("wikidata", W3), {PENDING}, ()),
            cyc(0, BASE.plus("maps", NEW_M).minus("wikidata", W3).minus("tools", T2)),
        ),
    ),
    # --- complete but implausible answers: confirmations, then the bounds hold
    Scenario(
        "keystone-empty-project-listing",
        inject=seq(
            fault(
                service=ID,
                method="GET",
                path_regex="v3/projects$",
                status=200,
                body={"projects": []},
            ),
            churn,
        ),
        during=(
            cyc(3, BASE, {PENDING}, (), why="absent from 1 of 2"),
            cyc(3, BASE, {TOO_MUCH}, (), why="max_removal_fraction"),
            cyc(3, BASE, {TOO_MUCH}, (), check=file_present("wikidata.exports")),
        ),
        clear=clear_faults,
        after=(cyc(3, CHURN_ADDS, {PENDING}, ADD_CHURN), cyc(0, CHURNED, (), REMOVE_T2)),
    ),
    Scenario(
        "empty-server-listing-for-all-projects",
        inject=seq(
            fault(service="compute", path_regex="servers/detail", status=200, body={"servers": []}),
            fault(service="network", path_regex="ports", status=200, body={"ports": []}),
            churn,
        ),
        during=(
            cyc(3, BASE, {PENDING}, (), why="1 of 2 confirmations"),
            cyc(3, BASE, {TOO_MUCH}, (), why="max_removal_fraction"),
            cyc(3, BASE, {TOO_MUCH}, ()),
        ),
        clear=clear_faults,
        # tools-2 was absent from the (held) empty listings too: they counted, so it goes
        # in the first cycle after, with the additions
        after=(cyc(0, CHURNED, (), ADD_CHURN | REMOVE_T2),),
    ),
    Scenario(
        "neutron-empty-port-listing",  # Nova shows servers, Neutron none: all unknown
        inject=seq(
            fault(service="network", path_regex="ports", status=200, body={"ports": []}), churn
        ),
        during=(
            cyc(3, BASE, {UNKNOWN_PROJ}, (), why="Neutron shows no port"),
            cyc(3, BASE, {UNKNOWN_PROJ}, ()),
        ),
        clear=clear_faults,
        after=(cyc(3, CHURN_ADDS, {PENDING}, ADD_CHURN), cyc(0, CHURNED, (), REMOVE_T2)),
    ),
    Scenario(
        "half-the-cloud-vanishes-and-returns",  # RegionTwo answers empty lists
        inject=seq(region_two_empty, delete("wikidata-3")),
        during=(
            cyc(3, BASE, {PENDING}, ()),
            cyc(3, BASE, {SHRINK}, (), why=f"instances fell from {INSTANCES} to 17"),
            cyc(3, BASE, {SHRINK}, ()),
        ),
        clear=clear_faults,
        after=(
            cyc(0, BASE.minus("wikidata", W3), (), {("wikidata", W3, "remove", "instance-gone")}),
        ),
    ),
    Scenario(
        "half-the-cloud-deleted-then-forced",  # real deletions: a human reads and forces
        inject=delete(*REGION_TWO),
        during=(
            cyc(3, BASE, {PENDING}, ()),
            cyc(3, BASE, {SHRINK}, (), why=f"instances fell from {INSTANCES} to 18"),
            cyc(3, BASE, {SHRINK}, ()),
        ),
        after=(
            cyc(
                0,
                BASE.minus("tools", T4).minus("paws", P3).minus("quarry", Q3),
                (),
                {
                    ("tools", T4, "remove", "instance-gone"),
                    ("paws", P3, "remove", "instance-gone"),
                    ("quarry", Q3, "remove", "instance-gone"),
                },
                force_checksum=True,
            ),
        ),
    ),
    Scenario(
        "too-much-change-released-by-force-with-checksum",
        inject=delete("tools-1", "tools-2", "tools-3", "tools-4"),
        during=(
            cyc(3, BASE, {PENDING}, ()),
            cyc(3, BASE, {TOO_MUCH}, (), why="10 removals of 23 pairs"),
            cyc(3, BASE, {TOO_MUCH}, ()),
        ),
        after=(
            cyc(
                0,
                BASE.drop("tools"),
                (),
                {("tools", ip, "remove", "instance-gone") for ip in (T1, T1V6, T2, T3, T4)},
                force_checksum=True,
                check=file_present("tools.exports"),  # no instances: a header-only file
            ),
        ),
    ),
    # --- project lifecycle
    Scenario(
        "one-project-deleted",
        inject=lambda w: w.sim.delete_project("wikidata"),
        during=(
            cyc(3, BASE, {PENDING}, (), why="absent from 1 of 3 complete Keystone listings"),
            cyc(3, BASE, {PENDING}, (), why="absent from 2 of 3"),
        ),
        after=(
            cyc(
                0,
                BASE.drop("wikidata"),
                (),
                {("wikidata", ip, "remove", "project-deleted") for ip in (W1, W2, W3)},
                check=file_absent("wikidata.exports"),
            ),
        ),
        config={"safety": {"removal_confirmations": 3}},
    ),
    Scenario(
        "one-project-deleted-min-age",  # 2 confirmations are not enough before 5 s
        inject=lambda w: w.sim.delete_project("wikidata"),
        during=(
            cyc(3, BASE, {PENDING}, (), why="absent from 1 of 2"),
            cyc(3, BASE, {PENDING}, (), why=" of 5 s"),  # 2 listings, not yet 5 s
            cyc(3, BASE, {PENDING}, (), why=" of 5 s"),
        ),
        clear=advance_clock(5.0),
        after=(
            cyc(
                0,
                BASE.drop("wikidata"),
                (),
                {("wikidata", ip, "remove", "project-deleted") for ip in (W1, W2, W3)},
                check=file_absent("wikidata.exports"),
            ),
        ),
        config={"safety": {"removal_min_age_seconds": 5}},
    ),
    Scenario(
        "project-missing-from-one-listing",  # absence counting resets when it is back
        inject=flaky_listing_without("wikidata"),
        during=(cyc(3, BASE, {PENDING}, (), why="absent from 1 of 2"), cyc(0, BASE, (), ())),
        clear=lambda w: w.sim.delete_project("wikidata"),
        after=(
            cyc(3, BASE, {PENDING}, (), why="absent from 1 of 2"),  # not 2 of 2: reset
            cyc(0, BASE.drop("wikidata"), check=file_absent("wikidata.exports")),
        ),
        plan_check=False,  # the fault fires once: a plan would consume it
    ),
    Scenario(
        "project-disabled-keeps-its-exports",
        inject=seq(lambda w: w.sim.disable_project("maps"), delete("maps-2")),
        during=(
            cyc(3, BASE, {PENDING}, ()),
            cyc(0, BASE.minus("maps", M2), (), {("maps", M2, "remove", "instance-gone")}),
            cyc(0, BASE.minus("maps", M2), (), ()),
        ),
        clear=seq(
            lambda w: w.sim.enable_project("maps"),
            create("maps-new", "maps", R1, NEW_M),
        ),
        after=(
            cyc(
                0,
                BASE.minus("maps", M2).plus("maps", NEW_M),
                (),
                {("maps", NEW_M, "add", "new-instance")},
            ),
        ),
    ),
    Scenario(
        "project-disabled-with-disabled-projects-remove",
        inject=lambda w: w.sim.disable_project("maps"),
        during=(
            cyc(3, BASE, {PENDING}, (), why="project-disabled"),
            cyc(
                0,
                BASE.drop("maps"),
                (),
                {("maps", ip, "remove", "project-disabled") for ip in (M1, M2, M3, M4)},
                check=file_present("maps.exports"),  # still served: a header-only file
            ),
            cyc(0, BASE.drop("maps"), (), ()),
        ),
        clear=lambda w: w.sim.enable_project("maps"),
        after=(cyc(0, BASE, (), {("maps", ip, "add", "new-instance") for ip in (M1, M2, M3, M4)}),),
        config={"safety": {"disabled_projects": "remove"}},
    ),
    Scenario(
        "project-renamed",  # held, not deleted; follows the projects file once renamed there
        inject=seq(
            lambda w: w.sim.rename_project("quarry", "quarry-ng"),
            create("quarry-ng-new", "quarry-ng", R1, NEW_Q),  # waits for the projects file
        ),
        during=(
            cyc(3, BASE, {UNKNOWN_PROJ}, (), why="now named 'quarry-ng'"),
            cyc(3, BASE, {UNKNOWN_PROJ}, (), why="now named 'quarry-ng'"),
            cyc(3, BASE, {UNKNOWN_PROJ}, (), why="now named 'quarry-ng'"),  # > confirmations
            cyc(3, BASE, {UNKNOWN_PROJ}, (), why="now named 'quarry-ng'"),
        ),
        clear=rename_in_projects_file,
        after=(
            cyc(
                0,
                BASE.plus("quarry", NEW_Q),
                check=seq(file_absent("quarry.exports"), file_present("quarry-ng.exports")),
            ),
        ),
    ),
    # --- instances and addresses
    Scenario(
        "instance-deleted",
        inject=delete("tools-2"),
        during=(
            cyc(3, BASE, {PENDING}, (), why="1 of 3 confirmations (instance-gone)"),
            cyc(3, BASE, {PENDING}, (), why="2 of 3 confirmations"),
        ),
        after=(cyc(0, BASE.minus("tools", T2), (), REMOVE_T2),),
        config={"safety": {"removal_confirmations": 3}},
    ),
    Scenario(
        "instance-deleted-and-ip-reused-in-another-project",
        inject=seq(reuse_t2_in_paws, delete("tools-3")),
        during=(
            cyc(
                3,
                BASE.minus("tools", T2).plus("paws", T2),
                {PENDING},
                {("tools", T2, "remove", CONFLICT), ("paws", T2, "add", "new-instance")},
            ),
            cyc(3, BASE.minus("tools", T2).plus("paws", T2), {PENDING}, ()),
        ),
        after=(
            cyc(
                0,
                BASE.minus("tools", T2, T3).plus("paws", T2),
                (),
                {("tools", T3, "remove", "instance-gone")},
            ),
        ),
        config={"safety": {"removal_confirmations": 3}},
    ),
    Scenario(
        "ip-reused-under-maintenance",
        inject=seq(
            maintenance("upgrading cloudcontrol1003\n"), reuse_t2_in_paws, delete("tools-3")
        ),
        during=(
            cyc(
                3,
                BASE.minus("tools", T2).plus("paws", T2),
                {PENDING},
                {("tools", T2, "remove", CONFLICT), ("paws", T2, "add", "new-instance")},
                check=status_maintenance("hold"),
            ),
            cyc(3, BASE.minus("tools", T2).plus("paws", T2), {"maintenance"}, ()),
            cyc(3, BASE.minus("tools", T2).plus("paws", T2), {"maintenance"}, ()),
        ),
        clear=no_maintenance,
        after=(
            cyc(
                0,
                BASE.minus("tools", T2, T3).plus("paws", T2),
                (),
                {("tools", T3, "remove", "instance-gone")},
            ),
        ),
    ),
    Scenario(
        "ip-reused-under-freeze",
        inject=seq(maintenance("freeze\nnetwork failover\n"), reuse_t2_in_paws, delete("tools-3")),
        during=(
            cyc(
                3,
                BASE.minus("tools", T2),
                {"freeze"},
                {("tools", T2, "remove", CONFLICT)},
                check=status_maintenance("freeze"),
            ),
            cyc(3, BASE.minus("tools", T2), {"freeze"}, ()),
        ),
        clear=no_maintenance,
        after=(
            cyc(
                3,
                BASE.minus("tools", T2).plus("paws", T2),
                {PENDING},
                {("paws", T2, "add", "new-instance")},
            ),
            cyc(
                0,
                BASE.minus("tools", T2, T3).plus("paws", T2),
                (),
                {("tools", T3, "remove", "instance-gone")},
            ),
        ),
    ),
    Scenario(
        "ip-reused-with-sync-force",
        inject=seq(reuse_t2_in_paws, delete("tools-3")),
        during=(
            cyc(
                3,
                BASE.minus("tools", T2).plus("paws", T2),
                {PENDING},  # --force releases the bounds, never the confirmations
                {("tools", T2, "remove", CONFLICT), ("paws", T2, "add", "new-instance")},
                args=("--force",),
            ),
            cyc(3, BASE.minus("tools", T2).plus("paws", T2), {PENDING}, (), args=("--force",)),
        ),
        after=(
            cyc(
                0,
                BASE.minus("tools", T2, T3).plus("paws", T2),
                (),
                {("tools", T3, "remove", "instance-gone")},
            ),
        ),
        config={"safety": {"removal_confirmations": 3}},
    ),
    Scenario(
        "ip-reused-while-the-old-project-is-unknown",  # the conflict wins over unknown-project
        inject=seq(lambda w: w.sim.set_down(["tools-1"]), reuse_t2_in_paws, delete("tools-3")),
        during=(
            cyc(
                3,
                BASE.minus("tools", T2).plus("paws", T2),
                {UNKNOWN_PROJ},
                {("tools", T2, "remove", CONFLICT), ("paws", T2, "add", "new-instance")},
            ),
            cyc(3, BASE.minus("tools", T2).plus("paws", T2), {UNKNOWN_PROJ}, ()),
        ),
        clear=lambda w: w.sim.set_down(["tools-1"], False),
        after=(
            cyc(3, BASE.minus("tools", T2).plus("paws", T2), {PENDING}, ()),
            cyc(
                0,
                BASE.minus("tools", T2, T3).plus("paws", T2),
                (),
                {("tools", T3, "remove", "instance-gone")},
            ),
        ),
    ),
    Scenario(
        "ip-moved-between-instances-of-one-project",  # no change at all
        inject=lambda w: w.sim.move_ip(T1, "tools-3"),
        during=(
            cyc(0, BASE, (), (), check=lambda w: _no_exportfs(w)),
            cyc(0, BASE, (), (), check=lambda w: _no_exportfs(w)),
        ),
        clear=delete("tools-1"),  # tools-1 keeps only fd00::11 now
        after=(
            cyc(3, BASE, {PENDING}, ()),
            cyc(0, BASE.minus("tools", T1V6), (), {("tools", T1V6, "remove", "instance-gone")}),
        ),
    ),
    Scenario(
        "two-projects-claim-one-ip",
        inject=create("paws-dup", "paws", R2, T1),  # same address, other region
        during=(
            cyc(
                3,
                BASE.minus("tools", T1),
                {CONFLICT},
                {("tools", T1, "remove", CONFLICT)},
                why="claimed by projects paws, tools",
            ),
            cyc(3, BASE.minus("tools", T1), {CONFLICT}, ()),
        ),
        clear=delete("paws-dup"),
        after=(cyc(0, BASE, (), {("tools", T1, "add", "new-instance")}),),
    ),
    # --- the maintenance flag
    Scenario(
        "maintenance-on",
        inject=seq(maintenance("upgrading cloudcontrol1003\n"), churn),
        during=(
            cyc(3, CHURN_ADDS, {PENDING}, ADD_CHURN, check=status_maintenance("hold")),
            cyc(3, CHURN_ADDS, {"maintenance"}, ()),
            cyc(3, CHURN_ADDS, {"maintenance"}, ()),
        ),
        clear=no_maintenance,
        after=(cyc(0, CHURNED, (), REMOVE_T2, check=status_maintenance("off")),),
    ),
    Scenario(
        "maintenance-freeze",
        inject=seq(maintenance("freeze\n"), churn),
        during=(
            cyc(3, BASE, {"freeze"}, (), check=status_maintenance("freeze")),
            cyc(3, BASE, {"freeze"}, ()),
        ),
        clear=no_maintenance,
        after=(cyc(3, CHURN_ADDS, {PENDING}, ADD_CHURN), cyc(0, CHURNED, (), REMOVE_T2)),
    ),
    Scenario(
        "maintenance-file-unreadable",  # a flag that cannot be read counts as set
        inject=seq(lambda w: (w.lab.root / "maintenance").mkdir(), churn),
        during=(
            cyc(3, CHURN_ADDS, {PENDING}, ADD_CHURN),
            cyc(3, CHURN_ADDS, {"maintenance"}, (), check=status_maintenance("hold")),
        ),
        clear=no_maintenance,
        after=(cyc(0, CHURNED, (), REMOVE_T2),),
    ),
    # --- configuration
    Scenario(
        "serve-hosts-shrinks-beyond-the-bound",  # HOST2 no longer served: 7 of 23 pairs
        inject=serve_only_host1,
        during=(
            cyc(3, BASE, {PENDING}, (), why="(not-served)"),
            cyc(3, BASE, {TOO_MUCH}, (), why="7 removals of 23 pairs"),
            cyc(3, BASE, {TOO_MUCH}, ()),
        ),
        after=(
            cyc(
                0,
                BASE.drop("quarry", "maps"),
                (),
                {("quarry", ip, "remove", "not-served") for ip in (Q1, Q2, Q3)}
                | {("maps", ip, "remove", "not-served") for ip in (M1, M2, M3, M4)},
                force_checksum=True,
                check=seq(file_absent("quarry.exports"), file_absent("maps.exports")),
            ),
        ),
    ),
    Scenario(
        "serve-hosts-shrinks-within-min-removal-count",  # every pair of 2 projects: held
        inject=serve_only_host1,
        during=(
            cyc(3, BASE, {PENDING}, (), why="1 of 3 confirmations (not-served)"),
            cyc(3, BASE, {PENDING}, (), why="2 of 3 confirmations (not-served)"),
            cyc(3, BASE, {TOO_MUCH}, (), why="no longer names project quarry"),
        ),
        after=(
            cyc(
                0,
                BASE.drop("quarry", "maps"),
                (),
                {("quarry", ip, "remove", "not-served") for ip in (Q1, Q2, Q3)}
                | {("maps", ip, "remove", "not-served") for ip in (M1, M2, M3, M4)},
                force_checksum=True,
                check=seq(file_absent("quarry.exports"), file_absent("maps.exports")),
            ),
        ),
        config={"safety": {"removal_confirmations": 3, "min_removal_count": 10}},
    ),
    # --- state
    Scenario(
        "state-file-corrupt",  # counting restarts: 2 of 3 were seen before the corruption
        inject=seq(delete("tools-2"), sync_held(2), corrupt_counters),
        during=(
            cyc(3, BASE, {"state-corrupt", PENDING}, (), why="1 of 3", check=corrupt_kept_aside),
            cyc(3, BASE, {PENDING}, (), why="2 of 3"),
        ),
        after=(cyc(0, BASE.minus("tools", T2), (), REMOVE_T2),),
        config={"safety": {"removal_confirmations": 3}},
        plan_check=False,  # plan reads the corrupt file too, but does not move it aside
    ),
    Scenario(
        "state-file-corrupt-during-an-outage",  # reported until a complete cycle rebuilds it
        inject=seq(
            corrupt_counters,
            fault(service=ID, method="POST", path_regex="auth/tokens", status=401),
            churn,
        ),
        during=(
            cyc(3, BASE, {"state-corrupt", UNKNOWN_INV}, (), check=corrupt_kept_aside),
            cyc(3, BASE, {"state-corrupt", UNKNOWN_INV}, ()),
        ),
        clear=clear_faults,
        after=(
            cyc(3, CHURN_ADDS, {"state-corrupt", PENDING}, ADD_CHURN),
            cyc(0, CHURNED, (), REMOVE_T2),
        ),
        plan_check=False,
    ),
    # --- exportfs
    Scenario(
        "exportfs-applies-then-exits-1",  # silently: only the exit code says so
        inject=seq(exportfs_broken('real "$@"; exit 1'), churn),
        during=(
            cyc(1, BASE, check=exportfs_error("failed with exit 1")),
            cyc(1, BASE, check=exportfs_error("failed with exit 1")),
        ),
        clear=exportfs_fixed,
        after=(cyc(3, CHURN_ADDS, {PENDING}, ADD_CHURN), cyc(0, CHURNED, (), REMOVE_T2)),
    ),
    Scenario(
        "exportfs-fails-on-the-apply-and-works-on-the-undo",  # odd calls fail, with a message
        inject=seq(
            exportfs_broken(
                'if [ $((n % 2)) = 1 ]; then echo "exportfs: internal error" >&2; exit 1; fi'
            ),
            churn,
        ),
        during=(
            cyc(1, BASE, check=exportfs_error("not in force")),  # the read-back catches it
            cyc(1, BASE, check=exportfs_error("not in force")),
        ),
        clear=exportfs_fixed,
        after=(cyc(3, CHURN_ADDS, {PENDING}, ADD_CHURN), cyc(0, CHURNED, (), REMOVE_T2)),
    ),
    Scenario(
        "exportfs-hangs",
        inject=seq(exportfs_broken("exec sleep 30", exportfs_timeout_seconds=1), churn),
        during=(
            cyc(1, BASE, check=exportfs_error("exportfs_timeout_seconds")),
            cyc(1, BASE, check=exportfs_error("exportfs_timeout_seconds")),
        ),
        clear=exportfs_fixed,
        after=(cyc(3, CHURN_ADDS, {PENDING}, ADD_CHURN), cyc(0, CHURNED, (), REMOVE_T2)),
    ),
]


def _no_exportfs(w: World) -> None:
    assert "exportfs not run" in w.lab.status()["last_cycle"]["message"]


SCENARIOS = {s.name: s for s in S}

# What the issue's "Proof" section lists, and the scenarios that cover it.
ISSUE_ITEMS: dict[str, tuple[str, ...]] = {
    "401 on every auth": (
        "keystone-401-on-every-auth",
        "keystone-401-to-everything-old-controller",
    ),
    "401 for one project": ("per-project-401-for-one-project",),
    "403": ("keystone-403-on-project-listing", "nova-403-all-tenants-policy"),
    "Keystone connection refused": ("keystone-connection-refused",),
    "DNS failure for the auth host": ("keystone-dns-failure-for-the-auth-host",),
    "TLS failure": ("keystone-tls-failure",),
    "timeouts": ("keystone-timeout", "nova-timeout", "exportfs-hangs"),
    "500/503 on page 2 of a listing": (
        "nova-500-on-page-2",
        "nova-503-on-page-2",
        "neutron-503-on-page-2",
    ),
    "malformed JSON": ("keystone-malformed-json", "nova-malformed-json", "neutron-malformed-json"),
    "truncated project listing": ("keystone-truncated-project-listing",),
    "down Nova cell": ("nova-down-cell", "nova-down-cell-whole-region"),
    "empty project listing": ("keystone-empty-project-listing",),
    "empty server listing for all projects": ("empty-server-listing-for-all-projects",),
    "one project deleted": ("one-project-deleted", "one-project-deleted-min-age"),
    "a project disabled": (
        "project-disabled-keeps-its-exports",
        "project-disabled-with-disabled-projects-remove",
    ),
    "a project renamed": ("project-renamed",),
    "an instance deleted": ("instance-deleted",),
    "an instance deleted and its IP reused in another project": (
        "instance-deleted-and-ip-reused-in-another-project",
        "ip-reused-under-maintenance",
        "ip-reused-under-freeze",
        "ip-reused-with-sync-force",
    ),
    "an IP moved between instances of the same project": (
        "ip-moved-between-instances-of-one-project",
    ),
    "two projects claiming one IP": ("two-projects-claim-one-ip",),
    "maintenance on, freeze, removed": (
        "maintenance-on",
        "maintenance-freeze",
        "maintenance-file-unreadable",
    ),
    "config reloaded with a host removed from serve.hosts": (
        "serve-hosts-shrinks-beyond-the-bound",
        "serve-hosts-shrinks-within-min-removal-count",
    ),
    "state file corrupt": ("state-file-corrupt", "state-file-corrupt-during-an-outage"),
    "exportfs failing mid-way": (
        "exportfs-applies-then-exits-1",
        "exportfs-fails-on-the-apply-and-works-on-the-undo",
    ),
    "half the cloud vanishing": (
        "half-the-cloud-vanishes-and-returns",
        "half-the-cloud-deleted-then-forced",
    ),
}


def test_the_matrix_covers_the_issue() -> None:
    assert len(SCENARIOS) == len(S), "scenario names must be unique"
    assert len(S) >= 40
    for item, names in ISSUE_ITEMS.items():
        for name in names:
            assert name in SCENARIOS, (item, name)
    for sc in S:
        assert len(sc.during) >= 2, f"{sc.name}: after one cycle and after several"
        last = sc.after[-1]
        assert last.rc == 0 and not last.holds, f"{sc.name}: must end converged"
        assert last.pairs != sc.during[-1].pairs, f"{sc.name}: the pending changes must happen"


# ---------------------------------------------------------------------------- the driver


def _diff(got: set[tuple[str, str]], want: set[tuple[str, str]]) -> str:
    return f"missing {sorted(want - got)}, unexpected {sorted(got - want)}"


def _run_cycle(w: World, c: Cycle, label: str, plan_check: bool) -> None:
    if c.before is not None:
        c.before(w)
    args = list(c.args)
    if c.force_checksum:
        held = w.plan()  # without --force the removals are held
        assert held["holds"], f"{label}: nothing to force"
        forced = w.plan("--force")
        assert w.sync("--force", "--plan-checksum", "0" * 64) == 1  # not the plan read
        args = ["--force", "--plan-checksum", forced["checksum"]]
        plan: dict[str, Any] | None = forced
    elif plan_check and c.rc != 1:
        plan = w.plan(*(a for a in args if a == "--force"))
    else:
        plan = None
    rc = w.sync(*args)
    st = w.lab.status()
    last = st.get("last_cycle", {})
    applied = [
        f"{x['action']} {x['project']} {x['client']} ({x['reason']})"
        for x in st.get("plan", {}).get("changes", [])
    ]
    ctx = f"{label}: {last.get('message')}; changes {applied}"
    assert rc == c.rc, f"exit {rc}, expected {c.rc}; {ctx}"
    got, want = w.lab.in_force(), w.pairs(c.pairs)
    assert got == want, f"{label}: pairs in force: {_diff(got, want)}; {ctx}"
    for _, client in got:
        ipaddress.ip_address(client)  # only IP literals ever reach exportfs
    if c.rc == 1:
        assert last["result"] == "error"
    else:
        assert last["result"] == ("held" if c.rc == 3 else "ok")
        assert set(st["holds_by_reason"]) == set(c.holds), f"{ctx}; holds {st['plan']['holds']}"
        changes = {
            (x["project"], x["client"], x["action"], x["reason"]) for x in st["plan"]["changes"]
        }
        if c.changes is not None:
            assert changes == c.changes, f"{label}: changes"
        if plan is not None:  # the plan printed before is what the sync did
            assert plan["checksum"] == st["plan"]["checksum"], f"{label}: plan != sync"
            assert {h["reason"] for h in plan["holds"]} == set(c.holds), f"{label}: plan holds"
    if c.why:
        texts = why_texts(st, c.why_in, c.holds)
        assert any(c.why.lower() in t.lower() for t in texts), (
            f"{label}: {c.why!r} not in the {c.why_in} texts {texts}; {ctx}"
        )
    if c.check is not None:
        c.check(w)


@pytest.mark.parametrize("name", [s.name for s in S])
def test_failure_matrix(world: World, name: str) -> None:
    run_scenario(world, SCENARIOS[name])


def run_scenario(world: World, sc: Scenario) -> None:
    """Baseline, inject, during, clear, after, converged: the shape every scenario has
    (also used by the other matrix files, which import this driver and ``world``)."""
    name = sc.name
    _merge(world.lab.config, sc.config)
    assert world.sync() == 0, "baseline"
    assert world.lab.in_force() == world.pairs(BASE)
    assert len(world.lab.in_force()) == BASE_PAIRS
    assert world.lab.status()["holds_by_reason"] == {}

    sc.inject(world)
    for i, c in enumerate(sc.during, start=1):
        _run_cycle(world, c, f"{name}: during, cycle {i}", sc.plan_check and i == 1)
    sc.clear(world)
    for i, c in enumerate(sc.after, start=1):
        _run_cycle(world, c, f"{name}: after clearing, cycle {i}", sc.plan_check and i == 1)

    # converged: one more cycle changes nothing and does not run exportfs
    final = sc.after[-1].pairs
    _run_cycle(world, cyc(0, final, (), (), check=_no_exportfs), f"{name}: converged", False)
