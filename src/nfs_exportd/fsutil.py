"""Atomic file replacement: temporary name (never ``*.exports``), fsync, rename, fsync dir."""

from __future__ import annotations

import contextlib
import os
import re
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

    The temporary file is ``.NAME.tmp-PID`` in the same directory: a dotfile that does
    not end in ``.exports``, so exportfs never reads it.  On any error it is removed and
    the original is untouched.
    """
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
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


TEMP_RE = re.compile(r"^\.(?P<name>.+)\.tmp-(?P<pid>\d+)$")


def remove_stale_temporaries(directory: Path) -> list[str]:
    """Remove ``.NAME.tmp-PID`` files that atomic_write left behind when a process died
    mid-write (SIGKILL, power loss).  Only call this holding the state lock: then no
    other writer of ours is running.  Returns the names removed."""
    removed: list[str] = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        m = TEMP_RE.match(name)
        if m is None or int(m["pid"]) == os.getpid():
            continue
        with contextlib.suppress(FileNotFoundError):
            os.unlink(directory / name)
            removed.append(name)
    return removed


def atomic_remove(path: Path) -> None:
    path.unlink()
    fsync_dir(path.parent)
