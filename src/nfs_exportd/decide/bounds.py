"""Phase "bounds": which confirmed removals go now, and which wait for a human.

In order: a freeze (or rollback hold), maintenance, counters being rebuilt hold them
all; ``force`` lets them all go; then the share of pairs in force
(``max_removal_fraction`` above ``min_removal_count``), removing every pair in force,
a project the projects file no longer names, project deletions per window, and an
implausible shrink of the whole inventory or of one project hold them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..model import Maintenance
from .diff import hold_of
from .inputs import DecideInput, Policy
from .owners import PUBLIC_OWNER_PREFIX, project_filename
from .plan import Action, Change, Hold, Reason


@dataclass(frozen=True)
class Bounded:
    go: tuple[Change, ...] = ()  # removals that pass every bound: into the plan
    holds: tuple[Hold, ...] = ()
    shrink_held: bool = False  # the inventory-shrink bound held some

    @property
    def deleted_now(self) -> frozenset[str]:
        """Projects whose project-deleted removals apply in this plan."""
        return frozenset(c.project for c in self.go if c.reason is Reason.PROJECT_DELETED)


def bound_removals(
    candidates: Sequence[Change],
    changes: Sequence[Change],
    inp: DecideInput,
    policy: Policy,
    in_force_pairs: int,
    shrink_detail: str | None,
    shrinking: Mapping[str, str],
) -> Bounded:
    """``changes``: what goes anyway (additions, conflict removals); ``shrinking``:
    project -> why its instance count fell implausibly (its instance-gone removals
    wait)."""
    if not candidates:
        return Bounded()
    whole = _whole_plan_hold(candidates, changes, inp, policy, in_force_pairs)
    if whole is not None:
        reason, detail = whole
        return Bounded(holds=tuple(hold_of(c, reason, detail) for c in candidates))
    if policy.force:
        return Bounded(go=tuple(candidates))
    unnamed = _unnamed_projects(candidates, inp)
    too_many = _too_many_deletions(candidates, inp, policy)
    go: list[Change] = []
    holds: list[Hold] = []
    shrink_held = False
    for c in candidates:
        if c.project in unnamed:
            holds.append(hold_of(c, Reason.TOO_MUCH_CHANGE, unnamed[c.project]))
        elif too_many and c.reason is Reason.PROJECT_DELETED:
            holds.append(hold_of(c, Reason.TOO_MUCH_CHANGE, too_many))
        elif shrink_detail:
            holds.append(hold_of(c, Reason.INVENTORY_SHRINK, shrink_detail))
            shrink_held = True
        elif c.reason is Reason.INSTANCE_GONE and c.project in shrinking:
            holds.append(hold_of(c, Reason.INVENTORY_SHRINK, shrinking[c.project]))
        else:
            go.append(c)
    return Bounded(tuple(go), tuple(holds), shrink_held)


def _whole_plan_hold(
    candidates: Sequence[Change],
    changes: Sequence[Change],
    inp: DecideInput,
    policy: Policy,
    in_force_pairs: int,
) -> tuple[Reason, str] | None:
    """A hold of every candidate at once, or None."""
    if policy.frozen is not None:
        return policy.frozen
    if policy.maintenance is Maintenance.HOLD:
        return Reason.MAINTENANCE, "maintenance flag is set"
    if inp.state_problem:
        return Reason.STATE_CORRUPT, "removal counters are being rebuilt"
    if policy.force:
        return None
    n = len(candidates)
    if n > policy.max_removal_fraction * in_force_pairs and n > policy.min_removal_count:
        return Reason.TOO_MUCH_CHANGE, (
            f"{n} removals of {in_force_pairs} pairs in force exceed "
            f"max_removal_fraction {policy.max_removal_fraction} (and min_removal_count "
            f"{policy.min_removal_count}); review the plan and run sync --force"
        )
    # Removing everything is never routine, however small the server: an empty projects
    # file, or a listing that lost every instance, looks exactly like this.
    removing = {c.key for c in changes if c.action is Action.REMOVE} | {c.key for c in candidates}
    adding = any(c.action is Action.ADD for c in changes)
    if in_force_pairs and len(removing) >= in_force_pairs and not adding:
        return Reason.TOO_MUCH_CHANGE, (
            f"this plan removes every one of the {in_force_pairs} pairs in force and adds "
            "none (an empty projects file, or a cloud that lost everything, looks the same); "
            "review the plan and run sync --force"
        )
    return None


def _unnamed_projects(candidates: Sequence[Change], inp: DecideInput) -> dict[str, str]:
    """A project the projects file no longer names (or none of whose volumes are on this
    server) loses all its pairs: held however small, a human reads the plan first."""
    unnamed: dict[str, str] = {}
    for c in candidates:
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
    return unnamed


def _too_many_deletions(candidates: Sequence[Change], inp: DecideInput, policy: Policy) -> str:
    """Project deletions per window: a Keystone listing that silently lost projects
    deletes them all at once, each within the fraction bound.  Empty: within bounds."""
    deleting = sorted({c.project for c in candidates if c.reason is Reason.PROJECT_DELETED})
    window = policy.project_deletion_window
    recent = {n for n, t in inp.memory.deletions.items() if 0 <= inp.now - t < window}
    total = recent | set(deleting)
    if not deleting or len(total) <= policy.max_project_deletions:
        return ""
    return (
        f"{len(total)} project deletions within {window:g} s ({', '.join(deleting)} in "
        f"this cycle) exceed safety.max_project_deletions "
        f"{policy.max_project_deletions}; a Keystone listing that silently lost "
        "projects looks the same: check Keystone, then run sync --force"
    )
