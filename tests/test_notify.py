"""systemd's notify protocol (sd_notify): a real unix datagram socket receives what a real
``nfs-exportd run`` process sends (READY, STATUS, WATCHDOG, STOPPING), and the Notifier's
watchdog thread is tested in-process against the run loop's own health check."""

from __future__ import annotations

import argparse
import itertools
import os
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import SANDBOX, Lab
from nfs_exportd.commands.run import Loop
from nfs_exportd.config import load_config
from nfs_exportd.cycle import load_served
from nfs_exportd.ops.notify import Notifier

NOTIFY_ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


@dataclass(frozen=True)
class Message:
    at: float  # time.monotonic() when received
    fields: dict[str, str]
    raw: str


class Receiver:
    """The systemd side: a bound AF_UNIX/SOCK_DGRAM socket, collecting datagrams."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.messages: list[Message] = []

    def close(self) -> None:
        self.sock.close()

    def poll(self, timeout: float) -> Message | None:
        """The next datagram, or None after ``timeout`` seconds."""
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return None
        raw = data.decode()
        fields = {}
        for line in raw.split("\n"):
            key, sep, value = line.partition("=")
            assert sep, f"not a KEY=value line: {line!r} in {raw!r}"
            fields[key] = value
        msg = Message(time.monotonic(), fields, raw)
        self.messages.append(msg)
        return msg

    def wait(self, cond: Callable[[Message], bool], what: str, timeout: float = 30) -> Message:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            msg = self.poll(left)
            if msg is not None and cond(msg):
                return msg
        raise AssertionError(f"timed out waiting for {what}; got {[m.raw for m in self.messages]}")

    def drain(self, seconds: float) -> list[Message]:
        """Everything that arrives within ``seconds``."""
        out = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            msg = self.poll(left)
            if msg is not None:
                out.append(msg)
        return out


def _socket_path(tmp_path: Path) -> str:
    """A path in tmp_path, unless that is too long for sun_path (108 bytes)."""
    path = str(tmp_path / "notify.sock")
    if len(path.encode()) < 100:
        return path
    return str(Path(tempfile.mkdtemp(prefix="nfs-exportd-notify-", dir="/tmp")) / "n.sock")


@pytest.fixture
def no_notify_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test's own environment may come from systemd: start clean."""
    for name in NOTIFY_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[tuple[str, Receiver]]:
    path = _socket_path(tmp_path)
    rx = Receiver(path)
    yield path, rx
    rx.close()


