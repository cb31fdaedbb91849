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
from typing import TYPE_CHECKING

from . import __version__
from .config import DEFAULT_CONFIG, Config, load_config
from .cycle import load_served, make_plan, read_facts, sync
from .decide import Hold, Reason
from .errors import EXIT_ERROR, EXIT_OK, EXIT_USAGE, NfsExportdError, UsageError
from .logs import setup_logging
from .memory import journal, state
from .memory import status as status_file
from .model import Maintenance
from .ops.check import hold_key
from .ops.notify import Notifier
from .read.inventory import source_from_config
from .read.projects import ServedSet

if TYPE_CHECKING:
    from .ops.metrics import Exporter

log = logging.getLogger("nfs_exportd")
LOCK_WAIT = 120.0  # seconds a command waits for a cycle in progress to finish
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
    sa = sub.add_parser(
        "adopt", help="take over the original daemon's header-less <project>.exports files"
    )
    sa.add_argument("--dry-run", action="store_true", help="show what would be adopted")
    se = sub.add_parser("explain", help="why an address (or a project) has the exports it has")
    se.add_argument("ip", nargs="?", help="a client address")
    se.add_argument("--project", metavar="NAME", help="a project: its volumes, paths, clients")
    se.add_argument("--json", action="store_true")
    return p


def new_exporter(cfg: Config) -> Exporter:
    """The metrics exporter, imported only by the commands that export: prometheus_client
    loads http.server, which ``check``, ``plan`` and ``status`` have no use for."""
    from .ops.metrics import Exporter

    return Exporter(cfg)


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
        if args.command == "check":
            return cmd_check(args)
        handler = {
            "plan": cmd_plan,
            "sync": cmd_sync,
            "run": cmd_run,
            "status": cmd_status,
            "history": cmd_history,
            "rollback": cmd_rollback,
            "release": cmd_release,
            "explain": cmd_explain,
            "adopt": cmd_adopt,
        }
        return handler[args.command](args)
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
    exporter = new_exporter(cfg) if cfg.metrics.textfile else None
    started = time.monotonic()
    ran = False  # a sync refused by the lock leaves the textfile to whoever holds it
    try:
        with state.StateLock(cfg.state_dir):
            ran = True
            result = sync(cfg, served, force=args.force, plan_checksum=args.plan_checksum)
    finally:
        if exporter is not None:
            if ran:  # failed cycles too: their status says "error"
                exporter.cycle(status_file.load_or_empty(cfg.state_dir), time.monotonic() - started)
            exporter.stop()
    print(result.line())
    return result.exit_code


def status_line(st: status_file.Status) -> str:
    """One line for systemd's STATUS= and for logs: result, what is in force, holds."""
    last = st.last_cycle
    held = st.holds_by_reason
    when = time.strftime("%H:%M:%S", time.localtime(last.finished if last else 0))
    parts = [
        f"{last.result if last else 'no cycle yet'} at {when}",
        f"{st.counts.projects} projects, {st.counts.pairs} pairs in force",
        "held: " + ", ".join(f"{k}={v}" for k, v in sorted(held.items()))
        if held
        else "nothing held",
    ]
    if st.maintenance is not Maintenance.OFF:
        parts.append(f"maintenance {st.maintenance.value}")
    if st.rollback_hold:
        parts.append("rollback-hold")
    return "; ".join(parts)


def live_status(cfg: Config) -> status_file.Status | None:
    """status.json, with the rollback-hold as it is now: rollback and release change it
    between cycles, and status and check must say so at once."""
    st = status_file.load(cfg.state_dir)
    marker = state.load_rollback_hold(cfg.state_dir)
    if st is None:
        return None
    holds = dict(st.holds_by_reason)
    seen = dict(st.hold_first_seen)
    if marker is not None:
        detail: str | None = marker.detail()
        holds.setdefault(Reason.ROLLBACK_HOLD.value, 1)
        since = marker.since if marker.since is not None else time.time()
        seen.setdefault(hold_key(Reason.ROLLBACK_HOLD.value, None, None, None), since)
    else:
        detail = None
        holds.pop(Reason.ROLLBACK_HOLD.value, None)
        seen = {k: v for k, v in seen.items() if not k.startswith("rollback-hold|")}
    return st.model_copy(
        update={
            "rollback_hold": detail,
            "holds_by_reason": holds,
            "hold_first_seen": seen,
            "held_since": min(seen.values()) if seen else None,
        }
    )


