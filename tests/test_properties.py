"""Property-based tests of the decide layer (issue 4): random clouds, random sequences of
changes and faults over many cycles, checked against an independent model.

A hypothesis state machine holds a small random cloud (projects with ids, enabled flags,
instances with fixed IPs drawn from a pool of eight, so that addresses are reused), the
projects file (which projects have paths served here), the managed files in force, the
removal counters and lifecycle memory, and a clock.  Its rules change the cloud, the
projects file and the maintenance flag, switch faults on and off, lose the state, and run
cycles: build a ``DecideInput``, call ``decide``, then apply the plan exactly as
``cycle.py`` does (files in force := ``plan.files``, None deletes; counters and memory :=
the plan's when ``plan.counting``).

Whether a plan is right is judged by :class:`Model`, written from the rules in DESIGN.md
and issue 4, never from the plan's reasons or holds.  The model sees only what the daemon
was shown (the snapshot given to ``decide``), so a complete-looking lie (an empty listing)
counts as evidence here exactly as it does for the daemon; what makes such a lie harmless is
the confirmations (and the bounds), which is what the invariants check.

Invariants, after every cycle:

1. no IP is in the private exports of two projects (projects by Keystone id);
2. no IP is exported for a project when the cycle's complete listing shows it on an
   instance of another project;
3. a pair in force leaves only by one of the rules: ``confirmations`` consecutive complete
   cycles of its project without it (counted by the model, per pair), a conflict (its IP
   shown in another project by a complete listing), or its project confirmed deleted
   (absent, by id, from ``confirmations`` consecutive complete listings spanning
   ``removal_min_age``), or a move to the file of the project's new name (the pair stays
   in force there); never under maintenance (except a conflict), never from a project
   whose data is unknown; without ``force`` never more than the removal bound;
   a pair enters only when the cycle shows its IP on an instance of its project alone;
4. a repeated cycle with unchanged inputs adds nothing, and when it plans no change it
   writes no file; repeating converges within ``confirmations + 1`` cycles;
5. every reason is in the closed list README.md documents (which must hold DESIGN.md's),
   every private client is a canonical IP literal, and
   the files differ from those in force by exactly the planned changes.

Liveness (so that a daemon that never changes anything fails): after a cycle with complete
data every pair the model wants is in force (unless frozen), and a forced cycle out of
maintenance removes every pair whose removal the model has confirmed (counting afresh after
a listing without its project, the lower of the two readings the rules allow).

Renames are in a second machine (:class:`TestDecideWithRenames`): a renamed project is the
same project (same id), so its addresses shown under the new name are no conflict, and a
listing that shows its id under the new name breaks a run of absent listings.

``test_a_listing_of_the_renamed_id_breaks_a_run_of_absent_listings`` pins one example the
renames machine found under a random seed, so that CI checks it whatever the fixed seed.

The planted-bug check of issue 4 (copy ``src`` aside, make ``reconcile.py`` treat an
incomplete project as empty, ignore conflicts or ignore confirmations, and run this file
with ``PYTHONPATH`` pointing at the copy) must make ``TestDecideProperties`` fail.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from hypothesis import HealthCheck, Phase, currently_in_test_context, event, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    precondition,
    rule,
)

from nfs_exportd.decide import Action, DecideInput, Plan, Policy, decide
from nfs_exportd.decide.lifecycle import Memory
from nfs_exportd.exportsfile import render
from nfs_exportd.model import (
    ExportsFile,
    InstanceRecord,
    InventorySnapshot,
    Maintenance,
    PairKey,
    ProjectRecord,
    PublicExport,
    ServedExport,
)

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
PIDS = ("id0", "id1", "id2", "id3", "id4")
PUBLIC = PublicExport("scratch", "/srv/scratch", ("172.16.0.0/21",), OPTIONS)
PUBLIC_FILE = "public-scratch.exports"
PUBLIC_LABEL = "public:scratch"
START = 1_000_000.0

# The reasons DESIGN.md requires; the closed list itself is the one README.md documents
# (DESIGN.md: extend the contract, and document the extension).
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


def project_paths(pid: str) -> tuple[str, ...]:
    return (f"/srv/{pid}/home", f"/srv/{pid}/data")


def private_pairs(files: dict[str, ExportsFile]) -> set[Pair]:
    return {
        (f.owner, path, client)
        for f in files.values()
        if f.kind == "project"
        for path, client in f.pairs()
    }


def labelled_pairs(files: dict[str, ExportsFile]) -> set[Pair]:
    """Every pair, with the owner label a Change uses (public files as ``public:NAME``)."""
    out = set()
    for f in files.values():
        label = f.owner if f.kind == "project" else "public:" + f.owner
        out |= {(label, path, client) for path, client in f.pairs()}
    return out


# --------------------------------------------------------------------------- the model


@dataclass
class Seen:
    """What one cycle's snapshot shows, read by the model (not by the planner)."""

    complete: bool
    counting: bool  # complete data and not frozen: evidence may accumulate
    listed: dict[str, ProjectRecord]
    incomplete: frozenset[str]
    shown: dict[str, set[str]]  # ip -> names of the projects whose instances show it

    @classmethod
    def of(cls, snap: InventorySnapshot, maintenance: Maintenance) -> Seen:
        complete = snap.projects is not None and snap.problem is None
        shown: dict[str, set[str]] = {}
        if complete:
            for name, insts in snap.instances.items():
                for inst in insts:
                    for addr in inst.addresses:
                        shown.setdefault(str(addr), set()).add(name)
        return cls(
            complete=complete,
            counting=complete and maintenance is not Maintenance.FREEZE,
            listed=dict(snap.projects or {}) if complete else {},
            incomplete=frozenset(snap.incomplete),
            shown=shown,
        )

    def project_complete(self, name: str) -> bool:
        return self.complete and name in self.listed and name not in self.incomplete


