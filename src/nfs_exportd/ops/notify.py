"""systemd's notify protocol (sd_notify), spoken directly: no libsystemd needed.

With ``Type=notify`` systemd waits for ``READY=1``; ``STATUS=`` shows in
``systemctl status``; ``WATCHDOG=1`` must arrive within ``WatchdogSec`` or the service is
killed and restarted; ``STOPPING=1`` says a stop is under way.  When ``NOTIFY_SOCKET`` is
not set (not under systemd) every call is a no-op.

The watchdog pings from a thread at half of ``WATCHDOG_USEC``, so that a long cycle (a slow
cloud, a large apply) does not get the daemon killed; but only while the main loop is
healthy: a cycle that runs past its own deadline (every step in it has a timeout) stops the
pings, and systemd restarts a daemon that is truly stuck.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Mapping

log = logging.getLogger("nfs_exportd")


class Notifier:
    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        addr = env.get("NOTIFY_SOCKET", "")
        self.address: str | None = None
        if addr.startswith("@"):
            self.address = "\0" + addr[1:]  # abstract namespace
        elif addr.startswith("/"):
            self.address = addr
        self.watchdog_usec = 0
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        if usec.isdigit() and (not pid or pid == str(os.getpid())):
            self.watchdog_usec = int(usec)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.sent = 0

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, **fields: str) -> bool:
        """Send ``KEY=value`` lines in one datagram; False (and a debug log) if it fails."""
        if self.address is None:
            return False
        # one line per field: a newline inside a value would start a new field
        msg = "\n".join(f"{k}={' '.join(v.splitlines())}" for k, v in fields.items())
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
                s.connect(self.address)
                s.sendall(msg.encode())
        except OSError as exc:
            log.debug("sd_notify to %r failed: %s", self.address, exc)
            return False
        self.sent += 1
        return True

    def ready(self, status: str) -> None:
        self.send(READY="1", STATUS=status, MAINPID=str(os.getpid()))

    def status(self, status: str) -> None:
        self.send(STATUS=status)

    def stopping(self, status: str = "stopping") -> None:
        self.send(STOPPING="1", STATUS=status)

    def start_watchdog(self, healthy: Callable[[], bool]) -> None:
        """Ping every WATCHDOG_USEC/2 while ``healthy()`` says the loop is not stuck."""
        if not self.enabled or not self.watchdog_usec or self._thread is not None:
            return
        interval = self.watchdog_usec / 2e6

        def loop() -> None:
            while not self._stop.wait(interval):
                if healthy():
                    self.send(WATCHDOG="1")
                else:
                    log.error("the cycle in progress is past its deadline: no watchdog ping")

        self.send(WATCHDOG="1")
        self._thread = threading.Thread(target=loop, name="sd-watchdog", daemon=True)
        self._thread.start()

    def stop_watchdog(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
