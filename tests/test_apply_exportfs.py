"""The apply layer with the real exportfs (never a mock), through the CLI.

exportfs runs in a private mount namespace (``exportfs-sandbox``), so the machine's own
``/etc/exports.d`` and ``/var/lib/nfs`` are never touched.  Every failure test asserts the
exit code, the message, the files and the (path, client) pairs in force before and after.
Tests that need a mount of their own (a read-only exports dir, a tiny tmpfs) run the CLI
in a subprocess inside ``unshare --mount`` (with a user namespace when not root), so the
mount dies with the namespace.
"""

from __future__ import annotations

import errno
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import SANDBOX, Lab
from nfs_exportd import fsutil

HEADER = "# nfs-exportd managed file, do not edit: "
OPTS = "rw,sync,no_subtree_check,root_squash"  # the default export_options.default
BOGUS = "rw,sync,no_subtree_check,bogusopt"  # passes our validator, exportfs rejects it
IS_ROOT = os.geteuid() == 0

Pairs = set[tuple[str, str]]


# --------------------------------------------------------------------------- helpers


def snapshot(directory: Path) -> dict[str, tuple[bytes, int, int]]:
    """Every entry of ``directory`` (dotfiles and temp files too): name -> (bytes, ino, mtime)."""
    out = {}
    for p in sorted(directory.iterdir()):
        st = p.stat()
        out[p.name] = (p.read_bytes(), st.st_ino, st.st_mtime_ns)
    return out


def contents(directory: Path) -> dict[str, bytes]:
    """Every entry of ``directory`` (dotfiles too): name -> bytes."""
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def etab_options(lab: Lab) -> dict[tuple[str, str], set[str]]:
    out = {}
    for line in lab.etab.read_text().splitlines():
        if line.strip():
            path, _, rest = line.rpartition("\t")
            client, _, opts = rest.partition("(")
            out[(path, client)] = set(opts.rstrip(")").split(","))
    return out


