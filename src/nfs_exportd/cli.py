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
EXIT_PIPE = 141  # 128 + SIGPIPE: what a shell reports for a tool whose reader went away


# Per command: what it does and why (the --help description), its exit codes and the
# config keys it reads, so that "nfs-exportd COMMAND --help" answers at 3 a.m.
HELP: dict[str, tuple[str, str, str]] = {
    "plan": (
        "Read the cloud and the files, decide, and print what the next sync would change, "
        "with the reason of each change and hold. Changes nothing, not even counters.",
        "0 shown (held parts included); 1 error; 2 bad usage or config",
        "projects_file, serve, export_options, public_exports, inventory.*, exports_dir, "
        "state_dir, safety.*, maintenance_file",
    ),
    "sync": (
        "One full cycle: read, decide, apply, verify, remember; prints one summary line.",
        "0 everything planned applied; 3 something held, after applying what was not "
        "(routine pending confirmations too: scripts and Puppet exec should accept 0 and 3); "
        "1 error (the exports in force stay as they were); 2 bad usage or config",
        "all of plan's, exportfs_command, exportfs_timeout_seconds, etab_file, backend, "
        "metrics.textfile, history.*",
    ),
    "run": (
        "The daemon: a sync every interval_seconds (+-10 % jitter). SIGTERM/SIGINT finish "
        "the cycle and exit; SIGHUP reloads the config (an invalid one is reported as "
        "config-invalid and the old one keeps running).",
        "0 stopped by a signal; 1 error; 2 bad usage or config at start",
        "all of sync's, interval_seconds, metrics.listen",
    ),
    "status": (
        "The last cycle, its holds by reason and the counts in force, from state_dir. With "
        "a broken config file it shows the running daemon's state (and says so).",
        "0 shown; 1 corrupt status.json; 2 bad config and no copy of the running one",
        "state_dir",
    ),
    "history": (
        "The journal of applied changes (state_dir/history), newest last.",
        "0 shown; 1 error; 2 bad usage, or bad config and no copy of the running one",
        "state_dir, history.retention_days, history.max_entries",
    ),
    "rollback": (
        "Restore a journaled set of verified files through the normal apply path, then "
        "hold every change but conflict removals (rollback-hold) until 'release'.",
        "0 restored; 1 error; 2 empty journal, or inventory unknown without --force",
        "state_dir, exports_dir, exportfs_command, inventory.*",
    ),
    "release": (
        "End the rollback-hold that rollback left; the next cycle changes things again.",
        "0 released (or nothing to release); 1 error; 2 bad config",
        "state_dir",
    ),
    "check": (
        "Nagios/Icinga plugin: one line 'NFS-EXPORTD STATE - text | perfdata', cause first, "
        "bounded in length. Reads only the config, status.json and the maintenance flag.",
        "0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN",
        "check.warning_after_seconds, check.critical_after_seconds, maintenance_file, "
        "maintenance.max_age_seconds, state_dir",
    ),
    "config": (
        "'config check' validates the config file and the projects file it names, and "
        "reads nothing else (no state, no cloud): for Puppet's validate_cmd.",
        "0 valid; 2 invalid (the file and the key are named)",
        "every key; projects_file",
    ),
    "adopt": (
        "Take over the original daemon's header-less <project>.exports files unchanged; "
        "print what is left alone and the next plan.",
        "0 adopted (or shown with --dry-run); 1 error; 2 bad config",
        "exports_dir, state_dir, projects_file, serve, exportfs_command",
    ),
    "explain": (
        "Why an address (or a project) has the exports it has: whose it is, what it can "
        "mount and since when, pending and held changes. Reads the cloud, writes nothing.",
        "0 explained; 1 error; 2 bad usage (not an address, no such project) or config",
        "inventory.*, projects_file, serve, state_dir, safety.removal_confirmations",
    ),
    "diagnose": (
        "Read the NFS server's refused requests of the window (Ganesha's log, rpc.mountd's "
        "syslog or journal) and join them with the inventory, the exports in force and the "
        "plan: the cause of each group in plain words, most important first, with evidence. "
        "Writes nothing but diagnose.metrics_textfile.",
        "0 shown; 1 error; 2 bad usage or config; with --check: 0 OK, 1 WARNING, "
        "2 CRITICAL, 3 UNKNOWN",
        "diagnose.*, backend, ganesha.dbus_address, inventory.*, projects_file, serve, "
        "state_dir, maintenance_file",
    ),
}