def _stop(proc: subprocess.Popen[str]) -> str:
    """SIGTERM by pid; the output. Kills (by pid) if it does not stop."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate(timeout=10)
    return out


def _kill(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.communicate(timeout=10)


def _tools_lab(lab: Lab) -> str:
    lab.add_project("tools", 50380)
    lab.add_instance("i-1", "tools", "172.16.0.5")
    lab.add_instance("i-2", "tools", "172.16.0.6")
    return lab.srv("tools", "home")


# ------------------------------------------------------------------ a real run process


@pytest.mark.parametrize("kind", ["path", "abstract"])
def test_run_says_ready_status_and_stopping(
    lab: Lab, tmp_path: Path, no_notify_env: None, kind: str
) -> None:
    home = _tools_lab(lab)
    if kind == "path":
        address = _socket_path(tmp_path)
        env_value = address
    else:
        name = f"nfs-exportd-test-{uuid.uuid4().hex}"
        address = "\0" + name
        env_value = "@" + name
    rx = Receiver(address)
    proc = lab.start_run(env={"NOTIFY_SOCKET": env_value})
    try:
        ready = rx.wait(lambda m: True, "the first datagram", timeout=30)
        assert ready.fields.get("READY") == "1", ready.raw  # READY is the first thing said
        assert ready.fields.get("MAINPID") == str(proc.pid)
        assert ready.fields.get("STATUS", "").startswith("running: a cycle every 1 s")
        # after each cycle, one STATUS line that summarises it
        st = rx.wait(lambda m: "STATUS" in m.fields, "STATUS after the first cycle")
        assert set(st.fields) == {"STATUS"}, st.raw
        assert st.fields["STATUS"].startswith("ok at "), st.raw
        assert "1 projects, 2 pairs in force" in st.fields["STATUS"]
        assert "nothing held" in st.fields["STATUS"]
        assert lab.in_force() == {(home, "172.16.0.5"), (home, "172.16.0.6")}
        # a held cycle says what it holds
        lab.remove_instance("i-2")
        lab.write()
        held = rx.wait(lambda m: "held:" in m.fields.get("STATUS", ""), "a held STATUS")
        assert "pending-confirmation=1" in held.fields["STATUS"], held.raw
        assert "2 pairs in force" in held.fields["STATUS"]

        proc.send_signal(signal.SIGTERM)
        rx.wait(lambda m: m.fields.get("STOPPING") == "1", "STOPPING=1")
        assert proc.wait(timeout=30) == 0
        rx.drain(0.2)
        last = rx.messages[-1]
        assert last.fields.get("STOPPING") == "1", last.raw  # nothing after STOPPING=1
        assert last.fields.get("STATUS") == "stopped"
        assert sum(1 for m in rx.messages if "READY" in m.fields) == 1
        # no WATCHDOG_USEC: no pings at all
        assert not [m for m in rx.messages if "WATCHDOG" in m.fields]
    finally:
        _kill(proc)
        rx.close()
    assert proc.returncode == 0


def test_watchdog_keeps_pinging_through_a_slow_cycle(
    lab: Lab, tmp_path: Path, no_notify_env: None, receiver: tuple[str, Receiver]
) -> None:
    home = _tools_lab(lab)
    address, rx = receiver
    # exportfs that takes 4 s (longer than WatchdogSec=1 s), then runs the real one
    started = tmp_path / "exportfs-started"
    slow = tmp_path / "slow-exportfs"
    slow.write_text(f'#!/bin/sh\ntouch {started}\nsleep 4\nexec {SANDBOX} "$@"\n')
    slow.chmod(0o755)
    lab.config["exportfs_command"] = [str(slow), str(lab.root / "sb")]
    lab.config["interval_seconds"] = 60  # one cycle is enough
    proc = lab.start_run(env={"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "1000000"})
    try:
        ready = rx.wait(lambda m: "READY" in m.fields, "READY=1")
        # the first cycle adds both pairs: its exportfs -ra is the slow one
        end = rx.wait(lambda m: "STATUS" in m.fields, "STATUS after the slow cycle", 60)
        assert started.exists()
        assert lab.in_force() == {(home, "172.16.0.5"), (home, "172.16.0.6")}
        window = [m for m in rx.messages if ready.at <= m.at <= end.at]
        pings = [m for m in window if m.fields == {"WATCHDOG": "1"}]
        assert end.at - ready.at >= 3.5, "the cycle was not slow: the test proves nothing"
        assert len(pings) >= 6, [m.raw for m in window]
        times = [ready.at] + [m.at for m in pings] + [end.at]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert max(gaps) <= 1.0, f"a gap of {max(gaps):.2f} s between watchdog pings: {gaps}"
        # and between cycles it keeps pinging too
        more = rx.drain(1.2)
        assert sum(1 for m in more if m.fields == {"WATCHDOG": "1"}) >= 2
    finally:
        out = _stop(proc)
    assert proc.returncode == 0, out


def test_watchdog_pid_of_another_process_disables_the_watchdog(
    lab: Lab, no_notify_env: None, receiver: tuple[str, Receiver]
) -> None:
    _tools_lab(lab)
    address, rx = receiver
    env = {"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "200000", "WATCHDOG_PID": "1"}
    proc = lab.start_run(env=env)
    try:
        rx.wait(lambda m: "STATUS" in m.fields and "READY" not in m.fields, "a cycle's STATUS")
        rx.drain(0.5)
    finally:
        out = _stop(proc)
    assert proc.returncode == 0, out
    assert rx.messages[0].fields.get("READY") == "1"
    assert not [m for m in rx.messages if "WATCHDOG" in m.fields]


# ------------------------------------------------------------------ Notifier in-process


def test_loop_is_unhealthy_past_its_deadline_and_the_watchdog_stops(
    lab: Lab, no_notify_env: None, receiver: tuple[str, Receiver]
) -> None:
    _tools_lab(lab)
    lab.write()
    cfg = load_config(lab.config_path)
    loop = Loop(argparse.Namespace(config=lab.config_path), cfg, load_served(cfg))
    address, rx = receiver
    notifier = Notifier(env={"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "200000"})
    try:
        assert not loop.notifier.enabled  # the loop's own notifier: no NOTIFY_SOCKET
        # every step of a cycle has a timeout: the deadline is their sum
        deadline = loop.cycle_deadline()
        assert deadline >= 10 * cfg.inventory.timeout_seconds + 3 * cfg.exportfs_timeout_seconds
        assert loop.healthy()  # between cycles
        loop.cycle_started = time.monotonic()
        assert loop.healthy()  # a cycle just started
        loop.cycle_started = time.monotonic() - deadline + 5
        assert loop.healthy()  # a slow cycle, still within its deadline

        notifier.start_watchdog(loop.healthy)
        pings = [m for m in rx.drain(0.75) if m.fields == {"WATCHDOG": "1"}]
        assert len(pings) >= 4  # one at once, then every 0.1 s

        loop.cycle_started = time.monotonic() - deadline - 1  # stuck past its deadline
        assert not loop.healthy()
        rx.drain(0.15)  # a ping already under way
        assert rx.drain(0.6) == []

        loop.cycle_started = None  # the cycle ended after all: pings resume
        assert loop.healthy()
        assert [m for m in rx.drain(0.4) if m.fields == {"WATCHDOG": "1"}]

        notifier.stop_watchdog()
        rx.drain(0.15)
        assert rx.drain(0.4) == []
    finally:
        notifier.stop_watchdog()
        loop.exporter.stop()


def test_watchdog_follows_healthy_and_stops(receiver: tuple[str, Receiver]) -> None:
    address, rx = receiver
    healthy = [True]
    n = Notifier(env={"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "100000"})
    assert n.watchdog_usec == 100000
    try:
        n.start_watchdog(lambda: healthy[0])
        n.start_watchdog(lambda: True)  # a second start is ignored (one thread)
        got = rx.drain(0.5)
        assert len(got) >= 5
        assert all(m.raw == "WATCHDOG=1" for m in got)
        healthy[0] = False
        rx.drain(0.1)
        assert rx.drain(0.5) == []
    finally:
        n.stop_watchdog()
    assert n._thread is None


def test_without_notify_socket_nothing_is_sent_and_nothing_fails(
    no_notify_env: None, receiver: tuple[str, Receiver]
) -> None:
    _, rx = receiver
    for n in (
        Notifier(),  # os.environ, cleaned
        Notifier(env={}),
        Notifier(env={"WATCHDOG_USEC": "100000"}),
        Notifier(env={"NOTIFY_SOCKET": "relative/notify.sock", "WATCHDOG_USEC": "100000"}),
    ):
        assert not n.enabled
        assert n.send(STATUS="x") is False
        n.ready("running")
        n.status("ok")
        n.start_watchdog(lambda: True)
        assert n._thread is None
        n.stopping()
        n.stop_watchdog()
        assert n.sent == 0
    assert rx.drain(0.2) == []


def test_a_missing_socket_does_not_raise(tmp_path: Path) -> None:
    n = Notifier(env={"NOTIFY_SOCKET": str(tmp_path / "gone.sock"), "WATCHDOG_USEC": "100000"})
    assert n.enabled
    assert n.send(STATUS="x") is False
    n.ready("running")
    n.status("ok")
    n.start_watchdog(lambda: True)
    time.sleep(0.25)  # the thread's pings fail quietly too
    n.stopping()
    n.stop_watchdog()
    assert n.sent == 0
    # an abstract name nobody bound
    n = Notifier(env={"NOTIFY_SOCKET": f"@nfs-exportd-nobody-{uuid.uuid4().hex}"})
    assert n.enabled
    assert n.send(READY="1") is False


def test_values_with_newlines_are_sent_as_one_line(receiver: tuple[str, Receiver]) -> None:
    address, rx = receiver
    n = Notifier(env={"NOTIFY_SOCKET": address})
    assert n.send(STATUS="first line\nsecond line\r\nthird") is True
    msg = rx.wait(lambda m: True, "the status")
    assert msg.raw == "STATUS=first line second line third"
    # a newline cannot smuggle in another field
    n.status("held: unknown-inventory=1\nREADY=1\nSTOPPING=1")
    msg = rx.wait(lambda m: True, "the second status")
    assert msg.raw.count("\n") == 0
    assert set(msg.fields) == {"STATUS"}
    # several fields: one line each, in one datagram
    n.ready("a\nb")
    msg = rx.wait(lambda m: True, "READY")
    assert msg.raw == f"READY=1\nSTATUS=a b\nMAINPID={os.getpid()}"
    n.stopping()
    msg = rx.wait(lambda m: True, "STOPPING")
    assert msg.fields == {"STOPPING": "1", "STATUS": "stopping"}
    assert n.sent == 4


def test_watchdog_pid_is_honoured(tmp_path: Path) -> None:
    addr = str(tmp_path / "x.sock")
    assert Notifier(env={"NOTIFY_SOCKET": addr, "WATCHDOG_USEC": "5"}).watchdog_usec == 5
    mine = {"NOTIFY_SOCKET": addr, "WATCHDOG_USEC": "5", "WATCHDOG_PID": str(os.getpid())}
    assert Notifier(env=mine).watchdog_usec == 5
    other = {**mine, "WATCHDOG_PID": str(os.getpid() + 1)}
    assert Notifier(env=other).watchdog_usec == 0
    assert Notifier(env={"NOTIFY_SOCKET": addr, "WATCHDOG_USEC": "soon"}).watchdog_usec == 0