def cmd_status(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    st = live_status(cfg)
    if args.json:
        shown = st or status_file.Status(last_cycle=None)
        print(json.dumps(shown.to_json(), indent=1, sort_keys=True))
        return EXIT_OK
    if st is None or st.last_cycle is None:
        print(f"no cycle has run yet (state_dir {cfg.state_dir})")
        return EXIT_OK
    last = st.last_cycle
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(last.finished))
    print(f"last cycle: {when}  result: {last.result}")
    print(f"  {last.message}")
    inv = st.inventory
    if inv is not None:
        print(f"inventory: {inv.source}  complete: {inv.complete}")
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


def cmd_check(args: argparse.Namespace) -> int:
    """Never raises: every failure is a plugin UNKNOWN with the reason on the line."""
    from .ops import check

    try:
        cfg = load_config(args.config)
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
    except NfsExportdError as exc:
        verdict = check.Verdict(check.UNKNOWN, " ".join(str(exc).split()))
    except Exception as exc:  # a plugin must answer, whatever happens
        verdict = check.Verdict(check.UNKNOWN, f"{type(exc).__name__}: {exc}")
    print(verdict.line())
    return verdict.code


def cmd_explain(args: argparse.Namespace) -> int:
    import ipaddress

    from .ops import explain

    if (args.ip is None) == (args.project is None):
        raise UsageError("explain: give an address, or --project NAME (one of them)")
    if args.project is not None and not args.project.strip():
        raise UsageError("explain: --project needs a project name")
    if args.ip is not None:
        try:
            ipaddress.ip_address(args.ip.strip())
        except ValueError:
            raise UsageError(f"explain: {args.ip!r} is not an IP address") from None
    cfg = load_config(args.config)
    served = load_served(cfg)
    facts = read_facts(cfg, served, writing=False)
    plan = make_plan(cfg, served, facts)
    try:
        entries = journal.entries(cfg.state_dir)
    except NfsExportdError as exc:
        log.warning("journal unreadable, 'since' unknown: %s", exc)
        entries = []
    ctx = explain.Context(
        in_force=facts.scan.managed,
        snapshot=facts.snapshot,
        served=served.private,
        plan=plan,
        journal=entries,
        confirmations=cfg.safety.removal_confirmations,
    )
    if args.ip is not None:
        result = explain.explain_ip(ctx, args.ip)
        text = explain.ip_text(result)
    else:
        result = explain.explain_project(ctx, args.project)
        text = explain.project_text(result)
    print(json.dumps(result, indent=1, sort_keys=True) if args.json else text)
    return EXIT_OK


