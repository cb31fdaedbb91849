"""Named network namespaces for the lab, unique per lab so parallel sessions never meet.

A name is ``nxl<6 hex>-<role>``: the random part is drawn per lab and checked against
``/run/netns`` before use.  ``loopback_netns`` gives a namespace with only ``lo`` (up),
for a server that must answer on 127.0.0.1 and nowhere else.  Removing a namespace
first checks that no process is left in it (that would be a lab process we failed to
stop: named in the error), then deletes it by name.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from nfs_exportd_sim.lab.proc import LabError, run

NETNS_DIR = Path("/run/netns")
PREFIX = "nxl"


def new_lab_id() -> str:
    """Six hex digits no namespace in ``/run/netns`` starts with yet."""
    for _ in range(100):
        lab_id = secrets.token_hex(3)
        taken = NETNS_DIR.is_dir() and any(
            p.name.startswith(f"{PREFIX}{lab_id}") for p in NETNS_DIR.iterdir()
        )
        if not taken:
            return lab_id
    raise LabError("no free lab id in /run/netns after 100 draws: remove stale nxl* namespaces")


@dataclass(frozen=True)
class NetNS:
    """A network namespace we created (``ip netns add``), known by its name."""

    name: str

    @property
    def path(self) -> Path:
        return NETNS_DIR / self.name

    def exists(self) -> bool:
        return self.path.exists()

    def argv(self, *cmd: str) -> list[str]:
        """``cmd`` run inside this namespace (``ip netns exec`` also gives it a private
        mount namespace, so bind mounts made there never reach the host)."""
        return ["ip", "netns", "exec", self.name, *cmd]

    def run(self, *cmd: str, timeout: float = 30.0, check: bool = True) -> str:
        """Run ``cmd`` inside; returns stdout, raises LabError on failure."""
        return run(self.argv(*cmd), timeout=timeout, check=check).stdout

    def ip(self, *args: str) -> None:
        """``ip -n NAME ARGS`` (configure links and routes inside)."""
        run(["ip", "-n", self.name, *args])

    def pids(self) -> list[int]:
        """Processes whose network namespace is this one."""
        try:
            ino = os.stat(self.path).st_ino
        except OSError:
            return []
        found = []
        for d in Path("/proc").iterdir():
            if d.name.isdigit():
                try:
                    if os.stat(d / "ns" / "net").st_ino == ino:
                        found.append(int(d.name))
                except OSError:
                    continue
        return found

    def delete(self) -> None:
        """Delete by name; refuses (LabError naming them) while processes are inside."""
        if not self.exists():
            return
        left = self.pids()
        if left:
            names = []
            for pid in left:
                try:
                    names.append(f"{pid} ({Path(f'/proc/{pid}/comm').read_text().strip()})")
                except OSError:
                    names.append(str(pid))
            raise LabError(
                f"namespace {self.name} still has processes {', '.join(names)}: "
                "stop them by pid, then delete it"
            )
        run(["ip", "netns", "del", self.name])


def create_netns(name: str) -> NetNS:
    """``ip netns add NAME`` with ``lo`` up; LabError when the name is taken."""
    ns = NetNS(name)
    if ns.exists():
        raise LabError(f"namespace {name} already exists: another lab uses this name")
    run(["ip", "netns", "add", name])
    try:
        ns.ip("link", "set", "lo", "up")
    except LabError:
        run(["ip", "netns", "del", name], check=False)
        raise
    return ns


@contextmanager
def loopback_netns(role: str = "lo") -> Iterator[NetNS]:
    """A fresh namespace with only ``lo`` (127.0.0.1, ::1), deleted on exit."""
    ns = create_netns(f"{PREFIX}{new_lab_id()}-{role}")
    try:
        yield ns
    finally:
        ns.delete()
