"""A real RabbitMQ for the tests, the benchmark and ``make demo``: Debian's
``rabbitmq-server`` (``make system-deps`` installs it), one broker in a temporary
directory (the tests: one per session, ``tests/rabbit_lab``).

The broker is the one OpenStack clouds run their notifications on; nothing of the
machine's own RabbitMQ is used or touched: its own node name, data directory, Erlang
cookie (``HOME``), config file, an ``epmd`` of its own on a free port (the broker would
otherwise start a daemonised one that outlives it), AMQP on 127.0.0.1 on a free port, a
user and vhost made by the config file.  Every step that fails raises ``BrokerFailed``
with the broker's output: the fixture turns it into a test failure, never a skip.  The
broker and its epmd are stopped by their process groups (each started in a session of
its own), and die with the test process as a last resort (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .lab.proc import die_with_parent, remove_orphaned_workdirs

RABBITMQ_SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
EPMD = "epmd"
START_TIMEOUT = 90.0
USER = "nfs-exportd"
PASSWORD = "bus-secret-7f3a"
VHOST = "nfs-test"
WORKDIR_PREFIX = "nfs-exportd-rabbit-"


def _die_with_parent() -> None:  # runs in the child between fork and exec
    """A session (process group) of its own, and SIGTERM when the parent dies."""
    die_with_parent()
    os.setsid()


class BrokerFailed(Exception):
    """RabbitMQ could not be started (missing package, bad config, timeout)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop_group(proc: subprocess.Popen[bytes] | None, timeout: float = 15) -> None:
    """SIGTERM the process group of ``proc`` (a session of its own), SIGKILL after
    ``timeout``; only processes this module started."""
    if proc is None:
        return
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    with contextlib.suppress(ProcessLookupError):  # erl_child_setup, inet_gethost
        os.killpg(proc.pid, signal.SIGKILL)


