"""`make demo` runs python -m nfs_exportd_sim.demo against the simulated cloud through the
real openstacksdk: it must apply, hold on Keystone's 401, confirm the removal, and fall
back to rendering the files (saying why) where exportfs cannot run.  As root it ends with
the data path (real NFS-Ganesha, rpc.mountd and NFS clients in network namespaces): one
VM reads its project's file, another project's VM is refused, and everything it started
is gone afterwards, also when it is interrupted or the lab cannot start; without root it
says in one line what it skipped."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import require_exportfs
from lab_fixtures import require_root
from nfs_exportd_sim.demo.datapath import SKIPPED, _lab_dir
from nfs_exportd_sim.lab.netns import NETNS_DIR
from nfs_exportd_sim.rabbit import PASSWORD as RABBIT_PASSWORD

REPO = Path(__file__).resolve().parents[1]
DEMO = [sys.executable, "-m", "nfs_exportd_sim.demo"]
LAB_LINE = re.compile(r"lab \(namespaces (nxl[0-9a-f]+)-\*\).* logs in (\S+)")


def _demo(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*DEMO, str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
        check=False,
    )


@dataclass
class DemoRun:
    root: Path
    proc: subprocess.CompletedProcess[str]
    seconds: float


@pytest.fixture(scope="module")
def demo_as_root(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    """One whole demo run as root (as `make demo` runs in CI), shared by the tests that
    read its output."""
    require_exportfs()
    require_root()
    tmp = tmp_path_factory.mktemp("demo")
    start = time.monotonic()
    proc = _demo(tmp)
    return DemoRun(tmp / "demo", proc, time.monotonic() - start)


def _lab(out: str) -> tuple[str, Path]:
    """The lab's namespace prefix and log directory, as the demo printed them."""
    found = LAB_LINE.search(out)
    assert found, out
    return found.group(1), Path(found.group(2))


