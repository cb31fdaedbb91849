"""The NFS servers' refusal lines, read once from the window's start.

Where they come from (``diagnose.sources``):

* NFS-Ganesha's log file (``ganesha.nfsd -L FILE``), lines such as
  ``06/12/2026 05:10:40 : epoch 6b14ee4b : host : nfs-ganesha-10489[svc_4]
  nfs4_export_check_access :NFS4 :INFO :Access not allowed on Export_Id 101 /p for client
  ::ffff:198.51.100.129``.  The tag is ``:NFS3``/``:NFS4`` or ``:EXPORT`` depending on the
  log components enabled; all forms are accepted.  They are INFO: at Ganesha's default
  level (EVENT) there are none (see ``ganesha_log_levels``).
* rpc.mountd: ``refused mount request from IP for PATH (PATH): unmatched host`` (or
  ``not exported``), in a syslog file (RFC 3339 or BSD time stamps, ``<PRI>`` datagrams
  too), in its stderr under ``-F`` (``rpc.mountd: ...``, no time), or in the journal.
* The journal: ``journalctl -o json`` by unit (``-u``) or by ``SYSLOG_IDENTIFIER``
  (``-t``), from the window's start (``--since @EPOCH``).

A file is read once: a binary search on its time stamps finds the window's start (when
its lines carry times), then only lines that contain a refusal marker are parsed, so a
log of a million lines takes about a second (bench/diagnose.py).
"""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
import json
import os
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from ..config import DiagnoseSource
from ..decide.diagnose import Refusal, SourceReport

# -- the lines --------------------------------------------------------------------------

MARKERS = (b"not allow", b"refused mount request")
_G_MOUNT = re.compile(r"MOUNT: Export entry (\S+) does not allow access for client (\S+)")
_G_V4 = re.compile(r"Access not allowed on Export_Id (\d+) (\S+) for client (\S+)")
_G_OP = re.compile(r"Client (\S+) is not allowed to access Export_Id (\d+) (\S+?), vers=(\d+)")
_MOUNTD = re.compile(r"refused mount request from (\S+) for (\S+) \(([^)]*)\): (.+?)\s*$")
_GANESHA_TIME = re.compile(rb"^(\d\d)/(\d\d)/(\d{4}) (\d\d):(\d\d):(\d\d) ")
_ISO_TIME = re.compile(
    rb"^(?:<\d+>)?(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?) "
)
_BSD_TIME = re.compile(rb"^(?:<\d+>)?([A-Z][a-z]{2}) +(\d{1,2}) (\d\d):(\d\d):(\d\d) ")
_BYTES_MESSAGE = re.compile(rb'"MESSAGE"\s*:\s*\[')
_MONTHS = {m: i for i, m in enumerate(
    (b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
     b"Dec"), 1)}  # fmt: skip


@functools.lru_cache(maxsize=65536)
def canonical(address: str) -> str | None:
    """Ganesha's ``::ffff:198.51.100.129`` -> ``198.51.100.129``; None if not an address."""
    try:
        ip = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def parse_message(text: str, when: float | None) -> Refusal | None:
    """One refusal from a line or a journal MESSAGE (any prefix), or None."""
    if "refused mount request" in text:
        m = _MOUNTD.search(text)
        if m is None:
            return None
        addr = canonical(m.group(1))
        return Refusal(when, "rpc.mountd", addr, m.group(2), m.group(4)) if addr else None
    if "does not allow access" in text:
        m = _G_MOUNT.search(text)
        if m is None:
            return None
        addr = canonical(m.group(2))
        return Refusal(when, "ganesha", addr, m.group(1), "v3-mount") if addr else None
    if "Access not allowed on Export_Id" in text:
        m = _G_V4.search(text)
        if m is None:
            return None
        addr = canonical(m.group(3))
        return Refusal(when, "ganesha", addr, m.group(2), "v4", int(m.group(1))) if addr else None
    if "is not allowed to access Export_Id" in text:
        m = _G_OP.search(text)
        if m is None:
            return None
        addr = canonical(m.group(1))
        kind = f"v{m.group(4)}-op"
        return Refusal(when, "ganesha", addr, m.group(3), kind, int(m.group(2))) if addr else None
    return None


@functools.lru_cache(maxsize=65536)
def _template(message: bytes) -> Refusal | None:
    return parse_message(message.decode("utf-8", "replace"), None)