def run(lab: Lab, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """The CLI in-process: (exit code, stdout, stderr).  Errors are logged to stderr."""
    capsys.readouterr()
    rc = lab.cli(*args)
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def plan_json(lab: Lab, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    rc, out, err = run(lab, capsys, "plan", "--json")
    assert rc == 0, err
    plan: dict[str, Any] = json.loads(out)
    return plan


def changes(plan: dict[str, Any]) -> set[tuple[str, str, str, str, str]]:
    return {
        (c["project"], c["path"], c["client"], c["action"], c["reason"]) for c in plan["changes"]
    }


def hold_keys(plan: dict[str, Any]) -> set[tuple[str, str | None, str | None, str | None]]:
    return {(h["reason"], h["project"], h["path"], h["client"]) for h in plan["holds"]}


def script(path: Path, body: str) -> str:
    path.write_text("#!/bin/sh\n" + textwrap.dedent(body).lstrip())
    path.chmod(0o755)
    return str(path)


def project_file(name: str, *lines: str, keystone_id: str | None = "") -> str:
    """A project file as written: the header, the Keystone id line (the lab's projects
    are ``id-NAME``; None: no id line), the export lines."""
    pid = f"id-{name}" if keystone_id == "" else keystone_id
    head = [f"{HEADER}project={name}"] + ([f"# keystone-id={pid}"] if pid else [])
    return "".join(f"{x}\n" for x in (*head, *lines))


def tools_baseline(lab: Lab, capsys: pytest.CaptureFixture[str]) -> tuple[str, Pairs]:
    """Project ``tools`` (volume home) with two instances, synced: (home, pairs in force)."""
    lab.add_project("tools", 50380)
    lab.add_instance("i-1", "tools", "172.16.0.5")
    lab.add_instance("i-2", "tools", "172.16.0.6")
    home = lab.srv("tools", "home")
    rc, _, err = run(lab, capsys, "sync")
    assert rc == 0, err
    pairs = {(home, "172.16.0.5"), (home, "172.16.0.6")}
    assert lab.in_force() == pairs
    assert lab.files() == {
        "tools.exports": project_file("tools", f"{home} -{OPTS} 172.16.0.5 172.16.0.6")
    }
    return home, pairs


def namespace_prefix() -> list[str]:
    """A private mount namespace (mount propagation private: nothing leaks to the host)."""
    if shutil.which("unshare") is None:
        pytest.fail("unshare is missing (util-linux)")
    if IS_ROOT:
        return ["unshare", "--mount", "--propagation", "private"]
    return ["unshare", "--user", "--map-root-user", "--mount", "--propagation", "private"]


def cli_argv(lab: Lab, *args: str) -> list[str]:
    lab.write()
    return [
        sys.executable,
        "-m",
        "nfs_exportd.cli",
        "--config",
        str(lab.config_path),
        "--allow-root",
        *args,
    ]


def sync_in_namespace(lab: Lab, setup: str, after: str = "") -> subprocess.CompletedProcess[str]:
    """``setup`` (shell, may mount), then ``sync`` in a subprocess, then ``after`` (shell),
    all inside one private mount namespace; the process exits with sync's exit code."""
    body = "\n".join(
        [
            "set -eu",
            setup,
            "set +e",
            shlex.join(cli_argv(lab, "sync")),
            "rc=$?",
            "set -e",
            after,
            'exit "$rc"',
        ]
    )
    return subprocess.run(
        [*namespace_prefix(), "bash", "-c", body],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def alive(pid: int) -> bool:
    """True if ``pid`` is a live (not zombie) ``sleep`` process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return False
    state = stat.rpartition(")")[2].split()[0]
    return state != "Z" and b"sleep" in cmdline


# --------------------------------------------------------------------------- apply, read back


def test_apply_and_read_back(lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    lab.add_project(
        "tools", 50380, {"home": lab.srv("tools", "home"), "project": lab.srv("tools", "project")}
    )
    lab.add_project("ml", 50381)  # no instances: a file with only the header
    lab.add_instance("i-1", "tools", "172.16.0.10", "fd00::5")
    lab.add_instance("i-2", "tools", "172.16.0.9")
    lab.add_instance("i-3", "tools", "fd00:0:0:0::a", "172.16.1.2")  # not canonical on input
    scratch = lab.srv("scratch")
    lab.config["export_options"] = {"volumes": {"project": "ro,sync,no_subtree_check"}}
    lab.config["public_exports"] = {
        "scratch": {"path": scratch, "clients": ["fd00::/64", "172.16.0.0/21"]}
    }
    home, project = lab.srv("tools", "home"), lab.srv("tools", "project")
    clients = ["172.16.0.9", "172.16.0.10", "172.16.1.2", "fd00::5", "fd00::a"]
    expected = {(p, c) for p in (home, project) for c in clients}
    expected |= {(scratch, "172.16.0.0/21"), (scratch, "fd00::/64")}

    plan = plan_json(lab, capsys)
    assert plan["schema"] == 1 and len(plan["checksum"]) == 64
    assert plan["holds"] == []
    assert {(c["path"], c["client"]) for c in plan["changes"]} == expected
    assert {c["action"] for c in plan["changes"]} == {"add"}
    assert {c["project"] for c in plan["changes"] if c["path"] != scratch} == {"tools"}
    assert lab.files() == {} and lab.in_force() == set()  # plan changed nothing

    rc, out, err = run(lab, capsys, "sync", "--plan-checksum", plan["checksum"])
    assert rc == 0, err
    assert "sync ok" in out and "exportfs ran" in out

    assert lab.in_force() == expected
    opts = etab_options(lab)
    for pair in expected:
        want = {"rw", "sync", "no_subtree_check", "root_squash"}
        if pair[0] == project:
            want = {"ro", "sync", "no_subtree_check"}
        assert want <= opts[pair], pair
    ordered = " ".join(clients)
    assert lab.files() == {
        "ml.exports": project_file("ml"),
        "public-scratch.exports": (
            f"{HEADER}public=scratch\n{scratch} -{OPTS} 172.16.0.0/21 fd00::/64\n"
        ),
        "tools.exports": project_file(
            "tools",
            f"{home} -{OPTS} {ordered}",
            f"{project} -ro,sync,no_subtree_check {ordered}",
        ),
    }
    # nothing but the files: no temporary file left behind
    assert sorted(os.listdir(lab.exports_dir)) == sorted(lab.files())
    after = plan_json(lab, capsys)
    assert after["changes"] == [] and after["holds"] == []


def test_no_change_cycle_writes_nothing_and_runs_nothing(
    lab: Lab, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    calls = tmp_path / "exportfs-calls.log"
    wrapper = script(
        tmp_path / "exportfs-logged",
        f"""
        echo "$*" >> {shlex.quote(str(calls))}
        exec {shlex.quote(str(SANDBOX))} {shlex.quote(str(lab.root / "sb"))} "$@"
        """,
    )
    lab.config["exportfs_command"] = [wrapper]
    _, pairs = tools_baseline(lab, capsys)
    assert calls.read_text().splitlines() == ["-ra"]

    files_before = snapshot(lab.exports_dir)
    etab_before = lab.etab.stat().st_mtime_ns, lab.etab.read_bytes()
    for command in (("sync",), ("plan",), ("plan", "--json"), ("sync",)):
        rc, out, err = run(lab, capsys, *command)
        assert rc == 0, err
    assert "0 files written, 0 removed" in out and "exportfs not run" in out
    assert calls.read_text().splitlines() == ["-ra"]  # ran nothing
    assert snapshot(lab.exports_dir) == files_before  # same bytes, inode and mtime_ns
    assert (lab.etab.stat().st_mtime_ns, lab.etab.read_bytes()) == etab_before
    assert lab.in_force() == pairs


def test_pairs_dropped_behind_our_back_are_put_back(
    lab: Lab, capsys: pytest.CaptureFixture[str]
) -> None:
    home, pairs = tools_baseline(lab, capsys)
    files_before = snapshot(lab.exports_dir)
    lab.exportfs("-u", f"172.16.0.5:{home}")
    assert lab.in_force() == pairs - {(home, "172.16.0.5")}
    rc, out, err = run(lab, capsys, "sync")
    assert rc == 0, err
    assert "differ" in err and "exportfs ran" in out
    assert lab.in_force() == pairs
    assert snapshot(lab.exports_dir) == files_before  # content unchanged: not rewritten


# --------------------------------------------------------------------------- bad option


def test_bad_option_in_our_file_rolls_back(lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    home, pairs = tools_baseline(lab, capsys)
    files_before = lab.files()
    options_before = etab_options(lab)
    lab.config["export_options"] = {"volumes": {"home": BOGUS}}
    plan = plan_json(lab, capsys)
    assert changes(plan) == {
        ("tools", home, c, "update", "options-changed") for c in ("172.16.0.5", "172.16.0.6")
    }

    rc, out, err = run(lab, capsys, "sync")
    assert rc == 1
    assert "ERROR" in err
    assert "tools.exports" in err and "bogusopt" in err  # what failed, and where
    assert "restored" in err
    assert out == ""
    assert lab.files() == files_before
    assert sorted(os.listdir(lab.exports_dir)) == ["tools.exports"]
    assert lab.in_force() == pairs
    assert etab_options(lab) == options_before


def test_bad_option_in_a_new_file_removes_it_and_restores_the_others(
    lab: Lab, capsys: pytest.CaptureFixture[str]
) -> None:
    _, pairs = tools_baseline(lab, capsys)
    files_before = lab.files()
    lab.add_project("ml", 50381, {"data": lab.srv("ml", "data")})
    lab.add_instance("i-3", "ml", "172.16.0.7")
    lab.add_instance("i-4", "tools", "172.16.0.8")  # a good change in the same cycle
    lab.config["export_options"] = {"projects": {"ml": {"data": BOGUS}}}

    rc, _, err = run(lab, capsys, "sync")
    assert rc == 1
    assert "ml.exports" in err and "bogusopt" in err and "restored" in err
    assert lab.files() == files_before  # ml.exports gone again, tools.exports as before
    assert sorted(os.listdir(lab.exports_dir)) == ["tools.exports"]
    assert lab.in_force() == pairs


# --------------------------------------------------------------------------- foreign files


BROKEN_FOREIGN = {
    "unknown-option": "{path} 172.16.9.9(rw,frobnicate)\n",
    "syntax-error": "{path} 172.16.9.9(rw,sync\n",
    "unknown-dash-option": "{path} -frob 172.16.9.9\n",
    "space-before-options": "{path} (ro,sync,no_subtree_check)\n",
    "unresolvable-host": "{path} legacy-host.invalid(rw,no_subtree_check)\n",
}


@pytest.mark.parametrize("kind", sorted(BROKEN_FOREIGN))
def test_broken_foreign_file_is_a_warning(
    lab: Lab, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    legacy = lab.srv("legacy")
    foreign = lab.exports_dir / "foreign.exports"
    foreign.write_text("# written by hand\n" + BROKEN_FOREIGN[kind].format(path=legacy))
    before = snapshot(lab.exports_dir)
    lab.add_project("tools", 50380)
    lab.add_instance("i-1", "tools", "172.16.0.5")
    home = lab.srv("tools", "home")

    rc, _, err = run(lab, capsys, "sync")
    assert rc == 0, err
    warnings = [x for x in err.splitlines() if x.startswith("WARNING")]
    culprits = ("foreign.exports", legacy, "legacy-host.invalid")
    assert any(c in w for w in warnings for c in culprits), err  # a warning names the culprit
    assert "ERROR" not in err
    assert snapshot(lab.exports_dir)["foreign.exports"] == before["foreign.exports"]
    assert lab.files()["tools.exports"] == project_file("tools", f"{home} -{OPTS} 172.16.0.5")
    ours = {p for p in lab.in_force() if p[0] != legacy}
    assert ours == {(home, "172.16.0.5")}


def test_foreign_unmanaged_files_are_left_alone(
    lab: Lab, capsys: pytest.CaptureFixture[str]
) -> None:
    """``tools.exports`` without our header is reported (``unmanaged-conflict``) and left
    byte for byte; other foreign files too; the other projects apply."""
    lab.add_project("tools", 50380)
    lab.add_project("ml", 50381)
    lab.add_instance("i-1", "tools", "172.16.0.5")
    lab.add_instance("i-2", "ml", "172.16.0.7")
    home, ml_home, legacy = lab.srv("tools", "home"), lab.srv("ml", "home"), lab.srv("legacy")
    (lab.exports_dir / "tools.exports").write_text(
        f"# tools: exported by hand during the migration\n{home} 172.16.0.99(rw,no_subtree_check)\n"
    )
    (lab.exports_dir / "legacy.exports").write_text(f"{legacy} 172.16.0.98(ro,no_subtree_check)\n")
    (lab.exports_dir / "README").write_text("not an exports file\n")
    (lab.exports_dir / "old.exports.bak").write_text(f"{legacy} 172.16.0.97(rw)\n")
    before = snapshot(lab.exports_dir)

    plan = plan_json(lab, capsys)
    assert changes(plan) == {("ml", ml_home, "172.16.0.7", "add", "new-export")}
    conflicts = [h for h in plan["holds"] if h["reason"] == "unmanaged-conflict"]
    assert [(h["project"], h["path"], h["client"]) for h in conflicts] == [("tools", None, None)]
    assert "tools.exports" in conflicts[0]["detail"]
    assert {h["reason"] for h in plan["holds"]} == {"unmanaged-conflict"}

    for _ in range(2):
        rc, _, err = run(lab, capsys, "sync")
        assert rc == 3, err
        assert "unmanaged-conflict" in err
        after = snapshot(lab.exports_dir)
        for name in ("tools.exports", "legacy.exports", "README", "old.exports.bak"):
            assert after[name] == before[name], name  # bytes, inode and mtime_ns
        assert set(after) == {*before, "ml.exports"}
        assert lab.files()["ml.exports"] == project_file("ml", f"{ml_home} -{OPTS} 172.16.0.7")
        assert lab.in_force() == {
            (ml_home, "172.16.0.7"),
            (home, "172.16.0.99"),  # the hand-written files are exportfs's business
            (legacy, "172.16.0.98"),
        }


# --------------------------------------------------------------------------- exportfs itself


@pytest.mark.parametrize("kind", ["missing", "not-executable"])
def test_exportfs_missing(
    lab: Lab, capsys: pytest.CaptureFixture[str], tmp_path: Path, kind: str
) -> None:
    _, pairs = tools_baseline(lab, capsys)
    files_before = lab.files()
    if kind == "missing":
        command = str(tmp_path / "no" / "such" / "exportfs")
        expect = "not found"
    else:
        command = str(tmp_path / "exportfs-not-executable")
        Path(command).write_text("#!/bin/sh\nexit 0\n")
        Path(command).chmod(0o644)
        expect = "cannot run"
    lab.config["exportfs_command"] = [command]
    lab.add_instance("i-3", "tools", "172.16.0.7")

    rc, _, err = run(lab, capsys, "sync")
    assert rc == 1
    assert "exportfs_command" in err and command in err and expect in err
    assert "restored" in err
    assert lab.files() == files_before
    assert sorted(os.listdir(lab.exports_dir)) == ["tools.exports"]
    assert lab.in_force() == pairs


FAILING = {
    # exit 1 with a message on stderr
    "exit-1-message": (
        "echo 'exportfs: could not open /var/lib/nfs/.etab.lock: Read-only file system' >&2\n"
        "exit 1",
        ["exit 1", "could not open /var/lib/nfs/.etab.lock"],
    ),
    # exit 1 and silence
    "exit-1-silent": ("exit 1", ["exit 1"]),
    # exit 0, no message, but nothing applied: only the read-back can tell
    "exit-0-did-nothing": ("exit 0", ["read-back", "172.16.0.7", "not in force"]),
}


@pytest.mark.parametrize("kind", sorted(FAILING))
def test_exportfs_failing(
    lab: Lab, capsys: pytest.CaptureFixture[str], tmp_path: Path, kind: str
) -> None:
    _, pairs = tools_baseline(lab, capsys)
    files_before = lab.files()
    body, expect = FAILING[kind]
    lab.config["exportfs_command"] = [script(tmp_path / "exportfs-failing", body)]
    lab.add_instance("i-3", "tools", "172.16.0.7")

    rc, _, err = run(lab, capsys, "sync")
    assert rc == 1
    assert "ERROR" in err and "restored" in err
    for text in expect:
        assert text in err
    assert lab.files() == files_before
    assert sorted(os.listdir(lab.exports_dir)) == ["tools.exports"]
    assert lab.in_force() == pairs


def test_exportfs_hanging_is_killed_after_the_timeout(
    lab: Lab, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _, pairs = tools_baseline(lab, capsys)
    files_before = lab.files()
    lab.config["exportfs_command"] = [script(tmp_path / "exportfs-hanging", "exec sleep 60")]
    lab.config["exportfs_timeout_seconds"] = 1
    lab.add_instance("i-3", "tools", "172.16.0.7")

    started = time.monotonic()
    rc, _, err = run(lab, capsys, "sync")
    elapsed = time.monotonic() - started
    assert rc == 1
    assert "exportfs_timeout_seconds" in err and "1 s" in err and "restored" in err
    assert elapsed < 20  # two calls (apply, undo) of 1 s each, not 60 s
    assert lab.files() == files_before
    assert sorted(os.listdir(lab.exports_dir)) == ["tools.exports"]
    assert lab.in_force() == pairs


@pytest.fixture
def started_pids(tmp_path: Path) -> Iterator[Path]:
    """A file where helper scripts note the pids they start; each is killed (by pid) after."""
    pids = tmp_path / "pids"
    pids.touch()
    yield pids
    for word in pids.read_text().split():
        pid = int(word)
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_exportfs_timeout_kills_what_the_command_started(
    lab: Lab, capsys: pytest.CaptureFixture[str], tmp_path: Path, started_pids: Path
) -> None:
    """``exportfs_command`` is a prefix (``sudo -n``): the timeout must stop exportfs itself,
    not just the prefix, or a stuck exportfs keeps running (and holding the etab lock)
    while the files are restored under it."""
    _, pairs = tools_baseline(lab, capsys)
    files_before = lab.files()
    wrapper = script(
        tmp_path / "exportfs-behind-a-prefix",
        f"""
        sleep 60 &
        echo $! >> {shlex.quote(str(started_pids))}
        wait
        """,
    )
    lab.config["exportfs_command"] = [wrapper]
    lab.config["exportfs_timeout_seconds"] = 1
    lab.add_instance("i-3", "tools", "172.16.0.7")

    rc, _, err = run(lab, capsys, "sync")
    assert rc == 1
    assert "exportfs_timeout_seconds" in err and "restored" in err
    assert lab.files() == files_before
    assert lab.in_force() == pairs
    pids = [int(w) for w in started_pids.read_text().split()]
    assert len(pids) == 2  # the apply and the undo
    deadline = time.monotonic() + 3
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [p for p in pids if alive(p)] == [], "timed-out exportfs left running"


# --------------------------------------------------------------------------- unwritable, full


def test_unwritable_exports_dir_by_permissions(
    lab: Lab, capsys: pytest.CaptureFixture[str]
) -> None:
    """Mode 0555.  Root ignores permission bits (CAP_DAC_OVERRIDE), so as root the CLI runs
    with that capability dropped from its bounding set: still uid 0, but bound by the bits."""
    _, pairs = tools_baseline(lab, capsys)
    before = snapshot(lab.exports_dir)
    lab.add_instance("i-3", "tools", "172.16.0.7")
    prefix: list[str] = []
    if IS_ROOT:
        if shutil.which("setpriv") is None:
            pytest.fail("setpriv is missing (util-linux)")
        prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
    lab.exports_dir.chmod(0o555)
    try:
        proc = subprocess.run(
            [*prefix, *cli_argv(lab, "sync")],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        lab.exports_dir.chmod(0o755)
    assert proc.returncode == 1, proc.stderr
    assert str(lab.exports_dir / "tools.exports") in proc.stderr
    assert "Permission denied" in proc.stderr
    assert snapshot(lab.exports_dir) == before
    assert lab.in_force() == pairs


def test_unwritable_exports_dir_read_only_mount(
    lab: Lab, capsys: pytest.CaptureFixture[str]
) -> None:
    _, pairs = tools_baseline(lab, capsys)
    before = snapshot(lab.exports_dir)
    lab.add_instance("i-3", "tools", "172.16.0.7")
    d = shlex.quote(str(lab.exports_dir))
    proc = sync_in_namespace(lab, f"mount --bind {d} {d}\nmount -o remount,bind,ro {d}")
    assert proc.returncode == 1, proc.stderr
    assert str(lab.exports_dir / "tools.exports") in proc.stderr
    assert "Read-only file system" in proc.stderr
    assert snapshot(lab.exports_dir) == before
    assert lab.in_force() == pairs


def fill_tmpfs_setup(lab: Lab, saved: Path, leave_pages: int) -> str:
    """Shell: a 64 KiB tmpfs over exports_dir holding ``saved``'s files, filled so that only
    ``leave_pages`` pages are free."""
    d = shlex.quote(str(lab.exports_dir))
    return textwrap.dedent(
        f"""
        mount -t tmpfs -o size=64k,mode=0755 nfs-exportd-test {d}
        cp -a {shlex.quote(str(saved))}/. {d}/
        dd if=/dev/zero of={d}/.filler bs=4096 2>/dev/null || true
        test -s {d}/.filler
        truncate -s -{4096 * leave_pages} {d}/.filler
        """
    )


def dump_after(lab: Lab, out: Path) -> str:
    """Shell: copy what the tmpfs holds after the sync to ``out`` (it dies with the namespace)."""
    return f"cp -a {shlex.quote(str(lab.exports_dir))}/. {shlex.quote(str(out))}/"


def test_disk_full_write(lab: Lab, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    _, pairs = tools_baseline(lab, capsys)
    saved, out = tmp_path / "saved", tmp_path / "after"
    shutil.copytree(lab.exports_dir, saved)
    out.mkdir()
    lab.add_instance("i-3", "tools", "172.16.0.7")

    proc = sync_in_namespace(lab, fill_tmpfs_setup(lab, saved, 0), dump_after(lab, out))
    assert proc.returncode == 1, proc.stderr
    assert str(lab.exports_dir / "tools.exports") in proc.stderr
    assert "No space left on device" in proc.stderr
    after = contents(out)
    assert after.pop(".filler")  # it was the tmpfs that was full
    assert after == contents(saved)  # previous file intact, no temporary file left
    assert lab.in_force() == pairs
    assert contents(lab.exports_dir) == contents(saved)  # the tmpfs is gone with its namespace


def test_disk_full_on_the_second_file_restores_the_first(
    lab: Lab, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """``alpha.exports`` (small) is written, then ``beta.exports`` (> 1 page) hits ENOSPC
    half way: alpha is restored, no temp file is left, exportfs never ran."""
    lab.add_project("alpha", 50390)
    lab.add_project("beta", 50391)
    lab.add_instance("a-1", "alpha", "172.16.0.5")
    lab.add_instance("b-1", "beta", "172.16.1.1")
    alpha, beta = lab.srv("alpha", "home"), lab.srv("beta", "home")
    rc, _, err = run(lab, capsys, "sync")
    assert rc == 0, err
    pairs = lab.in_force()
    assert pairs == {(alpha, "172.16.0.5"), (beta, "172.16.1.1")}
    saved, out = tmp_path / "saved", tmp_path / "after"
    shutil.copytree(lab.exports_dir, saved)
    out.mkdir()
    lab.add_instance("a-2", "alpha", "172.16.0.6")
    for i in range(2, 402):  # 400 more addresses: beta.exports grows past 4 KiB
        lab.add_instance(f"b-{i}", "beta", f"172.16.{1 + i // 200}.{i % 200 + 1}")

    proc = sync_in_namespace(lab, fill_tmpfs_setup(lab, saved, 1), dump_after(lab, out))
    assert proc.returncode == 1, proc.stderr
    assert str(lab.exports_dir / "beta.exports") in proc.stderr
    assert "No space left on device" in proc.stderr
    after = contents(out)
    assert after.pop(".filler")
    assert after == contents(saved)  # alpha restored, beta intact, no temp file
    assert lab.in_force() == pairs


# --------------------------------------------------------------------------- missing path


def test_missing_export_path_holds_only_that_export(
    lab: Lab, capsys: pytest.CaptureFixture[str]
) -> None:
    home = lab.srv("tools", "home")
    scratch = str(lab.root / "srv" / "tools" / "scratch")  # not created
    lab.add_project("tools", 50380, {"home": home, "scratch": scratch})
    lab.add_project("ml", 50381)
    lab.add_instance("i-1", "tools", "172.16.0.5")
    lab.add_instance("i-2", "ml", "172.16.0.7")
    ml_home = lab.srv("ml", "home")

    plan = plan_json(lab, capsys)
    assert changes(plan) == {
        ("tools", home, "172.16.0.5", "add", "new-export"),
        ("ml", ml_home, "172.16.0.7", "add", "new-export"),
    }
    assert hold_keys(plan) == {("path-missing", "tools", scratch, "172.16.0.5")}
    assert scratch in plan["holds"][0]["detail"]

    rc, out, err = run(lab, capsys, "sync")
    assert rc == 3, err
    assert "sync held" in out and "path-missing=1" in out
    assert "path-missing" in err and scratch in err
    assert lab.files() == {
        "ml.exports": project_file("ml", f"{ml_home} -{OPTS} 172.16.0.7"),
        "tools.exports": project_file("tools", f"{home} -{OPTS} 172.16.0.5"),
    }
    assert lab.in_force() == {(home, "172.16.0.5"), (ml_home, "172.16.0.7")}

    Path(scratch).mkdir()  # the path appears: the held export applies
    rc, _, err = run(lab, capsys, "sync")
    assert rc == 0, err
    assert lab.files()["tools.exports"] == project_file(
        "tools", f"{home} -{OPTS} 172.16.0.5", f"{scratch} -{OPTS} 172.16.0.5"
    )
    assert lab.in_force() == {
        (home, "172.16.0.5"),
        (scratch, "172.16.0.5"),
        (ml_home, "172.16.0.7"),
    }


def test_export_path_vanishing_later_holds_only_its_changes(
    lab: Lab, capsys: pytest.CaptureFixture[str]
) -> None:
    """A path in force disappears (an unmounted volume): its line stays as it was, its new
    client is held, exportfs's "Failed to stat" about it is not our failure."""
    home, scratch = lab.srv("tools", "home"), lab.srv("tools", "scratch")
    lab.add_project("tools", 50380, {"home": home, "scratch": scratch})
    lab.add_instance("i-1", "tools", "172.16.0.5")
    rc, _, err = run(lab, capsys, "sync")
    assert rc == 0, err
    Path(scratch).rmdir()
    lab.add_instance("i-2", "tools", "172.16.0.6")

    plan = plan_json(lab, capsys)
    assert changes(plan) == {("tools", home, "172.16.0.6", "add", "new-instance")}
    assert hold_keys(plan) == {("path-missing", "tools", scratch, "172.16.0.6")}
    rc, _, err = run(lab, capsys, "sync")
    assert rc == 3, err
    assert lab.files()["tools.exports"] == project_file(
        "tools", f"{home} -{OPTS} 172.16.0.5 172.16.0.6", f"{scratch} -{OPTS} 172.16.0.5"
    )
    assert lab.in_force() == {
        (home, "172.16.0.5"),
        (home, "172.16.0.6"),
        (scratch, "172.16.0.5"),  # exportfs keeps a missing path in the etab
    }


# --------------------------------------------------------------------------- atomic writes


def test_temp_files_never_end_in_exports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, str]] = []
    real_replace = os.replace

    def spy(src: Any, dst: Any) -> None:
        seen.append((str(src), str(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    target = tmp_path / "tools.exports"
    fsutil.atomic_write(target, "one\n")
    fsutil.atomic_write(target, "two\n")
    assert len(seen) == 2
    for src, dst in seen:
        assert dst == str(target)
        assert Path(src).parent == tmp_path
        assert not src.endswith(".exports") and Path(src).name.startswith(".")
    assert target.read_text() == "two\n"
    assert os.listdir(tmp_path) == ["tools.exports"]


def test_failed_write_leaves_the_old_file_and_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "tools.exports"
    target.write_text("old content\n")
    real_write = os.write
    calls = 0

    def half_then_enospc(fd: int, data: Any) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            return real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", half_then_enospc)
    with pytest.raises(OSError) as info:
        fsutil.atomic_write(target, "new content that is long enough to split\n")
    assert info.value.errno == errno.ENOSPC
    assert calls == 2
    assert target.read_text() == "old content\n"
    assert os.listdir(tmp_path) == ["tools.exports"]


def test_crash_mid_write_leaves_no_half_exports_file(
    lab: Lab, capsys: pytest.CaptureFixture[str]
) -> None:
    """The process dies (no cleanup can run) after writing half the new content: the file
    in force is intact, the leftover is a dotfile exportfs and the daemon both ignore."""
    _, pairs = tools_baseline(lab, capsys)
    target = lab.exports_dir / "tools.exports"
    old = target.read_bytes()
    crasher = textwrap.dedent(
        f"""
        import os
        from pathlib import Path
        from nfs_exportd import fsutil
        real_write = os.write
        def write_half_then_die(fd, data):
            real_write(fd, bytes(data[: len(data) // 2]))
            os._exit(9)
        os.write = write_half_then_die
        fsutil.atomic_write(Path({str(target)!r}), {project_file("tools", "x" * 200)!r})
        """
    )
    proc = subprocess.run([sys.executable, "-c", crasher], timeout=60, check=False)
    assert proc.returncode == 9
    assert target.read_bytes() == old
    leftovers = [n for n in os.listdir(lab.exports_dir) if n != "tools.exports"]
    assert len(leftovers) == 1
    assert leftovers[0].startswith(".") and not leftovers[0].endswith(".exports")
    assert (
        0 < (lab.exports_dir / leftovers[0]).stat().st_size < len(project_file("tools", "x" * 200))
    )

    lab.exportfs("-ra")  # exportfs ignores the leftover
    assert lab.in_force() == pairs
    rc, out, err = run(lab, capsys, "sync")  # so does the daemon: nothing to do
    assert rc == 0, err
    assert "exportfs not run" in out
    assert lab.in_force() == pairs
    assert target.read_bytes() == old


def test_stale_temporaries_of_a_killed_writer_are_removed(lab: Lab) -> None:
    """A writer killed mid-write leaves ``.nfs-exportd.NAME.tmp-PID``; the next sync
    (holding the lock) removes it, in exports_dir and state_dir alike, and touches nothing
    else."""
    lab.add_project("tools", 50380)
    lab.add_instance("i-1", "tools", "172.16.0.5")
    assert lab.cli("sync") == 0
    stale = [
        lab.exports_dir / ".nfs-exportd.tools.exports.tmp-999999",
        lab.state_dir / ".nfs-exportd.counters.json.tmp-999999",
    ]
    for p in stale:
        p.write_text("half a file")
    foreign = lab.exports_dir / ".hidden-foreign"
    foreign.write_text("not ours")
    assert lab.cli("sync") == 0
    assert not any(p.exists() for p in stale)
    assert foreign.read_text() == "not ours"
