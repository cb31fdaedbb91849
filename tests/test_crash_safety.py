"""Crash safety: SIGKILL at every kill point of an apply, then the next sync converges.

``NFS_EXPORTD_KILL_AT=STEP:N`` makes a real ``nfs-exportd sync`` process (the real exportfs
in its sandbox) SIGKILL itself the N-th time it reaches STEP.  Each scenario below has an
old state (files, etab and state_dir after a sync of the old config) and a change.  An
unkilled reference sync of the change, run in-process with the kill points traced, gives
the new files, the pairs in force, the exit code and the exact sequence of kill points
(which file each write/fsync/rename/dirsync is for).  Then, for every step and many
occurrences N of it (per-file steps: every exports file, and the first and last state file
of each state directory; the single exportfs/reloaded/verified points: once per scenario,
twice round), the lab is reset to the old state, a sync is killed there, and the test
checks:

* the process died of SIGKILL (-9): the step was reached;
* every managed ``*.exports`` file holds exactly its complete old or new content, and
  precisely the ones the apply had already renamed hold the new content; no other
  ``*.exports`` name exists; the only other entry is the temporary of the file being
  written (a ``.nfs-exportd.NAME.tmp-PID`` dotfile, complete) when the kill hit write or fsync;
  exportfs ignores it (``exportfs -ra`` on a copy of the directory exports exactly the
  ``*.exports`` files);
* the pairs in force are the old ones until exportfs ran, the new ones after;
* counters.json and status.json parse or are absent (a state temporary is complete
  JSON); last-verified files are old or new;
* then the next, unkilled sync converges: the state lock was released with the process,
  exit code as the scenario implies, files and pairs in force == the reference (pairs the
  killed sync removed from the files are gone from the etab too), state parses,
  last-verified holds the files in force, and the temporaries the killed process left are
  gone (sync removes them).

Failures are collected per kill so that one run shows every (scenario, step, N) that
fails.  About 90 s in all: each kill costs a killed and an unkilled sync (~0.45 s).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import SANDBOX, Lab
from nfs_exportd import cycle, fsutil
from nfs_exportd.apply import exportfs as exportfs_backend
from nfs_exportd.killpoints import STEPS

FILE_STEPS = ("write", "fsync", "rename", "dirsync")  # once per atomic_write
ONCE_STEPS = ("exportfs", "reloaded", "verified")  # once per apply that runs exportfs
IS_ROOT = os.geteuid() == 0
MIN_KILLS = 10
Pairs = set[tuple[str, str]]


# --------------------------------------------------------------------------- scenarios


def _ip(n: int) -> str:
    return f"172.16.0.{n}"


def _project(lab: Lab, name: str, gid: int, *volumes: str) -> None:
    lab.add_project(name, gid, {v: lab.srv(name, v) for v in volumes or ("home",)})


def _four(lab: Lab) -> None:
    """alpha, bravo (two volumes, two instances), charlie (two instances), echo."""
    _project(lab, "alpha", 50001)
    _project(lab, "bravo", 50002, "home", "data")
    _project(lab, "charlie", 50003)
    _project(lab, "echo", 50005)
    lab.add_instance("i-a1", "alpha", _ip(11))
    lab.add_instance("i-b1", "bravo", _ip(21))
    lab.add_instance("i-b2", "bravo", _ip(22))
    lab.add_instance("i-c1", "charlie", _ip(31))
    lab.add_instance("i-c2", "charlie", _ip(32))
    lab.add_instance("i-e1", "echo", _ip(51))


def _rewrite_several_remove_one(lab: Lab) -> None:
    """alpha leaves the projects file (its file goes), bravo gains an instance, charlie
    loses one and gains one, delta is new; echo is unchanged."""
    del lab.projects["alpha"]
    lab.add_instance("i-b3", "bravo", _ip(23))
    lab.remove_instance("i-c2")
    lab.add_instance("i-c3", "charlie", _ip(33))
    _project(lab, "delta", 50004)
    lab.add_instance("i-d1", "delta", _ip(41))


def _ip_claimed_by_two_projects(lab: Lab) -> None:
    """A listing shows bravo's 172.16.0.21 on a charlie instance too: it leaves bravo at
    once and goes to nobody (ip-conflict, a hold: exit 3).  Only removals."""
    lab.add_instance("i-c9", "charlie", _ip(21))


def _ip_reused(lab: Lab) -> None:
    """bravo's instance is deleted and its IP reused in charlie: gone from bravo at once,
    added to charlie."""
    lab.remove_instance("i-b1")
    lab.add_instance("i-c9", "charlie", _ip(21))


def _project_dropped(lab: Lab) -> None:
    """alpha leaves the projects file: its file is removed, nothing else changes."""
    del lab.projects["alpha"]


def _nothing(lab: Lab) -> None:
    pass


def _with_public(lab: Lab) -> None:
    _four(lab)
    lab.config["public_exports"] = {
        "scratch": {"path": lab.srv("scratch"), "clients": ["172.16.1.0/24"]}
    }


def _options_and_public(lab: Lab) -> None:
    """New options for bravo's home; the public export gets a second network."""
    lab.config["export_options"] = {"projects": {"bravo": {"home": "ro,sync,no_subtree_check"}}}
    lab.config["public_exports"]["scratch"]["clients"].append("172.16.2.0/24")


