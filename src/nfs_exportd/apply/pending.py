"""The apply-pending marker: it exists from the first exports file written until exportfs
ran and the exports in force were read back.  A marker found at the start of an apply
means the last one was interrupted (a crash, a kill), so the kernel may hold other pairs
than the files say: the apply reloads even with nothing to write.

Any marker that exists counts, whatever it holds (fail static: a reload too many is
harmless, one too few is not); its content only says whose apply it was.  Markers of
earlier versions hold just the pid.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated

from pydantic import Field

from ..errors import StateError
from ..fsutil import atomic_write
from ..records import Record, Time, dumps, parse_json


class ApplyPending(Record):
    pid: Annotated[int, Field(ge=1)]
    started: Time | None = None  # None: a marker of an earlier version (pid only)
    # set when the apply ended with an error and its undo could not be verified: the
    # marker stays (the kernel may differ from the files), but nothing was interrupted
    failed: str | None = None

    def describe(self) -> str:
        if self.started is None:
            return f"pid {self.pid}"
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started))
        return f"pid {self.pid}, started {when}"


def write(path: Path) -> None:
    """Raises OSError: the caller says what it means (nothing changed yet)."""
    atomic_write(path, dumps(ApplyPending(pid=os.getpid(), started=time.time())))


def mark_failed(path: Path, why: str) -> None:
    """Keep the marker, saying the apply failed (and was not interrupted); best effort:
    a marker that stays as it was still makes the next apply reload."""
    try:
        text = path.read_text(encoding="utf-8")
        old = parse_json(text, path, ApplyPending, "apply-pending marker")
        atomic_write(path, dumps(old.model_copy(update={"failed": why[:500]})))
    except (OSError, UnicodeDecodeError, StateError):
        pass


def failure(path: Path) -> str | None:
    """Why the last apply failed, when its marker says it failed rather than stopped."""
    try:
        return parse_json(
            path.read_text(encoding="utf-8"), path, ApplyPending, "apply-pending marker"
        ).failed
    except (OSError, UnicodeDecodeError, StateError):
        return None


def interrupted(path: Path) -> str | None:
    """Whose apply was interrupted (``pid 42, started ...``), or None when no marker is
    left.  A marker that cannot be read or parsed still says "interrupted"."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        return f"marker {path} unreadable: {exc}"
    if text.strip().isdigit():  # an earlier version's marker: "PID\n"
        return ApplyPending(pid=max(1, int(text))).describe()
    try:
        return parse_json(text, path, ApplyPending, "apply-pending marker").describe()
    except StateError as exc:
        return str(exc)