class LineClock:
    """The time stamp at the start of a log line (Ganesha's local ``DD/MM/YYYY HH:MM:SS``,
    RFC 3339, or BSD syslog ``Mmm dd HH:MM:SS`` whose year is guessed: the last one that
    does not put the line in the future), cached per second of text."""

    def __init__(self, now: float) -> None:
        self.now = now
        self._cache: dict[bytes, float | None] = {}

    def __call__(self, line: bytes) -> float | None:
        key = line[:32]
        hit = self._cache.get(key, -1.0)
        if hit != -1.0:
            return hit
        t = self._parse(line)
        if len(self._cache) > 4096:
            self._cache.clear()
        self._cache[key] = t
        return t

    def _parse(self, line: bytes) -> float | None:
        m = _GANESHA_TIME.match(line)
        if m:
            d, mo, y, hh, mm, ss = (int(x) for x in m.groups())
            try:
                return time.mktime((y, mo, d, hh, mm, ss, 0, 0, -1))
            except (OverflowError, ValueError):
                return None
        m = _ISO_TIME.match(line)
        if m:
            try:
                stamp = dt.datetime.fromisoformat(m.group(1).decode().replace("Z", "+00:00"))
            except ValueError:
                return None
            return stamp.timestamp()
        m = _BSD_TIME.match(line)
        if m:
            month = _MONTHS.get(m.group(1))
            if month is None:
                return None
            day, hh, mm, ss = (int(x) for x in m.groups()[1:])
            year = time.localtime(self.now).tm_year
            for y in (year, year - 1):
                try:
                    t = time.mktime((y, month, day, hh, mm, ss, 0, 0, -1))
                except (OverflowError, ValueError):
                    return None
                if t <= self.now + 86400:
                    return t
        return None


# -- a file -----------------------------------------------------------------------------

BISECT_STOP = 1 << 16  # read sequentially once the window's start is this close
BISECT_MARGIN = 300.0  # seconds: threads log slightly out of order


def _first_time_after(f: BinaryIO, offset: int, clock: LineClock) -> tuple[float | None, int]:
    """(time of the first dated line starting after ``offset``, that line's offset)."""
    f.seek(offset)
    if offset:
        f.readline()  # a partial line
    for _ in range(64):
        pos = f.tell()
        line = f.readline()
        if not line:
            return None, pos
        t = clock(line)
        if t is not None:
            return t, pos
    return None, f.tell()


def window_start(f: BinaryIO, size: int, since: float, clock: LineClock) -> int:
    """An offset at or before the first line of the window (0 when lines are undated)."""
    lo, hi = 0, size
    target = since - BISECT_MARGIN
    first, _ = _first_time_after(f, 0, clock)
    if first is None or first >= target:
        return 0
    while hi - lo > BISECT_STOP:
        mid = (lo + hi) // 2
        t, _pos = _first_time_after(f, mid, clock)
        if t is None or t >= target:
            hi = mid
        else:
            lo = mid
    return lo


@dataclass
class FileRead:
    refusals: list[Refusal]
    report: SourceReport


def read_file(path: Path, since: float, now: float, name: str | None = None) -> FileRead:
    """Refusals in ``path`` at or after ``since`` (undated lines: all of them)."""
    name = name or f"file:{path}"
    clock = LineClock(now)
    out: list[Refusal] = []
    lines = undated = 0
    try:
        with path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            start = window_start(f, size, since, clock)
            f.seek(start)
            if start:
                f.readline()
            m0, m1 = MARKERS
            for line in f:
                lines += 1
                if m0 not in line and m1 not in line:
                    continue
                t = clock(line)
                if t is not None and t < since:
                    continue
                # the message without its time stamp repeats (a client retrying): parse
                # each distinct one once
                i = line.find(b"refused mount request")
                if i < 0:
                    i = line.find(b" :INFO :")
                tmpl = _template(line[i:] if i > 0 else line)
                if tmpl is not None:
                    undated += t is None
                    out.append(
                        Refusal(t, tmpl.server, tmpl.address, tmpl.path, tmpl.kind, tmpl.export_id)
                    )
    except OSError as exc:
        return FileRead([], SourceReport(name, error=f"cannot read {path}: {exc.strerror or exc}"))
    return FileRead(out, SourceReport(name, lines, len(out), undated))


# -- the journal ------------------------------------------------------------------------


def journal_argv(src: DiagnoseSource, since: float, command: str = "journalctl") -> list[str]:
    argv = [command, "-o", "json", "--no-pager", "-q", "--since", f"@{int(since)}"]
    if src.directory is not None:
        argv += ["-D", str(src.directory)]
    if src.unit:
        argv += ["-u", src.unit]
    if src.identifier:
        argv += ["-t", src.identifier]
    return argv


