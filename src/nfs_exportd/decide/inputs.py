"""What ``decide`` is given: the facts of one cycle and the policy (values only)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from ..model import (
    ExportsFile,
    InventorySnapshot,
    Maintenance,
    PairKey,
    PublicExport,
    ServedExport,
)
from .lifecycle import Memory
from .plan import Reason

# safety.disabled_projects: what a project Keystone lists as disabled keeps
DisabledProjects = Literal["keep", "remove"]


@dataclass(frozen=True)
class Policy:
    confirmations: int = 3
    max_removal_fraction: float = 0.25
    min_removal_count: int = 10
    maintenance: Maintenance = Maintenance.OFF
    force: bool = False  # releases too-much-change and inventory-shrink, nothing else
    removal_min_age: float = 0.0  # a deleted project must be absent at least this long
    disabled_projects: DisabledProjects = "keep"
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
