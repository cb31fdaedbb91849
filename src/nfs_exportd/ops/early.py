"""When a trigger (a notification, a change poll) may run a cycle before it is due.

A trigger only moves the next full cycle forward; it never decides anything.  Three
rules bound what a storm of triggers costs:

* **debounce**: triggers within ``debounce_seconds`` of the first one make one cycle
  (a fixed window from the first, so that a steady stream cannot postpone it forever);
* **minimum gap**: an early cycle starts at least ``min_gap_seconds`` after the end of
  the last cycle: at most one early cycle per gap, whatever arrives;
* **request ceiling**: an early cycle waits while the control-plane requests of the
  last 60 s (cycles and change polls) plus what the last cycle cost would exceed
  ``max_requests_per_minute``.  The regular interval is never delayed by it.

A trigger that arrives during a cycle is kept: that cycle may have read the cloud
before the change, so one more follows (after the gap).  Removals are not made faster by
any of this: the confirmation spacing (decide layer) counts only cycles that far apart.

Pure bookkeeping with the time passed in, so that the rules are tested without sleeping.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..memory.triggers import BusStatus, PollStatus, Triggers

WINDOW = 60.0


@dataclass
class EarlyCycles:
    debounce: float
    min_gap: float
    max_requests_per_minute: int
    pending_since: float | None = None  # the first trigger not yet covered by a cycle
    pending: Counter[str] = field(default_factory=Counter)  # trigger -> count, pending
    last_end: float | None = None
    last_cost: int = 0
    running_since: float | None = None
    requests: deque[float] = field(default_factory=deque)
    deferred: int = 0  # early cycles the ceiling postponed
    _deferred_now: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def configure(self, debounce: float, min_gap: float, max_requests_per_minute: int) -> None:
        """New rules from a reloaded config, in place: a trigger the listener's thread
        fires meanwhile lands in this same object and is never lost."""
        with self.lock:
            self.debounce, self.min_gap = debounce, min_gap
            self.max_requests_per_minute = max_requests_per_minute

    def fire(self, now: float, trigger: str) -> None:
        """A trigger arrived (any thread)."""
        with self.lock:
            if self.pending_since is None:
                self.pending_since = now
            self.pending[trigger] += 1

    def request(self, now: float) -> None:
        """One control-plane request was made (any thread)."""
        with self.lock:
            self.requests.append(now)
            self._prune(now)

    def _prune(self, now: float) -> None:
        while self.requests and self.requests[0] <= now - WINDOW:
            self.requests.popleft()

    def due(self, now: float) -> float | None:
        """When the early cycle may start (may be <= now), None when nothing is pending."""
        with self.lock:
            if self.pending_since is None:
                return None
            at = self.pending_since + self.debounce
            if self.last_end is not None:
                at = max(at, self.last_end + self.min_gap)
            self._prune(now)
            allowed = max(0, self.max_requests_per_minute - self.last_cost)
            n = len(self.requests)
            if n > allowed:
                budget = self.requests[n - allowed - 1] + WINDOW
                if budget > at and budget > now and not self._deferred_now:
                    self.deferred += 1
                    self._deferred_now = True
                at = max(at, budget)
            return at

    def started(self, now: float) -> tuple[str, ...]:
        """A cycle (early or regular) starts: it covers every trigger so far.  Returns
        the triggers it covers (for the log and the metrics)."""
        with self.lock:
            covered = tuple(sorted(self.pending))
            self.pending_since = None
            self.pending.clear()
            self._deferred_now = False
            self.running_since = now
            return covered

    def ended(self, now: float) -> None:
        with self.lock:
            start = self.running_since if self.running_since is not None else now
            self.last_cost = sum(1 for t in self.requests if t >= start)
            self.running_since = None
            self.last_end = now


@dataclass
class ChangePoller:
    """Asks the cloud what changed since the last poll (one page per API and region) and
    says whether anything is new.  An item is new when the last poll did not return it
    (windows overlap by ``margin`` seconds, as the APIs compare whole seconds); on the
    first poll only what changed after the last cycle started counts."""

    fetch: Callable[[float], tuple[Sequence[tuple[str, float | None]], bool]]
    margin: float = 2.0
    since: float | None = None
    seen: frozenset[str] = frozenset()
    first: bool = True

    def poll(self, now: float, cycle_started: float) -> bool:
        """True when something changed; raises what ``fetch`` raises."""
        since = (self.since if self.since is not None else cycle_started) - self.margin
        items, full = self.fetch(since)
        keys = frozenset(k for k, _ in items)
        if self.first:
            new = any(k not in self.seen and (t is None or t >= cycle_started - self.margin)
                      for k, t in items)  # fmt: skip
        else:
            new = any(k not in self.seen for k in keys)
        self.first = False
        self.since, self.seen = now, keys
        return new or full


@dataclass
class LiveTriggers:
    """What the run loop knows about its triggers, mutable (the listener's thread and
    the loop update it under ``lock``); ``record()`` is what triggers.json says."""

    pid: int
    bus_state: str = "off"
    bus_since: float | None = None
    bus_detail: str = ""
    bus_target: str = ""
    bus_pool: str = ""
    bus_last_connected: float | None = None
    bus_last_event: float | None = None
    bus_events: Counter[str] = field(default_factory=Counter)
    bus_ignored: int = 0
    bus_malformed: int = 0
    poll_enabled: bool = False
    poll_last: float | None = None
    poll_last_change: float | None = None
    polls: int = 0
    poll_changes: int = 0
    poll_failures: int = 0
    poll_problem: str = ""
    early_cycles: int = 0
    early_deferred: int = 0
    dirty: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, now: float) -> Triggers:
        with self.lock:
            self.dirty = False
            return Triggers(
                updated=now,
                pid=self.pid,
                bus=BusStatus(
                    state=self.bus_state,  # type: ignore[arg-type]
                    since=self.bus_since,
                    detail=self.bus_detail,
                    target=self.bus_target,
                    pool=self.bus_pool,
                    last_connected=self.bus_last_connected,
                    last_event=self.bus_last_event,
                    events=dict(self.bus_events),
                    ignored=self.bus_ignored,
                    malformed=self.bus_malformed,
                ),
                polling=PollStatus(
                    enabled=self.poll_enabled,
                    last_poll=self.poll_last,
                    last_change=self.poll_last_change,
                    polls=self.polls,
                    changes=self.poll_changes,
                    failures=self.poll_failures,
                    problem=self.poll_problem,
                ),
                early_cycles=self.early_cycles,
                early_deferred=self.early_deferred,
            )
