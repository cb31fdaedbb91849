"""What the daemon remembers in ``state_dir``: removal counters, the last verified files,
the rollback-hold marker, and the lock that lets only one writing command run at a time
(the last cycle's status is ``memory.status``).

Every file is written atomically and read into a strict record (``records``).  A
counters file that does not validate is moved aside (``counters.json.corrupt-TIMESTAMP``)
and reported naming the key; counting starts afresh, so nothing can be removed until
enough complete cycles have rebuilt the evidence.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import Field

from ..decide.lifecycle import Absence, Memory
from ..errors import LockHeld, StateError
from ..exportsfile import UntrustedVerified, rendered_problem
from ..fsutil import atomic_remove, atomic_write, fsync_dir
from ..model import PairKey
from ..records import Count, Record, Time, dumps, parse_json

COUNTERS = "counters.json"
VERIFIED = "last-verified"
VERIFIED_COMPLETE = ".complete"  # in VERIFIED: the copy is whole
APPLY_PENDING = "apply-pending"
LOCK = "lock"
RUN_LOCK = "run.lock"
ROLLBACK_HOLD = "rollback-hold"


@dataclass(frozen=True)
class Counters:
    """Removal evidence: per-pair counters and the project lifecycle memory."""

    values: Mapping[PairKey, int]
    problem: str | None = None  # set when the file was corrupt and was kept aside
    memory: Memory = field(default_factory=Memory)


def _ensure_dir(state_dir: Path) -> None:
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StateError(f"{state_dir}: cannot create state_dir: {exc}") from None


class CounterRow(Record):
    """How many complete cycles in a row have not shown one pair in force."""

    owner: str
    path: str
    client: str
    missing: Count


class AbsentRow(Record):
    name: str
    since: Time
    cycles: Count


class DeletionRow(Record):
    name: str
    time: Time


class CountersFile(Record):
    """counters.json.  Files from before the project memory have only ``counters``:
    the memory starts afresh (nothing is deleted on a first cycle)."""

    schema_: Literal[1] = Field(alias="schema")
    counters: list[CounterRow]
    absent_projects: list[AbsentRow] = Field(default_factory=list)
    known_ids: dict[str, str] = Field(default_factory=dict)  # name -> Keystone id
    instances: dict[str, Count] = Field(default_factory=dict)  # name -> instance count
    project_deletions: list[DeletionRow] = Field(default_factory=list)
    last_counted: Time | None = None
    rebuilding: str | None = None  # why counting started afresh, until it has

    def to_counters(self) -> Counters:
        return Counters(
            {PairKey(r.owner, r.path, r.client): r.missing for r in self.counters},
            problem=self.rebuilding or None,
            memory=Memory(
                {a.name: Absence(a.since, a.cycles) for a in self.absent_projects},
                dict(self.known_ids),
                dict(self.instances),
                deletions={d.name: d.time for d in self.project_deletions},
                last_counted=self.last_counted,
            ),
        )


def load_counters(state_dir: Path, *, move_corrupt: bool) -> Counters:
    path = state_dir / COUNTERS
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Counters({})
    except OSError as exc:
        raise StateError(f"{path}: cannot read removal counters: {exc}") from None
    try:
        return parse_json(text, path, CountersFile, "removal counters file").to_counters()
    except StateError as exc:
        problem = str(exc)
    if move_corrupt:
        aside = path.with_name(f"{COUNTERS}.corrupt-{int(time.time())}")
        try:
            os.replace(path, aside)
            problem += f"; kept aside as {aside.name}"
        except OSError as move_exc:
            problem += f"; could not move it aside: {move_exc}"
    return Counters({}, problem)


def save_counters(
    state_dir: Path,
    counters: Mapping[PairKey, int],
    memory: Memory | None = None,
    rebuilding: str | None = None,
) -> None:
    memory = memory or Memory()
    doc = CountersFile(
        schema_=1,
        counters=[
            CounterRow(owner=k.owner, path=k.path, client=k.client, missing=v)
            for k, v in sorted(counters.items(), key=lambda kv: kv[0].as_text())
        ],
        absent_projects=[
            AbsentRow(name=n, since=a.since, cycles=a.cycles)
            for n, a in sorted(memory.absent.items())
        ],
        known_ids=dict(sorted(memory.known_ids.items())),
        instances=dict(sorted(memory.instances.items())),
        project_deletions=[
            DeletionRow(name=n, time=t) for n, t in sorted(memory.deletions.items())
        ],
        last_counted=memory.last_counted,
    )
    if rebuilding:
        doc = doc.model_copy(update={"rebuilding": rebuilding})
    _ensure_dir(state_dir)
    try:
        atomic_write(state_dir / COUNTERS, dumps(doc), 0o600)
    except OSError as exc:
        raise StateError(f"{state_dir / COUNTERS}: cannot write removal counters: {exc}") from None


def save_verified(state_dir: Path, files: Mapping[str, str]) -> None:
    """Keep a copy of the set of managed files that exportfs accepted and we read back.

    ``.complete`` exists only while the copy is whole: it goes first and comes back last,
    so a copy that could not be finished (a full disk, a crash) is never taken for a
    verified state (an undo would return to it).  Only the files whose text differs are
    written (a change to one project rewrote and fsynced all 2,500 of them); a copy that
    already holds exactly ``files`` is not touched."""
    vdir = state_dir / VERIFIED
    try:
        vdir.mkdir(parents=True, exist_ok=True)
        names = os.listdir(vdir)
        stale = [n for n in names if n not in files and not n.startswith(".")]
        changed = [n for n, t in files.items() if _differs(vdir / n, t)]
        if VERIFIED_COMPLETE in names and not stale and not changed:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(vdir / VERIFIED_COMPLETE)
        for name in changed:
            atomic_write(vdir / name, files[name])
        for old in stale:
            (vdir / old).unlink()
        fsync_dir(vdir)
        os.close(os.open(vdir / VERIFIED_COMPLETE, os.O_WRONLY | os.O_CREAT, 0o644))
        fsync_dir(vdir)
    except OSError as exc:
        raise StateError(f"{vdir}: cannot keep the last verified files: {exc}") from None


def _differs(path: Path, text: str) -> bool:
    """Whether ``path`` does not hold exactly ``text`` (missing or unreadable: differs).

    Only a regular file with one link can be kept: a symlink or a hard link (a hand-made
    one) would let the copy change with another file, so it is replaced, as every file
    was when all were rewritten."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        with open(fd, "rb") as fh:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
                return True
            return fh.read() != text.encode("utf-8")
    except OSError:
        return True


