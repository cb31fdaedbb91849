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

from ..model import ExportsFile, InventorySnapshot, PairKey
from .bounds import bound_removals
from .claims import FOREIGN, Ownership, address_claims, conflict_holds
from .context import Cycle
from .diff import FileDiff, diff_file
from .inputs import DecideInput, DisabledProjects, Policy
from .intent import Intent, project_intent, public_intent
from .lifecycle import Memory, Verdict, assess, project_shrinks, shrink
from .owners import (
    PUBLIC_OWNER_PREFIX,
    Owner,
    owners_to_consider,
    project_filename,
    project_names,
    public_filename,
    served_for,
)
from .plan import Action, Change, Hold, Plan, Reason
from .remember import next_counters, next_memory, timing
from .target import FilePlan, PlanBug, check_one_owner_per_path, target_files

__all__ = [
    "FOREIGN",
    "PUBLIC_OWNER_PREFIX",
    "DecideInput",
    "DisabledProjects",
    "PlanBug",
    "Policy",
    "decide",
    "project_filename",
    "public_filename",
]


def decide(inp: DecideInput, policy: Policy) -> Plan:
    """The plan for one cycle: the phases in order, each a pure function of values."""
    snap = inp.snapshot
    when = timing(inp, policy)
    notes = [when.note] if when.note else []
    names = project_names(inp.private, inp.in_force)
    recorded = recorded_ids(inp.in_force)
    verdicts, assessed, renames = assess(
        names,
        snap,
        inp.memory,
        confirmations=policy.confirmations,
        min_age=policy.removal_min_age,
        now=inp.now,
        counting=when.counting,
        pinned=inp.pinned_ids,
        recorded=recorded,
    )
    notes.extend(renames)
    shrinking = project_shrinks(
        snap,
        inp.memory,
        fraction=policy.max_project_shrink_fraction,
        min_count=policy.project_shrink_min_count,
    )
    shrink_detail, counts = shrink(
        snap, inp.memory, fraction=policy.max_removal_fraction, min_count=policy.min_removal_count
    )
    claims = address_claims(snap)
    holds = [*cycle_holds(inp, policy), *conflict_holds(claims, snap, names)]
    ownership = Ownership(snap, claims, assessed.known_ids)
    cycle = Cycle(inp, policy, ownership, when.counting, served_for(inp.private, inp.public))

    owners = owners_to_consider(inp.private, inp.public, inp.in_force)
    changes: list[Change] = []
    candidates: list[Change] = []
    counters: dict[PairKey, int] = {}
    plans: dict[str, FilePlan] = {}
    for fname, owner in sorted(owners.items()):
        if fname in inp.unmanaged:
            holds.append(unmanaged_hold(fname, owner))
            continue
        intent = file_intent(owner, cycle, verdicts)
        diff: FileDiff = diff_file(owner, intent, inp.in_force.get(fname), cycle)
        holds += [*intent.holds, *diff.holds]
        notes += [*intent.notes, *diff.notes]
        changes += diff.changes
        candidates += diff.candidates
        counters.update(diff.counters)
        pid = keystone_id(owner, assessed, recorded, snap)
        plans[fname] = FilePlan(owner, diff.paths, pid, intent.deleted)

    in_force_pairs = sum(len(f.pairs()) for f in inp.in_force.values())
    bounded = bound_removals(
        candidates, changes, inp, policy, in_force_pairs, shrink_detail, shrinking
    )
    changes += bounded.go
    holds += bounded.holds
    removed = frozenset(c.key for c in changes if c.action is Action.REMOVE)
    changes = [c for c in changes if not (c.action is Action.UPDATE and c.key in removed)]
    files, file_notes = target_files(plans, removed, inp, policy.frozen is not None)
    notes += file_notes
    check_one_owner_per_path(files, inp.in_force, same_project(owners, ownership))

    memory = next_memory(
        inp, policy, when, assessed, names, (shrink_detail, counts), shrinking, bounded.deleted_now
    )
    if shrink_detail and not bounded.shrink_held and not policy.force:
        notes.append(f"inventory shrink: {shrink_detail}")
    return Plan(
        changes=tuple(sorted(changes)),
        holds=tuple(sorted(holds, key=Hold.sort_key)),
        files=files,
        counters=next_counters(inp, when, counters, removed),
        counting=when.complete,
        in_force_pairs=in_force_pairs,
        memory=memory,
        notes=tuple(notes),
        counted=when.counting,
    )


def cycle_holds(inp: DecideInput, policy: Policy) -> list[Hold]:
    """Holds about the whole cycle, shown even when nothing is waiting on them."""
    snap = inp.snapshot
    holds = []
    if not snap.listing_complete:
        holds.append(
            Hold(Reason.UNKNOWN_INVENTORY, detail=snap.problem or "project listing incomplete")
        )
    if inp.state_problem:
        holds.append(Hold(Reason.STATE_CORRUPT, detail=inp.state_problem))
    if policy.rollback_hold is not None:
        holds.append(Hold(Reason.ROLLBACK_HOLD, detail=policy.rollback_hold))
    return holds


def recorded_ids(in_force: Mapping[str, ExportsFile]) -> dict[str, str]:
    """The Keystone id each project file in force records (memory lost: still bound)."""
    return {
        f.owner: f.keystone_id
        for f in in_force.values()
        if Owner(f.kind, f.owner).is_project and f.keystone_id
    }


def unmanaged_hold(fname: str, owner: Owner) -> Hold:
    """A file of this name exists and is not ours: it is left alone."""
    return Hold(
        Reason.UNMANAGED_CONFLICT,
        project=owner.label,
        detail=f"{fname} exists without the nfs-exportd header; left alone",
    )


def file_intent(owner: Owner, cycle: Cycle, verdicts: Mapping[str, Verdict]) -> Intent:
    if owner.is_project:
        return project_intent(owner.name, verdicts[owner.name], cycle)
    return public_intent(owner.name, cycle.inp.public)


def keystone_id(
    owner: Owner, assessed: Memory, recorded: Mapping[str, str], snap: InventorySnapshot
) -> str | None:
    """The id a project file records: the bound one, else the one in force, else the
    listing's."""
    if not owner.is_project:
        return None
    pid = assessed.known_ids.get(owner.name) or recorded.get(owner.name)
    if pid is None and snap.listing_complete and snap.projects:
        rec = snap.projects.get(owner.name)
        pid = rec.id if rec is not None else None
    return pid


def same_project(owners: Mapping[str, Owner], ownership: Ownership) -> Callable[[str, str], bool]:
    """Whether two files are one project's (by Keystone id: a rename)."""

    def one(a: str, b: str) -> bool:
        oa, ob = owners[a], owners[b]
        return (
            oa.is_project
            and ob.is_project
            and (ob.name in ownership.aliases(oa.name) or oa.name in ownership.aliases(ob.name))
        )

    return one
