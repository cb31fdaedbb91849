"""Crash-test hook: ``NFS_EXPORTD_KILL_AT=STEP[:N]`` makes the process SIGKILL itself
at the N-th time (default 1st) it reaches STEP of an apply.

Steps: ``write`` (temporary file written, not yet fsynced), ``fsync`` (fsynced, not yet
renamed), ``rename`` (renamed, directory not yet fsynced), ``dirsync`` (directory
fsynced), ``exportfs`` (files in place, exportfs -ra not yet run), ``reloaded``
(exportfs ran, not yet verified), ``verified`` (verified, state not yet saved).
The crash-safety tests use it to prove that every managed file always holds its complete
old or new content and that the next sync converges.  Unset, it costs one dict lookup.
"""

from __future__ import annotations

import os
import signal

STEPS = ("write", "fsync", "rename", "dirsync", "exportfs", "reloaded", "verified")
_seen: dict[str, int] = {}


def kill_point(step: str) -> None:
    spec = os.environ.get("NFS_EXPORTD_KILL_AT")
    if not spec:
        return
    name, _, nth = spec.partition(":")
    if name != step:
        return
    _seen[step] = _seen.get(step, 0) + 1
    if _seen[step] == (int(nth) if nth else 1):
        os.kill(os.getpid(), signal.SIGKILL)