def verified_matches(state_dir: Path, files: Mapping[str, str]) -> bool:
    """Whether the last verified copy is whole and holds exactly ``files`` (texts render
    wrote, so equal texts need no second check): a cycle that changed nothing keeps the
    copy it has instead of rewriting it."""
    vdir = state_dir / VERIFIED
    try:
        names = os.listdir(vdir)
        if VERIFIED_COMPLETE not in names:
            return False
        names = [n for n in names if not n.startswith(".")]
        if len(names) != len(files):
            return False
        for name in names:
            want = files.get(name)
            if want is None or _differs(vdir / name, want):
                return False
    except OSError:
        return False
    return True


def load_verified(state_dir: Path) -> dict[str, str] | None:
    """The last verified set of files, or None when there is none, it is unreadable, or
    it was left unfinished (no ``.complete``).  UntrustedVerified (naming the file and
    why) when a file in it is not exactly what render writes: then no file of it is used.
    """
    vdir = state_dir / VERIFIED
    try:
        names = sorted(os.listdir(vdir))
        if VERIFIED_COMPLETE not in names:
            return None
        files = {
            name: (vdir / name).read_text(encoding="utf-8")
            for name in names
            if not name.startswith(".")
        }
    except (OSError, UnicodeDecodeError):
        return None
    for name, text in files.items():
        problem = rendered_problem(name, text)
        if problem is not None:
            raise UntrustedVerified(
                f"{vdir}/{problem}: the last verified copy is not trusted and not used; "
                "the next verified sync replaces it"
            )
    return files


