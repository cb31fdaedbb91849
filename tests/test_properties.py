"""Property-based tests of the decide layer (issues 4, 10, 11): random clouds, random
sequences of changes and faults over many cycles, checked against an independent model.

A hypothesis state machine holds a small random cloud (projects in five slots, each with
a Keystone id that changes when the project is deleted and created again, enabled flags,
instances whose address is a *text* drawn from a pool: eight canonical addresses, so that
addresses are reused, and raw forms of them and worse: ``::ffff:10.0.0.1``, ``FD00::2``,
zone ids such as ``fe80::1%eth0`` and ``fd00::1%x *(rw)``, loopback and link-local),
foreign ports (an orphaned port of a project Keystone does not list, a port of one project
on a server of another), the projects file (which projects have paths served here, and
an optional ``id:`` per project), the config and the host (:class:`Host`: export options
per volume, the public exports, served paths that do not exist, ``*.exports`` files
without our header), the managed files in force, the removal counters and lifecycle
memory, and a clock.  Its rules change the cloud, the projects file, the options of a
volume, the public exports (added, removed, their clients, path or options changed), the
maintenance flag, make a served path go missing and come back, put a foreign file over a
project's file and take it away, switch faults on and off, lose the state, and run cycles
(among them a burst of cycles a second apart, under ``confirmation_spacing``): build the
cycle's raw view of the cloud, turn it into a snapshot with the read layer's own code
(the static source's ``parse_static`` for projects and instances, so that a refused
address makes its project unknown as it does there; the OpenStack source's
``merge_region`` for the foreign ports, so that they become ``InventorySnapshot.claims``
as they do there), call ``decide``, then apply the plan exactly as ``cycle.py`` does
(files in force := ``plan.files``, None deletes; counters and memory := the plan's when
``plan.counting``).

Whether a plan is right is judged by :class:`Model`, written from the rules in the README
and issues 4 and 10, never from the plan's reasons or holds.  The model reads the raw view,
not the snapshot: it canonicalises each address text with its own few lines of
``ipaddress`` (:func:`model_address`: a zone id, loopback, link-local are refused, a
v4-mapped address is its IPv4 address), so a read layer that lets a bad address through or
misreads a good one disagrees with it.  It sees what the daemon was shown, so a
complete-looking lie (an empty listing) counts as evidence here exactly as it does for the
daemon; what makes such a lie harmless is the confirmations (and the bounds), which is
what the invariants check. Ownership is by Keystone id: a served name is bound to the id
it was first seen with while it is served or in force (or to the projects file's ``id:``),
and a name listed under another id is not that project. Each managed file records the id
its name is bound to (``# keystone-id=``), so a lost state keeps the binding of every name
with a file in force.

Invariants, after every cycle (addresses compared by the model's canonical form):

1. no IP is in the private exports of two projects (projects by Keystone id);
2. no IP is exported for a project when the cycle's complete listing shows it on an
   instance of another project (by id), or a foreign port claims it, unless every such
   claim is the project's own id (its orphaned servers while Keystone does not list it:
   those follow the deletion rules);
3. a pair in force leaves only by one of the rules: ``confirmations`` consecutive complete
   cycles of its project without it, counting only cycles ``confirmation_spacing`` apart
   (counted by the model, per pair), a conflict (2), or its project confirmed deleted
   (its id absent from ``confirmations`` consecutive counted complete listings spanning
   ``removal_min_age``), or a move to the file of the project's new name (the pair stays
   in force there), or its path now served for another project (a moved volume is its
   new owner's at once); never under maintenance (except a conflict), never from a project
   whose data is unknown; without ``force`` never more than the removal bound, nor more
   project deletions per window than ``max_project_deletions``;
   a pair enters only when the cycle shows its IP on an instance of its project alone,
   claimed by no foreign port;
4. a repeated cycle with unchanged inputs adds nothing, and when it plans no change it
   writes no file; repeating converges within ``confirmations + 1`` cycles;
5. every reason is in the closed list README.md documents (which must hold the reasons
   the public contract names),
   every private client is one of the pool's canonical addresses (never a zone id, a
   non-canonical text or a refused address), every file renders and each rendered line
   is ``PATH -OPTIONS CLIENT...``, and the files differ from those in force by exactly
   the planned changes;
6. a served name bound to id A never gets an address of an instance of id B, until the
   projects file's ``id:`` says B; A's pairs leave only by the rules of (3);
7. nothing is added to a path that does not exist (its pairs in force stay, and leave
   only by the rules of (3));
8. public pairs: one enters only when the config has it (on a path that exists, not
   frozen); one leaves only when the config no longer has it, after ``confirmations``
   counted cycles, never under maintenance, within the bound; a public network over a
   project's addresses is never a conflict (the liveness below keeps those exported);
9. a line carries the configured options (one options list for every client on it,
   pending removals included) once the daemon decides for its project (complete data
   under its own name) or for a public path; it keeps the options in force while frozen,
   on a missing path, on a path no longer served, and for a project whose data is not
   judged (unknown, or not listed and not yet confirmed deleted); every pair that stays
   on a line whose options change is a planned ``update``, and no other pair is;
10. a file without our header is never written or deleted, and no change is planned for
   its project.

Liveness (so that a daemon that never changes anything fails): after a cycle with complete
data every pair the model wants is in force (unless frozen; not on a missing path, not for
a project whose file is not ours), so is every configured public pair on a path that
exists, and a forced counted cycle out of maintenance removes every pair (public ones
too) whose removal the model has confirmed (counting afresh after a listing without its
project, the lower of the two readings the rules allow).

Renames are in a second machine (:class:`TestDecideWithRenames`): a renamed project is the
same project (same id), so its addresses shown under the new name are no conflict, and a
listing that shows its id under the new name breaks a run of absent listings; and a
project may be renamed onto a deleted project's name (that name stays bound to the
deleted id).

Each run draws a fresh seed (printed, and named in a failure;
``NFS_EXPORTD_HYPOTHESIS_SEED`` replays it).
``test_a_listing_of_the_renamed_id_breaks_a_run_of_absent_listings`` pins one example the
renames machine found under a random seed, so that CI checks it whatever the seed;
the ``test_a_renamed_project_...`` tests pin two daemon bugs it found in issue 10's
version (an unknown renamed project lost its pairs when the file followed; a rename with a
pair pending removal made the one-owner-per-path guard refuse every plan), both fixed;
``test_a_rename_onto_a_name_served_for_another_id_removes_nothing_at_once`` pins one found
in issue 11, not fixed yet (``xfail``, strict).

Planted-bug checks (copy ``src`` aside, plant the bug there, and run this file with
``PYTHONPATH`` pointing at the copy): from issue 4, ``reconcile.py`` treating an
incomplete project as empty, ignoring conflicts or ignoring confirmations; from issue 10,
``addresses.py`` without the v4-mapped canonicalisation, ``reconcile.py`` ignoring
``snapshot.claims``, and ``lifecycle.py`` without the project-id-changed check; from
issue 11, ``decide/diff.py`` letting additions to a missing path through, removing pairs
of a missing path without confirmations, leaving pending clients out of the option
updates, changing an unknown project's options, removing public pairs at once;
``decide/target.py`` not keeping a missing path's options; ``decide/reconcile.py``
writing a project file that is not ours, or treating a public network as a claim on the
addresses in it; ``decide/intent.py`` keeping public exports as they are in force: each
must make these tests fail.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hypothesis import (
    HealthCheck,
    Phase,
    currently_in_test_context,
    event,
    given,
    note,
    seed,
    settings,
)
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    precondition,
    rule,
    run_state_machine_as_test,
)

from nfs_exportd.decide import Action, DecideInput, Plan, Policy, decide
from nfs_exportd.decide.lifecycle import Memory
from nfs_exportd.decide.restore import RestoreInput, restore
from nfs_exportd.errors import UsageError
from nfs_exportd.exportsfile import RenderRefused, render
from nfs_exportd.model import (
    AddressClaim,
    ExportLine,
    ExportsFile,
    FileKind,
    InstanceRecord,
    InventorySnapshot,
    Maintenance,
    PairKey,
    ProjectRecord,
    PublicExport,
    ServedExport,
)
from nfs_exportd.read.inventory.openstack import merge_region
from nfs_exportd.read.inventory.static import parse_static

OPTIONS = "rw,sync,no_subtree_check,root_squash"
IPS = (
    "10.0.0.1",
    "10.0.0.2",
    "10.0.0.3",
    "10.0.0.4",
    "10.0.0.5",
    "10.0.0.6",
    "fd00::1",
    "fd00::2",
)
# Raw texts an instance (or a port) may show: other spellings of pool addresses, which
# must be compared and exported as those, and texts that must never reach a file.
RAW_FORMS = (
    "::ffff:10.0.0.1",  # IPv4-mapped: the NFS server sees the client 10.0.0.1
    "::FFFF:10.0.0.2",
    "::ffff:a00:3",  # 10.0.0.3, mapped and written in hex
    "fd00:0:0::1",  # fd00::1, not in canonical form
    "FD00::2",
    "fe80::1%eth0",  # zone id (and link-local)
    "fd00::1%x *(rw)",  # a zone id that carries a second client (issue 10, finding 1)
    "10.0.0.4 *(rw)",
    "127.0.0.1",  # loopback
    "::ffff:127.0.0.1",  # loopback, v4-mapped
    "169.254.0.1",  # link-local
)
ADDRESSES = st.sampled_from(IPS * 3 + RAW_FORMS)  # mostly plain, often raw
PIDS = ("id0", "id1", "id2", "id3", "id4")  # the slots (and the first Keystone ids)
# Other option lists a volume (or a public export) may be given in the config.
OPTION_SETS = (
    OPTIONS,
    "rw,sync,no_subtree_check,no_root_squash",
    "ro,sync,no_subtree_check,root_squash",
)
VOLUMES = ("home", "data")
PUBLIC = PublicExport("scratch", "/srv/scratch", ("172.16.0.0/21",), OPTIONS)
PUBLIC_NAMES = ("scratch", "shared")
# Public clients: networks, two of them over the pool's private addresses (a public
# export is never a private conflict: those addresses stay exported for their projects).
PUBLIC_CLIENTS = ("172.16.0.0/21", "10.0.0.0/29", "fd00::/64")
PUBLIC_PREFIX = "public:"
START = 1_000_000.0
INTERVAL = 60.0
BURST_SPACING = INTERVAL / 2  # the default confirmation spacing: half interval_seconds
# a rendered exports line: a path, one option list, clients (no quote, space, star, %)
EXPORTS_LINE = re.compile(r"/[A-Za-z0-9._/-]+ -[a-z0-9_,=]+( [0-9a-f:.]+(/[0-9]+)?)+")

# The reasons the public contract requires at least; the closed list itself is the one
# README.md documents (the contract is extended, and the extension documented).
DESIGN_REASONS = frozenset(
    {
        "new-instance",
        "instance-gone",
        "project-deleted",
        "ip-conflict",
        "unknown-inventory",
        "unknown-project",
        "pending-confirmation",
        "too-much-change",
        "inventory-shrink",
        "maintenance",
        "freeze",
        "unmanaged-conflict",
        "path-missing",
        "state-corrupt",
        "rollback-hold",
        "config-invalid",
    }
)
README = Path(__file__).resolve().parents[1] / "README.md"


def documented_reasons() -> frozenset[str]:
    """The backquoted names of README's "Reasons (closed list ...): ..." paragraph."""
    found = re.search(r"Reasons \(closed list[^)]*\):(.*?)\n\n", README.read_text(), re.S)
    assert found, f"{README}: no 'Reasons (closed list ...):' paragraph"
    reasons = frozenset(re.findall(r"`([a-z-]+)`", found.group(1)))
    assert reasons >= DESIGN_REASONS, f"README lacks {sorted(DESIGN_REASONS - reasons)}"
    return reasons