class Broker:
    """One RabbitMQ node with its files in ``workdir``; ``url`` is the transport URL."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.dist_port = free_port()
        self.epmd_port = free_port()
        self.node = f"nfsexportd{self.port}@localhost"
        self.proc: subprocess.Popen[bytes] | None = None
        self.epmd: subprocess.Popen[bytes] | None = None
        self.timings: dict[str, float] = {}

    # ------------------------------------------------------------------ URLs
    def transport_url(self, user: str = USER, password: str = PASSWORD) -> str:
        """oslo.messaging's ``rabbit://USER:PASS@HOST:PORT/VHOST``."""
        return (
            f"rabbit://{quote(user, safe='')}:{quote(password, safe='')}@127.0.0.1:"
            f"{self.port}/{quote(VHOST, safe='')}"
        )

    @property
    def url(self) -> str:
        return self.transport_url()

    # ------------------------------------------------------------------ files
    @property
    def log_file(self) -> Path:
        return self.workdir / "server.out"

    def logs(self, lines: int = 60) -> str:
        parts = []
        for p in (self.log_file, *sorted((self.workdir / "log").glob("*.log"))):
            with contextlib.suppress(OSError):
                text = p.read_text(errors="replace").splitlines()
                parts.append(f"--- {p.name}\n" + "\n".join(text[-lines:]))
        return "\n".join(parts)

    def configure(self) -> None:
        if not RABBITMQ_SERVER.exists():
            raise BrokerFailed(
                f"{RABBITMQ_SERVER} is missing: run 'make system-deps' as root "
                "(installs Debian's rabbitmq-server)"
            )
        if shutil.which(EPMD) is None:
            raise BrokerFailed("epmd is missing: run 'make system-deps' as root (erlang-base)")
        w = self.workdir
        for d in ("mnesia", "log", "home", "plugins-expand"):
            (w / d).mkdir(parents=True, exist_ok=True)
        cookie = w / "home" / ".erlang.cookie"
        cookie.write_text(os.urandom(16).hex().upper())
        cookie.chmod(0o400)
        (w / "enabled_plugins").write_text("[].\n")
        (w / "rabbitmq.conf").write_text(
            "\n".join(
                [
                    f"listeners.tcp.1 = 127.0.0.1:{self.port}",
                    "loopback_users = none",
                    f"default_vhost = {VHOST}",
                    f"default_user = {USER}",
                    f"default_pass = {PASSWORD}",
                    "default_permissions.configure = .*",
                    "default_permissions.read = .*",
                    "default_permissions.write = .*",
                    "disk_free_limit.absolute = 1MB",
                    "log.console = true",
                    "log.console.level = warning",
                    "log.file = false",
                    "",
                ]
            )
        )

    def _env(self) -> dict[str, str]:
        w = self.workdir
        keep = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TMPDIR")}
        return {
            **keep,
            "HOME": str(w / "home"),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CONFIG_FILE": str(w / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(w / "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": str(w / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(w / "enabled_plugins"),
            "RABBITMQ_PLUGINS_EXPAND_DIR": str(w / "plugins-expand"),
            "RABBITMQ_MNESIA_BASE": str(w / "mnesia"),
            "RABBITMQ_LOG_BASE": str(w / "log"),
            "RABBITMQ_PID_FILE": str(w / "rabbit.pid"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }

    # ------------------------------------------------------------------ run
    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start epmd (once) and the broker, and wait until a client can log in."""
        if self.running:
            return
        t0 = time.monotonic()
        env = self._env()
        if self.epmd is None or self.epmd.poll() is not None:
            self.epmd = subprocess.Popen(
                [EPMD, "-port", str(self.epmd_port), "-address", "127.0.0.1"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=env,
                preexec_fn=_die_with_parent,
            )
        with self.log_file.open("ab") as out:
            self.proc = subprocess.Popen(
                [str(RABBITMQ_SERVER)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.workdir,
                preexec_fn=_die_with_parent,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.proc = None
                raise BrokerFailed(f"rabbitmq-server exited with {code}\n{self.logs()}")
            problem = self.probe()
            if problem is None:
                break
            if time.monotonic() > deadline:
                self.stop()
                raise BrokerFailed(
                    f"RabbitMQ not accepting logins on 127.0.0.1:{self.port} within "
                    f"{timeout:g} s ({problem})\n{self.logs()}"
                )
            time.sleep(0.2)
        self.timings.setdefault("first start", time.monotonic() - t0)
        self.timings["last start"] = time.monotonic() - t0

    def probe(self) -> str | None:
        """None when the test user can log in to the vhost, else why not."""
        amqp: Any = importlib.import_module("amqp")  # py-amqp: oslo.messaging's (via kombu)
        conn = amqp.Connection(
            f"127.0.0.1:{self.port}",
            userid=USER,
            password=PASSWORD,
            virtual_host=VHOST,
            connect_timeout=2,
        )
        try:
            conn.connect()
        except Exception as exc:
            with contextlib.suppress(Exception):
                conn.collect()
            return f"{type(exc).__name__}: {exc}"
        with contextlib.suppress(Exception):
            conn.close()
        return None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """Stop the broker (its process group); epmd stays for a restart."""
        proc, self.proc = self.proc, None
        _stop_group(proc)

    def close(self) -> None:
        self.stop()
        epmd, self.epmd = self.epmd, None
        _stop_group(epmd, timeout=5)
        shutil.rmtree(self.workdir, ignore_errors=True)


def launch() -> Broker:
    """Configure and start a broker; the caller ``close()``s it.  Raises BrokerFailed,
    after cleaning up what it started."""
    remove_orphaned_workdirs(WORKDIR_PREFIX)
    broker = Broker(Path(tempfile.mkdtemp(prefix=WORKDIR_PREFIX)))
    (broker.workdir / "owner.pid").write_text(f"{os.getpid()}\n")
    atexit.register(broker.close)
    try:
        broker.configure()
        broker.start()
    except BaseException:
        broker.close()
        raise
    return broker
