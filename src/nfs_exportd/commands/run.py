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
from ..cycle import JITTER, forget_texts, load_served, sync
from ..decide import Hold, Reason
from ..errors import EXIT_OK, NfsExportdError
from ..memory import state
from ..memory import status as status_file
from ..memory import triggers as triggers_file
from ..model import Maintenance
from ..ops.bus import BusEvent, BusListener, register_url_secrets
from ..ops.early import ChangePoller, EarlyCycles, LiveTriggers
from ..ops.notify import Notifier
from ..read.inventory import observe, source_from_config
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
        # triggers: the cloud's notifications and change polling bring a cycle forward
        self.early = early_cycles(cfg)
        self.trig = LiveTriggers(pid=os.getpid())
        # triggers.json is written by the loop and by the listener's thread (a state
        # change): one writer at a time, each with a record no older than the last one
        self.save_lock = threading.Lock()
        self.bus: BusListener | None = None
        self.poller: ChangePoller | None = None
        self.next_poll = 0.0
        self.cycle_wall_started = time.time()

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
        new_source = cfg.inventory != self.cfg.inventory or clouds != self.clouds
        if new_source:
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
        old_cfg = self.cfg
        self.cfg, self.config_problem = cfg, None
        if cfg.early_cycles != old_cfg.early_cycles:
            e = cfg.early_cycles
            self.early.configure(e.debounce_seconds, e.min_gap_seconds, e.max_requests_per_minute)
        if cfg.notifications != old_cfg.notifications:
            self.stop_bus()
            self.start_bus()
        if cfg.change_polling != old_cfg.change_polling or new_source:
            # a new source needs a new poller; otherwise the poller keeps what it has
            # seen, so that a reload neither misses a change nor fires for an old one
            self.start_polling()
        log.info("config reloaded from %s", self.args.config)

    # ------------------------------------------------------------------ triggers
    def start_bus(self) -> None:
        n = self.cfg.notifications
        with self.trig.lock:
            self.trig.bus_state = "off"
        if not n.enabled or n.transport_url is None:
            return
        register_url_secrets(n.transport_url)
        self.bus = BusListener(n, self.on_bus_event, self.on_bus_state)
        with self.trig.lock:
            self.trig.bus_target = self.bus.target
            self.trig.bus_pool = self.bus.pool
        log.info(
            "notifications: listening on %s (exchanges %s, topics %s, pool %s)",
            self.bus.target, ",".join(n.exchanges), ",".join(n.topics), self.bus.pool,
        )  # fmt: skip
        self.bus.start()

    def stop_bus(self) -> None:
        bus, self.bus = self.bus, None
        if bus is not None:
            bus.stop()

    def start_polling(self) -> None:
        cp = self.cfg.change_polling
        fetch = getattr(self.source, "changes", None)
        self.poller = ChangePoller(fetch) if cp.enabled and fetch is not None else None
        self.next_poll = time.monotonic() + cp.poll_seconds
        with self.trig.lock:
            self.trig.poll_enabled = self.poller is not None

    def on_bus_event(self, event: BusEvent) -> None:
        """From the listener's thread: count it; a trigger brings the next cycle forward."""
        now = time.time()
        t = self.trig
        with t.lock:
            was_dirty = t.dirty
            if event.kind == "trigger":
                t.bus_events[event.event_type] += 1
                t.bus_last_event = now
            elif event.kind == "ignored":
                t.bus_ignored += 1
            else:
                t.bus_malformed += 1
            t.dirty = True
        self.exporter.notification(event.kind, event.event_type, now)
        if event.kind == "malformed":
            log.debug("notifications: unreadable message: %s", event.detail)
        if event.kind == "trigger":
            self.early.fire(time.monotonic(), "notification")
            self.wake.set()
        elif not was_dirty:
            self.wake.set()  # so that the loop saves the counts within 5 s

    def on_bus_state(self, state: str, detail: str) -> None:
        """Once per state change of the listener: one log line, status, metrics."""
        now = time.time()
        t = self.trig
        with t.lock:
            was = t.bus_state
            t.bus_state, t.bus_since, t.bus_detail = state, now, detail
            if state == "connected":
                t.bus_last_connected = now
            target, pool = t.bus_target, t.bus_pool
        self.exporter.bus_connected(state == "connected")
        if state == "connected":
            log.info("notifications: connected to %s (pool %s)", target, pool)
        elif state in ("disconnected", "refused"):
            log.warning(
                "notifications: %s from %s: %s; cycles keep their interval and the listener "
                "reconnects with backoff",
                "refused" if state == "refused" else "disconnected", target, detail,
            )  # fmt: skip
        elif was in ("disconnected", "refused") and state == "connecting":
            return  # a retry: said once when the connection was lost
        self.save_triggers()

    def save_triggers(self) -> None:
        with self.save_lock:
            with self.trig.lock:
                self.trig.early_deferred = self.early.deferred
            try:
                triggers_file.save(self.cfg.state_dir, self.trig.record(time.time()))
            except NfsExportdError as exc:
                log.error("%s", exc)

    def poll_changes(self) -> None:
        """One change poll (2 requests per region); something new -> an early cycle."""
        poller = self.poller
        if poller is None:
            return
        now = time.time()
        try:
            changed = poller.poll(now, self.cycle_wall_started)
            problem = ""
        except NfsExportdError as exc:
            changed, problem = False, str(exc)
        except Exception as exc:  # a library surprise: never the daemon's end
            changed, problem = False, f"{type(exc).__name__}: {exc}"
        t = self.trig
        with t.lock:
            was = t.poll_problem
            t.polls += 1
            t.poll_last = now
            t.poll_problem = problem
            if problem:
                t.poll_failures += 1
            if changed:
                t.poll_changes += 1
                t.poll_last_change = now
            t.dirty = True
        self.exporter.change_poll("error" if problem else "changed" if changed else "unchanged")
        if problem and problem != was:
            log.warning("change polling failed (cycles keep their interval): %s", problem)
        elif was and not problem:
            log.info("change polling works again")
        if changed:
            self.early.fire(time.monotonic(), "change-poll")

    def refresh_projects(self) -> None:
        try:
            self.served = load_served(self.cfg)
            self.projects_problem = None
        except NfsExportdError as exc:
            self.projects_problem = str(exc)
            log.error("config-invalid: keeping the last good projects and config: %s", exc)

    def cycle(self, early: bool = False) -> None:
        covered = self.early.started(time.monotonic())
        self.cycle_wall_started = time.time()
        if early:
            with self.trig.lock:
                self.trig.early_cycles += 1
            self.exporter.early_cycle(covered)
            log.info("early cycle: %s", ", ".join(covered) or "trigger")
        try:
            self._cycle()
        finally:
            self.early.ended(time.monotonic())
            self.save_triggers()

    def _cycle(self) -> None:
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
            forget_texts()
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
            observe.add_listener(self._request)
            try:
                self.exporter.start()
                self.notifier.ready(f"running: a cycle every {self.cfg.interval_seconds:g} s")
                self.notifier.start_watchdog(self.healthy)
                self.start_bus()
                self.start_polling()
                self._loop()
            finally:
                observe.remove_listener(self._request)
                self.notifier.stopping("stopped")
                self.notifier.stop_watchdog()
                self.stop_bus()
                self.exporter.stop()
        log.info("stopped")
        return EXIT_OK

    def _request(self, _service: str, _status: str, _seconds: float) -> None:
        self.early.request(time.monotonic())

    def _loop(self) -> None:
        """A cycle every interval (jittered).  SIGHUP reloads between cycles and does not
        bring the next one forward: a storm of signals makes no more cycles (and no
        more requests to the cloud) than polling does.  Triggers (notifications, change
        polls) may bring it forward, within the rules of ``ops.early``."""
        log.info("running: a cycle every %g s", self.cfg.interval_seconds)
        first = True
        early = False
        while not self.stopping.is_set():
            if self.reload_requested:
                self.reload()
            if not first:
                self.refresh_projects()
            first = False
            self.cycle(early)
            early = False
            ended = time.monotonic()
            jitter = random.uniform(*JITTER)
            last_save = ended
            while not self.stopping.is_set():
                now = time.monotonic()
                due = ended + self.cfg.interval_seconds * jitter
                if now >= due:
                    break
                early_at = self.early.due(now)
                if early_at is not None and now >= early_at:
                    early = True
                    break
                if self.poller is not None and now >= self.next_poll:
                    self.poll_changes()
                    self.next_poll = time.monotonic() + self.cfg.change_polling.poll_seconds
                    continue
                if self.trig.dirty and now - last_save >= 5:
                    self.save_triggers()
                    last_save = now
                wait_until = min(
                    due,
                    early_at if early_at is not None else due,
                    self.next_poll if self.poller is not None else due,
                    last_save + 5 if self.trig.dirty else due,
                )
                self.wake.wait(max(0.0, wait_until - now))
                self.wake.clear()
                if self.reload_requested and not self.stopping.is_set():
                    self.reload()  # coalesced: the next cycle comes when it is due


def early_cycles(cfg: Config) -> EarlyCycles:
    """The early-cycle rules from the config (a reload reconfigures the same object)."""
    e = cfg.early_cycles
    return EarlyCycles(e.debounce_seconds, e.min_gap_seconds, e.max_requests_per_minute)


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
