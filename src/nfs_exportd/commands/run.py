"""``run``: ``sync`` every ``interval_seconds`` until SIGTERM/SIGINT; SIGHUP reloads.

The daemon's loop: systemd's notify protocol and watchdog, the metrics server, and the
inventory source (with its connections and tokens) kept across cycles."""

from __future__ import annotations

import argparse
import logging
import os
import random
import signal
import threading
import time
from types import FrameType

from ..config import Config, load_config
from ..cycle import load_served, sync
from ..decide import Hold, Reason
from ..errors import EXIT_OK, NfsExportdError
from ..memory import state
from ..memory import status as status_file
from ..model import Maintenance
from ..ops.notify import Notifier
from ..read.inventory import source_from_config
from ..read.projects import ServedSet
from .common import LOCK_WAIT, new_exporter

log = logging.getLogger("nfs_exportd")


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


class Loop:
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


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    served = load_served(cfg)
    return Loop(args, cfg, served).run()
