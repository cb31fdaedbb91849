"""Project lifecycle and plausibility: deleted, renamed, disabled projects, names taken by
another Keystone id, and sudden shrinks of the inventory (pure).

A project leaves only on positive, repeated evidence: absent from ``confirmations``
consecutive complete Keystone listings that span at least ``min_age`` seconds.  A project
whose id is still listed under another name was renamed, not deleted.  Ownership is by
id: a served name is bound to the Keystone id it had when first seen (or to the ``id:``
the projects file gives; without memory, to the id its managed file records), and a
listing that shows the name under another id (the project was deleted and recreated, or
another project was renamed onto the name) gives the new
id nothing until an operator accepts it; the bound id's pairs follow the deletion rules.
A complete listing that shows far fewer instances than the last one, in the whole cloud
or in one project, is implausible (a policy change, a wrong region list, a silently short
page): removals wait for a human.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from ..model import InventorySnapshot


@dataclass(frozen=True)
class Absence:
    since: float  # when a complete listing first did not show the project
    cycles: int  # consecutive complete listings without it


@dataclass(frozen=True)
class Memory:
    """What decisions remember between cycles (persisted in state_dir by the caller)."""

    absent: Mapping[str, Absence] = field(default_factory=dict)
    # name -> Keystone id: every name of the last complete listing, the ids of renamed
    # names (while the id is listed under its new name), and for the projects served or
    # in force the id the name is bound to (kept when a listing shows another id)
    known_ids: Mapping[str, str] = field(default_factory=dict)
    instances: Mapping[str, int] = field(default_factory=dict)  # name -> instance count
    # project name -> when its project-deleted removals were applied (for the bound on
    # project deletions per window; older entries are dropped)
    deletions: Mapping[str, float] = field(default_factory=dict)
    # when the last cycle that counted toward confirmations ran (None: never)
    last_counted: float | None = None


class Status(enum.Enum):
    COMPLETE = "complete"
    UNKNOWN_LISTING = "unknown-listing"
    UNKNOWN = "unknown"  # this project's data could not be read
    RENAMED = "renamed"  # its id is listed under another name
    ABSENT = "absent"  # not listed; deletion not yet confirmed
    DELETED = "deleted"  # confirmed deleted


@dataclass(frozen=True)
class Verdict:
    status: Status
    detail: str = ""
    # set when the complete listing shows this name under another Keystone id than the
    # one it is bound to: why the new id gets nothing (the status is about the bound id)
    id_changed: str = ""


def aliases(
    name: str,
    listed: Mapping[str, str],
    known: Mapping[str, str],
    by_id: Mapping[str, frozenset[str]] | None = None,
) -> frozenset[str]:
    """The names one project has now: every name its id is listed under (a renamed
    project has its new name), and its own name unless the listing shows that name
    under another id (then the name belongs to another project).

    ``listed`` is name -> id of a listing, ``known`` the ids remembered (the bound id of
    a name wins over the listed one).  Every ownership question (reconcile's conflict
    rule, rollback's check of restored addresses) asks this one function.
    ``by_id`` (id -> the names ``listed`` has for it, ``names_by_id(listed)``) is the
    same listing indexed once, for callers that ask once per pair: a scan of the whole
    listing per question made a cycle quadratic.
    """
    pid = known.get(name) or listed.get(name)
    if pid is None:
        return frozenset({name})
    if by_id is not None:
        names = set(by_id.get(pid, ()))
    else:
        names = {n for n, i in listed.items() if i == pid}
    if name not in listed:
        names.add(name)
    return frozenset(names)


def names_by_id(listed: Mapping[str, str]) -> dict[str, frozenset[str]]:
    """id -> every name ``listed`` (name -> id) shows it under."""
    out: dict[str, set[str]] = {}
    for n, i in listed.items():
        out.setdefault(i, set()).add(n)
    return {i: frozenset(ns) for i, ns in out.items()}


def assess(
    names: Iterable[str],
    snap: InventorySnapshot,
    memory: Memory,
    *,
    confirmations: int,
    min_age: float,
    now: float,
    counting: bool,
    pinned: Mapping[str, str] | None = None,
    recorded: Mapping[str, str] | None = None,
) -> tuple[dict[str, Verdict], Memory, list[str]]:
    """Verdict per project name, the memory to keep, and notes (renames) to report.

    ``pinned`` is name -> id from the projects file: it wins over the remembered id.
    ``recorded`` is name -> id written in the managed file in force: used when memory
    has none (state_dir lost or corrupt), so a lost memory never rebinds a name.
    Only a ``counting`` cycle starts, advances or ends a run of absences.
    """
    pinned = pinned or {}
    recorded = recorded or {}
    verdicts: dict[str, Verdict] = {}
    notes: list[str] = []
    absent: dict[str, Absence] = {}
    listed_ids: dict[str, str] = {}  # id -> name
    if snap.projects is not None:
        listed_ids = {rec.id: rec.name for rec in snap.projects.values()}
    for name in sorted(set(names)):
        prev = memory.absent.get(name)
        if not snap.listing_complete or snap.projects is None:
            verdicts[name] = Verdict(Status.UNKNOWN_LISTING, snap.problem or "listing unknown")
            if prev:
                absent[name] = prev
            continue
        bound = pinned.get(name) or memory.known_ids.get(name) or recorded.get(name)
        rec = snap.projects.get(name)
        if rec is not None and (bound is None or rec.id == bound):
            if name in snap.incomplete:
                verdicts[name] = Verdict(Status.UNKNOWN, snap.incomplete[name])
            else:
                verdicts[name] = Verdict(Status.COMPLETE)
            if not counting and prev:
                absent[name] = prev  # neither count nor reset
            continue
        taken = ""
        if rec is not None:  # the name is listed under another id than the one it is bound to
            how = "the projects file's id:" if name in pinned else "the id it was first seen with"
            taken = (
                f"project {name!r} is Keystone id {rec.id} in the listing, not {bound} "
                f"({how}): deleted and recreated, or another project renamed onto the name; "
                f"the new id's instances get nothing until an operator accepts it "
                f"(id: {rec.id} for {name} in the projects file)"
            )
        if bound is not None and bound in listed_ids and listed_ids[bound] != name:
            new = listed_ids[bound]
            detail = (
                f"project id {bound} is now named {new!r} in Keystone: a rename, not a "
                f"deletion; its exports stay until the projects file names {new!r}"
            )
            verdicts[name] = Verdict(Status.RENAMED, detail, taken)
            notes.append(f"project {name!r} renamed to {new!r} (id {bound})")
            # listed (under its new name): any run of absences ends (when counting)
            if not counting and prev:
                absent[name] = prev
            continue
        rec_abs: Absence | None
        if counting:
            rec_abs = Absence(prev.since if prev else now, (prev.cycles if prev else 0) + 1)
        else:
            rec_abs = prev
        if rec_abs is not None:
            absent[name] = rec_abs
        cycles = rec_abs.cycles if rec_abs else 0
        age = now - rec_abs.since if rec_abs else 0.0
        who = f"project id {bound} " if taken else ""
        if rec_abs is not None and cycles >= confirmations and age >= min_age:
            verdicts[name] = Verdict(
                Status.DELETED,
                f"{who}absent from {cycles} complete Keystone listings over {age:.0f} s",
                taken,
            )
        elif cycles >= confirmations:  # the count is done: only the age rule waits
            verdicts[name] = Verdict(
                Status.ABSENT,
                f"{who}absent from {cycles} complete Keystone listings ({confirmations} "
                f"needed: reached), but only for {age:.0f} of {min_age:.0f} s "
                "(safety.removal_min_age_seconds): deleted when both are reached",
                taken,
            )
        else:
            verdicts[name] = Verdict(
                Status.ABSENT,
                f"{who}absent from {cycles} of {confirmations} complete Keystone listings, "
                f"for {age:.0f} of {min_age:.0f} s: deleted when both are reached",
                taken,
            )
    known = dict(memory.known_ids)
    if snap.listing_complete and snap.projects is not None:
        known = {rec.name: rec.id for rec in snap.projects.values()}
        # a renamed name keeps its id while the id is listed under the new name: that is
        # how a rename is recognised (here, and when rollback restores the old name)
        for name, pid in memory.known_ids.items():
            if name not in known and pid in listed_ids:
                known[name] = pid
        # the names we serve or have in force stay bound to their id (first sight binds;
        # the projects file's id: wins); an absent name keeps it for its deletion
        for name in set(names):
            bound = pinned.get(name) or memory.known_ids.get(name) or recorded.get(name)
            if bound is not None:
                known[name] = bound
    return verdicts, replace(memory, absent=absent, known_ids=known), notes


def instance_counts(snap: InventorySnapshot) -> dict[str, int]:
    return {p: len(insts) for p, insts in snap.instances.items() if snap.project_complete(p)}


def shrink(
    snap: InventorySnapshot, memory: Memory, *, fraction: float, min_count: int
) -> tuple[str | None, dict[str, int]]:
    """Whether this complete listing shrank implausibly since the last one, and the counts
    to remember.  Projects whose data is unknown now are left out of both sides; projects
    absent now count as zero."""
    if not snap.listing_complete or snap.projects is None:
        return None, dict(memory.instances)
    now = instance_counts(snap)
    before = 0
    after = 0
    for name, count in memory.instances.items():
        if name in snap.incomplete:
            continue
        before += count
        after += now.get(name, 0)
    merged = {**{k: v for k, v in memory.instances.items() if k in snap.incomplete}, **now}
    lost = before - after
    if before and lost > fraction * before and lost > min_count:
        return (
            f"instances fell from {before} to {after} since the last complete listing "
            f"(more than max_removal_fraction {fraction}); review and run sync --force",
            merged,
        )
    return None, merged


def project_shrinks(
    snap: InventorySnapshot, memory: Memory, *, fraction: float, min_count: int
) -> dict[str, str]:
    """Projects whose instance count, in this complete listing, fell by more than
    ``fraction`` of the last complete listing's count and by more than ``min_count``
    instances: project -> why.  A silently short page of one project's instances slips
    under every bound on the whole cloud; this one sees it.  Projects not complete now
    (unknown, or not listed: deletion has rules of its own) are left out."""
    if not snap.listing_complete or snap.projects is None:
        return {}
    now = instance_counts(snap)
    out: dict[str, str] = {}
    for name, before in sorted(memory.instances.items()):
        if not snap.project_complete(name):
            continue
        after = now.get(name, 0)
        lost = before - after
        if before and lost > fraction * before and lost > min_count:
            out[name] = (
                f"project {name}: instances fell from {before} to {after} since the last "
                f"complete listing (more than safety.max_project_shrink_fraction {fraction} "
                f"and safety.project_shrink_min_count {min_count}); a silently short page "
                "looks the same: check the cloud, then run sync --force"
            )
    return out