CONTRACT_REASONS = documented_reasons()

Pair = tuple[str, str, str]  # (project name, path, client)


def project_paths(slot: str) -> tuple[str, ...]:
    return tuple(f"/srv/{slot}/{volume}" for volume in VOLUMES)


def public_paths(name: str) -> tuple[str, str]:
    """The two paths a public export may have (the config may move it)."""
    return (f"/srv/{name}", f"/srv/{name}-new")


# every path the config may serve: those that may go missing
ALL_PATHS = tuple(p for slot in PIDS for p in project_paths(slot)) + tuple(
    p for name in PUBLIC_NAMES for p in public_paths(name)
)


def private_pairs(files: dict[str, ExportsFile]) -> set[Pair]:
    return {
        (f.owner, path, client)
        for f in files.values()
        if f.is_project
        for path, client in f.pairs()
    }


def label_of(f: ExportsFile) -> str:
    """The owner label a Change uses (public files as ``public:NAME``)."""
    return f.owner if f.is_project else PUBLIC_PREFIX + f.owner


def labelled_pairs(files: dict[str, ExportsFile]) -> set[Pair]:
    """Every pair, with the owner label a Change uses."""
    out = set()
    for f in files.values():
        out |= {(label_of(f), path, client) for path, client in f.pairs()}
    return out


def public_pairs(files: dict[str, ExportsFile]) -> set[Pair]:
    return labelled_pairs({k: f for k, f in files.items() if not f.is_project})


def line_options(files: dict[str, ExportsFile]) -> dict[tuple[str, str], str]:
    """(label, path) -> the options of that line."""
    return {(label_of(f), ln.path): ln.options for f in files.values() for ln in f.lines}


@dataclass(frozen=True)
class Host:
    """The config and the server's file system in one cycle, besides the projects file:
    export options per volume, the public exports, the served paths that do not exist,
    and the ``*.exports`` files without our header."""

    options: tuple[tuple[str, str], ...] = ()  # (volume, options); others: OPTIONS
    public: tuple[PublicExport, ...] = (PUBLIC,)
    missing: frozenset[str] = frozenset()
    unmanaged: frozenset[str] = frozenset()  # file names

    def volume_options(self, path: str) -> str:
        return dict(self.options).get(path.rsplit("/", 1)[1], OPTIONS)

    def public_options(self, label: str, path: str) -> str | None:
        """The options the config gives a public path now (None: not configured)."""
        for pub in self.public:
            if PUBLIC_PREFIX + pub.name == label and pub.path == path:
                return pub.options
        return None

    def public_pairs(self, *, existing: bool = False) -> set[Pair]:
        """The public pairs the config wants (``existing``: only on paths that exist)."""
        return {
            (PUBLIC_PREFIX + pub.name, pub.path, client)
            for pub in self.public
            if not (existing and pub.path in self.missing)
            for client in pub.clients
        }

    def unmanaged_names(self) -> set[str]:
        """The projects whose file name a file without our header has."""
        return {f.removesuffix(".exports") for f in self.unmanaged}


def model_address(text: str) -> str | None:
    """The client an address text stands for, by the rules of issue 10 (written here with
    ``ipaddress``, not with the daemon's grammar): None when it is refused (a zone id, not
    an address, loopback, link-local, unspecified, multicast); a v4-mapped IPv6 address is
    its IPv4 address (the NFS server matches an IPv4 client as exactly that)."""
    if "%" in text:
        return None
    try:
        addr: Any = ipaddress.ip_address(text)
    except ValueError:
        return None
    if addr.version == 6 and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if addr.is_loopback or addr.is_link_local or addr.is_unspecified or addr.is_multicast:
        return None
    return str(addr)


# --------------------------------------------------------------------------- the raw view


@dataclass(frozen=True)
class Port:
    """A port that gives its address to no listed project's instance: an orphan (its
    project is not listed, its server not in Nova) or a port of one project on a server
    of another.  Ids, not names: that is what Neutron and Nova say."""

    address: str  # as Neutron shows it (raw)
    project: str  # the port's project id
    server: str | None  # the project id of the server it is attached to; None: no server


@dataclass(frozen=True)
class View:
    """One cycle's cloud as the sources answer it (faults applied), before any reading."""

    problem: str | None = None  # the whole read failed
    projects: tuple[tuple[str, str, bool], ...] = ()  # (name, id, enabled) listed
    instances: tuple[tuple[str, str, str], ...] = ()  # (instance id, project name, address)
    incomplete: tuple[str, ...] = ()  # projects whose instance data the source lacks
    ports: tuple[Port, ...] = ()  # foreign ports


def read_layer(view: View) -> InventorySnapshot:
    """The snapshot the daemon's read layer makes of ``view``, with its own code: projects
    and instances through the static source's parser (a refused address makes its
    project unknown, a mapped one is read as IPv4), foreign ports through the OpenStack
    source's ``merge_region`` (they become ``claims``; a refused one makes the listed
    projects of its port and server unknown)."""
    if view.problem is not None:
        return InventorySnapshot.unknown("prop", view.problem)
    data = {
        "projects": [{"id": i, "name": n, "enabled": e} for n, i, e in view.projects],
        "instances": [
            {"id": iid, "name": f"{n}-{iid}", "project": n, "status": "ACTIVE", "addresses": [a]}
            for iid, n, a in view.instances
        ],
        "incomplete_projects": list(view.incomplete),
    }
    snap = parse_static(data, "prop")
    if not view.ports:
        return snap
    assert snap.projects is not None
    ports, servers = [], []
    for k, port in enumerate(view.ports):
        sid = f"srv-f{k}"
        ports.append(
            {
                "id": f"port-f{k}",
                "device_id": sid,
                "device_owner": "compute:nova",
                "project_id": port.project,
                "fixed_ips": [{"subnet_id": "subnet-1", "ip_address": port.address}],
            }
        )
        if port.server is not None:
            servers.append(
                {"id": sid, "name": f"f{k}", "status": "ACTIVE", "tenant_id": port.server}
            )
    by_id = {rec.id: rec for rec in snap.projects.values()}
    instances: dict[str, list[InstanceRecord]] = {}
    incomplete: dict[str, str] = {}
    claims: dict[str, list[AddressClaim]] = {}
    merge_region("prop", by_id, ports, servers, [], instances, incomplete, claims)
    return replace(
        snap,
        instances={
            n: snap.instances.get(n, ()) + tuple(instances.get(n, ())) for n in snap.instances
        },
        incomplete={**incomplete, **snap.incomplete},
        claims={ip: tuple(c) for ip, c in claims.items()},
    )


# --------------------------------------------------------------------------- the model


