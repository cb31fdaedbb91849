"""``status [--json]``: the last cycle, holds and their reasons, counts."""

from __future__ import annotations

import argparse
import json
import logging

from ..errors import EXIT_OK
from ..memory import running
from ..memory import status as status_file
from .common import live_status, when

log = logging.getLogger("nfs_exportd")


def run(args: argparse.Namespace) -> int:
    cfg, fallback = running.load_or_running(args.config)
    if fallback:
        log.warning("%s", fallback.line())
    st = live_status(cfg)
    if args.json:
        shown = st or status_file.Status(last_cycle=None)
        print(json.dumps(shown.to_json(), indent=1, sort_keys=True))
        return EXIT_OK
    if fallback:
        print(fallback.line())
    unjournaled = st.unjournaled if st is not None else None
    if unjournaled is not None:  # first: at the switch-over it is all there is
        print(unjournaled.explain(f"since {when(unjournaled.since)}", f"state_dir {cfg.state_dir}"))
    if st is None or st.last_cycle is None:
        print(f"no cycle has run yet (state_dir {cfg.state_dir})")
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
    return EXIT_OK
