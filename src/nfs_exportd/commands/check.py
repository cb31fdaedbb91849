"""``check``: the Nagios/Icinga plugin - one line with perfdata, exit 0/1/2/3.

It runs every minute: it loads the config, status.json and the maintenance file, and
nothing of the cloud, the simulator or the metrics server."""

from __future__ import annotations

import argparse
import time

from ..errors import NfsExportdError
from ..memory import running
from ..memory import triggers as triggers_file
from ..ops import check
from .common import live_status


def run(args: argparse.Namespace) -> int:
    """Never raises: every failure is a plugin UNKNOWN with the reason on the line."""
    try:
        cfg, fallback = running.load_or_running(args.config)
        st = live_status(cfg)
        flag = None
        try:
            mtime = cfg.maintenance_file.stat().st_mtime
            try:
                first = cfg.maintenance_file.read_text(errors="replace").strip().splitlines()
            except OSError:
                first = []
            flag = check.MaintenanceFlag(time.time() - mtime, first[0][:120] if first else "")
        except FileNotFoundError:
            pass
        verdict = check.evaluate(
            st,
            flag,
            check.Thresholds(
                cfg.check.warning_after_seconds,
                cfg.check.critical_after_seconds,
                cfg.maintenance.max_age_seconds,
            ),
            time.time(),
        )
        if fallback:  # the daemon runs on its old config; the next restart will not
            verdict = check.Verdict(
                max(verdict.code, check.WARNING),
                f"{fallback.line(max_error=120)}; then: {verdict.text}",
                verdict.perfdata,
            )
        if cfg.notifications.enabled:
            problem = check.bus_problem(
                triggers_file.load(cfg.state_dir),
                cfg.notifications.warning_after_seconds,
                time.time(),
            )
            if problem is not None:
                verdict = check.with_problem(verdict, check.WARNING, problem)
    except NfsExportdError as exc:
        verdict = check.Verdict(check.UNKNOWN, " ".join(str(exc).split()))
    except Exception as exc:  # a plugin must answer, whatever happens
        verdict = check.Verdict(check.UNKNOWN, f"{type(exc).__name__}: {exc}")
    print(verdict.line())
    return verdict.code