@dataclass
class Seen:
    """What one cycle's raw view shows, read by the model (not by the read layer)."""

    complete: bool
    keep: bool  # complete data and not frozen: what the cycle learns is kept
    counts: bool  # ... and spaced from the last counted cycle: evidence accumulates
    listed: dict[str, ProjectRecord]
    incomplete: frozenset[str]
    shown: dict[str, set[str]]  # canonical ip -> names of the projects whose instances show it
    foreign: dict[str, list[frozenset[str]]]  # canonical ip -> project ids of each foreign claim

    @classmethod
    def read(cls, view: View, maintenance: Maintenance, spaced: bool) -> Seen:
        if view.problem is not None:
            return cls(False, False, False, {}, frozenset(), {}, {})
        keep = maintenance is not Maintenance.FREEZE
        listed = {n: ProjectRecord(i, n, e) for n, i, e in view.projects}
        name_of = {rec.id: n for n, rec in listed.items()}
        incomplete = set(view.incomplete)
        shown: dict[str, set[str]] = {}
        for _, name, text in view.instances:
            addr = model_address(text)
            if addr is None:
                incomplete.add(name)  # a refused address: its instance, so its project, unknown
            else:
                shown.setdefault(addr, set()).add(name)
        foreign: dict[str, list[frozenset[str]]] = {}
        for port in view.ports:
            ids = frozenset({port.project} | ({port.server} if port.server else set()))
            addr = model_address(port.address)
            if addr is None:  # the listed projects of its port and server are unknown
                incomplete.update(name_of[i] for i in ids if i in name_of)
            else:
                foreign.setdefault(addr, []).append(ids)
        return cls(True, keep, keep and spaced, listed, frozenset(incomplete), shown, foreign)

    def project_complete(self, name: str) -> bool:
        return self.complete and name in self.listed and name not in self.incomplete

    def ids_showing(self, ip: str) -> set[str]:
        return {self.listed[q].id for q in self.shown.get(ip, ())}


@dataclass
class Model:
    """The rules, written from the README and issues 4 and 10, independently of the planner."""

    confirmations: int
    min_age: float
    disabled_remove: bool
    max_deletions: int = 2
    deletion_window: float = 86400.0
    missing: dict[Pair, int] = field(default_factory=dict)  # counted cycles without a pair
    # the same, counted afresh whenever its project is not listed: the rules let a daemon
    # carry a count across such listings or start it again, so only this lower count is
    # owed by liveness, while the higher one bounds what may be removed
    missing_low: dict[Pair, int] = field(default_factory=dict)
    absent: dict[str, tuple[float, int]] = field(default_factory=dict)  # since, listings
    # name -> id, as the daemon can know it: the names of the last kept listing, renamed
    # names while their id is listed, and served (or in force) names bound to their id
    known_ids: dict[str, str] = field(default_factory=dict)
    pinned: dict[str, str] = field(default_factory=dict)  # the projects file's id: (this cycle)
    last_counted: float | None = None  # the last cycle that counted
    deletions: dict[str, float] = field(default_factory=dict)  # name -> when deleted

    def forget(self, with_files: set[str]) -> None:
        """The daemon's state is gone: everything counts afresh; only the ids written in
        the managed files in force (``# keystone-id=``) survive, binding their names."""
        self.missing.clear()
        self.missing_low.clear()
        self.absent.clear()
        self.known_ids = {n: i for n, i in self.known_ids.items() if n in with_files}
        self.last_counted = None
        self.deletions.clear()

    def spaced(self, now: float, spacing: float) -> bool:
        """Whether a complete cycle now may count: the first, or ``spacing`` after the
        last that counted (a clock that went back counts, from the new time)."""
        last = self.last_counted
        return last is None or now < last or now - last >= spacing

    def bound(self, name: str) -> str | None:
        """The id a name stands for before this cycle: the projects file's, or the one
        the daemon remembers."""
        return self.pinned.get(name) or self.known_ids.get(name)

    def id_of(self, seen: Seen, name: str) -> str | None:
        """The id a name stands for in this cycle (first sight binds)."""
        b = self.bound(name)
        if b is not None:
            return b
        rec = seen.listed.get(name)
        return rec.id if rec is not None else None

    def listed_as(self, seen: Seen, name: str) -> str | None:
        """The name the project (the name's id) is listed under now: its own, or (renamed)
        the name its id has now; None when the id is not listed.  A name listed under
        another id than its own is not this project."""
        b = self.bound(name)
        rec = seen.listed.get(name)
        if rec is not None and (b is None or rec.id == b):
            return name
        if b is None:
            return None
        return next((q for q, r in seen.listed.items() if r.id == b), None)

    def complete(self, seen: Seen, name: str) -> bool:
        """The project's data is complete in this cycle (under whatever name it has)."""
        now = self.listed_as(seen, name)
        return now is not None and seen.project_complete(now)

    def judged(self, seen: Seen, name: str) -> bool:
        """The cycle can judge the project's pairs: its data is complete, or (with
        disabled_projects remove) the complete listing shows it disabled under its own
        name, which needs no instance data."""
        if self.complete(seen, name):
            return True
        return (
            self.disabled_remove
            and seen.complete
            and self.listed_as(seen, name) == name
            and not seen.listed[name].enabled
        )

    def wanted(self, seen: Seen, served: dict[str, tuple[str, ...]], pair: Pair) -> bool:
        """The cycle shows the pair's IP on the project's instances alone and no foreign
        port claims it, its path is served (under the old or the new name), and a
        disabled project is not removed."""
        name, path, ip = pair
        now = self.listed_as(seen, name)
        if now is None or not seen.project_complete(now):
            return False
        if path not in served.get(name, ()) + served.get(now, ()):
            return False
        if self.disabled_remove and not seen.listed[now].enabled:
            return False
        return seen.shown.get(ip, set()) == {now} and ip not in seen.foreign

    def all_wanted(self, seen: Seen, served: dict[str, tuple[str, ...]]) -> set[Pair]:
        """What must be in force after the cycle: the projects file's projects listed under
        the same name and id (one renamed in Keystone only is held until the file follows;
        a name listed under another id gets nothing)."""
        out = set()
        for name, paths in served.items():
            if self.listed_as(seen, name) != name:
                continue
            for ip in seen.shown:
                for path in paths:
                    if self.wanted(seen, served, (name, path, ip)):
                        out.add((name, path, ip))
        return out

    def conflict(self, seen: Seen, pair: Pair) -> bool:
        """The complete listing shows the pair's IP on an instance of another id, or a
        foreign port claims it and not every such claim is the project's own id alone."""
        name, _, ip = pair
        own = self.id_of(seen, name)
        if seen.ids_showing(ip) - {own}:
            return True
        claims = seen.foreign.get(ip, [])
        return bool(claims) and not (own is not None and all(c == {own} for c in claims))

    def path_moved(self, seen: Seen, served: dict[str, tuple[str, ...]], pair: Pair) -> bool:
        """The projects file serves the pair's path now for another project (not a name
        the complete listing shows with this project's id): a volume moved to a new owner
        is the new owner's at once."""
        name, path, _ = pair
        me = self.id_of(seen, name)
        for other, paths in served.items():
            if other == name or path not in paths:
                continue
            rec = seen.listed.get(other)
            if not (rec is not None and me is not None and rec.id == me):
                return True
        return False

    def advance(
        self,
        seen: Seen,
        served: dict[str, tuple[str, ...]],
        in_force: set[Pair],
        names: set[str],
        now: float,
        public: tuple[set[Pair], set[Pair]] = (set(), set()),
    ) -> None:
        """Count this cycle's evidence (before the plan is judged); ``public``: the public
        pairs in force and those the config wants (a public pair leaves like any other:
        after confirmations, counted in complete cycles only)."""
        if not seen.counts:
            return  # incomplete, frozen or too early: neither count nor reset
        public_in_force, configured = public
        for pair in public_in_force:
            if pair in configured:
                self.missing[pair] = self.missing_low[pair] = 0
            else:
                self.missing[pair] = self.missing.get(pair, 0) + 1
                self.missing_low[pair] = self.missing_low.get(pair, 0) + 1
        for pair in in_force:
            if self.listed_as(seen, pair[0]) != pair[0]:
                self.missing_low[pair] = 0  # (renamed pairs: no liveness owed)
            if not self.judged(seen, pair[0]):
                continue  # unknown or absent: this project's pairs are not judged
            if self.wanted(seen, served, pair):
                self.missing[pair] = self.missing_low[pair] = 0
            else:
                self.missing[pair] = self.missing.get(pair, 0) + 1
                if self.listed_as(seen, pair[0]) == pair[0]:
                    self.missing_low[pair] = self.missing_low.get(pair, 0) + 1
        listed_ids = {rec.id for rec in seen.listed.values()}
        for name in names | set(self.absent):
            b = self.bound(name)
            if (name in seen.listed) if b is None else (b in listed_ids):
                self.absent.pop(name, None)  # its id is listed (maybe renamed): not absent
            else:
                since, cycles = self.absent.get(name, (now, 0))
                self.absent[name] = (since, cycles + 1)

    def remember(
        self, seen: Seen, in_force: set[Pair], names: set[str], deleted: set[str], now: float
    ) -> None:
        """After the cycle: what a kept listing teaches (ids, bindings of served names,
        deletions, the last counted time); counts only for pairs in force."""
        if seen.keep:
            listed_ids = {rec.id for rec in seen.listed.values()}
            known = {n: rec.id for n, rec in seen.listed.items()}
            for name, pid in self.known_ids.items():
                if name not in known and pid in listed_ids:
                    known[name] = pid  # renamed: the old name keeps its id
            for name in names:
                b = self.bound(name)
                if b is not None:
                    known[name] = b  # a served name stays bound to its id
            self.known_ids = known
            self.deletions = {
                n: t for n, t in self.deletions.items() if 0 <= now - t < self.deletion_window
            }
            self.deletions.update({n: now for n in deleted})
        if seen.counts:
            self.last_counted = now
        self.missing = {p: n for p, n in self.missing.items() if p in in_force}
        self.missing_low = {p: n for p, n in self.missing_low.items() if p in in_force}

    def must_update_options(self, seen: Seen, name: str) -> bool:
        """A project's served lines carry the configured options: its data is complete
        under its own name (the daemon decides for it)."""
        return self.listed_as(seen, name) == name and seen.project_complete(name)

    def must_keep_options(self, seen: Seen, name: str, now: float) -> bool:
        """A project's lines keep the options in force: it is not judged (unknown, or not
        listed and not yet confirmed deleted): nothing of an unknown project changes."""
        return not self.judged(seen, name) and not self.deleted(seen, name, now)

    def confirmed(self, seen: Seen, pair: Pair, *, low: bool = False) -> bool:
        counts = self.missing_low if low else self.missing
        judged = pair[0].startswith(PUBLIC_PREFIX) or self.judged(seen, pair[0])
        return seen.keep and judged and counts.get(pair, 0) >= self.confirmations

    def deleted(self, seen: Seen, name: str, now: float) -> bool:
        if not seen.keep or name not in self.absent:
            return False
        since, cycles = self.absent[name]
        return cycles >= self.confirmations and now - since >= self.min_age


