"""Atomic file replacement: temporary name (never ``*.exports``), fsync, rename, fsync dir."""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from .killpoints import kill_point


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: str, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` so that readers see the old or the new file, never half.

    The temporary file is ``temp_name(path)`` in the same directory: a dotfile that does
    not end in ``.exports``, so exportfs never reads it.  On any error it is removed and
    the original is untouched.
    """
    tmp = temp_name(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            view = memoryview(data.encode())
            while view:
                n = os.write(fd, view)
                view = view[n:]
            kill_point("write")
            os.fsync(fd)
            kill_point("fsync")
        finally:
            os.close(fd)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
        kill_point("rename")
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)
    kill_point("dirsync")


TEMP_PREFIX = ".nfs-exportd."
# Our temporaries: ``.nfs-exportd.NAME.tmp-PID``.  The prefix makes them unmistakably
# ours in a directory other tools write too (/etc/exports.d): only these are ever removed
# there (never touch what is not ours).
TEMP_RE = re.compile(r"^\.nfs-exportd\.(?P<name>.+)\.tmp-(?P<pid>\d+)$")
# The naming before issue 10, ``.NAME.tmp-PID``: in a shared directory it cannot be told
# apart from another tool's temporary, so it is removed only in state_dir (ours alone).
LEGACY_TEMP_RE = re.compile(r"^\.(?P<name>.+)\.tmp-(?P<pid>\d+)$")


def temp_name(path: Path, pid: int | None = None) -> Path:
    """The temporary atomic_write uses for ``path`` (in process ``pid``, default ours)."""
    return path.with_name(f"{TEMP_PREFIX}{path.name}.tmp-{os.getpid() if pid is None else pid}")


@dataclass(frozen=True)
class StaleTemporaries:
    removed: list[str]
    left: list[str]  # old-style names in a shared directory: maybe another tool's


def remove_stale_temporaries(directory: Path, private: bool = False) -> StaleTemporaries:
    """Remove the temporaries atomic_write left behind when a process died mid-write
    (SIGKILL, power loss).  Only call this holding the state lock: then no other writer
    of ours is running.  ``private``: the directory is the daemon's alone (state_dir), so
    old-style names are ours too and go; elsewhere they are only reported in ``left``."""
    out = StaleTemporaries([], [])
    try:
        names = os.listdir(directory)
    except OSError:
        return out
    for name in sorted(names):
        m = TEMP_RE.match(name)
        if m is None:
            legacy = LEGACY_TEMP_RE.match(name)
            if legacy is not None and int(legacy["pid"]) != os.getpid() and not private:
                out.left.append(name)
            if legacy is None or not private:
                continue
            m = legacy
        if int(m["pid"]) == os.getpid():
            continue
        with contextlib.suppress(FileNotFoundError):
            os.unlink(directory / name)
            out.removed.append(name)
    return out


def atomic_remove(path: Path) -> None:
    path.unlink()
    fsync_dir(path.parent)