@dataclass(frozen=True)
class Scenario:
    name: str
    old: Callable[[Lab], None]  # builds the old config/projects/inventory from scratch
    change: Callable[[Lab], None]  # then changes them
    exit_code: int  # of the sync that applies the change
    sync_old: bool = True  # False: the old state is a fresh server (nothing synced yet)


SCENARIOS = (
    Scenario("rewrite-several-remove-one", _four, _rewrite_several_remove_one, 0),
    Scenario("ip-claimed-by-two-projects", _four, _ip_claimed_by_two_projects, 3),
    Scenario("first-sync", _nothing, _with_public, 0, sync_old=False),
    Scenario("options-and-public", _with_public, _options_and_public, 0),
    Scenario("ip-reused", _four, _ip_reused, 0),
    Scenario("project-dropped", _four, _project_dropped, 0),
)


# --------------------------------------------------------------------------- helpers


def _reset_lab(lab: Lab) -> None:
    lab.projects = {}
    lab.inventory = {"projects": [], "instances": []}
    lab.config.pop("public_exports", None)
    lab.config.pop("export_options", None)
    # One confirmation: a not-served or instance-gone removal applies in the same sync,
    # so that one sync both removes and rewrites files.
    lab.config["safety"] = {"removal_confirmations": 1, "max_removal_fraction": 0.5}


# Two scenarios drop a project from the projects file, which holds its removal until a
# human forces it (too-much-change); the crash tests are about the files, so every sync
# here is the forced one an operator runs after reading the plan.
SYNC = ("sync", "--force")


def _sync_cmd(lab: Lab) -> list[str]:
    root = ["--allow-root"] if IS_ROOT else []
    return [
        sys.executable,
        "-m",
        "nfs_exportd.cli",
        "--config",
        str(lab.config_path),
        *root,
        *SYNC,
    ]


@dataclass
class Run:
    pid: int
    returncode: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return f"pid {self.pid} exit {self.returncode}\n{self.stdout}{self.stderr}"


