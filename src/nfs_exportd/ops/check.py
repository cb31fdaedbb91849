"""``nfs-exportd check``: a Nagios/Icinga plugin over the status the daemon saves.

One line, ``NFS-EXPORTD STATE - text | perfdata``, and the plugin exit codes: 0 OK,
1 WARNING, 2 CRITICAL, 3 UNKNOWN.  The verdict is a pure function of the saved status,
the maintenance flag's age and the thresholds, so every state is easy to test.

* CRITICAL: no complete inventory for longer than ``check.critical_after_seconds``, or
  the last cycle failed (an apply that was undone, an unwritable directory, ...).
* WARNING: held (anything but maintenance) for longer than
  ``check.warning_after_seconds``, or no cycle for that long (the daemon is not running);
  at once for ``too-much-change`` and ``inventory-shrink``: only a human clears them.
* OK says "held" (never "in sync") while anything but routine pending confirmations
  and planned maintenance holds, so that a young hold is visible before it warns.
* The text is bounded (``MAX_TEXT``): NRPE and the Icinga UI cut long lines, and the
  cause comes first so that what survives the cut is what matters.
* Maintenance is OK with its reason, so that planned work does not page, unless the flag
  is older than ``maintenance.max_age_seconds``: forgotten flags are how removals stop.
* CRITICAL too: a change in force that the journal lacks (status.json's ``unjournaled``,
  left by a sync, rollback or adopt whose journal could not be written), even before the
  first cycle (an ``adopt`` at the switch-over).
* UNKNOWN: the config or the status cannot be read, or nothing has run yet.
* WARNING too: ``notifications.enabled`` and the message bus unusable (down, refusing
  our credentials) for longer than ``notifications.warning_after_seconds``.  Cycles go
  on at their interval meanwhile, so it never pages louder than that.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..memory.status import LastCycle, Status
from ..memory.triggers import Triggers

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
NAMES = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL", UNKNOWN: "UNKNOWN"}
# Holds that are normal operation, not a reason to warn: planned work (maintenance has its
# own age check) and removals waiting for their confirmations (a listing that stops being
# complete is caught by the no-complete-inventory rule).
QUIET = frozenset({"maintenance", "freeze", "pending-confirmation"})
# Holds that only a human can clear (``sync --force`` after a review): waiting does not
# end them, so they warn at once.
HUMAN = frozenset({"too-much-change", "inventory-shrink"})
HUMAN_FIX = (
    "only a human clears it: review 'nfs-exportd plan --force', then 'nfs-exportd sync --force'"
)
# Characters of the text before the perfdata: NRPE v2 passes 1024 bytes in all.
MAX_TEXT = 400


def hold_key(reason: str, project: str | None, path: str | None, client: str | None) -> str:
    """How status.json's ``hold_first_seen`` names one hold."""
    return "|".join((reason, project or "", path or "", client or ""))


@dataclass(frozen=True)
class Thresholds:
    warning_after: float
    critical_after: float
    maintenance_max_age: float


@dataclass(frozen=True)
class MaintenanceFlag:
    age: float  # seconds since the flag file was last modified
    reason: str  # its first line, or "" when empty


@dataclass(frozen=True)
class Verdict:
    code: int
    text: str
    perfdata: str = ""

    def line(self) -> str:
        text = self.text
        if len(text) > MAX_TEXT:
            more = " ... ('nfs-exportd status' has it all)"
            text = text[: MAX_TEXT - len(more)].rstrip() + more
        out = f"NFS-EXPORTD {NAMES[self.code]} - {text}"
        return f"{out} | {self.perfdata}" if self.perfdata else out