def cmd_adopt(args: argparse.Namespace) -> int:
    from .commands import adopt

    cfg = load_config(args.config)
    served = load_served(cfg)
    if args.dry_run:
        res = adopt.adopt(cfg, served, dry_run=True)
    else:
        with state.StateLock(cfg.state_dir, wait=LOCK_WAIT):
            res = adopt.adopt(cfg, served, dry_run=False)
    print(adopt.text(res, args.dry_run))
    return EXIT_OK


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def cmd_history(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    if args.show is not None:
        entry = journal.load(cfg.state_dir, args.show)
        if args.json:
            print(json.dumps(entry.to_json(), indent=1, sort_keys=True))
        else:
            print(_entry_text(entry))
            for name, text in sorted((entry.files or {}).items()):
                print(f"--- {name}")
                print(text, end="")
        return EXIT_OK
    entries = journal.entries(cfg.state_dir)
    if args.json:
        print(json.dumps({"schema": 1, "entries": [e.summary() for e in entries]}, indent=1))
        return EXIT_OK
    if not entries:
        print(f"the journal is empty ({cfg.state_dir}/history)")
    for e in entries:
        print(_entry_text(e))
    return EXIT_OK


def _entry_text(e: journal.Entry) -> str:
    head = (
        f"{e.id:>5}  {_when(e.time)}  {e.kind:<8} +{len(e.added)} -{len(e.removed)} "
        f"~{len(e.updated)}  {e.file_count} files  {e.user}  {e.reason}"
    )
    rows = [head]
    for sign, pairs in (("+", e.added), ("-", e.removed), ("~", e.updated)):
        for p in pairs[:20]:
            rows.append(f"         {sign} {p.project} {p.path} {p.client}  ({p.reason})")
        if len(pairs) > 20:
            rows.append(f"         {sign} ... and {len(pairs) - 20} more (history --show {e.id})")
    return "\n".join(rows)


def cmd_rollback(args: argparse.Namespace) -> int:
    from .commands.rollback import rollback

    cfg = load_config(args.config)
    served = load_served(cfg)
    with state.StateLock(cfg.state_dir, wait=LOCK_WAIT):
        res = rollback(cfg, served, args.to, args.force)
    for owner, path, client, why in res.dropped:
        print(f"dropped {owner} {path} {client}: {why}")
    for why in res.skipped:
        print(f"skipped {why}")
    e = res.entry
    changed = f"+{len(e.added)} -{len(e.removed)} ~{len(e.updated)}" if e else "nothing changed"
    print(
        f"rolled back to journal entry {res.target.id} ({_when(res.target.time)}): {changed}; "
        f"{res.inventory_note}; every change except conflict removals now holds "
        "(rollback-hold) until 'nfs-exportd release'"
    )
    return EXIT_OK


def cmd_release(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    with state.StateLock(cfg.state_dir, wait=LOCK_WAIT):
        marker = state.load_rollback_hold(cfg.state_dir)
        if not state.clear_rollback_hold(cfg.state_dir):
            print("no rollback-hold in force")
            return EXIT_OK
    log.info("rollback-hold released (%s)", marker.detail() if marker else "no marker")
    print("rollback-hold released: the next cycle applies what the cloud says again")
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
        self.clouds = clouds_fingerprint(cfg)
        self.notifier = Notifier()
        self.exporter = new_exporter(cfg)
        self.cycle_started: float | None = None

    def cycle_deadline(self) -> float:
        """The longest a healthy cycle can take: every step in it has a timeout."""
        inv = max(60.0, 10 * self.cfg.inventory.timeout_seconds)
        return inv + 3 * self.cfg.exportfs_timeout_seconds + LOCK_WAIT + 60

    def healthy(self) -> bool:
        started = self.cycle_started
        return started is None or time.monotonic() - started < self.cycle_deadline()

    def _on_stop(self, signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: finishing the current cycle, then exiting", signum)
        self.notifier.stopping("stopping: finishing the current cycle")
        self.stopping.set()
        self.wake.set()

    def _on_hup(self, _signum: int, _frame: FrameType | None) -> None:
        self.reload_requested = True
        self.wake.set()

    def reload(self) -> None:
        """Re-read the config (and clouds.yaml); never a cycle of its own, so that a burst
        of SIGHUPs costs no requests.  The inventory source, with its connections and
        tokens, is kept unless its settings or the clouds.yaml files changed."""
        self.reload_requested = False
        try:
            cfg = load_config(self.args.config)
        except NfsExportdError as exc:
            self.config_problem = str(exc)
            log.error("config-invalid: keeping the running config: %s", exc)
            return
        clouds = clouds_fingerprint(cfg)
        if cfg.inventory != self.cfg.inventory or clouds != self.clouds:
            self.source.reset()
            self.source = source_from_config(cfg)
            self.clouds = clouds
            log.info("inventory settings or clouds.yaml changed: new connections")
        if cfg.metrics != self.cfg.metrics:
            self.exporter.stop()
            self.exporter = new_exporter(cfg)
            try:
                self.exporter.start()
            except NfsExportdError as exc:
                log.error("%s; metrics are off until the next reload", exc)
        self.cfg, self.config_problem = cfg, None
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
        self.cycle_started = time.monotonic()
        ran = False
        try:
            # per cycle, so that rollback/release/adopt can run between cycles; a sync
            # or rollback in progress delays this cycle rather than failing it
            with state.StateLock(self.cfg.state_dir, wait=LOCK_WAIT):
                ran = True
                result = sync(self.cfg, self.served, extra_holds=extra, source=self.source)
            log.info("%s", result.line())
        except NfsExportdError as exc:
            log.error("cycle failed: %s", exc)
        except Exception:
            log.exception("cycle failed unexpectedly")
        finally:
            duration = time.monotonic() - self.cycle_started
            self.cycle_started = None
            st = status_file.load_or_empty(self.cfg.state_dir)
            if ran:
                self.exporter.cycle(st, duration)
            else:  # no cycle ran (the lock): an error, not a repeat of the last cycle
                self.exporter.failed(duration)
            if not self.stopping.is_set():
                self.notifier.status(status_line(st))

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_hup)
        with state.StateLock(self.cfg.state_dir, state.RUN_LOCK, what="the run loop"):
            try:
                self.exporter.start()
                self.notifier.ready(f"running: a cycle every {self.cfg.interval_seconds:g} s")
                self.notifier.start_watchdog(self.healthy)
                self._loop()
            finally:
                self.notifier.stopping("stopped")
                self.notifier.stop_watchdog()
                self.exporter.stop()
        log.info("stopped")
        return EXIT_OK

    def _loop(self) -> None:
        """A cycle every interval (jittered).  SIGHUP reloads between cycles and does not
        bring the next one forward: a storm of signals makes no more cycles (and no
        more requests to the cloud) than polling does."""
        log.info("running: a cycle every %g s", self.cfg.interval_seconds)
        first = True
        while not self.stopping.is_set():
            if self.reload_requested:
                self.reload()
            if not first:
                self.refresh_projects()
            first = False
            self.cycle()
            ended = time.monotonic()
            jitter = random.uniform(0.9, 1.1)
            while not self.stopping.is_set():
                left = ended + self.cfg.interval_seconds * jitter - time.monotonic()
                if left <= 0:
                    break
                self.wake.wait(left)
                self.wake.clear()
                if self.reload_requested and not self.stopping.is_set():
                    self.reload()  # coalesced: the next cycle comes when it is due


def clouds_fingerprint(cfg: Config) -> tuple[tuple[str, bytes | None], ...]:
    """The clouds.yaml and secure.yaml files openstacksdk reads, with their contents:
    when they are unchanged, a reload keeps the connections and their tokens."""
    if cfg.inventory.source != "openstack":
        return ()
    from openstack.config import loader

    paths = [
        os.environ.get("OS_CLIENT_CONFIG_FILE"),
        os.environ.get("OS_CLIENT_SECURE_FILE"),
        *loader.CONFIG_FILES,
        *loader.SECURE_FILES,
    ]
    out: list[tuple[str, bytes | None]] = []
    for path in dict.fromkeys(p for p in paths if p):
        try:
            with open(path, "rb") as fh:
                out.append((path, fh.read(1 << 20)))
        except FileNotFoundError:
            continue
        except OSError as exc:
            out.append((path, f"unreadable: {exc}".encode()))
    return tuple(out)


def cmd_run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    served = load_served(cfg)
    return _Loop(args, cfg, served).run()


def entrypoint() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entrypoint()

__all__ = ["EXIT_USAGE", "entrypoint", "main"]
