"""Phase "intent": what one file should export, before holds and bounds.

For a project file: the options of each path the projects file serves for it, the
clients each path should have (its instances' addresses that nobody else claims), or a
verdict that keeps everything in force (listing unknown, project unknown or absent), or
one that takes it all away (deleted; disabled when policy says remove), or a move to the
project's new name.  For a public file: the configured clients.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..model import InventorySnapshot, PublicExport
from .context import Cycle
from .lifecycle import Status, Verdict
from .plan import Hold, Reason


@dataclass(frozen=True)
class Intent:
    options: dict[str, str] = field(default_factory=dict)  # path -> options served now
    desired: dict[str, frozenset[str]] = field(default_factory=dict)  # path -> clients
    # not complete: keep exactly what is in force, with this hold (None: decide per pair)
    keep_all: Reason | None = None
    keep_detail: str = ""
    quiet: bool = False  # keep what is in force without a hold (policy says keep anyway)
    gone_reason: Reason = Reason.INSTANCE_GONE  # why a pair no longer desired leaves
    deleted: bool = False  # confirmed deleted: its pairs go (within the bounds), file too
    moved: bool = False  # renamed in Keystone and in the projects file: the file goes
    holds: tuple[Hold, ...] = ()
    notes: tuple[str, ...] = ()


def public_intent(name: str, public: tuple[PublicExport, ...]) -> Intent:
    """A public file: exactly the configured clients of its path."""
    options: dict[str, str] = {}
    desired: dict[str, frozenset[str]] = {}
    for pub in public:
        if pub.name == name:
            options[pub.path] = pub.options
            desired[pub.path] = frozenset(pub.clients)
    return Intent(options, desired, gone_reason=Reason.NOT_SERVED)


def _disabled(snap: InventorySnapshot, name: str) -> bool:
    """The complete listing shows the project, disabled."""
    rec = snap.projects.get(name) if snap.projects is not None else None
    return snap.listing_complete and rec is not None and not rec.enabled


def _follows_rename(name: str, verdict: Verdict, cycle: Cycle) -> bool:
    """Renamed in Keystone, and the projects file follows the new name (whose data is
    complete: an unknown project keeps): the old name's file moves there."""
    private = set(cycle.inp.private)
    new_names = cycle.ownership.successors(name) & private
    return (
        verdict.status is Status.RENAMED
        and name not in private
        and bool(new_names)
        and all(cycle.inp.snapshot.project_complete(n) for n in new_names)
    )


def project_intent(name: str, verdict: Verdict, cycle: Cycle) -> Intent:
    """A project file: what its verdict and its instances' addresses want."""
    inp, policy, snap = cycle.inp, cycle.policy, cycle.inp.snapshot
    options = {exp.path: exp.options for exp in inp.private.get(name, ())}
    holds: tuple[Hold, ...] = ()
    if verdict.id_changed:
        paths: list[str | None] = [*sorted(options)] or [None]
        holds = tuple(
            Hold(Reason.PROJECT_ID_CHANGED, name, p, None, verdict.id_changed) for p in paths
        )
    nothing = {p: frozenset[str]() for p in options}
    status = verdict.status
    if status is Status.UNKNOWN_LISTING:
        return Intent(
            options,
            keep_all=Reason.UNKNOWN_INVENTORY,
            keep_detail="project listing unknown",
            holds=holds,
        )
    if _follows_rename(name, verdict, cycle):
        return Intent(options, moved=True, holds=holds)
    if status is Status.UNKNOWN and _disabled(snap, name):
        # A disabled project's instances often cannot be read at all (per-project mode:
        # no token for it); the listing alone decides what policy wants.
        if policy.disabled_projects == "remove":
            return Intent(options, nothing, gone_reason=Reason.PROJECT_DISABLED, holds=holds)
        note = (
            f"project {name} is disabled and its instances could not be read "
            f"({verdict.detail}); its exports in force are kept "
            "(safety.disabled_projects: keep)"
        )
        return Intent(
            options, keep_all=Reason.UNKNOWN_PROJECT, quiet=True, holds=holds, notes=(note,)
        )
    if status in (Status.UNKNOWN, Status.RENAMED):
        return Intent(
            options, keep_all=Reason.UNKNOWN_PROJECT, keep_detail=verdict.detail, holds=holds
        )
    if status is Status.ABSENT:
        return Intent(
            options, keep_all=Reason.PENDING_CONFIRMATION, keep_detail=verdict.detail, holds=holds
        )
    if status is Status.DELETED:
        return Intent(
            options, nothing, gone_reason=Reason.PROJECT_DELETED, deleted=True, holds=holds
        )
    assert snap.projects is not None  # complete
    if not snap.projects[name].enabled and policy.disabled_projects == "remove":
        return Intent(options, nothing, gone_reason=Reason.PROJECT_DISABLED, holds=holds)
    ips = {str(a) for i in snap.instances.get(name, ()) for a in i.addresses}
    mine = frozenset(ip for ip in ips if cycle.ownership.claimants(ip) == {name})
    return Intent(options, {p: mine for p in options}, holds=holds)
