"""The kernel NFS server's user-space half: ``rpc.mountd -F`` deciding MOUNT requests
from the etab that the project's exportfs sandbox writes.

``sandbox_dir`` is the directory given to ``exportfs-sandbox`` (its ``lib/`` is the
``/var/lib/nfs`` where exportfs keeps the etab).  rpc.mountd runs through ``ip netns
exec`` (a private mount namespace) with:

- ``sandbox_dir/lib`` over ``/var/lib/nfs`` (etab, rmtab), and ``sandbox_dir/exports``
  over ``/etc/exports``: the very files the sandboxed exportfs wrote;
- ``run/`` over ``/run`` (shared with its own rpcbind, never the host's);
- stand-ins for the kernel nfsd files this machine lacks, so an allowed MOUNT answers
  MNT3_OK (not only "authenticated" in the log): a tmpfs on ``/proc/fs/nfsd`` whose
  ``filehandle`` is a FIFO (rpc.mountd writes "domain path len" and reads the first word
  back as the handle), and ``fakeproc/net`` bound over ``/proc/<its pid>/net``, whose
  ``rpc/{auth.unix.ip,nfsd.export}/channel`` become links to /dev/null only AFTER it
  listens (at start-up it would open them and spin).  This needs ``-F``: a forking
  rpc.mountd would no longer be the pid the binds were made for.

Its stderr (``-F -l``: "authenticated mount request ...", "granted access ...",
"refused mount request from IP for PATH (...): not exported|unmatched host") goes to
``log_path``.  It also gets a private ``/dev`` (the host's null, zero, random and urandom,
and ``log``: the socket of a syslog catcher), so its syslog copies - the lines a Debian
server's journal or syslog keeps, with their time stamps - are written to
``syslog_path`` exactly as received.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import TracebackType

from nfs_exportd_sim.lab.ganesha import require
from nfs_exportd_sim.lab.proc import Daemon, LabError, listening, start_rpcbind, wait_until

MOUNTD_PORT = 20048
CHANNELS = ("auth.unix.ip", "nfsd.export")

_SETUP = r"""set -e
work=$1; sandbox=$2; shift 2
mount --bind "$sandbox/lib" /var/lib/nfs
mount --bind "$sandbox/exports" /etc/exports
mount --bind "$work/run" /run
mount -t tmpfs -o size=64k,mode=755 lab-nfsd /proc/fs/nfsd
mkfifo -m 600 /proc/fs/nfsd/filehandle
mount --bind "$work/fakeproc/net" /proc/$$/net
for d in null zero random urandom; do mount --bind "/dev/$d" "$work/dev/$d"; done
mount --rbind "$work/dev" /dev
exec "$@"
"""


def _in_ns(netns: str, script: str) -> list[str]:
    return ["ip", "netns", "exec", netns, "sh", "-c", script]


class MountdServer:
    """rpc.mountd (and an rpcbind) in namespace ``netns`` over ``sandbox_dir``'s etab."""

    def __init__(
        self, workdir: Path, netns: str, sandbox_dir: Path, address: str, start_timeout: float = 20
    ) -> None:
        self.workdir = workdir.resolve()
        self.netns = netns
        self.sandbox_dir = sandbox_dir.resolve()
        self.address = address
        self.start_timeout = start_timeout
        self.run_dir = self.workdir / "run"
        self.log_path = self.workdir / "rpc.mountd.log"
        self.syslog_path = self.workdir / "rpc.mountd.syslog"
        self.dev_dir = self.workdir / "dev"
        self.syslog = Daemon(
            "syslogcatch",
            [
                sys.executable,
                "-m",
                "nfs_exportd_sim.lab.syslogcatch",
                str(self.dev_dir / "log"),
                str(self.syslog_path),
            ],
            self.workdir / "syslogcatch.log",
        )
        self.rpcbind = Daemon(
            "rpcbind",
            [
                *_in_ns(netns, 'mount --bind "$0" /run && exec "$@"'),
                str(self.run_dir),
                "rpcbind",
                "-f",
            ],
            self.workdir / "rpcbind.log",
        )
        self.mountd = Daemon(
            "rpc.mountd",
            [
                *_in_ns(netns, _SETUP),
                "mountd-setup",
                str(self.workdir),
                str(self.sandbox_dir),
                "rpc.mountd",
                "-F",
                "-l",
                "-N",
                "4",
                "-p",
                str(MOUNTD_PORT),
            ],
            self.log_path,
        )

    def _channel(self, name: str) -> Path:
        return self.workdir / "fakeproc" / "net" / "rpc" / name / "channel"

    def start(self) -> None:
        require("rpc.mountd", "rpcbind", "ip")
        if not Path("/proc/fs/nfsd").is_dir():
            raise LabError(
                "/proc/fs/nfsd is missing: this kernel has no nfsd directory to stand in"
            )
        for d in (self.run_dir, self.sandbox_dir / "lib", self.sandbox_dir / "exports.d"):
            d.mkdir(parents=True, exist_ok=True)
        (self.sandbox_dir / "exports").touch()
        (self.sandbox_dir / "lib" / "rmtab").touch()
        for name in CHANNELS:
            self._channel(name).parent.mkdir(parents=True, exist_ok=True)
            self._channel(name).unlink(missing_ok=True)
        self.dev_dir.mkdir(parents=True, exist_ok=True)
        for name in ("null", "zero", "random", "urandom"):
            (self.dev_dir / name).touch()  # bind targets
        try:
            self.syslog.start()
            sock = self.dev_dir / "log"
            wait_until(lambda: sock.exists() or not self.syslog.alive(), 10)
            if not sock.exists():
                raise LabError(f"the syslog catcher did not bind {sock}: {self.syslog.describe()}")
            start_rpcbind(self.rpcbind, self.run_dir, self.netns)
            self.mountd.start()
            ok = wait_until(
                lambda: not self.mountd.alive() or listening(self.mountd.pid, MOUNTD_PORT),
                self.start_timeout,
            )
            if not ok or not self.mountd.alive():
                raise LabError(
                    f"rpc.mountd in namespace {self.netns} did not listen on "
                    f"{self.address}:{MOUNTD_PORT}: {self.mountd.describe()}"
                )
            for name in CHANNELS:
                self._channel(name).symlink_to("/dev/null")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop rpc.mountd and rpcbind by their own pids; safe to call twice."""
        self.mountd.stop(5)
        self.rpcbind.stop(5)
        self.syslog.stop(5)
        for name in CHANNELS:
            self._channel(name).unlink(missing_ok=True)

    def alive(self) -> bool:
        return self.mountd.alive()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def syslog_text(self) -> str:
        """The syslog datagrams rpc.mountd sent so far, one per line."""
        try:
            return self.syslog_path.read_text(errors="replace")
        except OSError:
            return ""

    def refusals(self) -> list[str]:
        """The "refused mount request ..." lines so far."""
        return [ln for ln in self.log_text().splitlines() if "refused mount request" in ln]

    def __enter__(self) -> MountdServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
