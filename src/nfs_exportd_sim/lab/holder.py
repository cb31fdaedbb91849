"""A held-open NFS reader, as a VM with a volume mounted and a file open: one mount (one
TCP connection), one open file, ``pread`` every ``interval`` seconds, counting the reads
that failed, with when and why.

It uses libnfs (``libnfs.so.13``) through ctypes, so no compiler is needed.  It runs as
``python -m nfs_exportd_sim.lab.holder`` inside the VM's namespace; ``HeldReader`` starts
it, waits for the mount and the open, and on ``stop()`` collects its summary.  The
reader writes one JSON line per event: ``{"event": "open"}``, a line for each change of
the outcome (``{"event": "fail"|"ok", "t": epoch, "error": ...}``) and, on SIGTERM,
``{"event": "summary", "reads": N, "failed": [[t, error], ...]}``.
"""

from __future__ import annotations

import ctypes
import json
import os
import selectors
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import IO, Any

from nfs_exportd_sim.lab.clients import nfs_url
from nfs_exportd_sim.lab.proc import LabError

LIBNFS = "libnfs.so.13"
MAX_FAILURES_KEPT = 1000


class _NfsUrl(ctypes.Structure):
    _fields_ = [
        ("server", ctypes.c_char_p),
        ("path", ctypes.c_char_p),
        ("file", ctypes.c_char_p),
    ]


def _libnfs() -> Any:
    lib = ctypes.CDLL(LIBNFS)
    vp = ctypes.c_void_p
    lib.nfs_init_context.restype = vp
    lib.nfs_get_error.restype = ctypes.c_char_p
    lib.nfs_get_error.argtypes = [vp]
    lib.nfs_set_timeout.argtypes = [vp, ctypes.c_int]
    lib.nfs_parse_url_dir.restype = ctypes.POINTER(_NfsUrl)
    lib.nfs_parse_url_dir.argtypes = [vp, ctypes.c_char_p]
    lib.nfs_mount.argtypes = [vp, ctypes.c_char_p, ctypes.c_char_p]
    lib.nfs_open.argtypes = [vp, ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(vp)]
    # libnfs 4.x: nfs_pread(nfs, fh, uint64 offset, uint64 count, void *buf)
    lib.nfs_pread.argtypes = [vp, vp, ctypes.c_uint64, ctypes.c_uint64, ctypes.c_void_p]
    lib.nfs_close.argtypes = [vp, vp]
    lib.nfs_umount.argtypes = [vp]
    lib.nfs_destroy_context.argtypes = [vp]
    return lib


def _emit(out: IO[str], **row: Any) -> None:
    out.write(json.dumps(row) + "\n")
    out.flush()


def hold(url: str, file: str, interval: float, out: IO[str]) -> int:
    """Mount ``url``'s export, open ``file`` (relative to it), read until SIGTERM."""
    lib = _libnfs()
    nfs = lib.nfs_init_context()
    if not nfs:
        _emit(out, event="error", error="nfs_init_context failed")
        return 2
    lib.nfs_set_timeout(nfs, 3000)
    purl = lib.nfs_parse_url_dir(nfs, url.encode())
    if not purl:
        _emit(out, event="error", error=f"bad url: {lib.nfs_get_error(nfs).decode()}")
        return 2
    if lib.nfs_mount(nfs, purl.contents.server, purl.contents.path) != 0:
        _emit(out, event="error", error=f"mount: {lib.nfs_get_error(nfs).decode()}")
        return 1
    fh = ctypes.c_void_p()
    if lib.nfs_open(nfs, ("/" + file.lstrip("/")).encode(), os.O_RDONLY, ctypes.byref(fh)):
        _emit(out, event="error", error=f"open: {lib.nfs_get_error(nfs).decode()}")
        return 1
    _emit(out, event="open", t=time.time())
    stop = False

    def on_term(_sig: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    buf = ctypes.create_string_buffer(256)
    reads, failing = 0, False
    failed: list[list[object]] = []
    while not stop:
        n = lib.nfs_pread(nfs, fh, 0, 256, buf)
        if n < 0 and stop:
            break  # our own SIGTERM interrupted its poll ("Poll failed"): not a failed read
        reads += 1
        t = time.time()
        if n < 0:
            err = (lib.nfs_get_error(nfs) or b"").decode(errors="replace")
            if len(failed) < MAX_FAILURES_KEPT:
                failed.append([t, err])
            if not failing:
                _emit(out, event="fail", t=t, error=err)
            failing = True
        elif failing:
            _emit(out, event="ok", t=t)
            failing = False
        time.sleep(interval)
    _emit(out, event="summary", reads=reads, failed=failed)
    lib.nfs_close(nfs, fh)
    lib.nfs_umount(nfs)
    lib.nfs_destroy_context(nfs)
    return 0


@dataclass
class HoldResult:
    """What a held reader saw: reads attempted, failed reads (time, libnfs error)."""

    reads: int
    failed: list[tuple[float, str]] = field(default_factory=list)

    @property
    def failed_count(self) -> int:
        return len(self.failed)


class HeldReader:
    """Mount ``export`` from ``server`` in namespace ``netns`` and keep reading ``file``.

    v4: ``export`` is the Pseudo path; v3: the real Path.  ``start()`` returns once the
    file is open (LabError with the reason otherwise); ``stop()`` returns a HoldResult.
    """

    def __init__(
        self,
        netns: str,
        server: str,
        export: str,
        file: str,
        version: int = 4,
        interval: float = 0.02,
    ) -> None:
        self.url = nfs_url(server, export, version)
        self.argv = ["ip", "netns", "exec", netns, sys.executable, "-m", __name__]
        self.argv += [self.url, file, str(interval)]
        self.proc: subprocess.Popen[str] | None = None
        self.events: list[dict[str, Any]] = []

    def start(self, timeout: float = 20.0) -> None:
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                self.stop()
                raise LabError(f"held reader {self.url}: not open within {timeout:g} s")
            line = self.proc.stdout.readline()
            if not line:
                self.proc.wait(5)
                raise LabError(f"held reader {self.url}: exited before opening the file")
            row = self._parse(line)
            if row.get("event") == "open":
                return
            if row.get("event") == "error":
                self.stop()
                raise LabError(f"held reader {self.url}: {row.get('error')}")

    def _parse(self, line: str) -> dict[str, Any]:
        try:
            row = dict(json.loads(line))
        except ValueError:
            row = {"event": "output", "text": line.rstrip()}
        self.events.append(row)
        return row

    def stop(self) -> HoldResult:
        """SIGTERM the reader (by its pid), read its summary."""
        proc = self.proc
        if proc is None:
            raise LabError("held reader was never started")
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            rest, _ = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            rest, _ = proc.communicate(timeout=5)
        for line in rest.splitlines():
            self._parse(line)
        for row in self.events:
            if row.get("event") == "summary":
                return HoldResult(int(row["reads"]), [(float(t), str(e)) for t, e in row["failed"]])
        raise LabError(f"held reader {self.url} left no summary: {self.events[-5:]}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


if __name__ == "__main__":
    sys.exit(hold(sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.stdout))