def _global_options(p: argparse.ArgumentParser, suppress: bool) -> None:
    """The options every command takes, before or after its name (``nfs-exportd sync
    --allow-root``): after it they default to SUPPRESS, so they never undo the ones
    given before it."""

    def default(value: object) -> object:
        return argparse.SUPPRESS if suppress else value

    p.add_argument(
        "--config",
        type=Path,
        default=default(DEFAULT_CONFIG),
        help=f"config file (default {DEFAULT_CONFIG})",
    )
    p.add_argument(
        "--allow-root",
        action="store_true",
        default=default(False),
        help="let writing commands run as root",
    )
    p.add_argument("--log-format", choices=("text", "json"), default=default("text"))
    p.add_argument(
        "-v", "--verbose", action="store_true", default=default(False), help="debug logging"
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="nfs-exportd",
        description="Keep this NFS server's exports in sync with the cloud's projects "
        "and instances, fail-static.",
        epilog="'nfs-exportd COMMAND --help' says what a command does, its exit codes and "
        "the config keys it reads.",
    )
    p.add_argument("--version", action="version", version=f"nfs-exportd {__version__}")
    _global_options(p, suppress=False)
    common = argparse.ArgumentParser(add_help=False)
    _global_options(common, suppress=True)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, short: str) -> argparse.ArgumentParser:
        what, exits, keys = HELP[name]
        return sub.add_parser(
            name,
            help=short,
            description=what,
            epilog=f"exit codes: {exits}. config keys: {keys}.",
            parents=[common],
        )

    sp = add("plan", "show what would change; change nothing")
    sp.add_argument("--json", action="store_true", help="print the plan as JSON")
    sp.add_argument(
        "--force", action="store_true", help="show the plan that 'sync --force' would apply"
    )
    ss = add("sync", "one full cycle: read, decide, apply, verify")
    ss.add_argument(
        "--force",
        action="store_true",
        help="release the too-much-change and inventory-shrink holds (never unknown data)",
    )
    ss.add_argument(
        "--plan-checksum",
        metavar="SHA256",
        help="refuse unless the plan has this checksum (the whole sha256, or at least its "
        "first 12 hex digits as the text plan prints them)",
    )
    add("run", "sync every interval_seconds until SIGTERM/SIGINT")
    st = add("status", "last cycle, holds and counts")
    st.add_argument("--json", action="store_true")
    sh = add("history", "the journal of applied changes")
    sh.add_argument("--json", action="store_true")
    sh.add_argument("--show", type=int, metavar="ID", help="one entry in full, with its files")
    sh.add_argument("--limit", type=int, metavar="N", help="only the newest N entries")
    sh.add_argument(
        "--since",
        metavar="TIME",
        help="only entries at or after TIME: ISO 8601 (2026-11-23, 2026-11-23T14:00, with "
        "an offset or local time) or an age (90m, 6h, 2d)",
    )
    sr = add("rollback", "restore a journaled set of verified files, then hold until release")
    sr.add_argument(
        "--to", type=int, metavar="ID", help="journal entry (default: before the last change)"
    )
    sr.add_argument(
        "--force",
        action="store_true",
        help="restore even when the inventory cannot be read to check address owners, "
        "or when it removes more than the safety bounds allow",
    )
    add("release", "end the rollback-hold that rollback left")
    add("check", "Nagios/Icinga plugin: one line with perfdata; exit 0/1/2/3")
    sc = add("config", "config check: validate the config and projects files (exit 0/2)")
    sc_sub = sc.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    sc_sub.add_parser(
        "check",
        help="validate --config and the projects file it names; reads nothing else "
        "(for Puppet's validate_cmd: nfs-exportd --config %% config check)",
        description=HELP["config"][0],
        epilog=f"exit codes: {HELP['config'][1]}.",
        parents=[common],
    )
    sa = add("adopt", "take over the original daemon's header-less <project>.exports files")
    sa.add_argument("--dry-run", action="store_true", help="show what would be adopted")
    se = add("explain", "why an address (or a project) has the exports it has")
    se.add_argument("ip", nargs="?", help="a client address")
    se.add_argument("--project", metavar="NAME", help="a project: its volumes, paths, clients")
    se.add_argument("--json", action="store_true")
    sd = add("diagnose", "the NFS server's refused requests, grouped by cause, with evidence")
    sd.add_argument(
        "--since", metavar="DURATION", help="window: 15m, 2h, 90s (default diagnose.window_seconds)"
    )
    sd.add_argument("--json", action="store_true", help="the report as JSON (docs/runbook.md)")
    sd.add_argument(
        "--check", action="store_true", help="Icinga/Nagios plugin: one line, exit 0/1/2/3"
    )
    sd.add_argument(
        "--source",
        action="append",
        metavar="SPEC",
        help="file:PATH, journal-unit:UNIT or journal-id:IDENTIFIER (repeatable; "
        "replaces diagnose.sources)",
    )
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
    if name == "diagnose":
        from .commands import diagnose

        return diagnose.run
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
    except BrokenPipeError:
        return _pipe_closed()
    except Exception as exc:  # a bug: through our handler (redacted), never a raw traceback
        log.error(
            "unexpected %s: %s; the traceback follows: report it as a bug",
            type(exc).__name__,
            exc,
            exc_info=exc,
        )
        return EXIT_ERROR


def entrypoint() -> None:
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:
        code = _pipe_closed()
    sys.exit(code)


def _pipe_closed() -> int:
    """The reader went away (``| head``): quiet, as any Unix tool, no traceback; stdout
    goes to /dev/null so that the interpreter's own final flush fails no more."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return EXIT_PIPE


if __name__ == "__main__":
    entrypoint()

__all__ = ["EXIT_USAGE", "entrypoint", "main"]