def wait_for(cond: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def _assert_torn_down(prefix: str, lab_dir: Path) -> None:
    """No namespace of that lab left, and no process running from its directory."""
    assert not [p.name for p in NETNS_DIR.iterdir() if p.name.startswith(f"{prefix}-")]
    left = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmdline = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if str(lab_dir) in cmdline:
                left.append(f"{d.name}: {cmdline}")
    assert not left, left


def test_demo_applies_and_confirms_the_removal(demo_as_root: DemoRun) -> None:
    proc, root = demo_as_root.proc, demo_as_root.root
    assert proc.returncode == 0, proc.stderr
    tools = (root / "sandbox" / "exports.d" / "tools.exports").read_text()
    assert "172.16.0.19" in tools  # the instance created during the demo
    assert "172.16.0.12" not in tools  # the one deleted, after 3 confirmations
    # held: the removal twice (pending), Keystone's 401 once (unknown-inventory)
    assert proc.stdout.count("(exit 3)") == 3
    assert "held: unknown-inventory=" in proc.stdout
    assert "inventory: openstack:demo-admin  complete: False" in proc.stdout
    assert "NFS-EXPORTD OK - in sync" in proc.stdout
    assert "172.16.0.19 is instance tools-worker-10" in proc.stdout
    assert "172.16.0.12 is not an address of any instance" in proc.stdout
    assert "baseline" in proc.stdout and "instance-gone" in proc.stdout
    etab = (root / "sandbox" / "lib" / "etab").read_text()
    assert f"{root / 'srv' / 'tools' / 'home'}\t172.16.0.19(" in etab


def test_demo_exports_an_instance_within_seconds_through_a_notification(
    demo_as_root: DemoRun,
) -> None:
    """Step 8: ``run`` with notifications over a real RabbitMQ exports a new instance
    within seconds, long before its 60 s interval (issue 16)."""
    out = demo_as_root.proc.stdout
    step = out[out.index("=== 8. run with notifications") : out.index("=== 9.")]
    found = re.search(
        r"172\.16\.0\.20 may mount \S+ after ([0-9.]+) s, through a notification", step
    )
    assert found, step
    assert float(found.group(1)) < 10, step
    assert "INFO early cycle: notification" in step
    assert RABBIT_PASSWORD not in step and ":***@127.0.0.1" in step
    etab = (demo_as_root.root / "sandbox" / "lib" / "etab").read_text()
    assert f"{demo_as_root.root / 'srv' / 'tools' / 'home'}\t172.16.0.20(" in etab


def test_demo_as_root_ends_with_a_vm_reading_and_another_refused(demo_as_root: DemoRun) -> None:
    """Both backends: Ganesha serves a real read over NFSv4 to the project's VM and
    refuses the other project's VM; rpc.mountd answers their MOUNT from the etab the
    demo's exportfs wrote.  Then nothing of the lab is left."""
    proc = demo_as_root.proc
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    data_path = out[out.index("=== 9. the data path") :]
    gan = "NFS-Ganesha at 198.51.100.130 (backend: ganesha)"
    knfs = "rpc.mountd at 198.51.100.242 (backend: exportfs)"
    a1, b1 = "vm-a1 198.51.100.11 (project tools)", "vm-b1 198.51.100.21 (project paws)"
    for line in (
        f'{a1} reads tools/home/README over NFSv4 from {gan}: "hello from the home volume '
        'of project tools"',
        f"{b1} is refused tools/home/README over NFSv4 by {gan}: NFS4ERR_NOENT",
        f'{b1} reads its own paws/home/README over NFSv3 from {gan}: "hello from the home '
        'volume of project paws"',
        f"{a1} may mount tools/home: {knfs} answers MNT3_OK",
        f"{b1} is refused tools/home: {knfs} answers MNT3ERR_ACCES",
    ):
        assert f"\n{line}\n" in data_path, line
    assert "UNEXPECTED" not in out
    # the servers' own word for the refusal
    assert re.search(r"Ganesha's log: Access not allowed on Export_Id \d+ \S+/srv/tools/home "
                     r"for client ::ffff:198\.51\.100\.21\n", data_path)  # fmt: skip
    assert "rpc.mountd's log: refused mount request from 198.51.100.21 for " in data_path
    assert "ganesha: 19 added, 0 updated, 0 removed over DBus" in data_path
    assert "lab torn down" in data_path
    _assert_torn_down(*_lab(out))
    assert demo_as_root.seconds < 60, f"the demo took {demo_as_root.seconds:.1f} s"


def test_demo_renders_and_says_why_when_exportfs_cannot_run(tmp_path: Path) -> None:
    proc = _demo(tmp_path, EXPORTFS_BIN=str(tmp_path / "no-exportfs"))
    assert proc.returncode == 0, proc.stderr
    assert "cannot apply with the real exportfs here" in proc.stdout
    assert "no-exportfs is not installed" in proc.stdout
    assert "# nfs-exportd managed file, do not edit: project=tools" in proc.stdout
    assert not list((tmp_path / "demo" / "sandbox" / "exports.d").glob("*.exports"))
    assert "data path skipped: it needs the real exportfs too" in proc.stdout


def test_demo_interrupted_in_the_data_path_tears_the_lab_down(tmp_path: Path) -> None:
    """Ctrl-C (SIGINT to the demo's process group, as a terminal sends it) while the
    data path runs a cycle: exit 130, the lab's servers and namespaces are gone."""
    require_exportfs()
    require_root()
    proc = subprocess.Popen(
        [*DEMO, str(tmp_path / "demo")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    seen = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            seen.append(line)
            if line.startswith("--- backend: ganesha"):
                # into the cycle with backend: ganesha (its config is written just before;
                # the CLI catches Ctrl-C and returns 1: the demo must still stop)
                config = tmp_path / "demo" / "config-ganesha.yaml"
                assert wait_for(config.exists, 10), "config-ganesha.yaml never appeared"
                time.sleep(0.05)
                os.killpg(proc.pid, signal.SIGINT)
                break
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    printed = "".join(seen) + out
    assert "--- backend: ganesha" in printed, printed[-3000:] + err[-3000:]
    assert proc.returncode == 130, printed[-3000:] + err[-3000:]
    assert "interrupted: the simulated cloud and the lab were stopped" in err
    assert "vm-b1" not in out  # it stopped: no further answers were shown
    _assert_torn_down(*_lab(printed))


def test_demo_says_why_and_fails_when_the_lab_cannot_start(tmp_path: Path) -> None:
    """As root, a lab part that cannot start (here dbus-daemon, replaced first in PATH
    by one that exits at once) makes the demo say so with its output and exit 1,
    having removed what it had started (the network namespaces)."""
    require_exportfs()
    require_root()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "dbus-daemon"
    fake.write_text("#!/bin/sh\necho 'dbus-daemon: planted failure, no bus here' >&2\nexit 1\n")
    fake.chmod(0o755)
    proc = _demo(tmp_path, PATH=f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}")
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "the data-path lab could not start as root: private dbus-daemon did not come up" in (
        proc.stderr
    )
    assert "planted failure, no bus here" in proc.stderr
    assert "NFS-Ganesha at" in proc.stdout and "reads" not in proc.stdout.split("=== 9.")[1]
    _assert_torn_down(*_lab(proc.stdout))


def test_demo_without_root_skips_the_data_path_in_one_line() -> None:
    """As an unprivileged user (uid 65534 through setpriv) the demo runs its steps
    (exportfs through a user namespace) and says in one line what it skipped and how
    to see it."""
    require_exportfs()
    if shutil.which("setpriv") is None:
        pytest.fail("setpriv is missing (util-linux)")
    if os.geteuid() != 0:
        pytest.fail("this test switches to uid 65534 and needs to start as root (CI runs as root)")
    python = next(
        (p for p in ("/usr/bin/python3.11", "/usr/bin/python3") if os.access(p, os.X_OK)), None
    )
    if python is None:
        pytest.fail("no system python3 for the unprivileged test (Debian package python3)")
    root = Path(tempfile.mkdtemp(prefix="nfs-exportd-demo-unpriv-", dir="/tmp"))
    try:
        os.chmod(root, 0o755)
        os.chown(root, 65534, 65534)
        site = next((REPO / ".venv" / "lib").glob("python3*/site-packages"))
        env = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "PYTHONPATH": f"{REPO / 'src'}:{site}",
            "HOME": "/nonexistent",
        }
        proc = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", python, "-m",
             "nfs_exportd_sim.demo", str(root / "demo")],
            env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert f"\n{SKIPPED}\n" in proc.stdout
        assert "=== 9." not in proc.stdout and "nxl" not in proc.stdout
        assert "NFS-EXPORTD OK - in sync" in proc.stdout  # the rest of the demo ran
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_the_lab_directory_falls_back_to_a_short_one_when_the_socket_path_is_too_long(
    tmp_path: Path,
) -> None:
    short, own = _lab_dir(tmp_path)
    assert (short, own) == (tmp_path / "lab", False)
    deep = tmp_path / ("d" * 90)
    other, own = _lab_dir(deep)
    try:
        assert own and other.is_dir() and not other.is_relative_to(deep)
        assert len(str(other / "ganesha" / "dbus" / "system_bus_socket")) < 108
    finally:
        shutil.rmtree(other)
