"""Desired exports and the plan that gets there, under the fail-static rules (pure).

Inputs are values read elsewhere: what this server serves, an inventory snapshot with
completeness per project, the managed files in force, the removal counters.  The rules:

* a project whose data is not complete keeps exactly the pairs in force for it
  (``unknown-project``); an incomplete project listing changes nobody (``unknown-inventory``);
* a pair leaves only after ``confirmations`` consecutive complete cycles without it
  (``pending-confirmation``); incomplete cycles neither count nor reset;
* maintenance holds removals, ``freeze`` holds everything, and so does the marker a
  rollback leaves until ``release`` (``rollback-hold``); conflict removals go through all;
* removals beyond ``max_removal_fraction`` of the pairs in force (and more than
  ``min_removal_count``) are held (``too-much-change``) unless forced;
* a path that does not exist holds the additions to it (``path-missing``);
* a project file that exists but is not ours is left alone (``unmanaged-conflict``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from ..model import (
    EXPORTS_SUFFIX,
    PUBLIC_FILE_PREFIX,
    ExportLine,
    ExportsFile,
    InventorySnapshot,
    Maintenance,
    PairKey,
    PublicExport,
    ServedExport,
    sorted_clients,
)
from .lifecycle import Memory, Status, assess, shrink
from .plan import Action, Change, Hold, Plan, Reason

PUBLIC_OWNER_PREFIX = "public:"


@dataclass(frozen=True)
class Policy:
    confirmations: int = 3
    max_removal_fraction: float = 0.25
    min_removal_count: int = 10
    maintenance: Maintenance = Maintenance.OFF
    force: bool = False  # releases too-much-change and inventory-shrink, nothing else
    removal_min_age: float = 0.0  # a deleted project must be absent at least this long
    disabled_projects: str = "keep"  # keep | remove
    # set (to a description) after ``rollback`` until ``release``: hold like freeze
    rollback_hold: str | None = None

    @property
    def frozen(self) -> tuple[Reason, str] | None:
        """Why every change but a conflict removal holds, or None."""
        if self.rollback_hold is not None:
            return Reason.ROLLBACK_HOLD, self.rollback_hold
        if self.maintenance is Maintenance.FREEZE:
            return Reason.FREEZE, "maintenance flag says freeze"
        return None


@dataclass(frozen=True)
class DecideInput:
    private: Mapping[str, tuple[ServedExport, ...]]  # project -> its exports on this server
    public: tuple[PublicExport, ...]
    snapshot: InventorySnapshot
    in_force: Mapping[str, ExportsFile]  # filename -> managed file in force
    unmanaged: frozenset[str] = frozenset()  # *.exports filenames present that are not ours
    counters: Mapping[PairKey, int] = field(default_factory=dict)
    missing_paths: frozenset[str] = frozenset()
    state_problem: str | None = None  # the counters could not be read (kept aside)
    memory: Memory = field(default_factory=Memory)
    now: float = 0.0  # the cycle's time (seconds since the epoch), for ages


def project_filename(project: str) -> str:
    return project + EXPORTS_SUFFIX


def public_filename(name: str) -> str:
    return PUBLIC_FILE_PREFIX + name + EXPORTS_SUFFIX


@dataclass
class _Path:
    """Working state for one path of one managed file."""

    options: str | None  # target options (None: path no longer served)
    current_options: str | None
    current: set[str]
    result: set[str]  # clients after this plan


@dataclass
class _Work:
    changes: list[Change] = field(default_factory=list)
    holds: list[Hold] = field(default_factory=list)
    candidates: list[Change] = field(default_factory=list)  # removals that may go now
    counters: dict[PairKey, int] = field(default_factory=dict)


def decide(inp: DecideInput, policy: Policy) -> Plan:
    snap = inp.snapshot
    counting = snap.listing_complete and policy.frozen is None
    work = _Work()
    files: dict[str, ExportsFile | None] = {}
    paths_by_file: dict[str, dict[str, _Path]] = {}
    notes: list[str] = []
    in_force_pairs = sum(len(f.pairs()) for f in inp.in_force.values())

    if not snap.listing_complete:
        work.holds.append(
            Hold(Reason.UNKNOWN_INVENTORY, detail=snap.problem or "project listing incomplete")
        )
    if inp.state_problem:
        work.holds.append(Hold(Reason.STATE_CORRUPT, detail=inp.state_problem))
    if policy.rollback_hold is not None:  # shown even when nothing is waiting
        work.holds.append(Hold(Reason.ROLLBACK_HOLD, detail=policy.rollback_hold))

    project_names = set(inp.private) | {
        f.owner for f in inp.in_force.values() if f.kind == "project"
    }
    verdicts, memory, renames = assess(
        project_names,
        snap,
        inp.memory,
        confirmations=policy.confirmations,
        min_age=policy.removal_min_age,
        now=inp.now,
        counting=counting,
    )
    notes.extend(renames)
    shrink_detail, counts = shrink(
        snap, inp.memory, fraction=policy.max_removal_fraction, min_count=policy.min_removal_count
    )
    deleted: set[str] = set()
    moved: set[str] = set()  # renamed in Keystone and in the projects file: the file goes
    listed_ids = {r.name: r.id for r in snap.projects.values()} if snap.projects else {}

    def _moves(client: str, new_names: set[str]) -> bool:
        """The address will be exported under the new name in this same apply."""
        for n in new_names:
            rec = snap.projects.get(n) if snap.projects else None
            if rec is None or not snap.project_complete(n) or claims.get(client) != {n}:
                continue
            if rec.enabled or policy.disabled_projects == "keep":
                paths = {e.path for e in inp.private.get(n, ())}
                if paths and not paths & inp.missing_paths:
                    return True
        return False

    def aliases(name: str) -> set[str]:
        """The names one project has in this listing (a renamed project has two)."""
        pid = listed_ids.get(name) or memory.known_ids.get(name)
        return {name} | {n for n, i in listed_ids.items() if pid is not None and i == pid}

    # An address shown (in a complete listing) on an instance of project Q may not stay
    # in any other project's private exports: it leaves them at once (ip-conflict).
    claims: dict[str, set[str]] = {}
    if snap.listing_complete:
        for project, insts in snap.instances.items():
            for inst in insts:
                for addr in inst.addresses:
                    claims.setdefault(str(addr), set()).add(project)
    ours = set(inp.private) | {f.owner for f in inp.in_force.values() if f.kind == "project"}
    for ip, claimants in sorted(claims.items()):
        if len(claimants) > 1 and claimants & ours:
            work.holds.append(
                Hold(
                    Reason.IP_CONFLICT,
                    client=ip,
                    detail=f"claimed by projects {', '.join(sorted(claimants))}: "
                    "exported for none of them",
                )
            )

    # ---------------------------------------------------------------- owners to consider
    owners: dict[str, tuple[str, str]] = {}  # filename -> (kind, owner)
    for project in inp.private:
        owners[project_filename(project)] = ("project", project)
    for pub in inp.public:
        owners[public_filename(pub.name)] = ("public", pub.name)
    for fname, f in inp.in_force.items():
        owners.setdefault(fname, (f.kind, f.owner))

    for fname, (kind, owner) in sorted(owners.items()):
        label = owner if kind == "project" else PUBLIC_OWNER_PREFIX + owner
        if fname in inp.unmanaged:
            work.holds.append(
                Hold(
                    Reason.UNMANAGED_CONFLICT,
                    project=label,
                    detail=f"{fname} exists without the nfs-exportd header; left alone",
                )
            )
            continue
        current_file = inp.in_force.get(fname)
        current = {ln.path: ln for ln in current_file.lines} if current_file else {}
        target_opts: dict[str, str] = {}
        desired: dict[str, set[str]] = {}
        keep_all: Reason | None = None
        keep_detail = ""
        quiet = False  # keep what is in force without a hold (policy says keep anyway)
        gone_reason = Reason.INSTANCE_GONE if kind == "project" else Reason.NOT_SERVED
        if kind == "project":
            for exp in inp.private.get(owner, ()):
                target_opts[exp.path] = exp.options
            verdict = verdicts[owner]
            if verdict.status is Status.UNKNOWN_LISTING:
                keep_all, keep_detail = Reason.UNKNOWN_INVENTORY, "project listing unknown"
            elif (
                verdict.status is Status.RENAMED
                and owner not in inp.private
                and ((aliases(owner) - {owner}) & set(inp.private))
            ):
                moved.add(owner)  # the projects file follows the new name: move there
            elif verdict.status is Status.UNKNOWN and _disabled(snap, owner):
                # A disabled project's instances often cannot be read at all (per-project
                # mode: no token for it); the listing alone decides what policy wants.
                if policy.disabled_projects == "remove":
                    gone_reason = Reason.PROJECT_DISABLED
                    desired = {p: set() for p in target_opts}
                else:
                    keep_all, quiet = Reason.UNKNOWN_PROJECT, True
                    notes.append(
                        f"project {owner} is disabled and its instances could not be read "
                        f"({verdict.detail}); its exports in force are kept "
                        "(safety.disabled_projects: keep)"
                    )
            elif verdict.status in (Status.UNKNOWN, Status.RENAMED):
                keep_all, keep_detail = Reason.UNKNOWN_PROJECT, verdict.detail
            elif verdict.status is Status.ABSENT:
                keep_all, keep_detail = Reason.PENDING_CONFIRMATION, verdict.detail
            elif verdict.status is Status.DELETED:
                deleted.add(owner)
                gone_reason = Reason.PROJECT_DELETED
                desired = {p: set() for p in target_opts}
            else:
                assert snap.projects is not None
                if not snap.projects[owner].enabled and policy.disabled_projects == "remove":
                    gone_reason = Reason.PROJECT_DISABLED
                    desired = {p: set() for p in target_opts}
                else:
                    ips = {str(a) for i in snap.instances.get(owner, ()) for a in i.addresses}
                    ips = {ip for ip in ips if claims.get(ip, set()) == {owner}}
                    desired = {p: set(ips) for p in target_opts}
        else:
            for pub in inp.public:
                if pub.name == owner:
                    target_opts[pub.path] = pub.options
                    desired[pub.path] = set(pub.clients)

        paths: dict[str, _Path] = {}
        for path in sorted(set(target_opts) | set(current)):
            cur = current.get(path)
            paths[path] = _Path(
                options=target_opts.get(path),
                current_options=cur.options if cur else None,
                current=set(cur.clients) if cur else set(),
                result=set(cur.clients) if cur else set(),
            )
        paths_by_file[fname] = paths

        if kind == "project":
            for path, st in paths.items():
                for client in sorted_clients(st.current):
                    others = claims.get(client, set()) - aliases(owner)
                    if others:
                        work.changes.append(
                            Change(label, path, client, Action.REMOVE, Reason.IP_CONFLICT)
                        )
                        st.current.discard(client)

        if keep_all is not None:
            # Not complete: keep exactly what is in force; carry counters unchanged.
            for path, st in paths.items():
                if st.current_options is not None:
                    st.options = st.current_options  # not even options change
                if keep_all is Reason.PENDING_CONFIRMATION:  # absent project: per pair
                    for client in sorted_clients(st.current):
                        work.holds.append(
                            Hold(keep_all, label, path, client, keep_detail, Action.REMOVE)
                        )
                elif (st.options is not None or st.current) and not quiet:
                    work.holds.append(Hold(keep_all, project=label, path=path, detail=keep_detail))
                for client in st.current:
                    key = PairKey(label, path, client)
                    if key in inp.counters:
                        work.counters[key] = inp.counters[key]
            continue

        for path, st in paths.items():
            want = desired.get(path, set())
            # new-export: the path became served; new-instance: a new address for it
            new_path = path not in current and (current_file is None or bool(current))
            for client in sorted_clients(want - st.current):
                reason = Reason.NEW_EXPORT if new_path else Reason.NEW_INSTANCE
                _add(work, inp, policy, Change(label, path, client, Action.ADD, reason), st)
            if st.options is not None and st.current_options not in (None, st.options):
                for client in sorted_clients(st.current):  # pending removals included
                    change = Change(label, path, client, Action.UPDATE, Reason.OPTIONS_CHANGED)
                    _add(work, inp, policy, change, st)
            served = st.options is not None or owner in moved
            reason = gone_reason if served else Reason.NOT_SERVED
            for client in sorted_clients(st.current - want):
                key = PairKey(label, path, client)
                seen = inp.counters.get(key, 0)
                count = seen + 1 if counting else seen
                change = Change(label, path, client, Action.REMOVE, reason)
                if policy.frozen is not None:
                    work.holds.append(_hold(change, *policy.frozen))
                    if seen:
                        work.counters[key] = seen
                elif owner in moved and _moves(client, aliases(owner) & set(inp.private)):
                    # the address moves to the new name's file in this same apply
                    work.changes.append(replace(change, reason=Reason.PROJECT_RENAMED))
                elif owner in deleted and kind == "project":
                    work.candidates.append(change)  # confirmed by the project's absence
                elif count >= policy.confirmations:
                    work.counters[key] = count
                    work.candidates.append(change)
                else:
                    if count:
                        work.counters[key] = count
                    work.holds.append(
                        Hold(
                            Reason.PENDING_CONFIRMATION,
                            label,
                            path,
                            client,
                            f"{count} of {policy.confirmations} confirmations ({reason.value})",
                            Action.REMOVE,
                        )
                    )

    shrink_held = _bound_removals(work, inp, policy, in_force_pairs, shrink_detail)

    # ---------------------------------------------------------------- target files
    removed = {c.key for c in work.changes if c.action is Action.REMOVE}
    for key in removed:
        work.counters.pop(key, None)
    work.changes = [c for c in work.changes if not (c.action is Action.UPDATE and c.key in removed)]
    frozen = policy.frozen is not None
    for fname, paths in paths_by_file.items():
        kind, owner = owners[fname]
        label = owner if kind == "project" else PUBLIC_OWNER_PREFIX + owner
        lines: list[ExportLine] = []
        for path, st in sorted(paths.items()):
            result = {c for c in st.result if PairKey(label, path, c) not in removed}
            if not result:
                continue
            keep_options = frozen or path in inp.missing_paths or st.options is None
            options = (st.current_options if keep_options else st.options) or st.options
            assert options is not None
            lines.append(ExportLine(path, options, sorted_clients(result)))
        configured = (kind == "project" and owner in inp.private) or (
            kind == "public" and any(p.name == owner for p in inp.public)
        )
        if not lines and (not configured or (kind == "project" and owner in deleted)):
            files[fname] = None  # nothing left and nothing served (or deleted): the file goes
            if fname in inp.in_force:
                notes.append(f"{fname}: no longer served and empty; removed")
        else:
            files[fname] = ExportsFile(fname, kind, owner, tuple(lines))

    keep_baseline = shrink_detail is not None and not policy.force
    memory = Memory(
        absent={k: v for k, v in memory.absent.items() if k in project_names},
        known_ids=memory.known_ids,
        instances=inp.memory.instances if (keep_baseline or not counting) else counts,
    )
    if shrink_detail and not shrink_held and keep_baseline:
        notes.append(f"inventory shrink: {shrink_detail}")
    return Plan(
        changes=tuple(sorted(work.changes)),
        holds=tuple(sorted(work.holds, key=Hold.sort_key)),
        files=files,
        counters=work.counters if counting else dict(inp.counters),
        counting=counting,
        in_force_pairs=in_force_pairs,
        memory=memory if counting else inp.memory,
        notes=tuple(notes),
    )


def _disabled(snap: InventorySnapshot, name: str) -> bool:
    """The complete listing shows the project, disabled."""
    rec = snap.projects.get(name) if snap.projects is not None else None
    return snap.listing_complete and rec is not None and not rec.enabled


def _add(work: _Work, inp: DecideInput, policy: Policy, change: Change, st: _Path) -> None:
    """An addition or option update: applies unless frozen or its path is missing."""
    if policy.frozen is not None:
        work.holds.append(_hold(change, *policy.frozen))
    elif change.path in inp.missing_paths:
        work.holds.append(_hold(change, Reason.PATH_MISSING, f"{change.path} does not exist"))
    else:
        work.changes.append(change)
        if change.action is Action.ADD:
            st.result.add(change.client)


def _hold(change: Change, reason: Reason, detail: str) -> Hold:
    return Hold(reason, change.project, change.path, change.client, detail, change.action)


def _bound_removals(
    work: _Work,
    inp: DecideInput,
    policy: Policy,
    in_force_pairs: int,
    shrink_detail: str | None,
) -> bool:
    """Confirmed removals go through maintenance, state and the bounds; True when the
    inventory-shrink bound held them."""
    cands = work.candidates
    if not cands:
        return False
    if policy.frozen is not None:
        work.holds.extend(_hold(c, *policy.frozen) for c in cands)
        return False
    if policy.maintenance is Maintenance.HOLD:
        work.holds.extend(_hold(c, Reason.MAINTENANCE, "maintenance flag is set") for c in cands)
        return False
    if inp.state_problem:
        work.holds.extend(
            _hold(c, Reason.STATE_CORRUPT, "removal counters are being rebuilt") for c in cands
        )
        return False
    limit = policy.max_removal_fraction * in_force_pairs
    if len(cands) > limit and len(cands) > policy.min_removal_count and not policy.force:
        detail = (
            f"{len(cands)} removals of {in_force_pairs} pairs in force exceed "
            f"max_removal_fraction {policy.max_removal_fraction} (and min_removal_count "
            f"{policy.min_removal_count}); review the plan and run sync --force"
        )
        work.holds.extend(_hold(c, Reason.TOO_MUCH_CHANGE, detail) for c in cands)
        return False
    if shrink_detail and not policy.force:
        work.holds.extend(_hold(c, Reason.INVENTORY_SHRINK, shrink_detail) for c in cands)
        return True
    work.changes.extend(cands)
    return False