def parse_journal(records: Iterator[bytes], since: float) -> tuple[list[Refusal], int]:
    """Refusals in ``journalctl -o json`` output (one record per line); lines read."""
    out: list[Refusal] = []
    n = 0
    m0, m1 = MARKERS
    for raw in records:
        n += 1
        if m0 not in raw and m1 not in raw and not _BYTES_MESSAGE.search(raw):
            continue  # (a non-UTF-8 MESSAGE is an array of numbers: no marker to see)
        try:
            rec: Any = json.loads(raw)
        except ValueError:
            continue
        if not isinstance(rec, dict):
            continue
        msg = rec.get("MESSAGE")
        if isinstance(msg, list):  # journald sends non-UTF-8 messages as byte arrays
            msg = bytes(b for b in msg if isinstance(b, int) and 0 <= b < 256).decode(
                "utf-8", "replace"
            )
        if not isinstance(msg, str):
            continue
        try:
            t: float | None = int(rec["__REALTIME_TIMESTAMP"]) / 1e6
        except (KeyError, TypeError, ValueError):
            t = None
        if t is not None and t < since:
            continue
        r = parse_message(msg, t)
        if r is not None:
            out.append(r)
    return out, n


def read_journal(
    src: DiagnoseSource, since: float, timeout: float, command: str = "journalctl"
) -> FileRead:
    name = src.label()
    argv = journal_argv(src, since, command)
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as exc:
        return FileRead([], SourceReport(name, error=f"cannot run {argv[0]}: {exc.strerror}"))
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    # stderr is drained beside stdout: a journalctl that warns a lot (unreadable journal
    # files) would otherwise fill its pipe, stop, and look like a timeout
    errs: list[bytes] = []
    assert proc.stdout is not None and proc.stderr is not None
    drain = threading.Thread(target=lambda f=proc.stderr: errs.append(f.read()), daemon=True)
    drain.start()
    try:
        refusals, n = parse_journal(iter(proc.stdout), since)
        rc = proc.wait()
        drain.join()
    finally:
        timer.cancel()
    err = b"".join(errs).decode("utf-8", "replace").strip()
    if rc != 0:
        why = err.splitlines()[-1] if err else f"exit {rc}"
        if rc < 0:
            why = f"no answer within {timeout:g} s"
        return FileRead(
            [], SourceReport(name, n, error=f"{' '.join(argv)}: {why} (is the user in group adm?)")
        )
    return FileRead(refusals, SourceReport(name, n, len(refusals)))


def read_source(src: DiagnoseSource, since: float, now: float, timeout: float) -> FileRead:
    if src.kind == "file":
        assert src.path is not None  # the config model requires it
        return read_file(src.path, since, now, src.label())
    return read_journal(src, since, timeout)


# -- Ganesha's log levels ---------------------------------------------------------------

LOG_COMPONENTS = ("COMPONENT_EXPORT", "COMPONENT_NFSPROTO", "COMPONENT_NFS_V4")


def ganesha_log_levels(
    dbus_address: str, timeout: float, components: tuple[str, ...] = LOG_COMPONENTS
) -> dict[str, str] | str:
    """{component: "NIV_INFO", ...} as Ganesha says over DBus, or why it could not say."""
    result: dict[str, str] = {}
    problem: list[str] = []

    def ask() -> None:
        from jeepney import DBusAddress, new_method_call
        from jeepney.io.blocking import open_dbus_connection
        from jeepney.wrappers import unwrap_msg

        admin = DBusAddress(
            "/org/ganesha/nfsd/admin",
            bus_name="org.ganesha.nfsd",
            interface="org.freedesktop.DBus.Properties",
        )
        try:
            bus = "SYSTEM" if dbus_address == "system" else dbus_address
            with open_dbus_connection(bus) as conn:
                for comp in components:
                    msg = new_method_call(
                        admin, "Get", "ss", ("org.ganesha.nfsd.log.component", comp)
                    )
                    reply = unwrap_msg(conn.send_and_get_reply(msg, timeout=timeout))
                    value = reply[0]
                    result[comp] = str(value[1] if isinstance(value, tuple) else value)
        except Exception as exc:  # any failure is reported, never raised: diagnose goes on
            problem.append(f"{type(exc).__name__}: {exc}")

    worker = threading.Thread(target=ask, daemon=True)
    worker.start()
    worker.join(timeout + 1)
    if worker.is_alive():
        return f"no answer from Ganesha over DBus within {timeout:g} s"
    if problem:
        return problem[0]
    return result
