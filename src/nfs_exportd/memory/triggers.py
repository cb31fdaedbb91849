"""``state_dir/triggers.json``: how ``run`` hears about changes between its cycles.

Written by the run loop when the message bus changes state and after each cycle; read by
``status`` and ``check``.  A file of its own, beside status.json (which only cycles
write), so that a bus that drops between two cycles shows at once.  ``status --json``
prints it as ``triggers``: its field names are public contract (extend, never rename).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from ..errors import StateError
from ..fsutil import atomic_write
from ..records import Count, Record, Time, dumps, read_json

TRIGGERS = "triggers.json"

BusState = Literal["off", "connecting", "connected", "disconnected", "refused"]


class BusStatus(Record):
    """The notification listener, as the run loop last saw it."""

    state: BusState = "off"
    since: Time | None = None  # when it entered this state
    detail: str = ""  # why it is not connected, cause first (never a secret)
    target: str = ""  # host:port/vhost of the broker, without credentials
    pool: str = ""
    last_connected: Time | None = None
    last_event: Time | None = None
    events: dict[str, Count] = Field(default_factory=dict)  # event type -> received
    ignored: Count = 0  # notifications of other event types
    malformed: Count = 0  # messages that were not a notification we can read


class PollStatus(Record):
    """Change polling (Nova changes-since, Neutron changed_since)."""

    enabled: bool = False
    last_poll: Time | None = None
    last_change: Time | None = None
    polls: Count = 0
    changes: Count = 0  # polls that saw something new
    failures: Count = 0
    problem: str = ""  # the last poll's failure, "" when it worked


class Triggers(Record):
    schema_: Literal[1] = Field(1, alias="schema")
    updated: Time | None = None
    bus: BusStatus = Field(default_factory=BusStatus)
    polling: PollStatus = Field(default_factory=PollStatus)
    early_cycles: Count = 0  # cycles run before they were due
    early_deferred: Count = 0  # early cycles postponed by the request ceiling
    pid: int | None = None  # the run loop that wrote it

    def to_json(self) -> dict[str, object]:
        return {**super().to_json(), "schema": 1}


def save(state_dir: Path, triggers: Triggers) -> None:
    path = state_dir / TRIGGERS
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(path, dumps(triggers))
    except OSError as exc:
        raise StateError(f"{path}: cannot write trigger status: {exc}") from None


def load(state_dir: Path) -> Triggers | None:
    """None when no run loop with triggers has written one."""
    return read_json(state_dir / TRIGGERS, Triggers, "trigger status (run rewrites it)")