# --------------------------------------------------------------------------- the machine


@dataclass
class CloudProject:
    name: str
    id: str
    enabled: bool = True
    exists: bool = True


class DecideMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.cloud: dict[str, CloudProject] = {}  # slot -> the project in it
        self.instances: dict[str, tuple[str, str]] = {}  # instance id -> (slot, address text)
        self.freed: list[tuple[str, str]] = []  # (address text, project id) of deleted instances
        self.ports: list[Port] = []  # foreign ports
        self.served: dict[str, tuple[str, ...]] = {}  # the projects file: name -> paths
        self.pinned: dict[str, str] = {}  # the projects file's id: per name
        self.volume_options: dict[str, str] = {}  # export_options.volumes
        self.public: dict[str, PublicExport] = {PUBLIC.name: PUBLIC}  # public_exports
        self.missing_paths: set[str] = set()  # served paths that do not exist
        self.unmanaged: set[str] = set()  # *.exports file names without our header
        self.next_instance = 0
        self.renames = 0
        self.new_ids = 0
        # faults (sticky until switched off or healed)
        self.listing_unknown = False
        self.incomplete: dict[str, str] = {}  # slot -> "none" | "some" | "all" shown
        self.lie: str | None = None  # "no-servers" | "no-projects": complete but empty
        self.maintenance = Maintenance.OFF
        # the daemon
        self.in_force: dict[str, ExportsFile] = {}
        self.counters: dict[PairKey, int] = {}
        self.memory = Memory()
        self.now = START
        self.cycles = 0
        # for the statistics: which rules removed something, what else was exercised
        self.why: set[str] = set()
        self.exercised: set[str] = set()
        self.max_pairs = 0
        self.policy = Policy()
        self.model = Model(3, 0.0, False)
        self.last: tuple[View, dict[str, tuple[str, ...]], dict[str, str], Policy, Host] | None
        self.last = None

    # ------------------------------------------------------------------ setup

    @initialize(
        confirmations=st.sampled_from([3, 2, 1]),
        min_age=st.sampled_from([0.0, 90.0]),
        disabled=st.sampled_from(["keep", "remove"]),
        min_count=st.sampled_from([10, 2, 0]),
        fraction=st.sampled_from([0.25, 0.5]),
        served=st.lists(st.integers(1, 2), min_size=len(PIDS) - 1, max_size=len(PIDS) - 1),
        owners=st.lists(st.sampled_from((None, *PIDS)), min_size=len(IPS), max_size=len(IPS)),
        max_deletions=st.sampled_from([2, 1]),
    )
    def setup(
        self,
        confirmations: int,
        min_age: float,
        disabled: str,
        min_count: int,
        fraction: float,
        served: list[int],
        owners: list[str | None],
        max_deletions: int = 2,
    ) -> None:
        """A healthy cloud: each address of the pool on an instance of one project (or
        free), the projects file naming the first four projects, then the first sync.
        Confirmations count every cycle (spacing 0) except in ``run_burst``."""
        self.policy = Policy(
            confirmations=confirmations,
            max_removal_fraction=fraction,
            min_removal_count=min_count,
            removal_min_age=min_age,
            disabled_projects=disabled,
            max_project_deletions=max_deletions,
            confirmation_spacing=0.0,
        )
        self.model = Model(
            confirmations,
            min_age,
            disabled == "remove",
            max_deletions,
            self.policy.project_deletion_window,
        )
        for i, slot in enumerate(PIDS):
            name = f"p{i}"
            self.cloud[slot] = CloudProject(name, slot)
            if i < len(served):  # the last project has no volumes here
                self.served[name] = project_paths(slot)[: served[i]]
        for ip, owner in zip(IPS, owners, strict=True):
            if owner is not None:
                self._create(owner, ip)
        self.run_cycles(force=False, dt=0.0, times=1)  # the first sync, on a healthy cloud

    def _create(self, slot: str, text: str) -> None:
        self.instances[f"i{self.next_instance}"] = (slot, text)
        self.next_instance += 1

    def _delete(self, iid: str) -> None:
        slot, text = self.instances.pop(iid)
        self.freed.append((text, self.cloud[slot].id))

    # ------------------------------------------------------------------ the cloud

    @rule(pid=st.sampled_from(PIDS), ip=ADDRESSES)
    def create_instance(self, pid: str, ip: str) -> None:
        """Any address text of the pool: it may be in use by another project (two claims),
        be another spelling of one in use, or be refused."""
        if self.cloud[pid].exists:
            self._create(pid, ip)

    @precondition(lambda self: self.instances)
    @rule(data=st.data())
    def delete_instance(self, data: st.DataObject) -> None:
        self._delete(data.draw(st.sampled_from(sorted(self.instances)), label="instance"))

    @precondition(lambda self: self.freed)
    @rule(data=st.data(), pid=st.sampled_from(PIDS))
    def reuse_ip(self, data: st.DataObject, pid: str) -> None:
        """A deleted instance's address comes back on an instance of another project."""
        project = self.cloud[pid]
        choices = sorted({ip for ip, old in self.freed if old != project.id})
        if choices and project.exists:
            self._create(pid, data.draw(st.sampled_from(choices), label="reused ip"))

    @precondition(lambda self: self.instances)
    @rule(data=st.data(), renumber=st.booleans())
    def move_ip(self, data: st.DataObject, renumber: bool) -> None:
        """An address moves to another instance of the same project (or, renumbered, the
        instance gets another address of the pool)."""
        iid = data.draw(st.sampled_from(sorted(self.instances)), label="instance")
        pid, ip = self.instances[iid]
        if renumber:
            self._delete(iid)
            self._create(pid, data.draw(ADDRESSES, label="new ip"))
        else:
            self._create(pid, ip)
            self._delete(iid)

    @rule(pid=st.sampled_from(PIDS), orphan=st.sampled_from([False, False, True]))
    def delete_project(self, pid: str, orphan: bool) -> None:
        """Deleted in Keystone; Nova deletes its instances, or (orphan) leaves them behind:
        their ports still claim their addresses, under the deleted id.  The projects file
        still names it (nobody told the NFS admins)."""
        project = self.cloud[pid]
        project.exists = False
        for iid in sorted(self.instances):
            if self.instances[iid][0] == pid:
                if orphan:
                    self.ports.append(Port(self.instances.pop(iid)[1], project.id, None))
                else:
                    self._delete(iid)

    @rule(pid=st.sampled_from(PIDS), orphan=st.sampled_from([False, False, True]))
    def recreate_project(self, pid: str, orphan: bool) -> None:
        """Deleted (if it still exists) and created again under the same name: a new
        Keystone id, and no instances yet."""
        project = self.cloud[pid]
        if any(q.exists and q.name == project.name for s, q in self.cloud.items() if s != pid):
            return  # the name is taken by another project
        self.delete_project(pid, orphan)
        self.new_ids += 1
        project.id = f"{pid}-{self.new_ids}"
        project.exists = True
        project.enabled = True

    @rule(pid=st.sampled_from(PIDS))
    def toggle_enabled(self, pid: str) -> None:
        self.cloud[pid].enabled = not self.cloud[pid].enabled

    @rule(pid=st.sampled_from(PIDS))
    def toggle_served(self, pid: str) -> None:
        """The projects file starts or stops naming the project's volumes on this server."""
        name = self.cloud[pid].name
        if name in self.served:
            del self.served[name]
            self.pinned.pop(name, None)
        elif not any(project_paths(pid)[0] in paths for paths in self.served.values()):
            self.served[name] = project_paths(pid)  # (a path under two names is refused)

    @rule(pid=st.sampled_from(PIDS))
    def accept_id(self, pid: str) -> None:
        """The operator writes ``id:`` for the project's name in the projects file: the id
        the name has in Keystone now (or removes the ``id:`` line that says so)."""
        project = self.cloud[pid]
        if project.name not in self.served or not project.exists:
            return
        if self.pinned.get(project.name) == project.id:
            del self.pinned[project.name]
        elif project.id not in self.pinned.values():  # (one id under two names is refused)
            self.pinned[project.name] = project.id

    @rule(
        ip=ADDRESSES,
        orphan=st.booleans(),
        port=st.sampled_from(PIDS),
        server=st.sampled_from(PIDS),
    )
    def add_foreign_port(self, ip: str, orphan: bool, port: str, server: str) -> None:
        """A port that gives its address to nobody: an orphan of a project Keystone does
        not list (the slot's deleted id, or an id never listed), or a port of one project
        attached to a server of another."""
        if orphan:
            if self.cloud[port].exists:
                self.new_ids += 1
                pid = f"gone-{self.new_ids}"  # a project Keystone never listed
            else:
                pid = self.cloud[port].id
            self.ports.append(Port(ip, pid, None))
        elif port != server:
            self.ports.append(Port(ip, self.cloud[port].id, self.cloud[server].id))

    @precondition(lambda self: self.ports)
    @rule(data=st.data())
    def drop_foreign_port(self, data: st.DataObject) -> None:
        """The orphan is cleaned up, the port detached."""
        self.ports.pop(data.draw(st.integers(0, len(self.ports) - 1), label="port"))

    # ------------------------------------------------------------------ config, host

    @rule(volume=st.sampled_from(VOLUMES), options=st.sampled_from(OPTION_SETS))
    def set_volume_options(self, volume: str, options: str) -> None:
        """``export_options.volumes`` gives the volume (on every project) other options."""
        self.volume_options[volume] = options

    @rule(
        name=st.sampled_from(PUBLIC_NAMES),
        what=st.sampled_from(["toggle", "clients", "path", "options"]),
        clients=st.sets(st.sampled_from(PUBLIC_CLIENTS), min_size=1),
        options=st.sampled_from(OPTION_SETS),
    )
    def change_public(self, name: str, what: str, clients: set[str], options: str) -> None:
        """``public_exports``: an export added or removed, its clients, its path or its
        options changed (one at a time)."""
        pub = self.public.get(name)
        if what == "toggle" or pub is None:
            if pub is None:
                self.public[name] = PublicExport(
                    name, public_paths(name)[0], ("172.16.0.0/21",), OPTIONS
                )
            else:
                del self.public[name]
        elif what == "clients":
            self.public[name] = replace(pub, clients=tuple(sorted(clients)))
        elif what == "path":
            one, other = public_paths(name)
            self.public[name] = replace(pub, path=other if pub.path == one else one)
        else:
            self.public[name] = replace(pub, options=options)

    @rule(path=st.sampled_from(ALL_PATHS))
    def toggle_path_missing(self, path: str) -> None:
        """A served path goes missing (a volume not mounted) or comes back."""
        self.missing_paths ^= {path}

    @rule(pid=st.sampled_from(PIDS))
    def toggle_unmanaged(self, pid: str) -> None:
        """A file without our header appears under the project's file name (someone wrote
        one over ours), or goes away again."""
        fname = f"{self.cloud[pid].name}.exports"
        if fname in self.unmanaged:
            self.unmanaged.discard(fname)
        else:
            self.unmanaged.add(fname)
            self.in_force.pop(fname, None)  # not ours any more: not a managed file in force

    def host(self) -> Host:
        return Host(
            tuple(sorted(self.volume_options.items())),
            tuple(self.public[n] for n in sorted(self.public)),
            frozenset(self.missing_paths),
            frozenset(self.unmanaged),
        )

    # ------------------------------------------------------------------ faults, flags

    @rule()
    def toggle_listing_unknown(self) -> None:
        """401 / timeout / malformed answer: the whole read is unknown."""
        self.listing_unknown = not self.listing_unknown

    @rule(pid=st.sampled_from(PIDS), shown=st.sampled_from(["none", "some", "all"]))
    def toggle_project_incomplete(self, pid: str, shown: str) -> None:
        """This project's instance data is incomplete (a down cell, a failed page): the
        snapshot says so and shows none, some or all of its instances."""
        if self.incomplete.pop(pid, None) is None:
            self.incomplete[pid] = shown

    @rule(lie=st.sampled_from([None, "no-servers", "no-projects"]))
    def set_complete_lie(self, lie: str | None) -> None:
        """A source that answers complete but empty (no servers or ports, or no projects
        at all): the daemon cannot tell it from the truth; confirmations and bounds must
        absorb it."""
        self.lie = lie

    @rule()
    def heal(self) -> None:
        self.listing_unknown = False
        self.incomplete.clear()
        self.lie = None

    @rule(mode=st.sampled_from(list(Maintenance)))
    def set_maintenance(self, mode: Maintenance) -> None:
        self.maintenance = mode

    @rule()
    def lose_state(self) -> None:
        """The state file is gone: counters and lifecycle memory start afresh."""
        self.counters = {}
        self.memory = Memory()
        self.model.forget({f.owner for f in self.in_force.values() if f.is_project})

    # ------------------------------------------------------------------ cycles

    def view(self) -> View:
        """What the sources answer this cycle, faults applied."""
        if self.listing_unknown:
            return View(problem="keystone: 401 Unauthorized")
        if self.lie == "no-projects":
            return View(ports=tuple(self.ports))
        projects = tuple(
            (p.name, p.id, p.enabled) for _, p in sorted(self.cloud.items()) if p.exists
        )
        by_slot: dict[str, list[tuple[str, str]]] = {}
        if self.lie != "no-servers":
            for iid, (slot, text) in sorted(self.instances.items()):
                by_slot.setdefault(slot, []).append((iid, text))
        instances: list[tuple[str, str, str]] = []
        incomplete: list[str] = []
        for slot, p in sorted(self.cloud.items()):
            if not p.exists:
                continue
            insts = by_slot.get(slot, [])
            shown = self.incomplete.get(slot)
            if shown is not None:
                incomplete.append(p.name)
                insts = [] if shown == "none" else insts[::2] if shown == "some" else insts
            instances += [(iid, p.name, text) for iid, text in insts]
        ports = () if self.lie == "no-servers" else tuple(self.ports)
        return View(None, projects, tuple(instances), tuple(incomplete), ports)

    def private(
        self, served: dict[str, tuple[str, ...]], host: Host
    ) -> dict[str, tuple[ServedExport, ...]]:
        return {
            name: tuple(
                ServedExport(name, p.rsplit("/", 1)[1], p, host.volume_options(p)) for p in paths
            )
            for name, paths in served.items()
        }

    def decide_on(
        self,
        snap: InventorySnapshot,
        served: dict[str, tuple[str, ...]],
        pinned: dict[str, str],
        policy: Policy,
        host: Host,
    ) -> tuple[DecideInput, Plan]:
        inp = DecideInput(
            private=self.private(served, host),
            public=host.public,
            snapshot=snap,
            in_force=dict(self.in_force),
            unmanaged=host.unmanaged,
            missing_paths=host.missing,
            counters=dict(self.counters),
            memory=self.memory,
            now=self.now,
            pinned_ids=dict(pinned),
        )
        return inp, decide(inp, policy)

    @rule()
    def run_cycle(self) -> None:
        """One ordinary cycle, a minute after the last one."""
        self.run_cycles(force=False, dt=INTERVAL, times=1)

    @rule(
        force=st.sampled_from([False, False, True]),
        dt=st.sampled_from([INTERVAL, 0.0, 30.0]),
        times=st.integers(1, 5),
    )
    def run_cycles(self, force: bool, dt: float, times: int) -> None:
        for _ in range(times):
            self.now += dt
            policy = replace(self.policy, maintenance=self.maintenance, force=force)
            self.cycle(self.view(), dict(self.served), dict(self.pinned), policy, self.host())

    @rule(times=st.integers(2, 6), force=st.booleans())
    def run_burst(self, times: int, force: bool) -> None:
        """A burst (a SIGHUP storm, a retry loop): cycles a second apart, with the default
        confirmation spacing (half the interval): confirmations count no faster than
        polling, additions and conflicts go at once."""
        for _ in range(times):
            self.now += 1.0
            policy = replace(
                self.policy,
                maintenance=self.maintenance,
                force=force,
                confirmation_spacing=BURST_SPACING,
            )
            self.cycle(self.view(), dict(self.served), dict(self.pinned), policy, self.host())

    @precondition(lambda self: self.last is not None)
    @rule()
    def settle(self) -> None:
        """Repeat the last cycle's inputs (same view, projects file, policy, time; spacing
        0, or no repeat would count): after confirmations + 1 repeats every pending count
        has run out, so the next repeat is a fixed point: it plans nothing, writes nothing."""
        assert self.last is not None
        view, served, pinned, policy, host = self.last
        policy = replace(policy, confirmation_spacing=0.0)
        # the foreign files are those in the directory now (our file may have been
        # overwritten since the last cycle): not an input to repeat
        host = replace(host, unmanaged=frozenset(self.unmanaged))
        for _ in range(self.policy.confirmations + 1):
            self.cycle(view, served, pinned, policy, host)
        _, plan = self.decide_on(read_layer(view), served, pinned, policy, host)
        assert not plan.changes, (
            f"(4) the same inputs repeated {self.policy.confirmations + 1} times still "
            f"change something: {plan.changes}"
        )
        self.assert_writes_nothing(plan)

    @staticmethod
    def say(text: str) -> None:
        """One line per cycle, printed with a failing example (and outside hypothesis, in a
        replayed example, by pytest with the failure)."""
        if currently_in_test_context():
            note(text)
        else:
            print(text)

    def cycle(
        self,
        view: View,
        served: dict[str, tuple[str, ...]],
        pinned: dict[str, str],
        policy: Policy,
        host: Host,
    ) -> Plan:
        self.cycles += 1
        snap = read_layer(view)
        _, plan = self.decide_on(snap, served, pinned, policy, host)
        _, again = self.decide_on(snap, served, pinned, policy, host)
        assert plan == again, "decide is not deterministic"
        self.say(
            f"cycle {self.cycles} t+{self.now - START:.0f}: "
            f"{self._describe(view)} maint={policy.maintenance.value} force={policy.force} "
            f"spacing={policy.confirmation_spacing:g} id:={pinned} {self._describe_host(host)}; "
            f"{plan.summary()}; changes="
            + ", ".join(
                f"{c.action.value} {c.project} {c.client} ({c.reason.value})" for c in plan.changes
            )
        )
        before = dict(self.in_force)
        after = dict(self.in_force)
        for fname, f in plan.files.items():
            if f is None:
                after.pop(fname, None)
            else:
                after[fname] = f

        model = self.model
        model.pinned = dict(pinned)
        seen = Seen.read(
            view, policy.maintenance, model.spaced(self.now, policy.confirmation_spacing)
        )
        names = set(served) | {f.owner for f in before.values() if f.is_project}
        model.advance(
            seen,
            served,
            private_pairs(before),
            names,
            self.now,
            (public_pairs(before), host.public_pairs()),
        )
        self.record(seen, view, policy, private_pairs(before), names, host)
        self.check_plan(plan, before, after)
        deleted = self.check_cycle(seen, served, policy, before, after, host)
        self.check_options(seen, served, policy, before, after, host)
        self.check_unmanaged(plan, host)

        # apply, as cycle.py does
        self.in_force = after
        if plan.counting:
            self.counters = dict(plan.counters)
            self.memory = plan.memory
        model.remember(seen, labelled_pairs(after), names, deleted, self.now)
        self.last = (view, served, pinned, policy, host)
        self.check_repeat(snap, served, pinned, policy, host)
        return plan

    def record(
        self,
        seen: Seen,
        view: View,
        policy: Policy,
        in_force: set[Pair],
        names: set[str],
        host: Host,
    ) -> None:
        """What this run exercised, for --hypothesis-show-statistics."""
        if any(p[1] in host.missing for p in in_force):
            self.exercised.add("a missing path with pairs in force")
        if names & host.unmanaged_names():
            self.exercised.add("an unmanaged file under a served project's name")
        if {o for _, o in host.options} - {OPTIONS}:
            self.exercised.add("other options for a volume")
        if host.public != (PUBLIC,):
            self.exercised.add("public exports changed")
        self.max_pairs = max(self.max_pairs, len(in_force))
        owners = {p[0] for p in in_force}
        if not seen.complete and owners:
            self.exercised.add("unknown listing")
        if seen.complete and owners & seen.incomplete:
            self.exercised.add("incomplete project")
        if seen.complete and in_force and not any(seen.shown.values()):
            self.exercised.add("empty complete listing")
        if policy.maintenance is not Maintenance.OFF and in_force:
            self.exercised.add("maintenance")
        texts = [t for _, _, t in view.instances]
        if any(model_address(t) not in (None, t) for t in texts):
            self.exercised.add("a non-canonical (v4-mapped, ...) address shown")
        if any(model_address(t) is None for t in texts):
            self.exercised.add("a refused address shown")
        for pair in in_force:
            if pair[2] in seen.foreign:
                own = self.model.conflict(seen, pair)
                self.exercised.add(
                    f"a foreign claim on a pair in force ({'other' if own else 'own'} id)"
                )
        for name in names:
            b = self.model.bound(name)
            rec = seen.listed.get(name)
            if rec is not None and b is not None and rec.id != b:
                self.exercised.add("a served name listed under another id")
                if any(p[0] == name for p in in_force):
                    self.exercised.add("... with pairs of the bound id in force")
        if self.model.pinned:
            self.exercised.add("id: in the projects file")
        if seen.keep and not seen.counts:
            self.exercised.add("a complete cycle too early to count (burst)")

    def teardown(self) -> None:
        event(f"cycles: {min(self.cycles // 10 * 10, 50)}+")
        event(f"most pairs in force: {min(self.max_pairs // 4 * 4, 16)}+")
        event(f"removals: {', '.join(sorted(self.why)) or 'none'}")
        for what in sorted(self.exercised):
            event(f"exercised: {what}")

    @staticmethod
    def _describe_host(host: Host) -> str:
        pub = ",".join(f"{p.name}:{p.path}:{'+'.join(p.clients)}:{p.options}" for p in host.public)
        return (
            f"options={dict(host.options)} public=[{pub}] missing={sorted(host.missing)} "
            f"unmanaged={sorted(host.unmanaged)}"
        )

    def _describe(self, view: View) -> str:
        if view.problem is not None:
            return "listing UNKNOWN"
        shown = "; ".join(
            f"{n}={i}:{','.join(repr(t) for _, q, t in view.instances if q == n)}"
            + ("(incomplete)" if n in view.incomplete else "")
            + ("" if e else "(disabled)")
            for n, i, e in sorted(view.projects)
        )
        ports = "; ".join(f"{p.address!r} port of {p.project} on {p.server}" for p in view.ports)
        return f"listing [{shown}]" + (f" foreign [{ports}]" if ports else "")

    # ------------------------------------------------------------------ checks

    def check_plan(
        self, plan: Plan, before: dict[str, ExportsFile], after: dict[str, ExportsFile]
    ) -> None:
        """(5): closed reasons, canonical pool addresses, files that render to the exports
        grammar, files = in force + planned changes."""
        for why in [c.reason.value for c in plan.changes] + [h.reason.value for h in plan.holds]:
            assert why in CONTRACT_REASONS, (
                f"(5) reason {why!r} is not in README.md's closed list of reasons"
            )
        for c in plan.changes:
            assert c.action in (Action.ADD, Action.REMOVE, Action.UPDATE), f"unexpected {c}"
        for fname, f in after.items():
            assert f.filename == fname
            for line in f.lines:
                assert line.clients, f"{fname}: a line without clients"
                if f.is_project:
                    for client in line.clients:
                        assert client in IPS and model_address(client) == client, (
                            f"(5) {fname}: client {client!r} of {line.path} is not one of "
                            "the pool's canonical addresses (a zone id, another spelling, "
                            "or a refused address reached a file)"
                        )
                    addrs = [ipaddress.ip_address(c) for c in line.clients]
                    assert addrs == sorted(addrs, key=lambda a: (a.version, a)), line
                else:
                    for client in line.clients:
                        assert str(ipaddress.ip_network(client)) == client, line
            try:
                text = render(f)
            except RenderRefused as exc:
                raise AssertionError(f"(5) the renderer refused {fname}: {exc}") from None
            for rendered in text.splitlines()[1:]:
                comment = rendered.startswith("# ")  # the header, the file's keystone id
                assert comment or EXPORTS_LINE.fullmatch(rendered), f"(5) {fname}: {rendered!r}"
        old, new = labelled_pairs(before), labelled_pairs(after)
        adds = {(c.project, c.path, c.client) for c in plan.changes if c.action is Action.ADD}
        rems = {(c.project, c.path, c.client) for c in plan.changes if c.action is Action.REMOVE}
        assert new - old == adds, f"files add {new - old}, changes say {adds}"
        assert old - new == rems, f"files remove {old - new}, changes say {rems}"
        # ... and every pair that stays on a line whose options change is an update
        opt_old, opt_new = line_options(before), line_options(after)
        updated = {p for p in old & new if opt_old[p[0], p[1]] != opt_new[p[0], p[1]]}
        ups = {(c.project, c.path, c.client) for c in plan.changes if c.action is Action.UPDATE}
        assert updated == ups, (
            f"(5) pairs whose options change {sorted(updated)}, updates planned {sorted(ups)}"
        )

    def check_cycle(
        self,
        seen: Seen,
        served: dict[str, tuple[str, ...]],
        policy: Policy,
        before: dict[str, ExportsFile],
        after: dict[str, ExportsFile],
        host: Host,
    ) -> set[str]:
        """(1), (2), (3), (6), (7) and liveness; returns the names whose pairs went only as
        a confirmed deletion (for the bound on deletions per window)."""
        model = self.model
        old, new = private_pairs(before), private_pairs(after)
        frozen = policy.maintenance is Maintenance.FREEZE
        off = policy.maintenance is Maintenance.OFF

        # (1) one project (by id) per IP (by its canonical form)
        owners: dict[str | None, set[str]] = {}
        for name, _, ip in new:
            owners.setdefault(model_address(ip), set()).add(model.id_of(seen, name) or name)
        shared = {ip: ids for ip, ids in owners.items() if len(ids) > 1}
        assert not shared, f"(1) IPs in the private exports of several projects: {shared}"

        # (2) nothing exported that the complete listing shows in another project, or that
        # a foreign port claims (unless only the project's own id does)
        for name, path, ip in sorted(new):
            assert not model.conflict(seen, (name, path, model_address(ip) or ip)), (
                f"(2) {ip} stays exported for {name} (id {model.id_of(seen, name)}, {path}) "
                f"while the complete listing shows it on {self.shown_on(seen, ip)}, foreign "
                f"claims by ids {[sorted(c) for c in seen.foreign.get(ip, [])]}"
            )

        # (3) every removal by a rule
        only_deleted: set[str] = set()
        moved: set[Pair] = set()
        for pair in sorted(old - new):
            name = pair[0]
            why = []
            if model.conflict(seen, pair):
                why.append("conflict")
            if model.path_moved(seen, served, pair):
                why.append("path moved")
            if off and model.confirmed(seen, pair):
                why.append("confirmed")
            if off and model.deleted(seen, name, self.now):
                why.append("deleted")
            me = model.id_of(seen, name)
            if any(
                (other, pair[1], pair[2]) in new
                for other, _, _ in new
                if other != name and model.id_of(seen, other) == me
            ):
                why.append("moved")  # to the file of the project's new name: no access lost
                moved.add(pair)
            self.why.update(why)
            assert why, (
                f"(3) {pair} was removed without a rule: listing complete={seen.complete}, "
                f"project complete={model.complete(seen, name)}, "
                f"maintenance={policy.maintenance.value}, "
                f"counted cycles without it={model.missing.get(pair, 0)} of "
                f"{model.confirmations}, absent={model.absent.get(name)}, "
                f"{pair[2]} shown on {self.shown_on(seen, pair[2])}, foreign claims "
                f"{[sorted(c) for c in seen.foreign.get(pair[2], [])]}, "
                f"{name} bound to {me}"
            )
            if why == ["deleted"]:
                only_deleted.add(name)
        # (3) ... and every addition, (6) by the id the name stands for
        for pair in sorted(new - old):
            name, _, ip = pair
            assert not frozen and model.wanted(seen, served, pair), (
                f"(3) {pair} was added, but the cycle does not show {ip} on an "
                f"instance of {name} (id {model.id_of(seen, name)}) alone, or a foreign "
                f"port claims it, or the path is not served, or frozen; shown on "
                f"{self.shown_on(seen, ip)}"
            )
            assert pair[1] not in host.missing, f"(7) {pair} was added to a missing path"
            ids = seen.ids_showing(ip)
            assert ids == {model.id_of(seen, name)}, (
                f"(6) {ip} was added for {name}, bound to id {model.id_of(seen, name)}, "
                f"but it is an address of an instance of id {sorted(ids)}"
            )
        # (8) public pairs: added only as configured (on a path that exists), removed
        # only by the rules of (3): confirmations, never under maintenance, the bound
        pub_old, pub_new = public_pairs(before), public_pairs(after)
        configured = host.public_pairs()
        for pair in sorted(pub_new - pub_old):
            assert not frozen and pair in configured and pair[1] not in host.missing, (
                f"(8) public {pair} was added: not configured, or its path is missing, or frozen"
            )
        for pair in sorted(pub_old - pub_new):
            # (its confirmations need no listing: an unknown one neither counts nor holds)
            confirmed = model.missing.get(pair, 0) >= model.confirmations
            assert off and pair not in configured and confirmed, (
                f"(8) public {pair} was removed without a rule: configured="
                f"{pair in configured}, maintenance={policy.maintenance.value}, counted "
                f"cycles without it={model.missing.get(pair, 0)} of {model.confirmations}"
            )
        if not policy.force:
            # (3) the removal bound
            bounded = [
                p
                for p in old - new - moved
                if not model.conflict(seen, p) and not model.path_moved(seen, served, p)
            ] + sorted(pub_old - pub_new)
            in_force = len(labelled_pairs(before))
            limit = max(policy.max_removal_fraction * in_force, policy.min_removal_count)
            assert len(bounded) <= limit, (
                f"(3) {len(bounded)} removals of {in_force} pairs in force went without "
                f"--force (bound {limit})"
            )
            # (3) the bound on project deletions per window
            recent = {
                n for n, t in model.deletions.items() if 0 <= self.now - t < model.deletion_window
            }
            assert len(recent | only_deleted) <= model.max_deletions or not only_deleted, (
                f"(3) projects {sorted(only_deleted)} deleted without --force, after "
                f"{sorted(recent)} within the window: more than {model.max_deletions}"
            )
        # liveness: what the model wants is in force (not on a missing path, not for a
        # project whose file is not ours), the configured public pairs too ...
        if not frozen:
            missing = {
                p
                for p in model.all_wanted(seen, served)
                if p[1] not in host.missing and p[0] not in host.unmanaged_names()
            } - new
            assert not missing, f"(liveness) wanted but not in force: {sorted(missing)}"
            missing = host.public_pairs(existing=True) - pub_new
            assert not missing, f"(liveness) public pairs configured, not in force: {missing}"
        # ... and a forced counted cycle out of maintenance removes what the model confirmed
        if policy.force and off and seen.counts:
            late = sorted(
                p
                for p in new
                if model.confirmed(seen, p, low=True) or model.deleted(seen, p[0], self.now)
            ) + sorted(p for p in pub_new if model.confirmed(seen, p, low=True))
            assert not late, f"(liveness) confirmed removals not done by a forced cycle: {late}"
        return only_deleted

    def shown_on(self, seen: Seen, ip: str) -> list[str]:
        return [f"{q} (id {seen.listed[q].id})" for q in sorted(seen.shown.get(ip, ()))]

    def check_repeat(
        self,
        snap: InventorySnapshot,
        served: dict[str, tuple[str, ...]],
        pinned: dict[str, str],
        policy: Policy,
        host: Host,
    ) -> None:
        """(4) the same inputs again, on the state just applied (not applied itself): no
        addition twice (an update may come now: a project whose deletion the repeat
        confirms); and when nothing is planned and no count advances, no write."""
        _, plan = self.decide_on(snap, served, pinned, policy, host)
        adds = [c for c in plan.changes if c.action is Action.ADD]
        assert not adds, f"(4) a repeated cycle with unchanged inputs adds again: {adds}"
        state = (dict(plan.counters), plan.memory) if plan.counting else None
        if not plan.changes and state in (None, (self.counters, self.memory)):
            self.assert_writes_nothing(plan)

    def check_options(
        self,
        seen: Seen,
        served: dict[str, tuple[str, ...]],
        policy: Policy,
        before: dict[str, ExportsFile],
        after: dict[str, ExportsFile],
        host: Host,
    ) -> None:
        """(9) a line carries the configured options for every client on it (pending
        removals included) once the daemon decides for its file; it keeps the options in
        force while frozen, on a missing path, on a path no longer served, and for a
        project whose data is unknown."""
        frozen = policy.maintenance is Maintenance.FREEZE
        opt_old = line_options(before)
        for fname, f in sorted(after.items()):
            label = label_of(f)
            public = not f.is_project
            for ln in f.lines:
                if public:
                    want = host.public_options(label, ln.path)
                    decided = True
                    unknown = False
                else:
                    served_here = ln.path in served.get(label, ())
                    want = host.volume_options(ln.path) if served_here else None
                    decided = self.model.must_update_options(seen, label)
                    unknown = self.model.must_keep_options(seen, label, self.now)
                old = opt_old.get((label, ln.path))
                keep = frozen or ln.path in host.missing or want is None or unknown
                if keep and old is not None:
                    assert ln.options == old, (
                        f"(9) {fname} {ln.path}: options {old!r} in force became "
                        f"{ln.options!r} (frozen={frozen}, missing={ln.path in host.missing}"
                        f", configured={want!r}, project data unknown={unknown})"
                    )
                elif not keep and decided:
                    assert ln.options == want, (
                        f"(9) {fname} {ln.path}: options {ln.options!r}, the config says "
                        f"{want!r} (clients {ln.clients}, in force before: {old!r})"
                    )

    def check_unmanaged(self, plan: Plan, host: Host) -> None:
        """(10) a file without our header is never written or deleted, and nothing is
        planned for its project (everything of it waits until the file is gone)."""
        touched = sorted(set(plan.files) & host.unmanaged)
        assert not touched, f"(10) the plan writes or deletes files not ours: {touched}"
        names = host.unmanaged_names()
        planned = [c for c in plan.changes if c.project in names]
        assert not planned, f"(10) changes for a project whose file is not ours: {planned}"

    def assert_writes_nothing(self, plan: Plan) -> None:
        for fname, f in plan.files.items():
            now = render(self.in_force[fname]) if fname in self.in_force else None
            want = render(f) if f is not None else None
            assert now == want, f"(4) a cycle that plans no change rewrites {fname}"


