"""Command line: ``nfs-exportd [--config PATH] [--allow-root] COMMAND``.

The parser, the refusal of writing commands as root, and the dispatch to one module of
``commands`` per command.  Exit codes: 0 done, 1 error, 2 bad usage or config, 3
something held (after applying what was not held).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from . import __version__
from .config import DEFAULT_CONFIG
from .errors import EXIT_ERROR, EXIT_USAGE, NfsExportdError, UsageError
from .logs import setup_logging

log = logging.getLogger("nfs_exportd")
WRITING = frozenset({"sync", "run", "rollback", "release", "adopt"})


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
        "--force",
        action="store_true",
        help="release the too-much-change and inventory-shrink holds (never unknown data)",
    )
    ss.add_argument(
        "--plan-checksum", metavar="SHA256", help="refuse unless the plan has this checksum"
    )
    sub.add_parser("run", help="sync every interval_seconds until SIGTERM/SIGINT")
    st = sub.add_parser("status", help="last cycle, holds and counts")
    st.add_argument("--json", action="store_true")
    sh = sub.add_parser("history", help="the journal of applied changes")
    sh.add_argument("--json", action="store_true")
    sh.add_argument("--show", type=int, metavar="ID", help="one entry in full, with its files")
    sr = sub.add_parser(
        "rollback", help="restore a journaled set of verified files, then hold until release"
    )
    sr.add_argument(
        "--to", type=int, metavar="ID", help="journal entry (default: before the last change)"
    )
    sr.add_argument(
        "--force",
        action="store_true",
        help="restore even when the inventory cannot be read to check address owners, "
        "or when it removes more than the safety bounds allow",
    )
    sub.add_parser("release", help="end the rollback-hold that rollback left")
    sub.add_parser("check", help="Nagios/Icinga plugin: one line with perfdata; exit 0/1/2/3")
    sc = sub.add_parser(
        "config",
        help="config check: validate the config and projects files (exit 0 valid, 2 invalid)",
    )
    sc_sub = sc.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    sc_sub.add_parser(
        "check",
        help="validate --config and the projects file it names; reads nothing else "
        "(for Puppet's validate_cmd: nfs-exportd --config % config check)",
    )
    sa = sub.add_parser(
        "adopt", help="take over the original daemon's header-less <project>.exports files"
    )
    sa.add_argument("--dry-run", action="store_true", help="show what would be adopted")
    se = sub.add_parser("explain", help="why an address (or a project) has the exports it has")
    se.add_argument("ip", nargs="?", help="a client address")
    se.add_argument("--project", metavar="NAME", help="a project: its volumes, paths, clients")
    se.add_argument("--json", action="store_true")
    return p


def command(name: str) -> Callable[[argparse.Namespace], int]:
    """The ``run`` of command ``name``, importing only its module: a command loads only
    what it uses (the Icinga ``check``, every minute, no cloud client or metrics server)."""
    if name == "plan":
        from .commands import plan

        return plan.run
    if name == "sync":
        from .commands import sync

        return sync.run
    if name == "run":
        from .commands import run

        return run.run
    if name == "status":
        from .commands import status

        return status.run
    if name == "check":
        from .commands import check

        return check.run
    if name == "explain":
        from .commands import explain

        return explain.run
    if name == "history":
        from .commands import history

        return history.run
    if name == "rollback":
        from .commands import rollback

        return rollback.run
    if name == "release":
        from .commands import release

        return release.run
    if name == "config":
        from .commands import config

        return config.run
    if name == "adopt":
        from .commands import adopt

        return adopt.run
    raise UsageError(f"unknown command {name!r}: see nfs-exportd --help")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: 2 on bad usage, 0 for --help/--version
        return int(exc.code or 0)
    setup_logging(args.log_format, args.verbose)
    try:
        dry = getattr(args, "dry_run", False)  # adopt --dry-run only reads
        if args.command in WRITING and not dry and os.geteuid() == 0 and not args.allow_root:
            raise UsageError(
                f"refusing to run '{args.command}' as root: run it as the user that owns "
                "exports_dir and state_dir (exportfs goes through exportfs_command, "
                "e.g. sudo -n), or pass --allow-root"
            )
        return command(args.command)(args)
    except NfsExportdError as exc:
        log.error("%s", exc)
        return exc.exit_code
    except KeyboardInterrupt:
        return EXIT_ERROR
    except Exception as exc:  # a bug: through our handler (redacted), never a raw traceback
        log.error(
            "unexpected %s: %s; the traceback follows: report it as a bug",
            type(exc).__name__,
            exc,
            exc_info=exc,
        )
        return EXIT_ERROR


def entrypoint() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entrypoint()

__all__ = ["EXIT_USAGE", "entrypoint", "main"]
