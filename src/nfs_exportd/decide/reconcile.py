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
* a path that is not what it says (``unsafe_paths``: a symlink, a system directory)
  loses its pairs at once and gets none; one not known to be safe (``held_paths``:
  outside serve.roots, unreadable) gets none and keeps its pairs (``path-unsafe``);
* a project file that exists but is not ours is left alone (``unmanaged-conflict``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from ..errors import NfsExportdError
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
from ..validate import path_within
from .lifecycle import Memory, Status, assess, project_shrinks, shrink
from .lifecycle import aliases as project_aliases
from .plan import Action, Change, Hold, Plan, Reason

PUBLIC_OWNER_PREFIX = "public:"
FOREIGN = ""  # a claimant that is not a listed project (no project has an empty name)


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
    # project deletions (projects whose pairs go as project-deleted) allowed within
    # project_deletion_window seconds; more are held (too-much-change) unless forced
    max_project_deletions: int = 2
    project_deletion_window: float = 86400.0
    # a project whose instance count fell by more than this share and by more than
    # project_shrink_min_count instances holds its removals (inventory-shrink)
    max_project_shrink_fraction: float = 0.5
    project_shrink_min_count: int = 2
    # a complete cycle counts toward confirmations only this long after the last one
    # that counted (the caller derives it from interval_seconds; 0: every cycle counts)
    confirmation_spacing: float = 0.0

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
    # path -> why: pairs leave at once, none added (exportfs would export something else)
    unsafe_paths: Mapping[str, str] = field(default_factory=dict)
    # path -> why: none added, pairs in force kept (not known to be safe)
    held_paths: Mapping[str, str] = field(default_factory=dict)
    state_problem: str | None = None  # the counters could not be read (kept aside)
    memory: Memory = field(default_factory=Memory)
    now: float = 0.0  # the cycle's time (seconds since the epoch), for ages
    pinned_ids: Mapping[str, str] = field(default_factory=dict)  # projects file's id:


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
    deleted_now: set[str] = field(default_factory=set)  # projects whose deletion applied
    counters: dict[PairKey, int] = field(default_factory=dict)


def decide(inp: DecideInput, policy: Policy) -> Plan:
    snap = inp.snapshot
    # complete and unfrozen: evidence may be kept; it counts only when this cycle is at
    # least confirmation_spacing after the last one that counted (a burst of cycles,
    # whatever triggers it, confirms no faster than polling; a clock that went back
    # counts, once, from the new time)
    complete = snap.listing_complete and policy.frozen is None
    last = inp.memory.last_counted
    elapsed = None if last is None else inp.now - last
    spaced = elapsed is None or elapsed < 0 or elapsed >= policy.confirmation_spacing
    counting = complete and spaced
    work = _Work()
    files: dict[str, ExportsFile | None] = {}
    paths_by_file: dict[str, dict[str, _Path]] = {}
    notes: list[str] = []
    if complete and not spaced:
        notes.append(
            f"this cycle does not count toward confirmations: {elapsed:.1f} s since the "
            f"last one that did, less than confirmation_spacing_seconds "
            f"{policy.confirmation_spacing:g}"
        )
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
    # the Keystone id each project file in force records (memory lost: still bound)
    recorded = {
        f.owner: f.keystone_id
        for f in inp.in_force.values()
        if f.kind == "project" and f.keystone_id
    }
    verdicts, memory, renames = assess(
        project_names,
        snap,
        inp.memory,
        confirmations=policy.confirmations,
        min_age=policy.removal_min_age,
        now=inp.now,
        counting=counting,
        pinned=inp.pinned_ids,
        recorded=recorded,
    )
    notes.extend(renames)
    grown = project_shrinks(
        snap,
        inp.memory,
        fraction=policy.max_project_shrink_fraction,
        min_count=policy.project_shrink_min_count,
    )
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

    def owner_id(name: str) -> str | None:
        """The Keystone id a name stands for: the bound id, else the listed one."""
        return memory.known_ids.get(name) or listed_ids.get(name)

    def aliases(name: str) -> set[str]:
        """The names one project has in this listing (a renamed project has two; a name
        taken by another id is not its own any more): ownership is by id."""
        return set(project_aliases(name, listed_ids, memory.known_ids))

    # An address shown (in a complete listing) on an instance of project Q may not stay
    # in any other project's private exports: it leaves them at once (ip-conflict).
    # So does an address claimed by something that is no listed project's instance (a
    # port of a project Keystone does not list, a port and its server of two projects):
    # it stands in the claimants as FOREIGN, which is never a project's name.
    claims: dict[str, set[str]] = {}
    if snap.listing_complete:
        for project, insts in snap.instances.items():
            for inst in insts:
                for addr in inst.addresses:
                    claims.setdefault(str(addr), set()).add(project)
        for ip, foreign in snap.claims.items():
            claims.setdefault(ip, set()).update(
                {FOREIGN, *(p for c in foreign for p in c.projects)}
            )
    ours = set(inp.private) | {f.owner for f in inp.in_force.values() if f.kind == "project"}
    for ip, claimants in sorted(claims.items()):
        names = claimants - {FOREIGN}
        if len(claimants) > 1 and names & ours:
            by = "; ".join(sorted({c.detail for c in snap.claims.get(ip, ())}))
            work.holds.append(
                Hold(
                    Reason.IP_CONFLICT,
                    client=ip,
                    detail=f"claimed by projects {', '.join(sorted(names))}"
                    + (f" ({by})" if by else "")
                    + ": exported for none of them",
                )
            )

    # Which file the projects file serves each path for now (a moved volume is its new
    # owner's at once: the old owner's pairs on it, or on a path inside or around it,
    # leave through every hold, like an unsafe path's).
    served_for: dict[str, str] = {}  # path -> label
    for project, exps in inp.private.items():
        for exp in exps:
            served_for[exp.path] = project
    for pub in inp.public:
        served_for[pub.path] = PUBLIC_OWNER_PREFIX + pub.name

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
            if verdict.id_changed:
                held_paths: list[str | None] = [*sorted(target_opts)] or [None]
                for held_path in held_paths:
                    work.holds.append(
                        Hold(Reason.PROJECT_ID_CHANGED, label, held_path, None, verdict.id_changed)
                    )
            if verdict.status is Status.UNKNOWN_LISTING:
                keep_all, keep_detail = Reason.UNKNOWN_INVENTORY, "project listing unknown"
            elif (
                verdict.status is Status.RENAMED
                and owner not in inp.private
                and ((aliases(owner) - {owner}) & set(inp.private))
                # only when the new name's data is complete: an unknown project keeps
                and all(
                    snap.project_complete(n) for n in (aliases(owner) - {owner}) & set(inp.private)
                )
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
                    if others == {FOREIGN} and _own_claims(snap, client, owner_id(owner)):
                        others = set()  # its own servers while Keystone does not list it
                    if others:
                        work.changes.append(
                            Change(label, path, client, Action.REMOVE, Reason.IP_CONFLICT)
                        )
                        st.current.discard(client)

        own = {label} | (aliases(owner) if kind == "project" else set())
        for path, st in paths.items():
            if not st.current:
                continue
            moved_to = sorted(
                {
                    other
                    for spath, other in served_for.items()
                    if other not in own and (path_within(path, spath) or path_within(spath, path))
                }
            )
            if not moved_to:
                continue
            detail = (
                f"{path} (or a path inside or around it) is now served for "
                f"{', '.join(moved_to)} in the projects file: it leaves {label} at once"
            )
            notes.append(detail)  # nothing is held: the pairs go now, the note says why
            for client in sorted_clients(st.current):
                work.changes.append(Change(label, path, client, Action.REMOVE, Reason.PATH_UNSAFE))
            st.current.clear()
            st.current_options = None  # nothing of it stays in force: nothing to keep or hold

        for path, st in paths.items():
            why = inp.unsafe_paths.get(path) or inp.held_paths.get(path)
            if why is None or (st.options is None and not st.current):
                continue
            work.holds.append(Hold(Reason.PATH_UNSAFE, project=label, path=path, detail=why))
            if path in inp.unsafe_paths:  # like a conflict: at once, whatever holds
                for client in sorted_clients(st.current):
                    work.changes.append(
                        Change(label, path, client, Action.REMOVE, Reason.PATH_UNSAFE)
                    )
                st.current.clear()

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

    shrink_held = _bound_removals(work, inp, policy, in_force_pairs, shrink_detail, grown)

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
            keep_options = (
                frozen or path in inp.missing_paths or path in inp.held_paths or st.options is None
            )
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
            pid = None
            if kind == "project":
                pid = memory.known_ids.get(owner) or recorded.get(owner)
                if pid is None and snap.listing_complete and snap.projects:
                    rec = snap.projects.get(owner)
                    pid = rec.id if rec is not None else None
            files[fname] = ExportsFile(fname, kind, owner, tuple(lines), pid)
    _check_one_owner_per_path(
        files,
        inp.in_force,
        lambda a, b: (
            owners[a][0] == owners[b][0] == "project"
            and (owners[b][1] in aliases(owners[a][1]) or owners[a][1] in aliases(owners[b][1]))
        ),
    )

    keep_baseline = shrink_detail is not None and not policy.force
    if keep_baseline or not counting:
        instances = dict(inp.memory.instances)
    else:  # a project whose shrink waits for a human keeps its old count too
        instances = dict(counts)
        if not policy.force:
            for name in grown:
                instances[name] = inp.memory.instances[name]
    window = policy.project_deletion_window
    deletions = {n: t for n, t in inp.memory.deletions.items() if 0 <= inp.now - t < window}
    deletions.update({n: inp.now for n in work.deleted_now})
    memory = Memory(
        absent={k: v for k, v in memory.absent.items() if k in project_names},
        known_ids=memory.known_ids,
        instances=instances,
        deletions=deletions,
        last_counted=inp.now if counting else inp.memory.last_counted,
    )
    if shrink_detail and not shrink_held and keep_baseline:
        notes.append(f"inventory shrink: {shrink_detail}")
    if counting:
        counters = dict(work.counters)
    elif complete:  # not spaced: neither count nor reset; removed pairs forget theirs
        counters = {k: v for k, v in inp.counters.items() if k not in removed}
    else:
        counters = dict(inp.counters)
    return Plan(
        changes=tuple(sorted(work.changes)),
        holds=tuple(sorted(work.holds, key=Hold.sort_key)),
        files=files,
        counters=counters,
        counting=complete,
        in_force_pairs=in_force_pairs,
        memory=memory if complete else inp.memory,
        notes=tuple(notes),
        counted=counting,
    )


class PlanBug(NfsExportdError):
    """The plan would export one path (or nested paths) for two files: a bug in decide
    (a moved path leaves its old file in the same plan), so nothing is written."""


def _check_one_owner_per_path(
    files: Mapping[str, ExportsFile | None],
    in_force: Mapping[str, ExportsFile],
    one_project: Callable[[str, str], bool],
) -> None:
    """Refuse a plan that puts a path, or a path inside it, into two files, unless both
    lines are already in force exactly so (then the plan does not make it worse) or both
    files are one project's (a rename: same Keystone id, the old name's pairs waiting for
    their confirmations while the new name's file has the path)."""
    by_path: dict[str, set[str]] = {}
    for fname, f in files.items():
        for ln in f.lines if f is not None else ():
            by_path.setdefault(ln.path, set()).add(fname)

    def in_force_now(path: str, fname: str) -> bool:
        f = in_force.get(fname)
        return f is not None and any(ln.path == path for ln in f.lines)

    for path, fnames in sorted(by_path.items()):
        parts = path.split("/")
        for n in range(1, len(parts) + 1):  # the path itself and every parent of it
            outer = "/".join(parts[:n]) or "/"
            for fname in sorted(fnames):
                for oname in sorted(by_path.get(outer, set()) - {fname}):
                    if in_force_now(path, fname) and in_force_now(outer, oname):
                        continue
                    if one_project(fname, oname):
                        continue
                    raise PlanBug(
                        f"refusing the plan: {outer} ({oname}) and {path} ({fname}) would "
                        "both be exported; nothing was written. This is a bug in "
                        "nfs-exportd: please report it"
                    )


def _own_claims(snap: InventorySnapshot, client: str, pid: str | None) -> bool:
    """Every claim on ``client`` that is no listed project's instance involves only the
    id ``pid`` (ownership is by id): the project's own servers, orphaned while Keystone
    does not list it (deleted, or a listing silently short of it).  Such an address
    follows the deletion rules and their bounds, not the conflict rule."""
    found = snap.claims.get(client, ())
    return pid is not None and bool(found) and all(set(c.ids) == {pid} for c in found)


def _disabled(snap: InventorySnapshot, name: str) -> bool:
    """The complete listing shows the project, disabled."""
    rec = snap.projects.get(name) if snap.projects is not None else None
    return snap.listing_complete and rec is not None and not rec.enabled


def _add(work: _Work, inp: DecideInput, policy: Policy, change: Change, st: _Path) -> None:
    """An addition or option update: applies unless frozen or its path is missing."""
    unsafe = inp.unsafe_paths.get(change.path) or inp.held_paths.get(change.path)
    if policy.frozen is not None:
        work.holds.append(_hold(change, *policy.frozen))
    elif unsafe is not None:
        work.holds.append(_hold(change, Reason.PATH_UNSAFE, unsafe))
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
    shrinking: Mapping[str, str],
) -> bool:
    """Confirmed removals go through maintenance, state and the bounds; True when the
    inventory-shrink bound held them.  ``shrinking``: project -> why its instance count
    fell implausibly (its instance-gone removals wait)."""
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
    if policy.force:
        _apply(work, cands)
        return False
    limit = policy.max_removal_fraction * in_force_pairs
    if len(cands) > limit and len(cands) > policy.min_removal_count:
        detail = (
            f"{len(cands)} removals of {in_force_pairs} pairs in force exceed "
            f"max_removal_fraction {policy.max_removal_fraction} (and min_removal_count "
            f"{policy.min_removal_count}); review the plan and run sync --force"
        )
        work.holds.extend(_hold(c, Reason.TOO_MUCH_CHANGE, detail) for c in cands)
        return False
    # Removing everything is never routine, however small the server: an empty projects
    # file, or a listing that lost every instance, looks exactly like this.
    removing = {c.key for c in work.changes if c.action is Action.REMOVE} | {c.key for c in cands}
    adding = any(c.action is Action.ADD for c in work.changes)
    if in_force_pairs and len(removing) >= in_force_pairs and not adding:
        detail = (
            f"this plan removes every one of the {in_force_pairs} pairs in force and adds "
            "none (an empty projects file, or a cloud that lost everything, looks the same); "
            "review the plan and run sync --force"
        )
        work.holds.extend(_hold(c, Reason.TOO_MUCH_CHANGE, detail) for c in cands)
        return False
    # a project the projects file no longer names (or none of whose volumes are on this
    # server) loses all its pairs: held however small, a human reads the plan first
    unnamed: dict[str, str] = {}
    for c in cands:
        if (
            c.reason is Reason.NOT_SERVED
            and not c.project.startswith(PUBLIC_OWNER_PREFIX)
            and c.project not in inp.private
            and c.project not in unnamed
        ):
            f = inp.in_force.get(project_filename(c.project))
            n = len(f.pairs()) if f is not None else 0
            unnamed[c.project] = (
                f"the projects file no longer names project {c.project} (or none of its "
                f"volumes on this server): all {n} of its pairs would go; review the plan "
                "and run sync --force"
            )
    # project deletions per window: a Keystone listing that silently lost projects
    # deletes them all at once, each within the fraction bound
    deleting = sorted({c.project for c in cands if c.reason is Reason.PROJECT_DELETED})
    window = policy.project_deletion_window
    recent = {n for n, t in inp.memory.deletions.items() if 0 <= inp.now - t < window}
    total = recent | set(deleting)
    too_many = ""
    if deleting and len(total) > policy.max_project_deletions:
        too_many = (
            f"{len(total)} project deletions within {window:g} s ({', '.join(deleting)} in "
            f"this cycle) exceed safety.max_project_deletions "
            f"{policy.max_project_deletions}; a Keystone listing that silently lost "
            "projects looks the same: check Keystone, then run sync --force"
        )
    go: list[Change] = []
    shrink_held = False
    for c in cands:
        if c.project in unnamed:
            work.holds.append(_hold(c, Reason.TOO_MUCH_CHANGE, unnamed[c.project]))
        elif too_many and c.reason is Reason.PROJECT_DELETED:
            work.holds.append(_hold(c, Reason.TOO_MUCH_CHANGE, too_many))
        elif shrink_detail:
            work.holds.append(_hold(c, Reason.INVENTORY_SHRINK, shrink_detail))
            shrink_held = True
        elif c.reason is Reason.INSTANCE_GONE and c.project in shrinking:
            work.holds.append(_hold(c, Reason.INVENTORY_SHRINK, shrinking[c.project]))
        else:
            go.append(c)
    _apply(work, go)
    return shrink_held


def _apply(work: _Work, changes: list[Change]) -> None:
    """Confirmed removals that pass every bound: into the plan, deletions remembered."""
    work.changes.extend(changes)
    work.deleted_now.update(c.project for c in changes if c.reason is Reason.PROJECT_DELETED)
