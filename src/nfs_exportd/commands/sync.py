"""``sync [--force] [--plan-checksum SHA256]``: one full cycle, one summary line."""

from __future__ import annotations

import argparse
import logging
import time

from ..config import load_config
from ..cycle import hold_log, load_served, sync
from ..errors import PlanMismatch
from ..memory import state
from ..memory import status as status_file
from .common import new_exporter

log = logging.getLogger("nfs_exportd")


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    served = load_served(cfg)
    hold_log.reset()  # a one-shot sync says every hold it has
    exporter = new_exporter(cfg) if cfg.metrics.textfile else None
    daemon = state.lock_holder(cfg.state_dir) if exporter is not None else None
    if daemon is not None:  # its counters would seem to reset under this one cycle's
        log.info("metrics.textfile left to the running daemon (pid %d)", daemon)
        exporter = None
    started = time.monotonic()
    ran = False  # a sync refused by the lock leaves the textfile to whoever holds it
    try:
        with state.StateLock(cfg.state_dir):
            ran = True
            try:
                result = sync(cfg, served, force=args.force, plan_checksum=args.plan_checksum)
            except PlanMismatch:
                ran = False  # refused before anything ran: no cycle to count
                raise
    finally:
        if exporter is not None:
            if ran:  # failed cycles too: their status says "error"
                exporter.cycle(status_file.load_or_empty(cfg.state_dir), time.monotonic() - started)
            exporter.stop()
    print(result.line())
    return result.exit_code
