"""Command line: ``nfs-exportd [--config PATH] [--allow-root] COMMAND``.

Exit codes (DESIGN.md): 0 done, 1 error, 2 bad usage or config, 3 something held.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from . import __version__, state
from .config import DEFAULT_CONFIG, Config, load_config
from .cycle import load_served, make_plan, read_facts, sync
from .decide import Hold, Reason
from .errors import EXIT_ERROR, EXIT_OK, EXIT_USAGE, NfsExportdError, UsageError
from .inventory import source_from_config
from .projects import ServedSet

log = logging.getLogger("nfs_exportd")
WRITING = frozenset({"sync", "run"})


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(
            {
                "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
                "level": record.levelname.lower(),
                "logger": record.name,
                "message": record.getMessage(),
            }
        )


def setup_logging(fmt: str, verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.set_name("nfs-exportd")
    root = logging.getLogger()
    root.handlers[:] = [h for h in root.handlers if h.get_name() != "nfs-exportd"]
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="nfs-exportd",
        description="Keep this NFS server's exports in sync with the cloud's projects "
        "and instances, fail-static.",
    )
    p.add_argument("--version", action="version", version=f"nfs-exportd {__version__}")
    p.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG,
        help=f"config file (default {DEFAULT_CONFIG})",
    )
    p.add_argument("--allow-root", action="store_true", help="let writing commands run as root")
    p.add_argument("--log-format", choices=("text", "json"), default="text")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sp = sub.add_parser("plan", help="show what would change; change nothing")
    sp.add_argument("--json", action="store_true", help="print the plan as JSON")
    sp.add_argument(
        "--force", action="store_true", help="show the plan that 'sync --force' would apply"
    )
    ss = sub.add_parser("sync", help="one full cycle: read, decide, apply, verify")
    ss.add_argument(
        "--force", action="store_true", help="release the too-much-change hold (only that one)"
    )
    ss.add_argument(
        "--plan-checksum", metavar="SHA256", help="refuse unless the plan has this checksum"
    )
    sub.add_parser("run", help="sync every interval_seconds until SIGTERM/SIGINT")
    st = sub.add_parser("status", help="last cycle, holds and counts")
    st.add_argument("--json", action="store_true")
    from .sim.cli import add_parser as add_sim_parser

    add_sim_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: 2 on bad usage, 0 for --help/--version
        return int(exc.code or 0)
    setup_logging(args.log_format, args.verbose)
    try:
        if args.command in WRITING and os.geteuid() == 0 and not args.allow_root:
            raise UsageError(
                f"refusing to run '{args.command}' as root: run it as the user that owns "
                "exports_dir and state_dir (exportfs goes through exportfs_command, "
                "e.g. sudo -n), or pass --allow-root"
            )
        if args.command == "sim":
            from .sim.cli import main as sim_main

            return sim_main(args)
        handler = {"plan": cmd_plan, "sync": cmd_sync, "run": cmd_run, "status": cmd_status}
        return handler[args.command](args)
    except NfsExportdError as exc:
        log.error("%s", exc)
        return exc.exit_code
    except KeyboardInterrupt:
        return EXIT_ERROR


def cmd_plan(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    served = load_served(cfg)
    facts = read_facts(cfg, served, writing=False)
    plan = make_plan(cfg, served, facts, force=args.force)
    if args.json:
        print(json.dumps(plan.to_json(), indent=1))
    else:
        print(plan.to_text())
    return EXIT_OK


def cmd_sync(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    served = load_served(cfg)
    with state.StateLock(cfg.state_dir):
        result = sync(cfg, served, force=args.force, plan_checksum=args.plan_checksum)
    print(result.line())
    return result.exit_code


def cmd_status(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    st = state.load_status(cfg.state_dir)
    if args.json:
        print(json.dumps(st or {"schema": 1, "last_cycle": None}, indent=1, sort_keys=True))
        return EXIT_OK
    if st is None:
        print(f"no cycle has run yet (state_dir {cfg.state_dir})")
        return EXIT_OK
    last = st.get("last_cycle", {})
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(last.get("finished", 0)))
    print(f"last cycle: {when}  result: {last.get('result')}")
    print(f"  {last.get('message', '')}")
    inv = st.get("inventory", {})
    print(f"inventory: {inv.get('source')}  complete: {inv.get('complete')}")
    if inv.get("problem"):
        print(f"  problem: {inv['problem']}")
    for proj, why in sorted(inv.get("incomplete_projects", {}).items()):
        print(f"  unknown: {proj}: {why}")
    print(f"maintenance: {st.get('maintenance')}")
    holds = st.get("holds_by_reason", {})
    print("holds: " + (", ".join(f"{k}={v}" for k, v in holds.items()) or "none"))
    counts = st.get("counts", {})
    print(
        "in force: "
        + ", ".join(f"{counts.get(k, 0)} {k}" for k in ("projects", "files", "exports", "pairs"))
    )
    return EXIT_OK


class _Loop:
    """``run``: sync every interval (jittered) until told to stop; SIGHUP reloads.

    SIGTERM/SIGINT let the cycle in progress finish.  An invalid config (on SIGHUP) or
    projects file (re-read every cycle: it is data that changes) is reported as a
    ``config-invalid`` hold and the last good one keeps running.
    """

    def __init__(self, args: argparse.Namespace, cfg: Config, served: ServedSet) -> None:
        self.args = args
        self.cfg = cfg
        self.served = served
        self.config_problem: str | None = None
        self.projects_problem: str | None = None
        self.stopping = threading.Event()
        self.wake = threading.Event()
        self.reload_requested = False
        self.source = source_from_config(cfg)

    def _on_stop(self, signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: finishing the current cycle, then exiting", signum)
        self.stopping.set()
        self.wake.set()

    def _on_hup(self, _signum: int, _frame: FrameType | None) -> None:
        self.reload_requested = True
        self.wake.set()

    def reload(self) -> None:
        self.reload_requested = False
        try:
            cfg = load_config(self.args.config)
        except NfsExportdError as exc:
            self.config_problem = str(exc)
            log.error("config-invalid: keeping the running config: %s", exc)
            return
        self.source.reset()  # clouds.yaml is re-read too
        self.cfg, self.config_problem = cfg, None
        self.source = source_from_config(cfg)
        log.info("config reloaded from %s", self.args.config)

    def refresh_projects(self) -> None:
        try:
            self.served = load_served(self.cfg)
            self.projects_problem = None
        except NfsExportdError as exc:
            self.projects_problem = str(exc)
            log.error("config-invalid: keeping the last good projects and config: %s", exc)

    def cycle(self) -> None:
        extra = tuple(
            Hold(Reason.CONFIG_INVALID, detail=p)
            for p in (self.config_problem, self.projects_problem)
            if p
        )
        try:
            result = sync(self.cfg, self.served, extra_holds=extra, source=self.source)
            log.info("%s", result.line())
        except NfsExportdError as exc:
            log.error("cycle failed: %s", exc)
        except Exception:
            log.exception("cycle failed unexpectedly")

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_hup)
        with state.StateLock(self.cfg.state_dir):
            log.info("running: a cycle every %g s", self.cfg.interval_seconds)
            first = True
            while not self.stopping.is_set():
                if self.reload_requested:
                    self.reload()
                if not first:
                    self.refresh_projects()
                first = False
                self.cycle()
                if self.stopping.is_set():
                    break
                self.wake.wait(self.cfg.interval_seconds * random.uniform(0.9, 1.1))
                self.wake.clear()
        log.info("stopped")
        return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    served = load_served(cfg)
    return _Loop(args, cfg, served).run()


def entrypoint() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entrypoint()

__all__ = ["EXIT_USAGE", "entrypoint", "main"]
