"""The demo's last step, run as root: the data path, what a user of a VM really sees.

The earlier steps show files and the etab; this one shows NFS answers.  Two of the
simulated cloud's instances get the addresses of two lab VMs (network namespaces
behind a router, in 198.51.100.0/24, nothing routed off the machine): ``vm-a1`` in
project tools, ``vm-b1`` in project paws.  One cycle with ``backend: ganesha`` (a second
config beside the demo's, same cloud, same projects) and one with the demo's own
exportfs config; then vm-a1 reads tools' home over NFSv4 from NFS-Ganesha and vm-b1 is
refused it, and rpc.mountd, answering from the etab the demo's exportfs wrote, grants
vm-a1's MOUNT and refuses vm-b1's.  Each answer is checked: an unexpected one makes the
demo exit 1.

Without root nothing is started (one line says so).  Everything the lab started is
stopped by pid and its namespaces deleted by name at the end, also on an error, Ctrl-C
or SIGTERM (further signals are ignored while tearing down, so the teardown finishes).
"""

from __future__ import annotations

import io
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import yaml

from nfs_exportd import yamlsafe

from ..cloud import SimCloud
from ..lab.clients import NfsResult, nfs_cat
from ..lab.ganesha import GaneshaServer
from ..lab.mnt3 import mnt3_probes
from ..lab.mountd import MountdServer
from ..lab.netns import PREFIX
from ..lab.network import LabNetwork
from ..lab.proc import LabError

SKIPPED = (
    "data path skipped: starting NFS servers and VMs (network namespaces) needs root; "
    "run the demo as root (sudo make demo) to see a VM read its project's file and "
    "another project's VM refused"
)
README = "hello from the home volume of project {project}\n"
SUN_PATH_MAX = 100  # a unix socket's path must fit sun_path (108 bytes): keep a margin
_NFS_ERROR = re.compile(r"\b(NFS4ERR_[A-Z_]+|NFS3ERR_[A-Z_]+|MNT3ERR_[A-Z_]+)\b")


@dataclass(frozen=True)
class Client:
    """A lab VM (namespace ``vm``) that the cloud knows as ``instance`` of ``project``."""

    vm: str
    instance: str
    address: str
    project: str

    def __str__(self) -> str:
        return f"{self.instance} {self.address} (project {self.project})"


A1 = Client("a1", "vm-a1", "198.51.100.11", "tools")
B1 = Client("b1", "vm-b1", "198.51.100.21", "paws")

Sync = Callable[[Path | None], int]  # runs `nfs-exportd [--config PATH] sync`, prints it


def show_data_path(root: Path, sim: SimCloud, sync: Sync) -> int:
    """Step 8 of the demo; 0 when every answer was the expected one (or when skipped
    without root), 1 when the lab could not start or an answer was wrong."""
    if os.geteuid() != 0:
        print(f"\n{SKIPPED}", flush=True)
        return 0
    print(
        "\n=== 9. the data path: VMs that really mount, from NFS-Ganesha and rpc.mountd\n"
        f"    the cloud: {A1.instance} created in project {A1.project} with {A1.address}, "
        f"{B1.instance} in project {B1.project} with {B1.address}: the addresses of two VMs",
        flush=True,
    )
    for c in (A1, B1):
        _volume(root, c.project)
        sim.create_server(c.instance, c.project, addresses=[c.address])
    lab_dir, own_dir = _lab_dir(root)
    stack = ExitStack()
    try:
        code = _run_lab(stack, root, lab_dir, sync)
    finally:
        left = _teardown(stack)
        if own_dir:
            shutil.rmtree(lab_dir, ignore_errors=True)
    if left:
        print(f"the data-path lab was not torn down completely: {left}", file=sys.stderr)
        return 1
    print("    lab torn down: NFS servers, rpcbind and dbus-daemon stopped, namespaces deleted")
    return code


