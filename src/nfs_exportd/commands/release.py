"""``release``: end the rollback-hold that ``rollback`` left."""

from __future__ import annotations

import argparse
import logging

from ..config import load_config
from ..errors import EXIT_OK
from ..memory import state
from .common import LOCK_WAIT

log = logging.getLogger("nfs_exportd")


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    with state.StateLock(cfg.state_dir, wait=LOCK_WAIT):
        marker = state.load_rollback_hold(cfg.state_dir)
        if not state.clear_rollback_hold(cfg.state_dir):
            print("no rollback-hold in force")
            return EXIT_OK
    log.info("rollback-hold released (%s)", marker.detail() if marker else "no marker")
    print("rollback-hold released: the next cycle applies what the cloud says again")
    return EXIT_OK