class StateLock:
    """An exclusive flock on ``state_dir/lock`` holding the owner's pid.

    ``run`` takes it for each cycle only (and ``run.lock`` for its whole life), so that
    ``rollback``, ``release`` and ``adopt`` can run beside the daemon; they ``wait`` for
    the cycle in progress to finish.
    """

    def __init__(
        self, state_dir: Path, name: str = LOCK, wait: float = 0, what: str = "a writing command"
    ) -> None:
        self.path = state_dir / name
        self.fd: int | None = None
        self.wait = wait
        self.what = what

    def __enter__(self) -> StateLock:
        _ensure_dir(self.path.parent)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StateError(f"{self.path}: cannot open lock: {exc}") from None
        deadline = time.monotonic() + self.wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() < deadline:
                    time.sleep(0.2)
                    continue
                try:
                    os.lseek(fd, 0, os.SEEK_SET)
                    pid = os.read(fd, 64).decode().strip() or "unknown"
                finally:
                    os.close(fd)
                waited = f" (waited {self.wait:g} s)" if self.wait else ""
                raise LockHeld(
                    f"{self.path}: another nfs-exportd (pid {pid}) is running {self.what}{waited}"
                ) from None
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError as exc:
            os.close(fd)  # releases the flock
            raise StateError(
                f"{self.path}: cannot write our pid into the lock ({exc.strerror or exc}); "
                "nothing was done: free space in state_dir"
            ) from None
        self.fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def lock_holder(state_dir: Path, name: str = RUN_LOCK) -> int | None:
    """The pid that holds lock ``name``, read without taking it (a probe must never make
    a starting ``run`` fail): the pid the holder wrote, if that process lives."""
    try:
        text = (state_dir / name).read_text(encoding="ascii", errors="replace").strip()
        pid = int(text)
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, another user's
    return pid


class RollbackHold(Record):
    """The marker ``rollback`` leaves until ``release``."""

    time: Time
    to: Count  # the journal entry rolled back to
    entry: Count | None = None  # the journal entry of the rollback itself
    user: str = ""
    # restored pairs left out: (owner, path, client, why)
    dropped: list[tuple[str, str, str, str]] = Field(default_factory=list)

    @property
    def since(self) -> float | None:
        return self.time

    def detail(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.time))
        return (
            f"rolled back to journal entry {self.to} at {when} by {self.user or '?'}; "
            "run 'nfs-exportd release' to resume changes"
        )


@dataclass(frozen=True)
class UnreadableRollbackHold:
    """A marker that exists but cannot be read still holds: it was written on purpose."""

    problem: str
    since: float | None = None

    def detail(self) -> str:
        return f"{self.problem}; run release to clear"


def load_rollback_hold(state_dir: Path) -> RollbackHold | UnreadableRollbackHold | None:
    """The marker ``rollback`` leaves until ``release``, or None."""
    path = state_dir / ROLLBACK_HOLD
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        return UnreadableRollbackHold(f"{path} exists but cannot be read ({exc})")
    try:
        return parse_json(text, path, RollbackHold, "rollback-hold marker")
    except StateError as exc:
        return UnreadableRollbackHold(str(exc))


def save_rollback_hold(state_dir: Path, marker: RollbackHold) -> None:
    _ensure_dir(state_dir)
    path = state_dir / ROLLBACK_HOLD
    try:
        atomic_write(path, dumps(marker))
    except OSError as exc:
        raise StateError(f"{path}: cannot write the rollback-hold marker: {exc}") from None


def clear_rollback_hold(state_dir: Path) -> bool:
    path = state_dir / ROLLBACK_HOLD
    try:
        atomic_remove(path)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise StateError(f"{path}: cannot remove the rollback-hold marker: {exc}") from None
    return True