@dataclass
class Model:
    """The rules, written from DESIGN.md and issue 4, independently of the planner."""

    confirmations: int
    min_age: float
    disabled_remove: bool
    missing: dict[Pair, int] = field(default_factory=dict)  # complete cycles without a pair
    # the same, counted afresh whenever its project is not listed: the rules let a daemon
    # carry a count across such listings or start it again, so only this lower count is
    # owed by liveness, while the higher one bounds what may be removed
    missing_low: dict[Pair, int] = field(default_factory=dict)
    absent: dict[str, tuple[float, int]] = field(default_factory=dict)  # since, listings
    known_ids: dict[str, str] = field(default_factory=dict)  # name -> id, as the daemon saw

    def forget(self) -> None:
        """The daemon's state is gone: everything counts afresh."""
        self.missing.clear()
        self.missing_low.clear()
        self.absent.clear()
        self.known_ids.clear()

    def listed_as(self, seen: Seen, name: str) -> str | None:
        """The name the project is listed under now: its own, or (renamed) the name its
        id, as the daemon knows it, has now; None when it is not listed."""
        if name in seen.listed:
            return name
        own = self.known_ids.get(name)
        return next((q for q, rec in seen.listed.items() if rec.id == own), None)

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
        rec = seen.listed.get(name)
        return self.disabled_remove and seen.complete and rec is not None and not rec.enabled

    def wanted(self, seen: Seen, served: dict[str, tuple[str, ...]], pair: Pair) -> bool:
        """The cycle shows the pair's IP on the project's instances alone, its path is
        served (under the old or the new name), and a disabled project is not removed."""
        name, path, ip = pair
        now = self.listed_as(seen, name)
        if now is None or not seen.project_complete(now):
            return False
        if path not in served.get(name, ()) + served.get(now, ()):
            return False
        if self.disabled_remove and not seen.listed[now].enabled:
            return False
        return seen.shown.get(ip, set()) == {now}

    def all_wanted(self, seen: Seen, served: dict[str, tuple[str, ...]]) -> set[Pair]:
        """What must be in force after the cycle: the projects file's projects listed under
        the same name (one renamed in Keystone only is held until the file follows)."""
        out = set()
        for name, paths in served.items():
            if name not in seen.listed:
                continue
            for ip in seen.shown:
                for path in paths:
                    if self.wanted(seen, served, (name, path, ip)):
                        out.add((name, path, ip))
        return out

    def id_of(self, seen: Seen, name: str) -> str | None:
        """The Keystone id the daemon can know for a name: listed now, or remembered."""
        if name in seen.listed:
            return seen.listed[name].id
        return self.known_ids.get(name)

    def conflict(self, seen: Seen, pair: Pair) -> bool:
        """The complete listing shows the pair's IP on another project's instance (a project
        listed under a new name with the same id is the same project)."""
        name, _, ip = pair
        own = self.id_of(seen, name)
        for other in seen.shown.get(ip, set()):
            if other == name:
                continue
            if own is not None and other in seen.listed and seen.listed[other].id == own:
                continue  # the same project under its new name
            return True
        return False

    def advance(
        self,
        seen: Seen,
        served: dict[str, tuple[str, ...]],
        in_force: set[Pair],
        names: set[str],
        now: float,
    ) -> None:
        """Count this cycle's evidence (before the plan is judged)."""
        if not seen.counting:
            return  # incomplete cycles neither count nor reset; neither do frozen ones
        for pair in in_force:
            if pair[0] not in seen.listed:
                self.missing_low[pair] = 0  # (renamed pairs: no liveness owed)
            if not self.judged(seen, pair[0]):
                continue  # unknown or absent: this project's pairs are not judged
            if self.wanted(seen, served, pair):
                self.missing[pair] = self.missing_low[pair] = 0
            else:
                self.missing[pair] = self.missing.get(pair, 0) + 1
                if pair[0] in seen.listed:
                    self.missing_low[pair] = self.missing_low.get(pair, 0) + 1
        listed_ids = {rec.id for rec in seen.listed.values()}
        for name in names | set(self.absent):
            if name in seen.listed or self.known_ids.get(name) in listed_ids:
                self.absent.pop(name, None)  # listed (maybe under a new name): not absent
            else:
                since, cycles = self.absent.get(name, (now, 0))
                self.absent[name] = (since, cycles + 1)

    def remember(self, seen: Seen, in_force: set[Pair]) -> None:
        """After the cycle: ids seen in a counting listing; counts only for pairs in force."""
        if seen.counting:
            self.known_ids.update({name: rec.id for name, rec in seen.listed.items()})
        self.missing = {p: n for p, n in self.missing.items() if p in in_force}
        self.missing_low = {p: n for p, n in self.missing_low.items() if p in in_force}

    def confirmed(self, seen: Seen, pair: Pair, *, low: bool = False) -> bool:
        counts = self.missing_low if low else self.missing
        return (
            seen.counting
            and self.judged(seen, pair[0])
            and counts.get(pair, 0) >= self.confirmations
        )

    def deleted(self, seen: Seen, name: str, now: float) -> bool:
        if not seen.counting or name not in self.absent:
            return False
        since, cycles = self.absent[name]
        return cycles >= self.confirmations and now - since >= self.min_age


