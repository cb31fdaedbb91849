"""``state_dir/status.json``: what the last cycle did, as one typed record.

The cycle writes it (``save``) and ``status``, ``check`` and the metrics read it
(``load``); nothing else parses the file.  ``status --json`` prints this record, so its
field names are public contract: extend it, never rename a field.  Keys a
writer did not set are left out of the file (a cycle that failed before any complete
one writes only ``schema``, ``first_cycle`` and ``last_cycle``), as earlier versions did,
and files written by earlier versions load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from ..decide import Action, Reason
from ..errors import StateError
from ..fsutil import atomic_write
from ..model import Maintenance
from ..records import Count, Record, Time, dumps, read_json

STATUS = "status.json"

Result = Literal["ok", "held", "error"]


class LastCycle(Record):
    started: Time
    finished: Time
    result: Result
    message: str
    error: str = ""  # a failed cycle: the type of the error that ended it


class InventoryStatus(Record):
    source: str
    complete: bool
    problem: str | None
    incomplete_projects: dict[str, str]  # project -> why its data is unknown


class Counts(Record):
    """What is in force after the cycle (a failed cycle keeps the counts before it)."""

    files: Count = 0
    projects: Count = 0
    exports: Count = 0
    pairs: Count = 0
    clients: Count = 0


class PlanChange(Record):
    project: str
    path: str
    client: str
    action: Action
    reason: Reason


class PlanHold(Record):
    reason: Reason
    project: str | None
    path: str | None
    client: str | None
    detail: str
    action: Action | None = None  # only when the hold is about one change


class PlanRecord(Record):
    """The plan JSON of ``plan --json``, as the last cycle decided it."""

    schema_: Literal[1] = Field(1, alias="schema")
    checksum: str
    changes: list[PlanChange]
    holds: list[PlanHold]

    @classmethod
    def of(cls, plan_json: dict[str, Any]) -> PlanRecord:
        """From ``Plan.to_json()``: its enums are plain strings there."""
        return cls.model_validate(plan_json, strict=False)


class Unjournaled(Record):
    """A change in force that the journal lacks, until a later cycle catches up."""

    since: Time
    message: str

    def explain(self, since: str, state_dir: str = "state_dir") -> str:
        """One line for ``status`` and ``check``, cause first, then the fix: after a
        rollback or adopt this is the only trace of the change (at the switch-over, the
        only thing status.json holds)."""
        return (
            f"a change in force is not in the journal ({since}): {self.message}; "
            f"free space in {state_dir}, then run sync: the journal catches up"
        )


class Status(Record):
    schema_: Literal[1] = Field(1, alias="schema")
    first_cycle: Time | None = None  # the first cycle this state_dir has seen
    last_cycle: LastCycle | None = None
    inventory: InventoryStatus | None = None
    # when the cycle that read ``inventory`` started: a failed cycle keeps the inventory of
    # the one before, and status must not show that as the failed cycle's
    inventory_at: Time | None = None
    maintenance: Maintenance = Maintenance.OFF
    rollback_hold: str | None = None  # what the rollback-hold says, while it holds
    holds_by_reason: dict[str, Count] = Field(default_factory=dict)
    counts: Counts = Field(default_factory=Counts)
    applied: dict[str, Count] = Field(default_factory=dict)  # action -> changes applied
    plan: PlanRecord | None = None
    last_complete_inventory: Time | None = None  # when the inventory was last read whole
    # "reason|project|path|client" (check.hold_key) -> since when each loud hold holds
    hold_first_seen: dict[str, Time] = Field(default_factory=dict)
    held_since: Time | None = None  # the oldest of hold_first_seen
    unjournaled: Unjournaled | None = None

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "schema": 1}


def save(state_dir: Path, status: Status) -> None:
    """The one writer of status.json (atomic)."""
    path = state_dir / STATUS
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(path, dumps(status))
    except OSError as exc:
        raise StateError(f"{path}: cannot write status: {exc}") from None


def load(state_dir: Path) -> Status | None:
    """The one reader of status.json: None before the first cycle; StateError naming the
    file and the key when it is corrupt (the next cycle writes it afresh)."""
    return read_json(state_dir / STATUS, Status, "status file (the next cycle rewrites it)")


def load_or_empty(state_dir: Path) -> Status:
    """The last status, or an empty one when there is none or it cannot be read: for
    the writer (a corrupt status must not stop a cycle) and the metrics."""
    try:
        return load(state_dir) or Status()
    except StateError:
        return Status()
