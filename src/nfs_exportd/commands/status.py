"""``status [--json]``: the last cycle, holds and their reasons, counts."""

from __future__ import annotations

import argparse
import json
import logging

from ..config import Config
from ..errors import EXIT_OK, NfsExportdError
from ..memory import running
from ..memory import status as status_file
from ..memory import triggers as triggers_file
from .common import live_status, when

log = logging.getLogger("nfs_exportd")


def load_triggers(cfg: Config) -> triggers_file.Triggers | None:
    """triggers.json when notifications or change polling are on (else stale or none)."""
    if not (cfg.notifications.enabled or cfg.change_polling.enabled):
        return None
    try:
        return triggers_file.load(cfg.state_dir)
    except NfsExportdError as exc:
        print(f"triggers: unreadable: {exc}")
        return None


def trigger_lines(cfg: Config, trig: triggers_file.Triggers | None) -> list[str]:
    """The message bus and change polling, one line each, cause first."""
    out: list[str] = []
    if cfg.notifications.enabled:
        if trig is None:
            out.append("notifications: no run loop has reported yet (is 'run' running?)")
        else:
            b = trig.bus
            since = f" since {when(b.since)}" if b.since else ""
            state = b.state + since + (f": {b.detail}" if b.detail else "")
            total = sum(b.events.values())
            last = when(b.last_event) if b.last_event else "never"
            out.append(
                f"notifications: {state} ({b.target}, pool {b.pool}); {total} trigger events "
                f"(last {last}), {b.ignored} ignored, {b.malformed} malformed; "
                f"{trig.early_cycles} early cycles"
            )
    if cfg.change_polling.enabled and trig is not None:
        p = trig.polling
        last = when(p.last_poll) if p.last_poll else "never"
        problem = f"; failing: {p.problem}" if p.problem else ""
        out.append(
            f"change polling: every {cfg.change_polling.poll_seconds:g} s, {p.polls} polls "
            f"(last {last}), {p.changes} saw changes, {p.failures} failed{problem}"
        )
    return out


def run(args: argparse.Namespace) -> int:
    cfg, fallback = running.load_or_running(args.config)
    if fallback:
        log.warning("%s", fallback.line())
    st = live_status(cfg)
    trig = load_triggers(cfg)
    if args.json:
        shown = (st or status_file.Status(last_cycle=None)).to_json()
        if trig is not None:  # an extension: what brings cycles forward (run only)
            shown["triggers"] = trig.to_json()
        print(json.dumps(shown, indent=1, sort_keys=True))
        return EXIT_OK
    if fallback:
        print(fallback.line())
    unjournaled = st.unjournaled if st is not None else None
    if unjournaled is not None:  # first: at the switch-over it is all there is
        print(unjournaled.explain(f"since {when(unjournaled.since)}", f"state_dir {cfg.state_dir}"))
    if st is None or st.last_cycle is None:
        print(f"no cycle has run yet (state_dir {cfg.state_dir})")
        for line in trigger_lines(cfg, trig):
            print(line)
        return EXIT_OK
    last = st.last_cycle
    print(f"last cycle: {when(last.finished)}  result: {last.result}")
    print(f"  {last.message}")
    inv = st.inventory
    if inv is not None:
        older = ""
        if last.result == "error":  # a failed cycle keeps the inventory of the one before
            at = f" at {when(st.inventory_at)}" if st.inventory_at is not None else ""
            older = f"  (as read by an earlier cycle{at}: the last cycle failed)"
        print(f"inventory: {inv.source}  complete: {inv.complete}{older}")
        if inv.problem:
            print(f"  problem: {inv.problem}")
        for proj, why in sorted(inv.incomplete_projects.items()):
            print(f"  unknown: {proj}: {why}")
    else:
        print("inventory: None  complete: None")
    print(f"maintenance: {st.maintenance.value}")
    if st.rollback_hold:
        print(f"rollback-hold: {st.rollback_hold}")
    holds = st.holds_by_reason
    print("holds: " + (", ".join(f"{k}={v}" for k, v in holds.items()) or "none"))
    counts = st.counts.model_dump()
    print(
        "in force: "
        + ", ".join(f"{counts[k]} {k}" for k in ("projects", "files", "exports", "pairs"))
    )
    for line in trigger_lines(cfg, trig):
        print(line)
    return EXIT_OK