# --------------------------------------------------------------------------- the machine


@dataclass
class CloudProject:
    name: str
    enabled: bool = True
    exists: bool = True


class DecideMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.cloud: dict[str, CloudProject] = {}
        self.instances: dict[str, tuple[str, str]] = {}  # instance id -> (project id, ip)
        self.freed: list[tuple[str, str]] = []  # (ip, project id) of deleted instances
        self.served: dict[str, tuple[str, ...]] = {}  # the projects file: name -> paths
        self.name_ids: dict[str, str] = {}  # every project name ever used -> its id
        self.next_instance = 0
        self.renames = 0
        # faults (sticky until switched off or healed)
        self.listing_unknown = False
        self.incomplete: dict[str, str] = {}  # project id -> "none" | "some" | "all" shown
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
        self.last: tuple[InventorySnapshot, dict[str, tuple[str, ...]], Policy] | None = None

    # ------------------------------------------------------------------ setup

    @initialize(
        confirmations=st.sampled_from([3, 2, 1]),
        min_age=st.sampled_from([0.0, 90.0]),
        disabled=st.sampled_from(["keep", "remove"]),
        min_count=st.sampled_from([10, 2, 0]),
        fraction=st.sampled_from([0.25, 0.5]),
        served=st.lists(st.integers(1, 2), min_size=len(PIDS) - 1, max_size=len(PIDS) - 1),
        owners=st.lists(st.sampled_from((None, *PIDS)), min_size=len(IPS), max_size=len(IPS)),
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
    ) -> None:
        """A healthy cloud: each address of the pool on an instance of one project (or
        free), the projects file naming the first four projects, then the first sync."""
        self.policy = Policy(
            confirmations=confirmations,
            max_removal_fraction=fraction,
            min_removal_count=min_count,
            removal_min_age=min_age,
            disabled_projects=disabled,
        )
        self.model = Model(confirmations, min_age, disabled == "remove")
        for i, pid in enumerate(PIDS):
            name = f"p{i}"
            self.cloud[pid] = CloudProject(name)
            self.name_ids[name] = pid
            if i < len(served):  # the last project has no volumes here
                self.served[name] = project_paths(pid)[: served[i]]
        for ip, owner in zip(IPS, owners, strict=True):
            if owner is not None:
                self._create(owner, ip)
        self.run_cycles(force=False, dt=0.0, times=1)  # the first sync, on a healthy cloud

    def _create(self, pid: str, ip: str) -> None:
        self.instances[f"i{self.next_instance}"] = (pid, ip)
        self.next_instance += 1

    def _delete(self, iid: str) -> None:
        pid, ip = self.instances.pop(iid)
        self.freed.append((ip, pid))

    # ------------------------------------------------------------------ the cloud

    @rule(pid=st.sampled_from(PIDS), ip=st.sampled_from(IPS))
    def create_instance(self, pid: str, ip: str) -> None:
        """Any address of the pool: it may be in use by another project (two claims)."""
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
        choices = sorted({ip for ip, old in self.freed if old != pid})
        if choices and self.cloud[pid].exists:
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
            self._create(pid, data.draw(st.sampled_from(IPS), label="new ip"))
        else:
            self._create(pid, ip)
            self._delete(iid)

    @rule(pid=st.sampled_from(PIDS))
    def delete_project(self, pid: str) -> None:
        """Deleted in Keystone; Nova deletes its instances.  The projects file still
        names it (nobody told the NFS admins)."""
        self.cloud[pid].exists = False
        for iid in sorted(self.instances):
            if self.instances[iid][0] == pid:
                self._delete(iid)

    @rule(pid=st.sampled_from(PIDS))
    def toggle_enabled(self, pid: str) -> None:
        self.cloud[pid].enabled = not self.cloud[pid].enabled

    @rule(pid=st.sampled_from(PIDS))
    def toggle_served(self, pid: str) -> None:
        """The projects file starts or stops naming the project's volumes on this server."""
        name = self.cloud[pid].name
        if name in self.served:
            del self.served[name]
        else:
            self.served[name] = project_paths(pid)

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
        """A source that answers complete but empty (no servers, or no projects at all):
        the daemon cannot tell it from the truth; confirmations and bounds must absorb it."""
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
        self.model.forget()

    # ------------------------------------------------------------------ cycles

    def snapshot(self) -> InventorySnapshot:
        if self.listing_unknown:
            return InventorySnapshot.unknown("prop", "keystone: 401 Unauthorized")
        if self.lie == "no-projects":
            return InventorySnapshot(source="prop", projects={}, instances={})
        projects = {
            p.name: ProjectRecord(pid, p.name, p.enabled)
            for pid, p in sorted(self.cloud.items())
            if p.exists
        }
        instances: dict[str, list[InstanceRecord]] = {}
        if self.lie != "no-servers":
            for iid, (pid, ip) in sorted(self.instances.items()):
                name = self.cloud[pid].name
                rec = InstanceRecord(
                    iid, f"{name}-{iid}", name, "ACTIVE", (ipaddress.ip_address(ip),)
                )
                instances.setdefault(name, []).append(rec)
        incomplete: dict[str, str] = {}
        for pid, shown in sorted(self.incomplete.items()):
            name = self.cloud[pid].name
            if name not in projects:
                continue
            incomplete[name] = "nova cell down"
            insts = instances.pop(name, [])
            if shown == "some":
                instances[name] = insts[::2]
            elif shown == "all":
                instances[name] = insts
        return InventorySnapshot(
            source="prop",
            projects=projects,
            instances={k: tuple(v) for k, v in instances.items() if v},
            incomplete=incomplete,
        )

    def private(self, served: dict[str, tuple[str, ...]]) -> dict[str, tuple[ServedExport, ...]]:
        return {
            name: tuple(ServedExport(name, p.rsplit("/", 1)[1], p, OPTIONS) for p in paths)
            for name, paths in served.items()
        }

    def decide_on(
        self, snap: InventorySnapshot, served: dict[str, tuple[str, ...]], policy: Policy
    ) -> tuple[DecideInput, Plan]:
        inp = DecideInput(
            private=self.private(served),
            public=(PUBLIC,),
            snapshot=snap,
            in_force=dict(self.in_force),
            counters=dict(self.counters),
            memory=self.memory,
            now=self.now,
        )
        return inp, decide(inp, policy)

    @rule()
    def run_cycle(self) -> None:
        """One ordinary cycle, a minute after the last one."""
        self.run_cycles(force=False, dt=60.0, times=1)

    @rule(
        force=st.sampled_from([False, False, True]),
        dt=st.sampled_from([60.0, 0.0, 30.0]),
        times=st.integers(1, 5),
    )
    def run_cycles(self, force: bool, dt: float, times: int) -> None:
        for _ in range(times):
            self.now += dt
            policy = replace(self.policy, maintenance=self.maintenance, force=force)
            self.cycle(self.snapshot(), dict(self.served), policy)

    @precondition(lambda self: self.last is not None)
    @rule()
    def settle(self) -> None:
        """Repeat the last cycle's inputs (same snapshot, projects file, policy, time):
        after confirmations + 1 repeats every pending count has run out, so the next
        repeat is a fixed point: it plans nothing and writes nothing."""
        assert self.last is not None
        snap, served, policy = self.last
        for _ in range(self.policy.confirmations + 1):
            self.cycle(snap, served, policy)
        _, plan = self.decide_on(snap, served, policy)
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
        self, snap: InventorySnapshot, served: dict[str, tuple[str, ...]], policy: Policy
    ) -> Plan:
        self.cycles += 1
        _, plan = self.decide_on(snap, served, policy)
        _, again = self.decide_on(snap, served, policy)
        assert plan == again, "decide is not deterministic"
        self.say(
            f"cycle {self.cycles} t+{self.now - START:.0f}: "
            f"{self._describe(snap)} maint={policy.maintenance.value} force={policy.force}; "
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

        seen = Seen.of(snap, policy.maintenance)
        names = set(served) | {f.owner for f in before.values() if f.kind == "project"}
        self.model.advance(seen, served, private_pairs(before), names, self.now)
        self.record(seen, policy, private_pairs(before))
        self.check_plan(plan, before, after)
        self.check_cycle(seen, served, policy, before, after)

        # apply, as cycle.py does
        self.in_force = after
        if plan.counting:
            self.counters = dict(plan.counters)
            self.memory = plan.memory
        self.model.remember(seen, private_pairs(after))
        self.last = (snap, served, policy)
        self.check_repeat(snap, served, policy)
        return plan

    def record(self, seen: Seen, policy: Policy, in_force: set[Pair]) -> None:
        """What this run exercised, for --hypothesis-show-statistics."""
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

    def teardown(self) -> None:
        event(f"cycles: {min(self.cycles // 10 * 10, 50)}+")
        event(f"most pairs in force: {min(self.max_pairs // 4 * 4, 16)}+")
        event(f"removals: {', '.join(sorted(self.why)) or 'none'}")
        for what in sorted(self.exercised):
            event(f"with pairs in force: {what}")

    def _describe(self, snap: InventorySnapshot) -> str:
        if snap.projects is None:
            return "listing UNKNOWN"
        shown = "; ".join(
            f"{n}:{','.join(str(a) for i in snap.instances.get(n, ()) for a in i.addresses)}"
            + ("(incomplete)" if n in snap.incomplete else "")
            + ("" if r.enabled else "(disabled)")
            for n, r in sorted(snap.projects.items())
        )
        return f"listing [{shown}]"

    # ------------------------------------------------------------------ checks

    def check_plan(
        self, plan: Plan, before: dict[str, ExportsFile], after: dict[str, ExportsFile]
    ) -> None:
        """(5): closed reasons, IP literals, files = in force + planned changes."""
        for why in [c.reason.value for c in plan.changes] + [h.reason.value for h in plan.holds]:
            assert why in CONTRACT_REASONS, (
                f"(5) reason {why!r} is not in README.md's closed list of reasons"
            )
        for c in plan.changes:
            assert c.action in (Action.ADD, Action.REMOVE), f"unexpected change {c}"
        for fname, f in after.items():
            assert f.filename == fname
            for line in f.lines:
                assert line.clients, f"{fname}: a line without clients"
                if f.kind == "project":
                    addrs = [ipaddress.ip_address(c) for c in line.clients]
                    assert [str(a) for a in addrs] == list(line.clients), line
                    assert addrs == sorted(addrs, key=lambda a: (a.version, a)), line
                else:
                    for client in line.clients:
                        assert str(ipaddress.ip_network(client)) == client, line
        old, new = labelled_pairs(before), labelled_pairs(after)
        adds = {(c.project, c.path, c.client) for c in plan.changes if c.action is Action.ADD}
        rems = {(c.project, c.path, c.client) for c in plan.changes if c.action is Action.REMOVE}
        assert new - old == adds, f"files add {new - old}, changes say {adds}"
        assert old - new == rems, f"files remove {old - new}, changes say {rems}"

    def check_cycle(
        self,
        seen: Seen,
        served: dict[str, tuple[str, ...]],
        policy: Policy,
        before: dict[str, ExportsFile],
        after: dict[str, ExportsFile],
    ) -> None:
        model = self.model
        old, new = private_pairs(before), private_pairs(after)
        frozen = policy.maintenance is Maintenance.FREEZE
        off = policy.maintenance is Maintenance.OFF

        # (1) one project per IP
        owners: dict[str, set[str]] = {}
        for name, _, ip in new:
            owners.setdefault(ip, set()).add(self.name_ids[name])
        shared = {ip: ids for ip, ids in owners.items() if len(ids) > 1}
        assert not shared, f"(1) IPs in the private exports of several projects: {shared}"

        # (2) nothing exported that the complete listing shows in another project
        for name, path, ip in sorted(new):
            others = {
                q for q in seen.shown.get(ip, set()) if self.name_ids[q] != self.name_ids[name]
            }
            assert not others, (
                f"(2) {ip} stays exported for {name} ({path}) while the complete listing "
                f"shows it on an instance of {sorted(others)}"
            )

        # (3) every removal by a rule
        for pair in sorted(old - new):
            name = pair[0]
            why = []
            if model.conflict(seen, pair):
                why.append("conflict")
            if off and model.confirmed(seen, pair):
                why.append("confirmed")
            if off and model.deleted(seen, name, self.now):
                why.append("deleted")
            if any(
                (other, pair[1], pair[2]) in new
                for other in self.name_ids
                if other != name and self.name_ids[other] == self.name_ids[name]
            ):
                why.append("moved")  # to the file of the project's new name: no access lost
            self.why.update(why)
            assert why, (
                f"(3) {pair} was removed without a rule: listing complete={seen.complete}, "
                f"project complete={model.complete(seen, name)}, "
                f"maintenance={policy.maintenance.value}, "
                f"complete cycles without it={model.missing.get(pair, 0)} of "
                f"{model.confirmations}, absent={model.absent.get(name)}, "
                f"{pair[2]} shown on {self.shown_on(seen, pair[2])}"
            )
        # (3) ... and every addition
        for pair in sorted(new - old):
            assert not frozen and model.wanted(seen, served, pair), (
                f"(3) {pair} was added, but the cycle does not show {pair[2]} on an "
                f"instance of {pair[0]} alone (or the path is not served, or frozen)"
            )
        # (3) the removal bound, unless forced
        if not policy.force:
            bounded = [p for p in old - new if not seen.shown.get(p[2], set()) - {p[0]}]
            in_force = len(labelled_pairs(before))
            limit = max(policy.max_removal_fraction * in_force, policy.min_removal_count)
            assert len(bounded) <= limit, (
                f"(3) {len(bounded)} removals of {in_force} pairs in force went without "
                f"--force (bound {limit})"
            )
        # public export: as configured, never taken away
        pub_old = labelled_pairs({k: v for k, v in before.items() if k == PUBLIC_FILE})
        pub_new = labelled_pairs({k: v for k, v in after.items() if k == PUBLIC_FILE})
        assert pub_old <= pub_new, "the public export lost clients"
        if not frozen:
            assert pub_new == {(PUBLIC_LABEL, PUBLIC.path, c) for c in PUBLIC.clients}

        # liveness: what the model wants is in force ...
        if not frozen:
            missing = model.all_wanted(seen, served) - new
            assert not missing, f"(liveness) wanted but not in force: {sorted(missing)}"
        # ... and a forced cycle out of maintenance removes what the model confirmed
        if policy.force and off and seen.counting:
            late = sorted(
                p
                for p in new
                if model.confirmed(seen, p, low=True) or model.deleted(seen, p[0], self.now)
            )
            assert not late, f"(liveness) confirmed removals not done by a forced cycle: {late}"

    def shown_on(self, seen: Seen, ip: str) -> list[str]:
        return [f"{q} (id {self.name_ids[q]})" for q in sorted(seen.shown.get(ip, ()))]

    def check_repeat(
        self, snap: InventorySnapshot, served: dict[str, tuple[str, ...]], policy: Policy
    ) -> None:
        """(4) the same inputs again, on the state just applied (not applied itself): no
        addition twice; and when nothing is planned and no count advances, no write."""
        _, plan = self.decide_on(snap, served, policy)
        adds = [c for c in plan.changes if c.action is not Action.REMOVE]
        assert not adds, f"(4) a repeated cycle with unchanged inputs adds again: {adds}"
        state = (dict(plan.counters), plan.memory) if plan.counting else None
        if not plan.changes and state in (None, (self.counters, self.memory)):
            self.assert_writes_nothing(plan)

    def assert_writes_nothing(self, plan: Plan) -> None:
        for fname, f in plan.files.items():
            now = render(self.in_force[fname]) if fname in self.in_force else None
            want = render(f) if f is not None else None
            assert now == want, f"(4) a cycle that plans no change rewrites {fname}"


SETTINGS = settings(
    max_examples=400,
    stateful_step_count=50,
    deadline=None,
    derandomize=True,
    database=None,
    # no "explain" phase: on a failure it costs more than the whole run, and the shrunk
    # steps with the notes (one line per cycle) already say what happened
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


class DecideWithRenames(DecideMachine):
    """The same machine, and projects get renamed in Keystone (same id, new name), and the
    projects file may follow the rename."""

    @rule(pid=st.sampled_from(PIDS))
    def rename_project(self, pid: str) -> None:
        """Same id, new name in Keystone; the projects file still has the old name."""
        if self.cloud[pid].exists:
            self.renames += 1
            name = f"{pid}-r{self.renames}"
            self.cloud[pid].name = name
            self.name_ids[name] = pid

    @rule(pid=st.sampled_from(PIDS))
    def follow_rename(self, pid: str) -> None:
        """The projects file follows Keystone: the old name's entry now has the new name."""
        new = self.cloud[pid].name
        for name in sorted(self.served):
            if self.name_ids[name] == pid and name != new:
                self.served[new] = self.served.pop(name)


TestDecideProperties = DecideMachine.TestCase
TestDecideProperties.settings = SETTINGS
TestDecideWithRenames = DecideWithRenames.TestCase
TestDecideWithRenames.settings = SETTINGS


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