# A fresh seed every run: a fixed one explores the same 300 machines forever (in the
# issue 11 review the "trust a partial listing" mutant escaped the fixed seed while seeds
# 1, 2 and 3 caught it).  NFS_EXPORTD_HYPOTHESIS_SEED pins one to replay a failure; what
# a failure finds is kept as a pinned example below.
SEED = int(os.environ.get("NFS_EXPORTD_HYPOTHESIS_SEED") or secrets.randbits(32))
SETTINGS = settings(
    max_examples=300,
    stateful_step_count=50,
    deadline=None,
    database=None,
    # no "explain" phase: on a failure it costs more than the whole run, and the shrunk
    # steps with the notes (one line per cycle) already say what happened
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


class DecideWithRenames(DecideMachine):
    """The same machine, and projects get renamed in Keystone (same id, new name), onto a
    deleted project's name too, and the projects file may follow the rename."""

    @rule(pid=st.sampled_from(PIDS))
    def rename_project(self, pid: str) -> None:
        """Same id, new name in Keystone; the projects file still has the old name."""
        if self.cloud[pid].exists:
            self.renames += 1
            self.cloud[pid].name = f"{pid}-r{self.renames}"

    @rule(pid=st.sampled_from(PIDS), onto=st.sampled_from(PIDS))
    def rename_onto_deleted(self, pid: str, onto: str) -> None:
        """Same id, and the name of a deleted project (which the projects file may still
        name, bound to the deleted id)."""
        project, gone = self.cloud[pid], self.cloud[onto]
        if pid == onto or not project.exists or gone.exists:
            return
        if any(q.exists and q.name == gone.name for q in self.cloud.values()):
            return  # Keystone names are unique
        project.name = gone.name

    @rule(pid=st.sampled_from(PIDS))
    def follow_rename(self, pid: str) -> None:
        """The projects file follows Keystone: the old name's entry (the one with this
        project's paths) now has the new name, and keeps its ``id:``."""
        new = self.cloud[pid].name
        if new in self.served:
            return
        for name in sorted(self.served):
            if self.served[name][0].startswith(f"/srv/{pid}/") and name != new:
                self.served[new] = self.served.pop(name)
                if name in self.pinned:
                    self.pinned[new] = self.pinned.pop(name)
                return


def run_machine(machine: type[DecideMachine]) -> None:
    """One run of ``machine`` under this session's seed (``SEED``), printed, and named in
    the failure, so that any failure can be replayed exactly."""
    replay = f"NFS_EXPORTD_HYPOTHESIS_SEED={SEED}"
    print(f"{machine.__name__}: hypothesis seed {SEED} ({replay} replays this run)")
    try:
        run_state_machine_as_test(seed(SEED)(machine), settings=SETTINGS)
    except BaseException as exc:
        exc.add_note(f"replay with {replay} (and keep what it finds as a pinned example)")
        raise


def test_decide_properties() -> None:
    run_machine(DecideMachine)


def test_decide_properties_with_renames() -> None:
    run_machine(DecideWithRenames)


# --------------------------------------------------------------------------- pinned examples


def test_a_listing_of_the_renamed_id_breaks_a_run_of_absent_listings() -> None:
    """Found by the renames machine under a random seed (not the fixed CI one), minimised by
    hand: a project absent from one complete listing, then listed under a new name (its id
    is there: a rename, not an absence), then absent again has been absent from one
    consecutive listing, not two; its exports may not go as ``project-deleted`` yet."""
    m = DecideWithRenames()
    m.setup(
        confirmations=2,
        min_age=0.0,
        disabled="keep",
        min_count=10,
        fraction=0.25,
        served=[1, 1, 1, 1],
        owners=[None] * 7 + ["id1"],  # fd00::2 on an instance of p1
    )
    m.rename_project("id1")  # Keystone: id1 is now called id1-r1
    m.set_complete_lie("no-projects")
    m.run_cycle()  # p1 absent (1 of 2)
    m.set_complete_lie("no-servers")
    m.run_cycle()  # id1 listed as id1-r1: present, renamed
    m.set_complete_lie("no-projects")
    m.run_cycle()  # absent again: 1 consecutive listing, so p1 keeps fd00::2


def _renamed_and_followed(owners: list[str | None]) -> DecideWithRenames:
    """p0/p1 served with one volume each; id1 (p1) renamed in Keystone, the projects file
    follows the rename (its entry now has the new name)."""
    m = DecideWithRenames()
    m.setup(
        confirmations=3,
        min_age=0.0,
        disabled="keep",
        min_count=10,
        fraction=0.25,
        served=[1, 1, 1, 1],
        owners=owners,
    )
    m.rename_project("id1")
    m.follow_rename("id1")
    return m


def test_a_renamed_project_whose_data_is_unknown_keeps_its_pairs_when_the_file_follows() -> None:
    """Found by the renames machine (issue 10's version): a project renamed in Keystone
    and in the projects file, whose instance data is incomplete under its new name, loses
    its old file's pairs after ``confirmations`` cycles as ``instance-gone``: "could not
    read" counted as "not there".  Its data is unknown: its pairs must stay."""
    m = _renamed_and_followed([None] * 7 + ["id1"])
    m.toggle_project_incomplete("id1", "none")
    m.run_cycles(force=False, dt=INTERVAL, times=4)


def test_a_renamed_project_with_a_pair_pending_removal_still_gets_a_plan() -> None:
    """Found by the renames machine: the projects file follows a rename while an address
    of the project's old file waits for its confirmations (its instance got another
    address); the new name's file adds the new address on the same path, the old file
    keeps the pending pair, and decide refuses the plan (``PlanBug``: one path in two
    files), every cycle, until the pending pair is confirmed gone."""
    m = _renamed_and_followed([None] * 6 + ["id1", None])
    m._delete(next(iid for iid, (slot, _) in m.instances.items() if slot == "id1"))
    m._create("id1", "10.0.0.1")
    m.run_cycle()


# Seeds that found a bug, replayed every run (each still explores its 300 machines).
PINNED_SEEDS = {
    # a maintenance freeze rewrote a file in force with a new Keystone id (the memory was
    # lost meanwhile), so a recreated project's binding moved under the freeze
    1149792459: DecideMachine,
    # a renamed project whose new name's path is missing, or whose new name's file is not
    # ours, lost its address after the confirmations although it still had the instance
    872707314: DecideWithRenames,
    1266467969: DecideWithRenames,
}


def test_pinned_seeds() -> None:
    for value, machine in PINNED_SEEDS.items():
        run_state_machine_as_test(seed(value)(machine), settings=SETTINGS)


def test_a_rename_onto_a_name_served_for_another_id_removes_nothing_at_once() -> None:
    """Found by the renames machine under a random seed (issue 11; the machine of issue
    10 finds it too): p3 (id3) is no longer served but its file is in force; p0 (id0) is
    deleted and id3 renamed onto the name p0, which the projects file serves, bound to
    id0.  decide takes p3's pair away at once as ``project-renamed`` while p0's file gets
    nothing (``project-id-changed``): no file is written for id3, so the pair may leave
    only after its confirmations (not-served).  Fixed: a name bound to another id is no alias of
    the renamed project (lifecycle.aliases)."""
    m = DecideWithRenames()
    m.setup(
        confirmations=3,
        min_age=0.0,
        disabled="keep",
        min_count=10,
        fraction=0.25,
        served=[1, 1, 1, 1],
        owners=[None] * 7 + ["id3"],  # fd00::2 on an instance of p3
    )
    m.toggle_served("id3")
    m.delete_project("id0", orphan=False)
    m.rename_onto_deleted("id3", onto="id0")
    m.run_cycle()


# --------------------------------------------------------------------------- rollback (restore)

R_PROJECTS = ("ra", "rb", "rc")
R_PATHS = tuple(f"/srv/{p}/home" for p in R_PROJECTS)
R_IPS = tuple(f"10.9.0.{i}" for i in range(1, 7))
R_OPTS = "rw,sync,no_subtree_check,root_squash"
RPair = tuple[str, str, str]  # project, path, client


def _r_files(pairs: set[RPair]) -> dict[str, ExportsFile]:
    """Project files holding exactly ``pairs`` (a project without pairs has no file)."""
    out: dict[str, ExportsFile] = {}
    for project in R_PROJECTS:
        lines = tuple(
            ExportLine(
                path, R_OPTS, tuple(sorted(c for q, x, c in pairs if (q, x) == (project, path)))
            )
            for path in R_PATHS
            if any((q, x) == (project, path) for q, x, _ in pairs)
        )
        if lines:
            out[f"{project}.exports"] = ExportsFile(
                f"{project}.exports", FileKind.PROJECT, project, lines
            )
    return out


def _r_pairs(files: Mapping[str, ExportsFile | None]) -> set[RPair]:
    return {(f.owner, p, c) for f in files.values() if f is not None for p, c in f.pairs()}


R_PAIR = st.tuples(st.sampled_from(R_PROJECTS), st.sampled_from(R_PATHS), st.sampled_from(R_IPS))


@seed(SEED)
@settings(max_examples=400, deadline=None, database=None)
@given(
    restored=st.sets(R_PAIR, max_size=12),
    in_force=st.sets(R_PAIR, max_size=12),
    instance_of=st.lists(st.sampled_from((None, *R_PROJECTS)), min_size=6, max_size=6),
    served=st.lists(st.sets(st.sampled_from(R_PATHS), max_size=2), min_size=3, max_size=3),
    unsafe=st.sets(st.sampled_from(R_PATHS), max_size=1),
    force=st.booleans(),
    fraction=st.sampled_from((0.0, 0.25, 0.5)),
    min_count=st.sampled_from((0, 1, 3)),
)
def test_restore_properties(
    restored: set[RPair],
    in_force: set[RPair],
    instance_of: list[str | None],
    served: list[set[str]],
    unsafe: set[str],
    force: bool,
    fraction: float,
    min_count: int,
) -> None:
    """Rollback's pure rules (decide/restore.py) over random entries, files in force,
    complete listings and projects files, judged from the rules, not from the code:

    * a restore brings back only pairs of the entry, for the project that had them;
    * never an address the listing shows on another project's instance, nor one another
      project's file in force exports, nor one two restored projects share without the
      listing saying whose it is;
    * never a path the projects file does not serve for that project now, nor an unsafe one;
    * without ``force``, never more removals than the bound (more than
      ``max_removal_fraction`` of the pairs in force and more than ``min_removal_count``),
      and when it refuses, the forced restore is indeed beyond the bound.
    """
    owner_of = {ip: p for ip, p in zip(R_IPS, instance_of, strict=True) if p is not None}
    snapshot = InventorySnapshot(
        source="test",
        projects={p: ProjectRecord(f"id-{p}", p, True) for p in R_PROJECTS},
        instances={
            p: tuple(
                InstanceRecord(f"i-{ip}", ip, p, "ACTIVE", (ipaddress.ip_address(ip),))
                for ip, q in sorted(owner_of.items())
                if q == p
            )
            for p in R_PROJECTS
        },
    )
    inp = RestoreInput(
        entry_id=7,
        restored=_r_files(restored),
        in_force=_r_files(in_force),
        snapshot=snapshot,
        known_ids={},
        private={
            p: tuple(ServedExport(p, f"v{i}", x, R_OPTS) for i, x in enumerate(sorted(paths)))
            for p, paths in zip(R_PROJECTS, served, strict=True)
        },
        unsafe_paths={x: "a symlink" for x in unsafe},
        force=force,
        max_removal_fraction=fraction,
        min_removal_count=min_count,
    )
    now = _r_pairs(inp.in_force)
    try:
        result = restore(inp)
    except UsageError:
        assert not force, "a forced restore with a complete listing refused"
        lost = now - _r_pairs(restore(replace(inp, force=True)).files)
        assert len(lost) > fraction * len(now) and len(lost) > min_count, (
            f"refused though {len(lost)} of {len(now)} removals are within the bound"
        )
        return
    kept = _r_pairs(result.files)
    assert kept <= restored, f"restored pairs that the entry did not have: {kept - restored}"
    for project, path, client in sorted(kept):
        other = owner_of.get(client)
        assert other in (None, project), (
            f"{client} restored to {project} but the listing shows it on {other}'s instance"
        )
        others_now = {q for q, _, c in in_force if c == client} - {project}
        assert not others_now, f"{client} restored to {project}, in force for {others_now}"
        if other is None:
            sharing = {q for q, _, c in restored if c == client} - {project}
            assert not sharing, f"{client} restored to both {project} and {sharing}"
        assert path in served[R_PROJECTS.index(project)], (
            f"{path} restored to {project}, which the projects file does not serve it for"
        )
        assert path not in unsafe, f"unsafe path {path} restored"
    if not force:
        lost = now - kept
        assert not (len(lost) > fraction * len(now) and len(lost) > min_count), (
            f"{len(lost)} of {len(now)} pairs removed without force, beyond the bound"
        )
