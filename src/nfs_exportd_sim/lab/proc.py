"""Daemons the lab starts: one process each, stopped by its own pid, never by name.

The lab keeps the ``Popen`` of every process it starts, so stopping one signals and
reaps exactly that child (a pid cannot be reused while we have not reaped it).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

_prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved here: the child only calls it
PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:  # runs in the child between fork and exec
    """The server gets SIGTERM if the test process dies, even by SIGKILL."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def remove_orphaned_workdirs(prefix: str) -> None:
    """Work directories ``<tmp>/<prefix>*`` of test processes that were killed (their
    teardown never ran): each holds ``owner.pid``, the process that made it."""
    for d in Path(tempfile.gettempdir()).glob(f"{prefix}*"):
        try:
            owner = int((d / "owner.pid").read_text())
            os.kill(owner, 0)
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
        except (OSError, ValueError):
            continue  # being created right now, or not ours to judge


class LabError(RuntimeError):
    """A lab component could not start, answer or stop; the message carries its output."""


def tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file ('' when it does not exist)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def wait_until(cond: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll ``cond`` until it is true (True) or ``timeout`` seconds passed (False)."""
    deadline = time.monotonic() + timeout
    while True:
        if cond():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


@dataclass
class Daemon:
    """One long-running process of the lab, its output appended to ``log``."""

    name: str
    argv: Sequence[str]
    log: Path
    env: Mapping[str, str] | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise LabError(f"{self.name} was never started")
        return self.proc.pid

    def start(self) -> None:
        """Start it detached from our terminal (own session), output to ``log``."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.env} if self.env is not None else None
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                list(self.argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def comm(self) -> str:
        """The running program's name (``/proc/PID/comm``), '' once it has ended."""
        if not self.alive():
            return ""
        try:
            return Path(f"/proc/{self.pid}/comm").read_text().strip()
        except OSError:
            return ""

    def describe(self, lines: int = 40) -> str:
        """Exit status and the tail of its log, for an error message."""
        rc = None if self.proc is None else self.proc.poll()
        state = "running" if rc is None and self.proc is not None else f"exit status {rc}"
        return f"{self.name} ({state}); last lines of {self.log}:\n{tail(self.log, lines)}"

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` s; always reaps our own child."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def run(
    argv: Sequence[str], timeout: float = 30.0, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run a short command; a failure raises LabError with the command and its output."""
    try:
        res = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as e:
        raise LabError(f"{' '.join(argv)}: timed out after {timeout:g} s") from e
    if check and res.returncode != 0:
        raise LabError(
            f"{' '.join(argv)}: exit status {res.returncode}: {(res.stderr + res.stdout).strip()}"
        )
    return res


def listening(pid: int, port: int) -> bool:
    """True when the network namespace of ``pid`` has a TCP socket listening on ``port``
    (read from ``/proc/PID/net/tcp*``, which show that process's namespace)."""
    want = f":{port:04X}"
    for name in ("tcp", "tcp6"):
        try:
            rows = Path(f"/proc/{pid}/net/{name}").read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if len(cols) > 3 and cols[1].endswith(want) and cols[3] == "0A":
                return True
    return False


def start_rpcbind(rpcbind: Daemon, run_dir: Path, netns: str) -> None:
    """Start ``rpcbind`` (its /run is ``run_dir``) and wait for its socket: Ganesha
    exits at start without it, rpc.mountd registers with it."""
    for stale in ("rpcbind.sock", "rpcbind.lock"):
        (run_dir / stale).unlink(missing_ok=True)
    rpcbind.start()
    sock = run_dir / "rpcbind.sock"
    wait_until(lambda: sock.exists() or not rpcbind.alive(), 10)
    if not sock.exists():
        raise LabError(f"rpcbind did not come up in {netns}: {rpcbind.describe()}")
