"""The plan: immutable changes and holds, each with a reason from a closed list.

``Plan.to_json()`` is public contract (extend it, never rename a field): ``{"schema": 1, "checksum",
"changes": [...], "holds": [...]}``; the checksum is the sha256 of the canonical JSON of
the changes, so ``sync --plan-checksum`` can refuse a plan that differs from the one a
human read.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..model import ExportsFile, PairKey
from .lifecycle import Memory

SCHEMA = 1


class Reason(enum.StrEnum):
    """Why a pair changes or is held.  Public: tools match these strings."""

    # changes
    NEW_INSTANCE = "new-instance"  # an instance of the project has this address now
    NEW_EXPORT = "new-export"  # a path became served (projects file or config changed)
    INSTANCE_GONE = "instance-gone"  # complete listings no longer show the address
    PROJECT_DELETED = "project-deleted"  # the project is absent from complete listings
    PROJECT_DISABLED = "project-disabled"  # disabled, and safety.disabled_projects: remove
    PROJECT_RENAMED = "project-renamed"  # renamed in Keystone and in the projects file
    NOT_SERVED = "not-served"  # the path is no longer served by this server (config)
    OPTIONS_CHANGED = "options-changed"  # the export options of a path changed
    IP_CONFLICT = "ip-conflict"  # the address belongs to another project now
    # holds
    UNKNOWN_INVENTORY = "unknown-inventory"
    UNKNOWN_PROJECT = "unknown-project"
    PENDING_CONFIRMATION = "pending-confirmation"
    TOO_MUCH_CHANGE = "too-much-change"
    INVENTORY_SHRINK = "inventory-shrink"
    MAINTENANCE = "maintenance"
    FREEZE = "freeze"
    UNMANAGED_CONFLICT = "unmanaged-conflict"
    PATH_MISSING = "path-missing"
    # a served path that is not what it says (a symlink, a system directory: its pairs
    # leave at once) or not known to be (outside serve.roots, unreadable: kept)
    PATH_UNSAFE = "path-unsafe"
    STATE_CORRUPT = "state-corrupt"
    ROLLBACK_HOLD = "rollback-hold"
    CONFIG_INVALID = "config-invalid"
    # a served name listed under another Keystone id than the one it is bound to
    PROJECT_ID_CHANGED = "project-id-changed"


# Reasons a change has and a hold never has (ip-conflict is both: a removal, and the hold
# of an address two projects claim).
CHANGE_ONLY_REASONS = frozenset(
    {
        Reason.NEW_INSTANCE,
        Reason.NEW_EXPORT,
        Reason.INSTANCE_GONE,
        Reason.PROJECT_DELETED,
        Reason.PROJECT_DISABLED,
        Reason.PROJECT_RENAMED,
        Reason.NOT_SERVED,
        Reason.OPTIONS_CHANGED,
    }
)
HOLD_REASONS = tuple(r for r in Reason if r not in CHANGE_ONLY_REASONS)


class Action(enum.StrEnum):
    ADD = "add"
    REMOVE = "remove"
    UPDATE = "update"  # extension: same client, new options for its path


@dataclass(frozen=True, order=True)
class Change:
    project: str
    path: str
    client: str
    action: Action
    reason: Reason

    def to_dict(self) -> dict[str, str]:
        return {
            "project": self.project,
            "path": self.path,
            "client": self.client,
            "action": self.action.value,
            "reason": self.reason.value,
        }

    @property
    def key(self) -> PairKey:
        return PairKey(self.project, self.path, self.client)


@dataclass(frozen=True)
class Hold:
    reason: Reason
    project: str | None = None
    path: str | None = None
    client: str | None = None
    detail: str = ""
    # the change that was held, when the hold is about one pair
    action: Action | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "reason": self.reason.value,
            "project": self.project,
            "path": self.path,
            "client": self.client,
            "detail": self.detail,
        }
        if self.action is not None:
            out["action"] = self.action.value
        return out

    def sort_key(self) -> tuple[str, str, str, str, str]:
        return (self.project or "", self.path or "", self.client or "", self.reason.value, "")

    def scope(self) -> str:
        """What the hold covers, in words: its pair or project, else what a hold of
        everything means for its reason (``config-invalid`` holds no change: the last
        good config runs and its changes apply)."""
        what = " ".join(x for x in (self.project, self.path, self.client) if x)
        if what:
            return what
        if self.reason is Reason.CONFIG_INVALID:
            return "no change (the last good config and projects file run; changes apply)"
        return "everything"


MAX_CLIENTS_SHOWN = 8


def _hold_lines(holds: tuple[Hold, ...]) -> list[str]:
    """One line per project, path, action, reason and detail, its clients listed on it:
    90 pairs held on an unknown listing are a few lines, not 90 identical ones."""
    groups: dict[tuple[str, str, str, str, str], list[str]] = {}
    alone: dict[tuple[str, str, str, str, str], str] = {}  # not about one pair: its scope
    for h in sorted(holds, key=Hold.sort_key):
        action = h.action.value if h.action else ""
        key = (h.project or "", h.path or "", action, h.reason.value, h.detail)
        if h.client is None or h.project is None:
            alone[(h.scope(), "", action, h.reason.value, h.detail)] = h.scope()
            groups.setdefault((h.scope(), "", action, h.reason.value, h.detail), [])
        else:
            groups.setdefault(key, []).append(h.client)
    out = []
    for key, clients in groups.items():
        project, path, action, reason, detail = key
        if key in alone:
            what = alone[key]
        else:
            shown = " ".join(clients[:MAX_CLIENTS_SHOWN])
            more = len(clients) - MAX_CLIENTS_SHOWN
            what = f"{project} {path} {shown}" + (f" (and {more} more)" if more > 0 else "")
        act = f" [{action}]" if action else ""
        out.append(f"    ! {what}{act}  ({reason})" + (f": {detail}" if detail else ""))
    return out


def checksum_of(changes: tuple[Change, ...]) -> str:
    canonical = json.dumps(
        [c.to_dict() for c in sorted(changes)], sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Plan:
    changes: tuple[Change, ...]
    holds: tuple[Hold, ...]
    # Target content of every managed file: filename -> file, or None to delete it.
    files: Mapping[str, ExportsFile | None]
    # Removal counters to persist if this plan is applied by a counting cycle.
    counters: Mapping[PairKey, int]
    # complete, unfrozen data: the counters and memory of this plan are to be kept
    # (they advance only when ``counted``: see safety.confirmation_spacing_seconds)
    counting: bool
    in_force_pairs: int
    notes: tuple[str, ...] = field(default=())
    memory: Memory = field(default_factory=Memory)  # project lifecycle memory to persist
    counted: bool = False  # this cycle counted toward confirmations (spaced enough)

    @property
    def checksum(self) -> str:
        return checksum_of(self.changes)

    @property
    def held(self) -> bool:
        return bool(self.holds)

    def count(self, action: Action) -> int:
        return sum(1 for c in self.changes if c.action is action)

    def holds_by_reason(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for h in self.holds:
            out[h.reason.value] = out.get(h.reason.value, 0) + 1
        return dict(sorted(out.items()))

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "checksum": self.checksum,
            "changes": [c.to_dict() for c in sorted(self.changes)],
            "holds": [h.to_dict() for h in sorted(self.holds, key=Hold.sort_key)],
        }

    def summary(self) -> str:
        adds, rems, upds = (self.count(a) for a in (Action.ADD, Action.REMOVE, Action.UPDATE))
        parts = [f"{adds} to add", f"{rems} to remove"]
        if upds:
            parts.append(f"{upds} option updates")
        held = self.holds_by_reason()
        if held:
            parts.append("held: " + ", ".join(f"{k}={v}" for k, v in held.items()))
        else:
            parts.append("nothing held")
        return ", ".join(parts)

    def to_text(self) -> str:
        """A readable diff grouped by managed file, then the holds."""
        lines = [f"plan {self.checksum[:12]}: {self.summary()}"]
        by_project: dict[str, list[Change]] = {}
        for c in sorted(self.changes):
            by_project.setdefault(c.project, []).append(c)
        sign = {Action.ADD: "+", Action.REMOVE: "-", Action.UPDATE: "~"}
        for project, changes in sorted(by_project.items()):
            lines.append(f"  {project}:")
            for c in changes:
                lines.append(f"    {sign[c.action]} {c.path} {c.client}  ({c.reason.value})")
        if self.holds:
            lines.append("  held:")
            lines += _hold_lines(self.holds)
        for note in self.notes:
            lines.append(f"  note: {note}")
        if not self.changes and not self.holds:
            lines.append("  no changes")
        else:  # a long plan scrolls its head away: say it again where the eye is
            lines.append(lines[0])
        return "\n".join(lines)
