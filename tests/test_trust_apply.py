"""Issue 10, the apply side: what the daemon does when exportfs, the etab, the undo, the
state directory or a storm of signals misbehave.  Real exportfs (in its sandbox), real
mounts (a tiny tmpfs in a private mount namespace), the real run loop and the simulated
cloud over HTTP.

- an exportfs that ignores SIGTERM and leaves a process holding its output is stopped
  within ``exportfs_timeout_seconds`` + a grace, the undo too, and nothing it started
  survives;
- ``etab_file`` naming a missing file: the message says so, names it and the fix;
- a failed read-back returns to the **last verified** files (not the unverified ones in
  force before the cycle) and reads that back; when that fails too, it says so loudly;
- a full state_dir: a clear error naming the file, never a traceback; a change applied
  but not journaled is exit 1, in status.json and in ``check``, and journaled later;
- a SIGHUP storm makes no more cycles and no more Keystone tokens than polling does.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import SANDBOX, Lab, wait_for
from nfs_exportd_sim import SimCloud
from test_apply_exportfs import (
    OPTS,
    alive,
    cli_argv,
    namespace_prefix,
    project_file,
    run,
    started_pids,  # noqa: F401  (a fixture)
    tools_baseline,
)

Out = pytest.CaptureFixture[str]


# --------------------------------------------------------------------------- exportfs bound


def test_exportfs_that_ignores_sigterm_is_stopped_within_the_timeout(
    lab: Lab,
    capsys: Out,
    tmp_path: Path,
    started_pids: Path,  # noqa: F811
) -> None:
    """The outage report's exportfs: ignores SIGTERM and leaves a grandchild (own process
    group, same session, SIGTERM ignored too) holding stdout and stderr.  The sync must
    end within (timeout + grace) per call - the apply and the undo - and neither process
    may outlive it."""
    _, pairs = tools_baseline(lab, capsys)
    files_before = lab.files()
    pids = shlex.quote(str(started_pids))
    fake = tmp_path / "exportfs-stubborn"
    fake.write_text(
        "#!/bin/bash\n"
        "trap '' TERM\n"
        "set -m  # job control: the grandchild gets a process group of its own\n"
        f"sleep 300 &\necho $! >> {pids}\necho $$ >> {pids}\n"
        "exec sleep 300\n"
    )
    fake.chmod(0o755)
    timeout = 2
    lab.config["exportfs_command"] = [str(fake)]
    lab.config["exportfs_timeout_seconds"] = timeout
    lab.add_instance("i-3", "tools", "172.16.0.7")

    guard = 2 * (timeout + 1) + 8  # two bounded calls + start-up; a hang guard
    started = time.monotonic()
    proc = subprocess.Popen(
        cli_argv(lab, "sync"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        _, err = proc.communicate(timeout=guard)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail(f"sync still running after {guard} s at exportfs_timeout_seconds {timeout}")
    elapsed = time.monotonic() - started
    assert proc.returncode == 1, err
    assert "exportfs_timeout_seconds" in err and "killed" in err
    assert "UNDO FAILED" in err  # the undo's exportfs timed out as well: said so
    assert "Traceback" not in err
    recorded = [int(w) for w in started_pids.read_text().split()]
    assert len(recorded) == 4, recorded  # leader and grandchild, for the apply and the undo
    deadline = time.monotonic() + 2
    while any(alive(p) for p in recorded) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [p for p in recorded if alive(p)] == [], "a process exportfs started outlived sync"
    assert lab.files() == files_before
    assert lab.in_force() == pairs
    assert elapsed < guard


# --------------------------------------------------------------------------- etab missing


def test_missing_etab_file_is_named_with_the_fix(lab: Lab, capsys: Out) -> None:
    _, pairs = tools_baseline(lab, capsys)
    files_before = lab.files()
    wrong = lab.root / "elsewhere" / "etab"
    lab.config["etab_file"] = str(wrong)
    for _ in range(2):  # every cycle, with or without something to change
        rc, _, err = run(lab, capsys, "sync")
        assert rc == 1, err
        assert f"etab_file {wrong} does not exist" in err
        assert "mount namespace" in err and "fix etab_file" in err
        assert lab.files() == files_before
        assert lab.in_force() == pairs
        lab.add_instance("i-3", "tools", "172.16.0.7")
    assert f"etab_file {wrong} does not exist" in lab.status()["last_cycle"]["message"]


# --------------------------------------------------------------------------- undo


def _once_broken(tmp_path: Path, lab: Lab, drop: str, always: bool = False) -> str:
    """exportfs that applies (the real one), then loses ``drop`` from the etab, as a
    kernel that did not take it: on the first call only, or on every call."""
    flag = shlex.quote(str(tmp_path / "broken-once-done"))
    real = f"{shlex.quote(str(SANDBOX))} {shlex.quote(str(lab.root / 'sb'))}"
    lines = [] if always else [f'[ -e {flag} ] && exec {real} "$@"', f"touch {flag}"]
    lines += [f'{real} "$@" || exit $?', f"sed -i '/\\t{drop}(/d' {shlex.quote(str(lab.etab))}"]
    path = tmp_path / "exportfs-broken"
    path.write_text("#!/bin/sh\n" + "\n".join(lines) + "\n")
    path.chmod(0o755)
    return str(path)


def test_failed_read_back_returns_to_the_last_verified_state(
    lab: Lab, capsys: Out, tmp_path: Path
) -> None:
    """The files in force before the cycle were never verified (a hand edit, in force:
    a leak).  Today's undo re-applied them; it must return to the last verified files
    and read them back."""
    home, pairs = tools_baseline(lab, capsys)
    verified = lab.files()
    leak = project_file("tools", f"{home} -{OPTS} 10.9.9.9 172.16.0.5 172.16.0.6")
    (lab.exports_dir / "tools.exports").write_text(leak)
    lab.exportfs("-ra")
    assert (home, "10.9.9.9") in lab.in_force()
    lab.config["exportfs_command"] = [_once_broken(tmp_path, lab, "172.16.0.7")]
    lab.add_instance("i-3", "tools", "172.16.0.7")

    rc, _, err = run(lab, capsys, "sync")
    assert rc == 1, err
    assert "read-back" in err and "172.16.0.7" in err
    assert "returned to the last verified files" in err and "verified them in force" in err
    assert lab.files() == verified
    assert lab.in_force() == pairs  # the unverified leak is gone too
    assert not (lab.state_dir / "apply-pending").exists()

    rc, _, err = run(lab, capsys, "sync")  # exportfs works again: converges
    assert rc == 0, err
    assert lab.in_force() == pairs | {(home, "172.16.0.7")}


def test_an_undo_that_cannot_be_verified_is_loud(lab: Lab, capsys: Out, tmp_path: Path) -> None:
    home, pairs = tools_baseline(lab, capsys)
    files_before = lab.files()
    lab.config["exportfs_command"] = [_once_broken(tmp_path, lab, "172.16.0.5", always=True)]
    lab.add_instance("i-3", "tools", "172.16.0.7")

    rc, _, err = run(lab, capsys, "sync")
    assert rc == 1, err
    assert "UNDO FAILED" in err and "not a verified state" in err
    assert lab.files() == files_before  # the verified files are back on disk
    assert (home, "172.16.0.5") not in lab.in_force()  # and the kernel lost one: said so
    assert "UNDO FAILED" in lab.status()["last_cycle"]["message"]
    assert (lab.state_dir / "apply-pending").exists()  # the next cycle re-applies
    rc, out, _ = run(lab, capsys, "check")
    assert rc == 2 and "UNDO FAILED" in out

    lab.config["exportfs_command"] = [str(SANDBOX), str(lab.root / "sb")]
    lab.remove_instance("i-3")
    rc, _, err = run(lab, capsys, "sync")  # nothing to write, but the marker re-applies
    assert rc == 0, err
    assert lab.in_force() == pairs


def test_first_cycle_undo_restores_the_files_before(lab: Lab, capsys: Out, tmp_path: Path) -> None:
    """No verified state yet: fail static means the files in force before, as before."""
    lab.add_project("tools", 50380)
    lab.add_instance("i-1", "tools", "172.16.0.5")
    lab.srv("tools", "home")
    lab.config["exportfs_command"] = [_once_broken(tmp_path, lab, "172.16.0.5")]
    rc, _, err = run(lab, capsys, "sync")
    assert rc == 1, err
    assert "no verified state yet" in err and "verified them in force" in err
    assert lab.files() == {}
    assert lab.in_force() == set()


# ----------------------------------------------------------------- untrusted verified copy


def _synced(lab: Lab, capsys: Out) -> tuple[str, set[tuple[str, str]]]:
    """Project ``tools`` (volume home), two instances, synced: (home, pairs in force)."""
    lab.add_project("tools", 50380)
    lab.add_instance("i-1", "tools", "172.16.0.5")
    lab.add_instance("i-2", "tools", "172.16.0.6")
    home = lab.srv("tools", "home")
    rc, _, err = run(lab, capsys, "sync")
    assert rc == 0, err
    pairs = {(home, "172.16.0.5"), (home, "172.16.0.6")}
    assert lab.in_force() == pairs
    return home, pairs


def _fails_once(tmp_path: Path, lab: Lab) -> str:
    """exportfs that exits 1 on its first call (nothing applied), then is the real one."""
    flag = shlex.quote(str(tmp_path / "failed-once"))
    real = f"{shlex.quote(str(SANDBOX))} {shlex.quote(str(lab.root / 'sb'))}"
    path = tmp_path / "exportfs-fails-once"
    path.write_text(
        f'#!/bin/sh\n[ -e {flag} ] && exec {real} "$@"\ntouch {flag}\n'
        "echo 'exportfs: boom' >&2\nexit 1\n"
    )
    path.chmod(0o755)
    return str(path)


# Damage to state_dir/last-verified/tools.exports (a hand edit, a bad restore).  Each
# edits the text the daemon wrote, so the cases follow whatever render produces.
DAMAGE = {
    "world export": lambda t: t.replace(" 172.16.0.5", " 172.16.0.5 *(rw,no_root_squash,insecure)"),
    "no header": lambda t: t.partition("\n")[2],
    "another owner": lambda t: t.replace("project=tools", "project=tool"),
    "unrendered line": lambda t: t + "  /etc  -rw,no_root_squash   10.0.0.0/8\n",
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_verified_copy_is_never_written_back(
    lab: Lab, capsys: Out, tmp_path: Path, damage: str
) -> None:
    """The undo writes only text that came out of render: a verified copy that is not
    exactly what render writes for its name is not trusted as a whole; the undo restores
    the files in force before the cycle and says which file and why.  (Today's undo wrote
    it verbatim: ``*(rw,no_root_squash,insecure)`` in force, later syncs failing.)"""
    home, pairs = _synced(lab, capsys)
    files_before = lab.files()
    copy = lab.state_dir / "last-verified" / "tools.exports"
    copy.write_text(DAMAGE[damage](copy.read_text()))
    lab.config["exportfs_command"] = [_fails_once(tmp_path, lab)]
    lab.add_instance("i-3", "tools", "172.16.0.7")  # a change, so that an apply happens

    rc, _, err = run(lab, capsys, "sync")
    assert rc == 1, err
    assert "*" not in lab.etab.read_text()
    assert lab.in_force() == pairs
    assert lab.files() == files_before
    assert "boom" in err
    assert f"{copy}" in err and "not trusted" in err, err
    assert "restored the previous files" in err and "verified them in force" in err, err

    rc, _, err = run(lab, capsys, "sync")  # exportfs works again: converges
    assert rc == 0, err
    assert lab.in_force() == pairs | {(home, "172.16.0.7")}
    assert {p.name: p.read_text() for p in copy.parent.iterdir() if p.name != ".complete"} == (
        lab.files()
    ), "the verified sync replaces the untrusted copy"


def test_only_the_daemons_own_temporaries_are_removed(lab: Lab, capsys: Out) -> None:
    """/etc/exports.d is shared: a ``.X.tmp-PID`` there may be another tool's write in
    progress (principle 6).  Ours are ``.nfs-exportd.NAME.tmp-PID`` and only those go;
    old-style names are left and reported there, and removed only in state_dir (ours)."""
    _synced(lab, capsys)
    ours = [
        lab.exports_dir / ".nfs-exportd.tools.exports.tmp-999999",
        lab.state_dir / ".nfs-exportd.counters.json.tmp-999999",
        lab.state_dir / ".counters.json.tmp-999999",  # state_dir: an old-style one is ours
        lab.state_dir / "last-verified" / ".tools.exports.tmp-999999",
    ]
    foreign = [
        lab.exports_dir / ".tools.exports.tmp-999999",
        lab.exports_dir / ".site.exports.tmp-4242",
    ]
    for p in ours + foreign:
        p.write_text("half a file")
    rc, _, err = run(lab, capsys, "sync")
    assert rc == 0, err
    assert [p for p in ours if p.exists()] == []
    assert [p.read_text() for p in foreign] == ["half a file"] * 2
    for p in foreign:
        assert f"left {p} alone" in err, err


# --------------------------------------------------------------------------- state_dir full


def _fill(directory: Path, saved: Path, leave_pages: int) -> str:
    """Shell: a 64 KiB tmpfs over ``directory`` holding ``saved``'s files, filled so that
    only ``leave_pages`` pages are free."""
    d = shlex.quote(str(directory))
    return textwrap.dedent(
        f"""
        mount -t tmpfs -o size=64k,mode=0755 nfs-exportd-test {d}
        cp -a {shlex.quote(str(saved))}/. {d}/
        dd if=/dev/zero of={d}/.filler bs=4096 2>/dev/null || true
        test -s {d}/.filler
        truncate -s -{4096 * leave_pages} {d}/.filler
        """
    )


def _in_namespace(lab: Lab, setup: str, *commands: str) -> subprocess.CompletedProcess[str]:
    """``setup`` then ``sync`` (and ``commands``, shell) in one private mount namespace;
    exits with sync's exit code.  The mounts die with the namespace."""
    body = "\n".join(
        [
            *("set -eu", setup, "set +e", shlex.join(cli_argv(lab, "sync")), "rc=$?"),
            *commands,
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


@pytest.fixture
def full_lab(
    lab: Lab, capsys: Out, tmp_path: Path
) -> Iterator[tuple[Lab, str, set[tuple[str, str]], Path]]:
    """tools synced (journal and status exist), then a new instance to apply; ``saved``
    is a copy of state_dir to put on the tmpfs."""
    home, pairs = tools_baseline(lab, capsys)
    saved = tmp_path / "saved-state"
    shutil.copytree(lab.state_dir, saved)
    lab.add_instance("i-3", "tools", "172.16.0.7")
    yield lab, home, pairs, saved


@pytest.mark.parametrize(
    ("leave", "names"),
    [(0, "state/lock: cannot write our pid"), (1, "state/apply-pending: cannot write")],
    ids=["lock", "apply-pending"],
)
def test_full_state_dir_before_the_apply_is_a_clear_error(
    full_lab: tuple[Lab, str, set[tuple[str, str]], Path], leave: int, names: str
) -> None:
    lab, _, pairs, saved = full_lab
    files = lab.files()
    proc = _in_namespace(lab, _fill(lab.state_dir, saved, leave))
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert names in proc.stderr and "No space left on device" in proc.stderr
    assert "free space in state_dir" in proc.stderr
    assert lab.files() == files  # nothing changed
    assert lab.in_force() == pairs


def test_change_applied_but_not_journaled_is_reported_then_journaled(
    full_lab: tuple[Lab, str, set[tuple[str, str]], Path], capsys: Out
) -> None:
    """The journal's directory is full (its own tmpfs), the rest of state_dir is not."""
    lab, home, pairs, _ = full_lab
    history = lab.state_dir / "history"
    entries_before = sorted(os.listdir(history))
    saved = lab.root / "saved-history"
    shutil.copytree(history, saved)
    proc = _in_namespace(lab, _fill(history, saved, 0))
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "applied and verified in force" in proc.stderr and "not recorded" in proc.stderr
    assert "the journal could not be written" in proc.stderr
    assert "No space left on device" in proc.stderr
    new = pairs | {(home, "172.16.0.7")}
    assert lab.in_force() == new  # applied (and not undone)
    assert sorted(os.listdir(history)) == entries_before  # the tmpfs is gone
    st = lab.status()
    assert st["last_cycle"]["result"] == "error"
    assert "not recorded" in st["last_cycle"]["message"]
    assert st["unjournaled"] and "journal" in st["unjournaled"]["message"]
    rc, out, _ = run(lab, capsys, "check")
    assert rc == 2 and "not recorded" in out, out

    # space again: the next cycle (nothing to apply) journals what the journal lacks
    rc, _, err = run(lab, capsys, "sync")
    assert rc == 0, err
    assert lab.status().get("unjournaled") is None
    rc, out, _ = run(lab, capsys, "history", "--json")
    last = json.loads(out)["entries"][-1]
    assert last["reason"].startswith("catch-up")
    assert ["tools", home, "172.16.0.7", "sync"] in last["added"]
    rc, out, _ = run(lab, capsys, "check")
    assert rc == 0, out


def test_full_state_dir_after_the_apply_says_what_was_not_saved(
    full_lab: tuple[Lab, str, set[tuple[str, str]], Path],
) -> None:
    """Room for the lock and the apply-pending marker, not for the records after the
    apply: exit 1, and stderr says the change is in force but not journaled, and that
    status.json could not be saved either (a status that says nothing is not enough)."""
    lab, home, pairs, saved = full_lab
    proc = _in_namespace(lab, _fill(lab.state_dir, saved, 2))
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "applied and verified in force" in proc.stderr and "not recorded" in proc.stderr
    assert "status could not be saved" in proc.stderr
    assert lab.in_force() == pairs | {(home, "172.16.0.7")}


# --------------------------------------------------------------------------- SIGHUP storm

ADMIN_PW = "admin-pw"
STORM_CLOUD = {
    "regions": ["RegionOne"],
    "projects": [{"name": "admin"}, {"name": "tools"}],
    "users": [
        {"name": "admin", "password": ADMIN_PW, "roles": [{"role": "admin", "project": "admin"}]}
    ],
    "servers": [
        {"id": "t1", "name": "tools-1", "project": "tools", "region": "RegionOne",
         "addresses": ["172.16.0.5"]},
    ],
}  # fmt: skip


def _cycles(lab: Lab) -> float:
    last = lab.status().get("last_cycle")
    return float(last.get("finished") or 0) if isinstance(last, dict) else 0.0


def test_sighup_storm_makes_no_extra_cycles_or_tokens(lab: Lab) -> None:
    sim = SimCloud(STORM_CLOUD)
    sim.start()
    proc: subprocess.Popen[str] | None = None
    try:
        clouds = lab.root / "clouds.yaml"
        sim.clouds_yaml(
            clouds, {"nfs": {"user": "admin", "password": ADMIN_PW, "project": "admin"}}
        )
        lab.config["inventory"] = {"source": "openstack", "cloud": "nfs", "timeout_seconds": 5}
        lab.config["interval_seconds"] = 2
        lab.add_project("tools", 50380)
        home = lab.srv("tools", "home")
        proc = lab.start_run({"OS_CLIENT_CONFIG_FILE": str(clouds)})
        wait_for(lambda: lab.in_force() == {(home, "172.16.0.5")}, "first cycle")
        tokens = sim.counts()["tokens_issued"]
        assert tokens >= 1

        finished: set[float] = set()
        storm = 4.0
        start = time.monotonic()
        while time.monotonic() - start < storm:
            proc.send_signal(signal.SIGHUP)
            finished.add(_cycles(lab))
            time.sleep(0.1)
        elapsed = time.monotonic() - start
        finished.add(_cycles(lab))
        assert proc.poll() is None
        # polling: one cycle per interval (jitter 0.9), plus the one in progress
        assert len(finished) <= elapsed / (0.9 * 2) + 2, sorted(finished)
        assert sim.counts()["tokens_issued"] == tokens  # the connection (and token) is kept
        assert lab.in_force() == {(home, "172.16.0.5")}

        # clouds.yaml changed: the next reload takes a new connection (and a new token)
        clouds.write_text(clouds.read_text() + "# rotated\n")
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: sim.counts()["tokens_issued"] > tokens, "a new token after the change")
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=30)
            assert proc.returncode == 0, out
        sim.stop()
