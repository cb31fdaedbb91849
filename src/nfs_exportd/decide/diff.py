"""Phase "diff": one file's intent against what is in force -> changes, holds, removal
candidates (confirmed, still to pass the bounds) and counters, path by path.

In this order, each step seeing what the one before left in force: addresses another
project claims leave at once (``ip-conflict``); a path now served for another file (or
inside or around one) leaves at once; a path that is not what it says leaves at once
and one not known to be safe is held (``path-unsafe``); a file whose data is not
complete keeps the rest exactly; otherwise additions, option updates and removals,
each removal counted toward its confirmations.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from ..model import ExportsFile, FileKind, PairKey, sorted_clients
from .context import Cycle
from .intent import Intent
from .owners import Owner
from .plan import Action, Change, Hold, Reason


@dataclass(frozen=True)
class PathOutcome:
    """One path of one file after the diff (the bounds may still take removals back)."""

    options: str | None  # options served now (None: no longer served)
    current_options: str | None  # options in force that stay in force (None: none)
    result: frozenset[str]  # clients in force plus additions; the plan's removals come off later


@dataclass(frozen=True)
class FileDiff:
    changes: tuple[Change, ...] = ()
    holds: tuple[Hold, ...] = ()
    candidates: tuple[Change, ...] = ()  # confirmed removals: they go if the bounds allow
    counters: Mapping[PairKey, int] = field(default_factory=dict)
    paths: Mapping[str, PathOutcome] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


@dataclass
class _Path:
    """Working state for one path (local to this phase): each step takes clients off
    ``current`` as it removes them, so that the next step sees only what stays."""

    options: str | None  # options served now (None: no longer served)
    current_options: str | None  # options in force (None once nothing of it stays)
    current: set[str]  # clients in force that no step has removed yet
    result: set[str]  # clients in force plus additions


@dataclass
class _Work:
    """What the steps of one file's diff collect, in the order they decide it."""

    changes: list[Change] = field(default_factory=list)
    holds: list[Hold] = field(default_factory=list)
    candidates: list[Change] = field(default_factory=list)
    counters: dict[PairKey, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def diff_file(
    owner: Owner, intent: Intent, current_file: ExportsFile | None, cycle: Cycle
) -> FileDiff:
    """The steps of the module docstring, in order, for one file (``current_file``: the
    file in force, None when there is none)."""
    current = {ln.path: ln for ln in current_file.lines} if current_file else {}
    paths = {
        path: _Path(
            options=intent.options.get(path),
            current_options=current[path].options if path in current else None,
            current=set(current[path].clients) if path in current else set(),
            result=set(current[path].clients) if path in current else set(),
        )
        for path in sorted(set(intent.options) | set(current))
    }
    work = _Work(notes=list(intent.notes))
    if owner.is_project:
        _conflict_removals(owner, paths, cycle, work)
    _moved_path_removals(owner, paths, cycle, work)
    _unsafe_paths(owner, paths, cycle, work)
    if intent.keep_all is not None:
        _keep_in_force(owner, intent, paths, cycle, work)
    else:
        # a header-only file in force: its project's paths were served already, so an
        # address for one of them is a new instance, not a new export
        header_only = current_file is not None and not current
        for path, st in paths.items():
            new_path = path not in current and not header_only
            _additions(owner, path, st, intent, new_path, cycle, work)
            _removals(owner, path, st, intent, cycle, work)
    return FileDiff(
        changes=tuple(work.changes),
        holds=tuple(work.holds),
        candidates=tuple(work.candidates),
        counters=work.counters,
        paths={
            p: PathOutcome(st.options, st.current_options, frozenset(st.result))
            for p, st in paths.items()
        },
        notes=tuple(work.notes),
    )


def _conflict_removals(owner: Owner, paths: dict[str, _Path], cycle: Cycle, work: _Work) -> None:
    """Addresses another project (or a foreign claim) has now leave at once."""
    for path, st in paths.items():
        for client in sorted_clients(st.current):
            if cycle.ownership.others(client, owner.name):
                work.changes.append(
                    Change(owner.label, path, client, Action.REMOVE, Reason.IP_CONFLICT)
                )
                st.current.discard(client)


def _moved_path_removals(owner: Owner, paths: dict[str, _Path], cycle: Cycle, work: _Work) -> None:
    """A path the projects file serves for another file now (or a path inside or around
    one) leaves this file at once, through every hold: a moved volume is its new
    owner's."""
    own = {owner.label} | (cycle.ownership.aliases(owner.name) if owner.is_project else set())
    for path, st in paths.items():
        if not st.current:
            continue
        moved_to = sorted(cycle.served_index.around(path) - own)
        if not moved_to:
            continue
        detail = (
            f"{path} (or a path inside or around it) is now served for "
            f"{', '.join(moved_to)} in the projects file: it leaves {owner.label} at once"
        )
        work.notes.append(detail)  # nothing is held: the pairs go now, the note says why
        for client in sorted_clients(st.current):
            work.changes.append(
                Change(owner.label, path, client, Action.REMOVE, Reason.PATH_UNSAFE)
            )
        st.current.clear()
        st.current_options = None  # nothing of it stays in force: nothing to keep or hold


def _unsafe_paths(owner: Owner, paths: dict[str, _Path], cycle: Cycle, work: _Work) -> None:
    """An unsafe path is held and its pairs leave at once; a held path is held."""
    inp = cycle.inp
    for path, st in paths.items():
        why = inp.unsafe_paths.get(path) or inp.held_paths.get(path)
        if why is None or (st.options is None and not st.current):
            continue
        work.holds.append(Hold(Reason.PATH_UNSAFE, project=owner.label, path=path, detail=why))
        if path in inp.unsafe_paths:  # like a conflict: at once, whatever holds
            for client in sorted_clients(st.current):
                work.changes.append(
                    Change(owner.label, path, client, Action.REMOVE, Reason.PATH_UNSAFE)
                )
            st.current.clear()


def _keep_in_force(
    owner: Owner, intent: Intent, paths: dict[str, _Path], cycle: Cycle, work: _Work
) -> None:
    """Not complete: keep exactly what is in force (options too); counters unchanged."""
    label, reason, detail = owner.label, intent.keep_all, intent.keep_detail
    assert reason is not None
    for path, st in paths.items():
        if st.current_options is not None:
            st.options = st.current_options  # not even options change
        if reason is Reason.PENDING_CONFIRMATION:  # absent project: per pair
            for client in sorted_clients(st.current):
                work.holds.append(Hold(reason, label, path, client, detail, Action.REMOVE))
        elif (st.options is not None or st.current) and not intent.quiet:
            work.holds.append(Hold(reason, project=label, path=path, detail=detail))
        for client in st.current:
            key = PairKey(label, path, client)
            if key in cycle.inp.counters:
                work.counters[key] = cycle.inp.counters[key]


def _additions(
    owner: Owner,
    path: str,
    st: _Path,
    intent: Intent,
    new_path: bool,
    cycle: Cycle,
    work: _Work,
) -> None:
    """new-export (the path became served) or new-instance (a new address for it), and
    option updates of every client in force (pending removals included)."""
    want = intent.desired.get(path, frozenset())
    reason = Reason.NEW_EXPORT if new_path else Reason.NEW_INSTANCE
    for client in sorted_clients(want - st.current):
        _add(Change(owner.label, path, client, Action.ADD, reason), st, cycle, work)
    if st.options is not None and st.current_options not in (None, st.options):
        for client in sorted_clients(st.current):
            change = Change(owner.label, path, client, Action.UPDATE, Reason.OPTIONS_CHANGED)
            _add(change, st, cycle, work)


def _add(change: Change, st: _Path, cycle: Cycle, work: _Work) -> None:
    """An addition or option update: applies unless frozen or its path is unsafe or
    missing."""
    inp, frozen = cycle.inp, cycle.policy.frozen
    unsafe = inp.unsafe_paths.get(change.path) or inp.held_paths.get(change.path)
    if frozen is not None:
        work.holds.append(hold_of(change, *frozen))
    elif unsafe is not None:
        work.holds.append(hold_of(change, Reason.PATH_UNSAFE, unsafe))
    elif change.path in inp.missing_paths:
        work.holds.append(hold_of(change, Reason.PATH_MISSING, f"{change.path} does not exist"))
    else:
        work.changes.append(change)
        if change.action is Action.ADD:
            st.result.add(change.client)


def _removals(
    owner: Owner, path: str, st: _Path, intent: Intent, cycle: Cycle, work: _Work
) -> None:
    """Clients in force no longer wanted: frozen, moved with a renamed project, removal
    candidates (deleted, or confirmed often enough), or pending their confirmations."""
    policy, label = cycle.policy, owner.label
    want = intent.desired.get(path, frozenset())
    served = st.options is not None or intent.moved
    reason = intent.gone_reason if served else Reason.NOT_SERVED
    for client in sorted_clients(st.current - want):
        key = PairKey(label, path, client)
        seen = cycle.inp.counters.get(key, 0)
        count = seen + 1 if cycle.counting else seen
        change = Change(label, path, client, Action.REMOVE, reason)
        if policy.frozen is not None:
            work.holds.append(hold_of(change, *policy.frozen))
            if seen:
                work.counters[key] = seen
        elif intent.moved and moves_to_new_name(client, owner.name, cycle):
            # the address moves to the new name's file in this same apply
            work.changes.append(replace(change, reason=Reason.PROJECT_RENAMED))
        elif intent.moved and _waits_to_move(client, owner.name, cycle):
            # still this project's address (by id), but its new name cannot take it yet
            if seen:
                work.counters[key] = seen
            work.holds.append(_waiting_to_move(change, owner.name, cycle))
        elif intent.deleted and owner.is_project:
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


def _waiting_to_move(change: Change, name: str, cycle: Cycle) -> Hold:
    """The hold of an address that waits for the renamed project's new file: path-missing
    when a path of the new name does not exist yet, else unknown-project."""
    new_names = cycle.ownership.successors(name)
    missing = any(
        e.path in cycle.inp.missing_paths
        for new_name in new_names
        for e in cycle.inp.private.get(new_name, ())
    )
    return hold_of(
        change,
        Reason.PATH_MISSING if missing else Reason.UNKNOWN_PROJECT,
        f"{change.client} moves to {', '.join(sorted(new_names))} (the project's new name) "
        "once that file can take it",
    )


def _waits_to_move(client: str, name: str, cycle: Cycle) -> bool:
    """The listing shows the address on the renamed project's instances (under a new name
    bound to its id) and on nobody else's: access stays until it moves."""
    claimants = cycle.ownership.claimants(client)
    return bool(claimants) and claimants <= cycle.ownership.successors(name)


def moves_to_new_name(client: str, name: str, cycle: Cycle) -> bool:
    """The address will be exported under the renamed project's new name in this same
    apply (the new name alone claims it, and serves existing paths)."""
    snap = cycle.inp.snapshot
    for new_name in cycle.ownership.successors(name) & set(cycle.inp.private):
        record = snap.projects.get(new_name) if snap.projects else None
        if record is None or not snap.project_complete(new_name):
            continue
        if cycle.ownership.claimants(client) != {new_name}:
            continue
        served = record.enabled or cycle.policy.disabled_projects == "keep"
        if served and _file_can_take(new_name, cycle):
            return True
    return False


def _file_can_take(new_name: str, cycle: Cycle) -> bool:
    """The new name serves paths, none missing, unsafe or held, and its file name is not
    taken by a file that is not ours."""
    inp = cycle.inp
    paths = {e.path for e in inp.private.get(new_name, ())}
    blocked = inp.missing_paths | set(inp.unsafe_paths) | set(inp.held_paths)
    return (
        bool(paths)
        and not paths & blocked
        and FileKind.PROJECT.filename(new_name) not in inp.unmanaged
    )


def hold_of(change: Change, reason: Reason, detail: str) -> Hold:
    """The hold of one held change."""
    return Hold(reason, change.project, change.path, change.client, detail, change.action)
