"""Project lifecycle and plausibility: deleted, renamed, disabled projects and sudden
shrinks of the inventory (pure).

A project leaves only on positive, repeated evidence: absent from ``confirmations``
consecutive complete Keystone listings that span at least ``min_age`` seconds.  A project
whose id is still listed under another name was renamed, not deleted.  A complete listing
that shows far fewer instances than the last one is implausible (a policy change, a wrong
region list, a half-empty database): removals wait for a human.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ..model import InventorySnapshot


@dataclass(frozen=True)
class Absence:
    since: float  # when a complete listing first did not show the project
    cycles: int  # consecutive complete listings without it


@dataclass(frozen=True)
class Memory:
    """What decisions remember between cycles (persisted in state_dir by the caller)."""

    absent: Mapping[str, Absence] = field(default_factory=dict)
    known_ids: Mapping[str, str] = field(default_factory=dict)  # name -> id, last listing
    instances: Mapping[str, int] = field(default_factory=dict)  # name -> instance count


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


def assess(
    names: Iterable[str],
    snap: InventorySnapshot,
    memory: Memory,
    *,
    confirmations: int,
    min_age: float,
    now: float,
    counting: bool,
) -> tuple[dict[str, Verdict], Memory, list[str]]:
    """Verdict per project name, the memory to keep, and notes (renames) to report."""
    verdicts: dict[str, Verdict] = {}
    notes: list[str] = []
    absent: dict[str, Absence] = {}
    renamed: set[str] = set()
    listed_ids: dict[str, str] = {}
    if snap.projects is not None:
        listed_ids = {rec.id: rec.name for rec in snap.projects.values()}
    for name in sorted(set(names)):
        prev = memory.absent.get(name)
        if not snap.listing_complete or snap.projects is None:
            verdicts[name] = Verdict(Status.UNKNOWN_LISTING, snap.problem or "listing unknown")
            if prev:
                absent[name] = prev
            continue
        if name in snap.projects:
            if name in snap.incomplete:
                verdicts[name] = Verdict(Status.UNKNOWN, snap.incomplete[name])
            else:
                verdicts[name] = Verdict(Status.COMPLETE)
            continue
        old_id = memory.known_ids.get(name)
        if old_id is not None and old_id in listed_ids:
            new = listed_ids[old_id]
            detail = (
                f"project id {old_id} is now named {new!r} in Keystone: a rename, not a "
                f"deletion; its exports stay until the projects file names {new!r}"
            )
            verdicts[name] = Verdict(Status.RENAMED, detail)
            notes.append(f"project {name!r} renamed to {new!r} (id {old_id})")
            renamed.add(name)  # listed (under its new name): any run of absences ends
            continue
        if counting:
            rec = Absence(prev.since if prev else now, (prev.cycles if prev else 0) + 1)
        else:
            rec = prev or Absence(now, 0)
        absent[name] = rec
        age = now - rec.since
        if rec.cycles >= confirmations and age >= min_age:
            verdicts[name] = Verdict(
                Status.DELETED,
                f"absent from {rec.cycles} complete Keystone listings over {age:.0f} s",
            )
        else:
            verdicts[name] = Verdict(
                Status.ABSENT,
                f"absent from {rec.cycles} of {confirmations} complete Keystone listings, "
                f"for {age:.0f} of {min_age:.0f} s",
            )
    known = dict(memory.known_ids)
    if snap.listing_complete and snap.projects is not None:
        known = {rec.name: rec.id for rec in snap.projects.values()}
        # keep the ids of absent and renamed projects: that is how a rename is recognised,
        # in this cycle and in the next ones, until the projects file follows it
        for name in set(absent) | renamed:
            if name in memory.known_ids:
                known.setdefault(name, memory.known_ids[name])
    return verdicts, Memory(absent, known, dict(memory.instances)), notes


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