def _age(seconds: float) -> str:
    s = int(max(0, seconds))
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    if s < 172800:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d{(s % 86400) // 3600}h"


def evaluate(
    status: Status | None,
    flag: MaintenanceFlag | None,
    th: Thresholds,
    now: float,
) -> Verdict:
    if status is None or (status.last_cycle is None and status.unjournaled is None):
        return Verdict(UNKNOWN, "no cycle has run yet (is nfs-exportd running?)")
    last = status.last_cycle
    complete_at = status.last_complete_inventory
    complete_age = now - complete_at if complete_at else None
    counts = status.counts
    held = {k: v for k, v in status.holds_by_reason.items() if v}
    problems = _unjournaled_problems(status, now)
    if last is not None:
        problems += _cycle_problems(status, last, complete_age, th, now)

    code = max((c for c, _ in problems), default=OK)
    texts = [t for c, t in sorted(problems, key=lambda p: -p[0])]
    if flag is not None:
        why = f": {flag.reason}" if flag.reason else ""
        if flag.age > th.maintenance_max_age:
            code = max(code, WARNING)
            texts.insert(
                0,
                f"maintenance flag set for {_age(flag.age)}, longer than "
                f"maintenance.max_age_seconds ({_age(th.maintenance_max_age)}): "
                f"{_stopped(flag.reason)}; remove the flag when the work is done{why}",
            )
        else:
            masked = f" (would be {NAMES[code]})" if code != OK else ""
            code = OK  # planned work does not page
            texts.insert(0, f"maintenance for {_age(flag.age)}{why}{masked}")
    quiet = {k: v for k, v in held.items() if k in QUIET}
    if not texts:
        loud = {k: v for k, v in held.items() if k not in QUIET}
        if loud:  # young holds: not a warning yet, but never "in sync"
            since = now - status.held_since if status.held_since else 0.0
            reasons = ", ".join(f"{k}={v}" for k, v in sorted(loud.items()))
            texts.append(
                f"held for {_age(since)}: {reasons} (WARNING after "
                f"{_age(th.warning_after)}); {counts.projects} projects, {counts.pairs} pairs"
            )
        else:
            texts.append(f"in sync: {counts.projects} projects, {counts.pairs} pairs")
        if quiet:
            texts.append("pending: " + ", ".join(f"{k}={v}" for k, v in sorted(quiet.items())))
    perf = [
        (f"last_cycle_age={int(now - last.finished)}s" if last else "last_cycle_age=U")
        + f";{th.warning_after:g}",
        (
            f"complete_inventory_age={int(complete_age)}s"
            if complete_age is not None
            else "complete_inventory_age=U"
        )
        + f";;{th.critical_after:g}",
        f"holds={sum(held.values())}",
        f"projects={counts.projects}",
        f"exports={counts.exports}",
        f"pairs={counts.pairs}",
        f"clients={counts.clients}",
    ]
    return Verdict(code, "; ".join(texts), " ".join(perf))


def _stopped(reason: str) -> str:
    """What a forgotten flag stops: under ``freeze`` nothing changes at all."""
    words = reason.split()
    if words and words[0].lower().rstrip(":;,.") == "freeze":
        return "nothing changes (freeze: no additions either)"
    return "removals are not happening"


def _unjournaled_problems(status: Status, now: float) -> list[tuple[int, str]]:
    """A change in force that the journal lacks is CRITICAL, as the sync that could not
    journal it is.  Said once: a failed sync's own message names it already."""
    unj, last = status.unjournaled, status.last_cycle
    if unj is None:
        return []
    if last is not None and last.result == "error" and unj.message in last.message:
        return []
    return [(CRITICAL, unj.explain(f"for {_age(now - unj.since)}"))]


def _cycle_problems(
    status: Status, last: LastCycle, complete_age: float | None, th: Thresholds, now: float
) -> list[tuple[int, str]]:
    """What the last cycle says: a failure, an old inventory, no cycle lately, long holds."""
    finished = last.finished
    loud = {k: v for k, v in status.holds_by_reason.items() if v and k not in QUIET}
    held_since = status.held_since
    problems: list[tuple[int, str]] = []
    if last.result == "error":
        problems.append((CRITICAL, f"last cycle failed: {last.message}"))
    if complete_age is None:
        # never complete: count from the first cycle this state_dir has seen
        first = status.first_cycle or finished
        if now - first > th.critical_after:
            problems.append((CRITICAL, f"no complete inventory in {_age(now - first)}"))
        elif now - first > th.warning_after:
            problems.append((WARNING, f"no complete inventory in {_age(now - first)}"))
    elif complete_age > th.critical_after:
        problems.append((CRITICAL, f"no complete inventory for {_age(complete_age)}"))
    if now - finished > th.warning_after:
        problems.append((WARNING, f"last cycle {_age(now - finished)} ago"))
    human = {k: v for k, v in loud.items() if k in HUMAN}
    if human and last.result != "error":
        reasons = ", ".join(f"{k}={v}" for k, v in sorted(human.items()))
        problems.append((WARNING, f"held: {reasons}: {HUMAN_FIX}"))
        loud = {k: v for k, v in loud.items() if k not in HUMAN}
    if loud and last.result != "error":
        since = now - held_since if held_since else 0.0
        if since > th.warning_after:
            reasons = ", ".join(f"{k}={v}" for k, v in sorted(loud.items()))
            detail = ""
            if "rollback-hold" in loud:
                detail = " (after a rollback: 'nfs-exportd release' resumes changes)"
            problems.append((WARNING, f"held for {_age(since)}: {reasons}{detail}"))
    return problems


def bus_problem(trig: Triggers | None, warning_after: float, now: float) -> str | None:
    """The notification listener not connected for longer than ``warning_after``."""
    if trig is None:
        return None
    bus = trig.bus
    if bus.state in ("off", "connected") or bus.since is None:
        return None
    age = now - bus.since
    if age <= warning_after:
        return None
    what = "refuses our credentials" if bus.state == "refused" else "is unreachable"
    detail = f" ({bus.detail})" if bus.detail else ""
    return (
        f"message bus {bus.target} {what} for {_age(age)}{detail}: cycles keep their "
        "interval; fix notifications.transport_url or the broker"
    )


def with_problem(verdict: Verdict, code: int, text: str) -> Verdict:
    """``verdict`` with one more problem: the worse code, its text first when worse."""
    if verdict.code == UNKNOWN:
        return verdict
    if verdict.code == OK and verdict.text.startswith(("in sync", "maintenance")):
        return Verdict(code, f"{text}; {verdict.text}", verdict.perfdata)
    if code > verdict.code:
        return Verdict(code, f"{text}; {verdict.text}", verdict.perfdata)
    return Verdict(verdict.code, f"{verdict.text}; {text}", verdict.perfdata)