def _run_lab(stack: ExitStack, root: Path, lab_dir: Path, sync: Sync) -> int:
    """Start the lab into ``stack`` (the caller tears it down) and show the answers."""
    net = LabNetwork({c.vm: c.address for c in (A1, B1)})
    print(
        f"    lab (namespaces {PREFIX}{net.lab_id}-*): VMs {A1.instance} and {B1.instance} "
        f"behind a router, NFS-Ganesha at {net.server_ip}, rpc.mountd at {net.knfs_ip} "
        f"over the demo's etab; logs in {lab_dir}",
        flush=True,
    )
    try:
        stack.enter_context(net)
        ganesha = stack.enter_context(
            GaneshaServer(lab_dir / "ganesha", net.server.name, net.server_ip)
        )
        mountd = stack.enter_context(
            MountdServer(lab_dir / "mountd", net.knfs.name, root / "sandbox", net.knfs_ip)
        )
    except LabError as e:
        print(f"the data-path lab could not start as root: {e}", file=sys.stderr, flush=True)
        return 1
    return _scenes(root, net, ganesha, mountd, sync)


def _scenes(
    root: Path, net: LabNetwork, ganesha: GaneshaServer, mountd: MountdServer, sync: Sync
) -> int:
    ok = True
    home = {p: root / "srv" / p / "home" for p in (A1.project, B1.project)}
    gan = f"NFS-Ganesha at {net.server_ip} (backend: ganesha)"

    print("--- backend: ganesha (a second config, same cloud: config-ganesha.yaml)", flush=True)
    config = _ganesha_config(root, ganesha)
    ok &= _without_adds(lambda: sync(config)) == 0
    readme = home[A1.project] / "README"
    seen = nfs_cat(net.vms[A1.vm].netns, net.server_ip, str(readme), 4)
    ok &= _read(A1, seen, f"{A1.project}/home/README over NFSv4 from {gan}")
    seen = nfs_cat(net.vms[B1.vm].netns, net.server_ip, str(readme), 4)
    ok &= _refused(B1, seen, f"{A1.project}/home/README over NFSv4 by {gan}")
    refusal = [
        ln
        for ln in ganesha.log_text().splitlines()
        if "Access not allowed" in ln and ln.endswith(f"::ffff:{B1.address}")
    ]
    if refusal:
        print(f"      Ganesha's log: {_after(refusal[-1], ':EXPORT :INFO :')}")
    seen = nfs_cat(net.vms[B1.vm].netns, net.server_ip, str(home[B1.project] / "README"), 3)
    ok &= _read(B1, seen, f"its own {B1.project}/home/README over NFSv3 from {gan}")

    print("--- backend: exportfs (the demo's config; rpc.mountd reads the etab it wrote)")
    ok &= sync(None) == 0
    knfs = f"rpc.mountd at {net.knfs_ip} (backend: exportfs)"
    vol = str(home[A1.project])
    for client, want in ((A1, "MNT3_OK"), (B1, "MNT3ERR_ACCES")):
        (reply,) = mnt3_probes(net.vms[client.vm].netns, net.knfs_ip, [vol])
        verb = "may mount" if want == "MNT3_OK" else "is refused"
        line = f"{client} {verb} {A1.project}/home: {knfs} answers {reply}"
        ok &= _say(str(reply) == want, line)
    refusal = [ln for ln in mountd.refusals() if f"from {B1.address} " in ln]
    if refusal:
        print(f"      rpc.mountd's log: {_after(refusal[-1], 'rpc.mountd: ')}")
    sys.stdout.flush()
    return 0 if ok else 1


def _without_adds(call: Callable[[], int]) -> int:
    """``call()`` with its output (stdout and logs, in order) printed but for the one
    "INFO add" line per (path, client): step 2 showed them for the same cloud."""
    out = io.StringIO()
    with redirect_stdout(out), redirect_stderr(out):
        code = call()
    raise_if_interrupted()
    adds = 0
    for line in out.getvalue().splitlines():
        if line.startswith("INFO add "):
            adds += 1
            if adds == 1:
                print("INFO add ... (one line per (path, client), as in step 2: not shown)")
        else:
            print(line)
    sys.stdout.flush()
    return code


def _say(expected: bool, line: str) -> bool:
    print(line if expected else f"UNEXPECTED: {line}", flush=True)
    return expected