def run_sync(lab: Lab, kill_at: str | None = None) -> Run:
    """``nfs-exportd sync`` as a real process (kill point set or not)."""
    env = {k: v for k, v in os.environ.items() if k != "NFS_EXPORTD_KILL_AT"}
    if kill_at:
        env["NFS_EXPORTD_KILL_AT"] = kill_at
    proc = subprocess.Popen(
        _sync_cmd(lab),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()  # only the process we started, by its pid
        proc.communicate()
        raise
    return Run(proc.pid, proc.returncode, out, err)


def pairs_of(files: dict[str, str]) -> Pairs:
    """(path, client) pairs the managed files export."""
    out = set()
    for text in files.values():
        for line in text.splitlines()[1:]:
            path, _opts, *clients = line.split()
            out |= {(path, c) for c in clients}
    return out


def visible(directory: Path) -> dict[str, str]:
    """Non-dot files of a directory: name -> text ({} when it does not exist)."""
    if not directory.is_dir():
        return {}
    return {
        p.name: p.read_text()
        for p in sorted(directory.iterdir())
        if not p.name.startswith(".") and p.is_file()
    }


def temporaries(directory: Path) -> list[str]:
    if not directory.is_dir():
        return []
    return sorted(n for n in os.listdir(directory) if fsutil.TEMP_RE.match(n))


@dataclass(frozen=True)
class Event:
    step: str
    path: Path | None  # the file an atomic_write was writing, for the per-file steps


@dataclass
class Prepared:
    """One scenario, ready to be reset to its old state and killed any number of times."""

    scenario: Scenario
    snap: Path  # copies of sb/ and state/ in the old state
    inputs: dict[str, str]  # config.yaml, projects.yaml, inventory.yaml with the change
    old_files: dict[str, str]
    new_files: dict[str, str]
    old_pairs: Pairs
    new_pairs: Pairs
    old_verified: dict[str, str]
    new_verified: dict[str, str]
    ops: list[str]  # exports files the apply writes or removes, in its (sorted) order
    trace: list[Event]  # the kill points the unkilled sync reached, in order

    def occurrences(self, step: str) -> list[int]:
        """Trace indexes of the 1st, 2nd, ... time the sync reaches ``step``."""
        return [i for i, e in enumerate(self.trace) if e.step == step]


def _trace_kill_points(monkeypatch: pytest.MonkeyPatch) -> list[Event]:
    """Record the kill points an in-process sync reaches (which file, for atomic_write)."""
    trace: list[Event] = []

    def record(step: str) -> None:
        path = sys._getframe(1).f_locals.get("path") if step in FILE_STEPS else None
        assert step not in FILE_STEPS or isinstance(path, Path), "atomic_write has no 'path'"
        trace.append(Event(step, path))

    for module in (fsutil, exportfs_backend, cycle):
        monkeypatch.setattr(module, "kill_point", record)
    return trace


def prepare(lab: Lab, sc: Scenario, work: Path) -> Prepared:
    sb = lab.root / "sb"
    shutil.rmtree(sb)
    (sb / "exports.d").mkdir(parents=True)
    shutil.rmtree(lab.state_dir, ignore_errors=True)
    _reset_lab(lab)
    sc.old(lab)
    if sc.sync_old:
        assert lab.cli(*SYNC) == 0
    old_files, old_pairs = lab.files(), lab.in_force()
    assert old_pairs == pairs_of(old_files)
    old_verified = visible(lab.state_dir / "last-verified")
    snap = work / sc.name
    shutil.copytree(sb, snap / "sb", symlinks=True)
    if lab.state_dir.exists():
        shutil.copytree(lab.state_dir, snap / "state", symlinks=True)

    sc.change(lab)
    lab.write()
    inputs = {n: (lab.root / n).read_text() for n in ("config.yaml", "projects.yaml")}
    inputs["inventory.yaml"] = (lab.root / "inventory.yaml").read_text()
    with pytest.MonkeyPatch.context() as mp:
        trace = _trace_kill_points(mp)
        assert lab.cli(*SYNC) == sc.exit_code
    new_files, new_pairs = lab.files(), lab.in_force()
    assert new_pairs == pairs_of(new_files), "the reference sync did not apply its files"
    assert new_files != old_files
    ops = sorted(n for n in set(old_files) | set(new_files) if old_files.get(n) != new_files.get(n))
    prep = Prepared(
        sc,
        snap,
        inputs,
        old_files,
        new_files,
        old_pairs,
        new_pairs,
        old_verified,
        visible(lab.state_dir / "last-verified"),
        ops,
        trace,
    )
    # The trace is what the kill loop relies on: the files written in apply order first,
    # then exportfs, reloaded, verified, then state files.
    steps = [e.step for e in trace]
    assert Counter(steps)["exportfs"] == Counter(steps)["reloaded"] == 1, steps
    in_dir = [e.path for e in trace if e.step == "write" and e.path is not None]
    written = [p.name for p in in_dir if p.parent == lab.exports_dir]
    assert written == [n for n in ops if n in new_files], (written, ops)
    assert steps.index("exportfs") > max(
        (i for i, e in enumerate(trace) if e.path and e.path.parent == lab.exports_dir),
        default=-1,
    )
    return prep


def reset(lab: Lab, prep: Prepared) -> None:
    sb = lab.root / "sb"
    shutil.rmtree(sb)
    shutil.copytree(prep.snap / "sb", sb, symlinks=True)
    shutil.rmtree(lab.state_dir, ignore_errors=True)
    if (prep.snap / "state").exists():
        shutil.copytree(prep.snap / "state", lab.state_dir, symlinks=True)
    for name, text in prep.inputs.items():
        (lab.root / name).write_text(text)


def exported_by_exportfs(lab: Lab, work: Path) -> Pairs:
    """What ``exportfs -ra`` exports from a copy of the lab's sandbox as it is now."""
    copy = Lab(work / "exportfs-copy")
    shutil.rmtree(copy.root, ignore_errors=True)
    shutil.copytree(lab.root / "sb", copy.root / "sb", symlinks=True)
    subprocess.run([str(SANDBOX), str(copy.root / "sb"), "-ra"], check=True, timeout=60)
    return copy.in_force()


def _short(lab: Lab, pairs: Pairs) -> list[str]:
    srv = str(lab.root / "srv") + "/"
    return [f"{c} -> {p.removeprefix(srv)}" for p, c in sorted(pairs)]


def check_state_parses(lab: Lab, what: str) -> None:
    for name in ("counters.json", "status.json"):
        path = lab.state_dir / name
        if path.exists():
            try:
                data = json.loads(path.read_text())
            except ValueError as exc:
                raise AssertionError(f"{what}: {name} does not parse: {exc}") from None
            assert isinstance(data, dict) and data.get("schema") == 1, f"{what}: {name}"
    # every journal entry is complete (the history command reads them all)
    for entry in sorted((lab.state_dir / "history").glob("*.json")):
        data = json.loads(entry.read_text())
        assert data.get("schema") == 1 and "files" in data, f"{what}: {entry.name}"


# --------------------------------------------------------------------------- the checks


@dataclass
class Tally:
    kills: int = 0
    in_exports_files: int = 0
    in_state_files: int = 0
    temporaries_left: int = 0
    by_scenario: Counter[str] = field(default_factory=Counter)


def kill_and_check(lab: Lab, prep: Prepared, step: str, n: int, work: Path, tally: Tally) -> None:
    """Reset to the old state, kill a sync at the n-th ``step``, check, then converge."""
    sc = prep.scenario
    what = f"{sc.name}: {step}:{n}"
    at = prep.occurrences(step)[n - 1]
    event = prep.trace[at]
    reset(lab, prep)

    run = run_sync(lab, f"{step}:{n}")
    assert run.returncode == -signal.SIGKILL, f"{what}: not killed at the step: {run}"
    tally.kills += 1
    tally.by_scenario[sc.name] += 1

    # ---- where the apply was: which files are new, and which temporary exists
    in_exports = event.path is not None and event.path.parent == lab.exports_dir
    if in_exports:
        assert event.path is not None
        target = event.path.name
        done = set(prep.ops[: prep.ops.index(target)])
        if step in ("rename", "dirsync"):
            done.add(target)
        tally.in_exports_files += 1
    else:
        target = None
        # the apply-pending marker is written before any exports file; every other state
        # file (and exportfs) after them all
        marker = event.path is not None and event.path.name == "apply-pending"
        done = set() if marker else set(prep.ops)
        if event.path is not None:
            tally.in_state_files += 1
    expected = {}
    for name in sorted(set(prep.old_files) | set(prep.new_files)):
        text = (prep.new_files if name in done else prep.old_files).get(name)
        if text is not None:
            expected[name] = text

    files = lab.files()
    for name, text in files.items():
        assert text in (prep.old_files.get(name), prep.new_files.get(name)), (
            f"{what}: {name} holds neither its complete old nor its complete new content:\n{text!r}"
        )
    assert files == expected, f"{what}: files"

    listing = sorted(os.listdir(lab.exports_dir))
    assert [n for n in listing if n.endswith(".exports")] == sorted(expected), what
    others = [n for n in listing if not n.endswith(".exports")]
    writing_temp = step in ("write", "fsync")
    if in_exports and writing_temp:
        assert target is not None
        temp = fsutil.temp_name(lab.exports_dir / target, run.pid).name
        assert others == [temp], f"{what}: {others}"
        assert (lab.exports_dir / temp).read_text() == prep.new_files[target], (
            f"{what}: the temporary is not the complete new content"
        )
        # exportfs reads only *.exports: the temporary changes nothing it exports.
        assert exported_by_exportfs(lab, work) == pairs_of(files), what
    else:
        assert others == [], f"{what}: unexpected entries in exports_dir: {others}"

    # ---- state_dir
    state_temps = (
        temporaries(lab.state_dir)
        + temporaries(lab.state_dir / "last-verified")
        + temporaries(lab.state_dir / "history")  # the journal entry of the change
    )
    if event.path is not None and not in_exports and writing_temp:
        temp_path = fsutil.temp_name(event.path, run.pid)
        assert state_temps == [temp_path.name], f"{what}: {state_temps}"
        text = temp_path.read_text()
        if event.path.parent.name == "last-verified":
            assert text == prep.new_verified[event.path.name], what
        else:
            json.loads(text)  # complete, even though it never replaced the file
    else:
        assert state_temps == [], f"{what}: {state_temps}"
    tally.temporaries_left += len(state_temps) + len(others)
    check_state_parses(lab, what)
    for name, text in visible(lab.state_dir / "last-verified").items():
        assert text in (prep.old_verified.get(name), prep.new_verified.get(name)), what

    # ---- the exports in force: old until exportfs ran, new once it did
    reloaded_at = prep.occurrences("reloaded")[0]
    want = prep.new_pairs if at >= reloaded_at else prep.old_pairs
    assert lab.in_force() == want, f"{what}: pairs in force after the kill"

    # ---- the next sync converges (and could take the lock: it died with the process)
    run = run_sync(lab)
    assert "is running a writing command" not in run.stderr, f"{what}: lock still held: {run}"
    assert run.returncode == sc.exit_code, f"{what}: the next sync: {run}"
    assert lab.files() == prep.new_files, f"{what}: files after the next sync"
    in_force = lab.in_force()
    assert in_force == prep.new_pairs, (
        f"{what}: the next sync did not converge: still in force "
        f"{_short(lab, in_force - prep.new_pairs)}, missing "
        f"{_short(lab, prep.new_pairs - in_force)}; it said: {run.stdout.strip()}\n{run}"
    )
    assert sorted(os.listdir(lab.exports_dir)) == sorted(prep.new_files), what
    for directory in (lab.exports_dir, lab.state_dir, lab.state_dir / "last-verified"):
        assert temporaries(directory) == [], f"{what}: temporaries left in {directory}"
    check_state_parses(lab, what)
    assert lab.status()["last_cycle"]["result"] == ("held" if sc.exit_code == 3 else "ok")
    verified = visible(lab.state_dir / "last-verified")
    stale = sorted(
        n
        for n in set(verified) | set(prep.new_verified)
        if verified.get(n) != prep.new_verified.get(n)
    )
    assert not stale, (
        f"{what}: the next sync converged but left state_dir/last-verified stale "
        f"(differs from the files it verified in force: {stale})"
    )


# --------------------------------------------------------------------------- the tests


@pytest.fixture
def prepared(lab: Lab, tmp_path: Path) -> Iterator[list[Prepared]]:
    yield [prepare(lab, sc, tmp_path / "snap") for sc in SCENARIOS]


def _report(step: str, tally: Tally, started: float) -> None:
    print(
        f"\n{step}: {tally.kills} kills ({tally.in_exports_files} in exports files, "
        f"{tally.in_state_files} in state files), {tally.temporaries_left} temporaries left "
        f"by killed syncs and removed by the next, {time.monotonic() - started:.1f} s; "
        f"per scenario {dict(tally.by_scenario)}"
    )


def _kill_all(lab: Lab, step: str, jobs: list[tuple[Prepared, int]], work: Path) -> None:
    """Run every (scenario, n) kill; report every failing one, not only the first."""
    started = time.monotonic()
    tally = Tally()
    failures = []
    for prep, n in jobs:
        try:
            kill_and_check(lab, prep, step, n, work, tally)
        except AssertionError as exc:
            failures.append(" | ".join(str(exc).splitlines()[:4]))
    _report(step, tally, started)
    assert tally.kills >= MIN_KILLS
    if failures:
        pytest.fail(
            f"{len(failures)} of {len(jobs)} kills at {step!r} failed:\n" + "\n".join(failures),
            pytrace=False,
        )
    if step in FILE_STEPS:
        assert tally.in_exports_files >= 5 and tally.in_state_files >= 5


@pytest.mark.parametrize("step", FILE_STEPS)
def test_kill_at_every_file_step_occurrence(
    step: str, lab: Lab, prepared: list[Prepared], tmp_path: Path
) -> None:
    """The n-th write/fsync/rename/dirsync of one sync, for every n that is an exports
    file and, of the state files after them (counters.json, one per last-verified file,
    status.json), the first and the last in each directory: the ones between are the same
    loop over the same atomic_write, and leaving them out keeps the file within budget."""
    jobs = []
    for prep in prepared:
        events = [prep.trace[i] for i in prep.occurrences(step)]
        written = [n for n in prep.ops if n in prep.new_files]
        in_exports = [e.path.name for e in events if e.path and e.path.parent == lab.exports_dir]
        assert in_exports == written, prep.trace  # (the apply-pending marker comes first)
        assert len(events) >= len(written) + 2, prep.trace  # and at least two state files
        by_dir: dict[Path, list[int]] = {}
        for n, e in enumerate(events, start=1):
            assert e.path is not None
            by_dir.setdefault(e.path.parent, []).append(n)
        chosen = set(by_dir.pop(lab.exports_dir, []))
        for ns in by_dir.values():
            chosen |= {ns[0], ns[-1]}
        jobs += [(prep, n) for n in sorted(chosen)]
    _kill_all(lab, step, jobs, tmp_path)


@pytest.mark.parametrize("step", ONCE_STEPS)
def test_kill_at_each_exportfs_step(
    step: str, lab: Lab, prepared: list[Prepared], tmp_path: Path
) -> None:
    """exportfs (files in place, not yet reloaded), reloaded, verified: reached once per
    sync; every scenario, twice round."""
    for prep in prepared:
        assert len(prep.occurrences(step)) == 1, prep.trace
    _kill_all(lab, step, [(prep, 1) for _round in range(2) for prep in prepared], tmp_path)


def test_steps_are_the_kill_points() -> None:
    assert set(FILE_STEPS) | set(ONCE_STEPS) == set(STEPS)
