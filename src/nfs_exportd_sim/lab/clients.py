"""NFS clients run inside a namespace ("a VM"): libnfs-utils' ``nfs-ls`` and ``nfs-cat``.

A result is ``ok`` or refused, with libnfs's message and the exit code.  The exit codes
of libnfs are odd (nfs-ls 254 for a v4 refusal, 243 for v3, nfs-cat 10): tests should
look at ``ok`` and the message, not at a particular code.  v4 URLs take the export's
Pseudo path, v3 URLs its real Path.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass


@dataclass(frozen=True)
class NfsResult:
    """What one client call saw."""

    ok: bool
    rc: int
    output: str  # stdout (the listing or the file's content) when ok
    message: str  # stderr: libnfs's reason when refused

    def __str__(self) -> str:
        return (
            f"{'ok' if self.ok else 'refused'} rc={self.rc} {self.message or self.output}".strip()
        )


def nfs_url(server: str, path: str, version: int) -> str:
    """``nfs://SERVER/PATH?version=N`` (path absolute)."""
    if version not in (3, 4):
        raise ValueError(f"NFS version {version}: only 3 and 4")
    if not path.startswith("/"):
        raise ValueError(f"path {path!r} must be absolute")
    return f"nfs://{server}{path}?version={version}"


def _run(netns: str, tool: str, url: str, timeout: float) -> NfsResult:
    argv = ["ip", "netns", "exec", netns, tool, url]
    try:
        res = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired:
        return NfsResult(False, -1, "", f"{tool} {url}: no answer within {timeout:g} s")
    return NfsResult(res.returncode == 0, res.returncode, res.stdout, res.stderr.strip())


def nfs_cat(
    netns: str, server: str, path: str, version: int = 4, timeout: float = 20.0
) -> NfsResult:
    """Mount, open and read the file at ``path`` (v4: under the Pseudo path)."""
    return _run(netns, "nfs-cat", nfs_url(server, path, version), timeout)


def nfs_ls(
    netns: str, server: str, path: str, version: int = 4, timeout: float = 20.0
) -> NfsResult:
    """Mount and list the directory at ``path``."""
    return _run(netns, "nfs-ls", nfs_url(server, path, version), timeout)