def _read(client: Client, seen: NfsResult, what: str) -> bool:
    if seen.ok:
        first = seen.output.splitlines()[0] if seen.output else ""
        return _say(True, f'{client} reads {what}: "{first}"')
    return _say(False, f"{client} cannot read {what}: {_reason(seen)}")


def _refused(client: Client, seen: NfsResult, what: str) -> bool:
    if seen.ok:
        return _say(False, f"{client} was NOT refused {what}: it read {seen.output[:60]!r}")
    return _say(True, f"{client} is refused {what}: {_reason(seen)}")


def _reason(seen: NfsResult) -> str:
    """The NFS status in libnfs's message (e.g. NFS4ERR_NOENT), else the message."""
    found = _NFS_ERROR.search(seen.message)
    if found:
        return found.group(1)
    return (seen.message.strip().splitlines() or [f"exit {seen.rc}"])[-1]


def _after(line: str, marker: str) -> str:
    """A log line from ``marker`` on (drops the timestamp and host prefix)."""
    i = line.find(marker)
    return line[i + len(marker) :].strip() if i >= 0 else line.strip()


def _volume(root: Path, project: str) -> None:
    """The project's home volume holds a README that a squashed client may read: every
    directory from srv down 0755, the file 0644 (the umask may be stricter)."""
    srv = root / "srv"
    home = srv / project / "home"
    home.mkdir(parents=True, exist_ok=True)
    for d in (srv, srv / project, home):
        d.chmod(0o755)
    f = home / "README"
    f.write_text(README.format(project=project))
    f.chmod(0o644)


def _lab_dir(root: Path) -> tuple[Path, bool]:
    """Where the lab keeps its files: ``root/lab``, unless the private bus's socket path
    would not fit a unix socket address there; then a temporary directory (True: remove
    it at the end)."""
    lab = root / "lab"
    if len(str(lab / "ganesha" / "dbus" / "system_bus_socket")) <= SUN_PATH_MAX:
        return lab, False
    return Path(tempfile.mkdtemp(prefix="nfs-exportd-demo-lab-")), True


def _ganesha_config(root: Path, ganesha: GaneshaServer) -> Path:
    """The demo's config with ``backend: ganesha`` pointed at the lab's Ganesha (its
    own state_dir, so its records and journal are apart from the exportfs ones)."""
    data: Any = yamlsafe.loads((root / "config.yaml").read_text(), "config.yaml")
    for key in ("exports_dir", "etab_file", "exportfs_command", "exportfs_timeout_seconds"):
        data.pop(key, None)
    state = root / "state-ganesha"
    (state / "exports.d").mkdir(parents=True, exist_ok=True)  # the records (exports_dir)
    data["state_dir"] = str(state)
    data["backend"] = "ganesha"
    data["ganesha"] = {
        "conf_dir": str(ganesha.conf_dir),
        "staging_dir": str(ganesha.conf_dir.with_name("staging")),  # same filesystem
        "dbus_address": ganesha.dbus_address,
        "timeout_seconds": 10,
    }
    path = root / "config-ganesha.yaml"
    path.write_text(
        "# the demo's config.yaml with backend: ganesha, written by the demo's step 8\n"
        + yaml.safe_dump(data, sort_keys=False)
    )
    return path


_interrupted = threading.Event()


def _interrupt(signum: int, frame: FrameType | None) -> None:
    _interrupted.set()
    raise KeyboardInterrupt(f"signal {signum}")


@contextmanager
def interrupts() -> Iterator[None]:
    """Ctrl-C and SIGTERM stop the whole demo (KeyboardInterrupt), so what it started
    is stopped on the way out; a cycle that catches one (the CLI returns 1) is followed
    by ``raise_if_interrupted``."""
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.signal(s, _interrupt) for s in signals}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def raise_if_interrupted() -> None:
    if _interrupted.is_set():
        raise KeyboardInterrupt("interrupted")


def _teardown(stack: ExitStack) -> str:
    """Stop the lab (each part by pid, namespaces by name) with SIGINT and SIGTERM
    ignored, so a second Ctrl-C cannot leave half a lab; '' or what was left."""
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        stack.close()
    except LabError as e:
        return str(e)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    return ""
