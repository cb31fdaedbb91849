"""Apply layer for NFS-Ganesha: one EXPORT per path, changed one by one over DBus.

Ganesha serves the conf files in ``ganesha.conf_dir`` (one export each, %dir-included by
ganesha.conf, so a Ganesha restart serves the last applied state: fail static), and they
are also the only record of what is in force: ``in_force`` rebuilds the managed files
from them (plan, status, explain, history and rollback read those), and nothing is
written to ``exports_dir``.  A lost or emptied state_dir therefore changes nothing here.

A managed file without lines has no export: it is kept as a comment-only record file
(``record-<file>.conf``, see render) so that its Keystone id survives a lost state_dir.

A cycle: check that Ganesha answers (nothing is written before), render and check every
block, then per changed export write its conf file atomically (temporary in
``staging_dir``, never in conf_dir: Ganesha's %dir reads hidden files too) and call
RemoveExport / UpdateExport / AddExport, reading each back with DisplayExport, then write
or remove the record files.  On any failure, every export and record file this cycle
touched is put back (conf file and DBus) and read back.
Never a SIGHUP or a full reload.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import posixpath
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Literal

from ...config import GaneshaConfig
from ...errors import ApplyError, BackendUnavailable, StateError
from ...exportsfile import ManagedFileError, parse, render
from ...fsutil import atomic_remove, atomic_write, fsync_dir
from ...ganesha_options import ClientPerms
from ...model import ExportsFile
from ...records import Record, dumps, parse_json
from .. import pending
from ..exportfs import ApplyResult
from .dbus import Displayed, GaneshaBus, GaneshaCallError, GaneshaUnreachable
from .ids import IdsExhausted, allocate, next_cursor
from .render import (
    CONF_NAME_RE,
    RECORD_NAME_RE,
    ClientBlock,
    ConfExport,
    ConfFileError,
    ExportSpec,
    blocks_of,
    clear_caches,
    conf_name,
    files_of,
    is_ours,
    parse_conf,
    parse_record,
    record_name,
    render_conf,
    render_record,
    specs_of,
)

log = logging.getLogger(__name__)

STATE_FILE = "ganesha.json"
CONF_MAX_BYTES = 1 << 20
# Ganesha's config lexer reads numbers in decimal, hex (0x3E8) and octal (01750)
_FOREIGN_ID = re.compile(r"Export_Id\s*=\s*(0x[0-9a-f]+|[0-9]+)", re.I)
_FOREIGN_PATH = re.compile(r"\b(?:Path|Pseudo)\s*=\s*\"?([^\";\s{}]+)", re.I)
_TEMP_RE = re.compile(
    r"^\.nfs-exportd\.(?:export-[0-9]+|record-[A-Za-z0-9_.-]+)\.conf\.tmp-(?P<pid>[0-9]+)$"
)


# conf_dir -> {(file name, its whole text): its strict parse}: a file is parsed again
# unless its text is exactly the text parsed before (a file changed in any way, even to
# the same size and mtime, is parsed afresh: no stale parse is ever used).  Each read of a
# conf_dir keeps only the files it found, so the cache holds one conf_dir's files; a
# cycle (scan, foreign check, apply) and the next cycles of ``run`` parse only what changed.
_PARSED: dict[Path, dict[tuple[str, str], ConfExport | ExportsFile]] = {}


class GaneshaState(Record):
    """What the backend remembers between cycles (losing it is harmless: the next cycle
    re-checks every export, and ids come from the conf files)."""

    bus_owner: str | None = None  # unique bus name of Ganesha at the last verified apply
    next_id: int | None = None  # allocation cursor: ids are not reused soon


OpKind = Literal["add", "update", "remove"]


@dataclass
class Op:
    kind: OpKind
    key: str  # which lines, for messages: "tools.exports:/srv/tools/home"
    export_id: int
    old: str | None  # conf text before this cycle (None: no file)
    new: str | None  # conf text after (None: the file goes)
    live_before: bool
    spec: ExportSpec | None  # what must be in force after (None: nothing)
    old_spec: ExportSpec | None
    why: str = ""


TAKEN_BACK = "taken back"


@dataclass
class RecordOp:
    """A record file (a managed file without lines) written or removed."""

    name: str  # its name in conf_dir: record-FILE.exports.conf
    old: str | None
    new: str | None


@dataclass
class ConfDir:
    ours: dict[str, ConfExport] = field(default_factory=dict)  # path -> its export
    texts: dict[int, str] = field(default_factory=dict)  # our Export_Id -> file text
    records: dict[str, ExportsFile] = field(default_factory=dict)  # files without lines
    record_texts: dict[str, str] = field(default_factory=dict)  # their record files' text
    foreign_ids: dict[int, str] = field(default_factory=dict)  # Export_Id -> its file
    foreign_names: set[str] = field(default_factory=set)  # files there that are not ours
    foreign_paths: dict[str, str] = field(default_factory=dict)  # Path/Pseudo -> its file


def _read_head(path: str) -> bytes:
    """A file's first CONF_MAX_BYTES, without a buffer of that size per file (conf_dir is
    read every cycle, every file): one read of its size, then small reads to the end (a
    read may return less than asked, on FUSE or when a signal interrupts it; a file may
    have grown): never a truncated text taken for the whole file."""
    with open(path, "rb", buffering=0) as fh:
        size = os.fstat(fh.fileno()).st_size
        chunks: list[bytes] = []
        n = 0
        ask = min(size + 1, CONF_MAX_BYTES)
        while n < CONF_MAX_BYTES:
            more = fh.read(ask)
            if not more:
                break
            chunks.append(more)
            n += len(more)
            ask = min(1 << 16, CONF_MAX_BYTES - n)
        return b"".join(chunks)


def _numbers(word: str) -> set[int]:
    """The Export_Id(s) a number written in a foreign file may mean to Ganesha: hex,
    octal with a leading 0 (its decimal reading too, to be safe), else decimal."""
    if len(word.lstrip("0")) > 12:
        return set()  # far above the 16-bit range (leading zeros do not count)
    if word[:2].lower() == "0x":
        return {int(word, 16)}
    out = {int(word)}
    if len(word) > 1 and word[0] == "0" and set(word) <= set("01234567"):
        out.add(int(word, 8))
    return out


@lru_cache(maxsize=65536)
def _network(client: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """A client as a network (ValueError: not one), worked out once per client string:
    every read-back compares every client of its export."""
    return ipaddress.ip_network(client, strict=False)


def forget_clients() -> None:
    """Forget what the render and the read-back remember per client string: ``run``
    keeps no addresses of cycles past (conf_dir's parses, ``_PARSED``, stay: they are
    of the files there now)."""
    _network.cache_clear()
    clear_caches()


def mismatch(spec: ExportSpec, shown: Displayed | None) -> str | None:
    """How the export Ganesha serves differs from ``spec`` (None: it matches).  Compared:
    the Path, the client list, and each client's permissions against its own CLIENT
    block.  Not compared: the Pseudo, because DisplayExport's "pseudopath" returns the
    Path in Ganesha 4.3."""
    if shown is None:
        return "is not in force"
    if shown.path != spec.path:
        return f"is in force with Path {shown.path}, not {spec.path}"
    owner = {_network(c): b for b in spec.blocks for c in b.clients}
    try:
        got = {_network(c) for c in shown.clients}
    except ValueError:
        return f"is in force with clients {', '.join(shown.clients)} (not addresses)"
    if got != set(owner):
        extra = sorted(str(c) for c in got - set(owner))
        lack = sorted(str(c) for c in set(owner) - got)
        return "is in force with other clients" + (
            (f" (also {', '.join(extra)})" if extra else "")
            + (f" (missing {', '.join(lack)})" if lack else "")
        )
    for entry in shown.raw_clients:
        try:
            block = owner[_network(str(entry[0]))]
        except (IndexError, ValueError, KeyError):
            return f"is in force with an unreadable client entry {entry!r}"
        problem = _perms_problem(block.perms, entry)
        if problem is not None:
            return f"is in force for {entry[0]} with {problem}"
    return None


# export_perms option bits, as Ganesha 4.x encodes them (nfs_exports.h), in the 9th field
# of each DisplayExport client tuple; the anonymous uid and gid are the 6th and 7th
_SQUASH_BITS = {0x0: "no_root_squash", 0x2: "root_squash", 0x4: "all_squash"}
_READ, _WRITE = 0x20, 0x40


def _perms_problem(p: ClientPerms, entry: tuple[object, ...]) -> str | None:
    """How one live client entry's permissions differ from ``p`` (None: same)."""
    try:
        opts, uid, gid = int(str(entry[8])), int(str(entry[5])), int(str(entry[6]))
    except (IndexError, ValueError):
        return f"an unreadable permission entry {entry!r}"
    access = "RW" if opts & _WRITE else ("RO" if opts & _READ else "no access")
    squash = _SQUASH_BITS.get(opts & 0x7, f"squash bits {opts & 0x7:#x}")
    if access != p.access or squash != p.squash:
        return f"{access}/{squash}, not {p.access}/{p.squash}"
    if (p.anon_uid is not None and uid != p.anon_uid) or (
        p.anon_gid is not None and gid != p.anon_gid
    ):
        return f"anonymous uid/gid {uid}/{gid}, not {p.anon_uid}/{p.anon_gid}"
    return None


def _bare(targets: Mapping[str, ExportsFile | None]) -> dict[str, ExportsFile | None]:
    """The record file each target would keep if no block of its carried it (its lines
    gone, or every one left out): the file's owner and Keystone id, no line."""
    return {n: (replace(f, lines=()) if f is not None else None) for n, f in targets.items()}


class GaneshaBackend:
    name = "ganesha"

    def __init__(
        self,
        cfg: GaneshaConfig,
        state_file: Path,
        pending_marker: Path | None = None,
        last_verified: Callable[[], Mapping[str, str] | None] | None = None,
        bus: Callable[[], GaneshaBus] | None = None,
    ) -> None:
        self.cfg = cfg
        self.conf_dir = cfg.conf_dir
        self.staging = cfg.staging
        self.state_file = state_file
        self.pending_marker = pending_marker
        self.last_verified = last_verified
        self.bus_factory = bus or (lambda: GaneshaBus(cfg.dbus_address, cfg.timeout_seconds))

    # ------------------------------------------------------------------ files
    def _unavailable(self, bus: GaneshaBus, exc: Exception) -> BackendUnavailable:
        return BackendUnavailable(
            f"Ganesha does not answer on {bus.where()} ({exc}); nothing was changed: start "
            "nfs-ganesha, or fix ganesha.dbus_address (the next cycle retries)"
        )

    def _check_dirs(self) -> None:
        for key, d in (("ganesha.conf_dir", self.conf_dir),):
            if not d.is_dir():
                raise BackendUnavailable(
                    f"{key} {d} does not exist or is not a directory; nothing was changed: "
                    "create it (owned by the daemon's user) and %dir-include it in ganesha.conf"
                )
        try:
            self.staging.mkdir(mode=0o755, exist_ok=True)
            same = os.stat(self.staging).st_dev == os.stat(self.conf_dir).st_dev
        except OSError as exc:
            raise BackendUnavailable(
                f"ganesha.staging_dir {self.staging}: {exc.strerror or exc}; nothing was "
                "changed: create it, writable by the daemon's user, beside ganesha.conf_dir"
            ) from None
        if not same:
            raise BackendUnavailable(
                f"ganesha.staging_dir {self.staging} is not on the filesystem of "
                f"ganesha.conf_dir {self.conf_dir}, so a conf file cannot be renamed in "
                "atomically; nothing was changed: name a sibling directory"
            )
        for name in os.listdir(self.staging):
            m = _TEMP_RE.match(name)
            if m and int(m["pid"]) != os.getpid():
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.staging / name)

    def read_conf_dir(self) -> ConfDir:
        """Our conf files (parsed strictly; a broken one is a StateError naming it), and
        the Export_Ids other files there name."""
        out = ConfDir()
        before = _PARSED.get(self.conf_dir, {})
        parsed: dict[tuple[str, str], ConfExport | ExportsFile] = {}
        try:
            with os.scandir(self.conf_dir) as it:  # its entries say whether each is a file
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            raise StateError(
                f"{self.conf_dir}: cannot list ganesha.conf_dir ({exc.strerror or exc}); "
                "nothing was changed: it holds the exports in force, create it or fix its "
                "permissions"
            ) from None
        for entry in entries:
            name, path = entry.name, entry.path  # a str: no Path built per file
            try:
                if not entry.is_file():
                    continue
                text = _read_head(path).decode("utf-8", errors="replace")
            except OSError as exc:
                raise StateError(f"{path}: cannot read: {exc}") from None
            if not is_ours(text):
                out.foreign_names.add(name)
                for i in _FOREIGN_ID.findall(text):
                    for n in _numbers(i):
                        out.foreign_ids.setdefault(n, name)
                for p in _FOREIGN_PATH.findall(text):
                    # "//srv/x/" and "/srv/./x" are /srv/x to Ganesha too
                    key = posixpath.normpath("/" + p.lstrip("/"))
                    out.foreign_paths.setdefault(key, name)
                continue
            known = before.get((name, text))
            if RECORD_NAME_RE.fullmatch(name):
                try:
                    f = known if isinstance(known, ExportsFile) else parse_record(name, text)
                except ConfFileError as exc:
                    raise StateError(
                        f"{self.conf_dir}/{exc}; it is not what nfs-exportd writes: remove it "
                        "by hand (it exports nothing; the next sync writes it again)"
                    ) from None
                out.records[f.filename], out.record_texts[f.filename] = f, text
                parsed[name, text] = f
                continue
            if not CONF_NAME_RE.fullmatch(name):
                raise StateError(
                    f"{path}: has the nfs-exportd header but not the name export-ID.conf "
                    "or record-FILE.exports.conf; remove it by hand (nfs-exportd never "
                    "writes such a file)"
                )
            try:
                conf = known if isinstance(known, ConfExport) else parse_conf(name, text)
            except ConfFileError as exc:
                raise StateError(
                    f"{self.conf_dir}/{exc}; Ganesha may not load it at its next start: "
                    "remove it by hand (its export stays in force; the next sync writes "
                    "the file again and takes the export back)"
                ) from None
            out.texts[conf.export_id] = text
            first = out.ours.get(conf.spec.path)
            if first is not None:
                # never pick one by name order and remove the other: which is right is
                # not known, and what is not known must not take access away
                raise StateError(
                    f"{self.conf_dir}: {first.filename} and {name} both export "
                    f"{conf.spec.path}; nothing was changed: remove the wrong one by hand "
                    "(nfs-exportd writes one file per path)"
                )
            out.ours[conf.spec.path] = conf
            parsed[name, text] = conf
        _PARSED.clear()  # one conf_dir per daemon: the cache never grows past its files
        _PARSED[self.conf_dir] = parsed
        return out

    def in_force(self, conf: ConfDir | None = None) -> dict[str, ExportsFile]:
        """The managed files in force, rebuilt from conf_dir (what Ganesha serves at its
        start and what each apply verifies live): no other record is read, so a lost or
        emptied state_dir changes nothing in Ganesha.  Files without lines come from their
        record files (with their Keystone id: a recreated project is still told apart).
        ``conf``: this cycle's read of conf_dir (default: read it now)."""
        conf = self.read_conf_dir() if conf is None else conf
        try:
            return files_of(list(conf.ours.values()), list(conf.records.values()))
        except (ConfFileError, ValueError) as exc:
            raise StateError(
                f"{self.conf_dir}/{exc}; remove the wrong file by hand (its export stays in "
                "force; the next sync writes it again)"
            ) from None

    def foreign_conflicts(self, conf: ConfDir | None = None) -> dict[str, str]:
        """Paths that a file in conf_dir that is not ours contends for -> why (naming the
        file), for a path-unsafe hold: the cycle holds them instead of failing on them
        (and so failing every change), or serving nothing with only a log line.

        - the file exports the path (as Path or Pseudo): Ganesha serves one EXPORT per
          Pseudo, so ours would be refused (and, added before, lose to it at Ganesha's
          next start);
        - the file names the Export_Id of our export of the path (decimal, hex or
          octal): at its start Ganesha serves the id for the file it reads first and
          leaves the other out, so our export is not served (or, later, theirs).

        ``conf``: this cycle's read of conf_dir (default: read it now)."""
        conf = self.read_conf_dir() if conf is None else conf
        out: dict[str, str] = {}
        for path, name in conf.foreign_paths.items():
            out[path] = (
                f"{path} is exported by {self.conf_dir / name}, a file in ganesha.conf_dir "
                "that is not nfs-exportd's (Ganesha serves one EXPORT per path): remove "
                "that export, or stop serving this volume here"
            )
        for c in sorted(conf.ours.values(), key=lambda c: c.export_id):
            other = conf.foreign_ids.get(c.export_id)
            if other is not None and c.spec.path not in out:
                out[c.spec.path] = (
                    f"Export_Id {c.export_id} of nfs-exportd's export of {c.spec.path} "
                    f"({self.conf_dir / c.filename}) is also named by {self.conf_dir / other}, "
                    "a file in ganesha.conf_dir that is not nfs-exportd's (Ganesha serves "
                    "one export per id, from the file it reads first): give that export an "
                    "Export_Id outside ganesha.export_id_min..export_id_max"
                )
        return out

    def _write_conf(self, export_id: int, text: str) -> None:
        self._write_file(conf_name(export_id), text)

    def _write_file(self, name: str, text: str) -> None:
        """Atomically: temporary in staging_dir (same filesystem), fsync, rename in."""
        final = self.conf_dir / name
        tmp = self.staging / f".nfs-exportd.{final.name}.tmp-{os.getpid()}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                os.write(fd, text.encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, final)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        fsync_dir(self.conf_dir)

    def _remove_conf(self, export_id: int) -> None:
        self._remove_file(conf_name(export_id))

    def _remove_file(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            atomic_remove(self.conf_dir / name)

    def _put(self, name: str, text: str | None) -> None:
        """A file of ours in conf_dir becomes ``text`` (None: it goes)."""
        if text is None:
            self._remove_file(name)
        else:
            self._write_file(name, text)

    def _load_state(self) -> GaneshaState:
        try:
            return parse_json(
                self.state_file.read_text(encoding="utf-8"), self.state_file, GaneshaState, "state"
            )
        except FileNotFoundError:
            return GaneshaState()
        except (OSError, UnicodeDecodeError, StateError) as exc:
            log.warning("%s: %s; every export is checked afresh", self.state_file, exc)
            return GaneshaState()

    def _save_state(self, state: GaneshaState) -> None:
        try:
            atomic_write(self.state_file, dumps(state))
        except OSError as exc:  # harmless: the next cycle re-checks every export
            log.warning(
                "%s: cannot save (%s); the next cycle re-checks every export", self.state_file, exc
            )

    def _clear_marker(self) -> None:
        if self.pending_marker is not None:
            with contextlib.suppress(FileNotFoundError):
                atomic_remove(self.pending_marker)

    @staticmethod
    def _desired(targets: Mapping[str, ExportsFile | None], conf: ConfDir) -> dict[str, ExportSpec]:
        """path -> what must be served: the targets' lines, and the blocks in force of
        records that are not targets (adopt, rollback apply some files only)."""
        blocks: dict[str, list[ClientBlock]] = {}
        for c in conf.ours.values():
            for b in c.spec.blocks:
                if b.record not in targets:
                    blocks.setdefault(c.spec.path, []).append(b)
        for f in targets.values():
            if f is not None:
                for path, b in blocks_of(f).items():  # RenderRefused: nothing done
                    blocks.setdefault(path, []).append(b)
        return specs_of(blocks)

    # ------------------------------------------------------------------ apply
    def apply(
        self,
        targets: Mapping[str, ExportsFile | None],
        current_raw: Mapping[str, str],
        missing_paths: frozenset[str] = frozenset(),
    ) -> ApplyResult:
        """Bring Ganesha and conf_dir to ``targets``; on failure undo this cycle's
        changes, read them back, and raise ApplyError (BackendUnavailable when Ganesha
        cannot be reached before anything changed).  ``current_raw`` (the files in force,
        as ``in_force`` rebuilt them) only says which files changed, for the summary."""
        new_text = {n: (render(f) if f is not None else None) for n, f in targets.items()}
        changed = {n: t for n, t in new_text.items() if t != current_raw.get(n)}
        self._check_dirs()
        conf = self.read_conf_dir()
        desired = self._desired(targets, conf)
        state = self._load_state()
        likely = self._likely_ids(desired, conf, state)
        # every block that changes is rendered, parsed back and checked before any DBus
        # call (a new path under the id it will most likely get); an export equal to its
        # conf file, parsed strictly, is what conf_dir holds already
        rendered: dict[str, tuple[int, str]] = {}
        for path, spec in desired.items():
            old = conf.ours.get(path)
            if old is None or old.spec != spec:
                export_id = old.export_id if old is not None else likely.get(path, 1)
                rendered[path] = (export_id, render_conf(spec, export_id))
        bare = _bare(targets)
        # and every record file that may be written: of a target no export carries
        carried = {b.record for spec in desired.values() for b in spec.blocks}
        record_texts = {
            name: render_record(f)
            for name, f in bare.items()
            if f is not None and name not in carried
        }
        bus = self.bus_factory()
        try:
            return self._apply(
                bus, changed, desired, rendered, (bare, record_texts), conf, missing_paths, state
            )
        finally:
            bus.close()

    def _apply(
        self,
        bus: GaneshaBus,
        changed: Mapping[str, str | None],
        desired: Mapping[str, ExportSpec],
        rendered: Mapping[str, tuple[int, str]],
        records_of: tuple[Mapping[str, ExportsFile | None], Mapping[str, str]],
        conf: ConfDir,
        missing_paths: frozenset[str],
        state: GaneshaState,
    ) -> ApplyResult:
        interrupted = pending.interrupted(self.pending_marker) if self.pending_marker else None
        try:
            owner = bus.owner()
            live = bus.show()
        except (GaneshaUnreachable, GaneshaCallError) as exc:
            raise self._unavailable(bus, exc) from None
        full = ""
        failure = (
            pending.failure(self.pending_marker) if interrupted and self.pending_marker else None
        )
        if failure:
            full = (
                f"the last apply ({interrupted}) failed and its undo was not verified ({failure})"
            )
        elif interrupted:
            full = f"the last apply ({interrupted}) was interrupted before it was verified"
        elif state.bus_owner is None:
            full = "no earlier verified apply is remembered"
        elif state.bus_owner != owner:
            full = f"Ganesha restarted (bus name {state.bus_owner} -> {owner})"
        if full:
            log.warning("%s: checking every export of ours with DisplayExport", full)
        try:
            ops, cursor = self._plan_ops(
                bus, desired, rendered, conf, live, missing_paths, state, bool(full)
            )
        except IdsExhausted as exc:
            raise ApplyError(str(exc)) from None
        except (GaneshaUnreachable, GaneshaCallError) as exc:
            raise self._unavailable(bus, exc) from None
        records = _record_ops(*records_of, conf, ops)
        result = ApplyResult()
        for name, text in sorted(changed.items()):
            (result.removed if text is None else result.written).append(name)
        if not ops and not records:
            result.summary = "ganesha: nothing to change over DBus"
            if full or state.next_id != cursor:
                self._save_state(GaneshaState(bus_owner=owner, next_id=cursor))
            self._clear_marker()
            return result
        if self.pending_marker is not None:
            try:
                pending.write(self.pending_marker)
            except OSError as exc:
                raise ApplyError(
                    f"{self.pending_marker}: cannot write the apply-pending marker "
                    f"({exc.strerror or exc}): nothing changed; free space in state_dir"
                ) from None
        done: list[Op] = []
        put: list[RecordOp] = []
        try:
            for op in ops:
                done.append(op)
                self._do(bus, op)
            # after the exports: a file's blocks carry its Keystone id until then
            for rec in records:
                put.append(rec)
                self._put(rec.name, rec.new)
        except (OSError, GaneshaUnreachable, GaneshaCallError, ApplyError) as exc:
            what = _describe(exc, done[-1] if done and not put else None)
            undo = self._undo(bus, done, put)
            raise ApplyError(f"{what}; {undo}") from None
        result.ran_exportfs = True
        result.summary = _summary(ops, records)
        self._save_state(GaneshaState(bus_owner=owner, next_id=cursor))
        self._clear_marker()
        return result

    def _likely_ids(
        self, desired: Mapping[str, ExportSpec], conf: ConfDir, state: GaneshaState
    ) -> dict[str, int]:
        """The ids ``_plan_ops`` will most likely give the new paths: its allocation
        without the ids only Ganesha knows of (it is asked later).  A new export is then
        rendered once; one whose id turns out taken is rendered again under its own."""
        low, high = self.cfg.export_id_min, self.cfg.export_id_max
        ours_ids = {c.export_id for c in conf.ours.values()}
        new_paths = sorted(p for p in desired if p not in conf.ours and p not in conf.foreign_paths)
        cursor = next_cursor(state.next_id, ours_ids, low, high)
        try:
            fresh, _ = allocate(len(new_paths), ours_ids | set(conf.foreign_ids), low, high, cursor)
        except IdsExhausted:
            return {}  # _plan_ops says so, after Ganesha answered
        return dict(zip(new_paths, fresh, strict=True))

    def _plan_ops(
        self,
        bus: GaneshaBus,
        desired: Mapping[str, ExportSpec],
        rendered: Mapping[str, tuple[int, str]],
        conf: ConfDir,
        live: Mapping[int, str],
        missing_paths: frozenset[str],
        state: GaneshaState,
        full: bool,
    ) -> tuple[list[Op], int]:
        """What to do, in order (removals, updates, additions); ids allocated (a path
        keeps its id for as long as its conf file exists), no change.  ``rendered``: the
        conf texts apply checked, by path (rendered again only under another id)."""
        ours_ids = {c.export_id for c in conf.ours.values()}
        taken = ours_ids | set(live) | set(conf.foreign_ids)
        # a path a foreign file in conf_dir exports: no new id, no AddExport (refused)
        foreign = {p for p in desired if p in conf.foreign_paths}
        new_paths = sorted(p for p in desired if p not in conf.ours and p not in foreign)
        # ids in force for the path of our file: an id of ours that Ganesha serves for
        # another path was taken by a foreign file at its start, and is never touched
        path_of = {c.export_id: c.spec.path for c in conf.ours.values()}
        mine = {i for i, p in live.items() if path_of.get(i) == p}
        lost = self._lost_conf_files(new_paths, conf, live)
        new_paths = [p for p in new_paths if p not in lost]
        cursor = next_cursor(
            state.next_id, ours_ids, self.cfg.export_id_min, self.cfg.export_id_max
        )
        fresh, cursor = allocate(
            len(new_paths), taken, self.cfg.export_id_min, self.cfg.export_id_max, cursor
        )
        ids = dict(zip(new_paths, fresh, strict=True))
        ids.update(lost)
        removes: list[Op] = []
        updates: list[Op] = []
        adds: list[Op] = []
        for path, c in sorted(conf.ours.items()):
            if path not in desired:
                text = conf.texts[c.export_id]
                removes.append(
                    Op(
                        "remove",
                        str(c.spec),
                        c.export_id,
                        text,
                        None,
                        c.export_id in mine,
                        None,
                        c.spec,
                    )
                )
        for path, spec in sorted(desired.items()):
            old_conf = conf.ours.get(path)
            if path in foreign and (old_conf is None or old_conf.export_id not in mine):
                log.warning(
                    "%s is exported by %s, a file in ganesha.conf_dir that is not ours; "
                    "our export of it is left out (Ganesha serves one EXPORT per path)",
                    path,
                    conf.foreign_paths[path],
                )
                continue
            export_id = old_conf.export_id if old_conf else ids[path]
            if old_conf is not None and export_id in live and export_id not in mine:
                log.warning(
                    "Export_Id %d of our export of %s is in force for %s: a file in "
                    "ganesha.conf_dir that is not ours names it; our export is left out",
                    export_id,
                    path,
                    live[export_id],
                )
                continue
            old = conf.texts.get(export_id) if old_conf else None
            pre = rendered.get(path)
            if pre is not None and pre[0] == export_id:
                text = pre[1]
            elif pre is None and old is not None:
                # the same spec as its conf file, whose strict parse is exactly this text
                # (rendered again below if it goes to Ganesha)
                text = old
            else:
                text = render_conf(spec, export_id)
            is_live = export_id in mine
            old_spec = old_conf.spec if old_conf else None
            if path in lost:
                # its conf file was lost while Ganesha serves it: write it again and
                # update the export (what it served is not known: an undo leaves it)
                log.warning(
                    "Ganesha export %d (%s) is in force but its conf file %s is missing; "
                    "taking it back",
                    export_id,
                    path,
                    conf_name(export_id),
                )
                updates.append(
                    Op("update", str(spec), export_id, None, text, True, spec, None, TAKEN_BACK)
                )
                continue
            if path in missing_paths and (old != text or not is_live):
                log.warning(
                    "path %s does not exist; its Ganesha export %s is left as it is",
                    path,
                    export_id,
                )
                continue
            if old != text:
                kind: OpKind = "update" if is_live else "add"
                (updates if is_live else adds).append(
                    Op(kind, str(spec), export_id, old, text, is_live, spec, old_spec)
                )
            elif not is_live:
                log.warning("Ganesha export %d (%s) is not in force; re-adding it", export_id, spec)
                text = render_conf(spec, export_id)  # checked before it goes to Ganesha
                adds.append(
                    Op("add", str(spec), export_id, old, text, False, spec, old_spec, "re-added")
                )
            elif full:
                problem = mismatch(spec, bus.display(export_id))
                if problem is not None:
                    log.warning("Ganesha export %d (%s) %s; updating it", export_id, spec, problem)
                    text = render_conf(spec, export_id)
                    updates.append(
                        Op(
                            "update",
                            str(spec),
                            export_id,
                            old,
                            text,
                            True,
                            spec,
                            old_spec,
                            "repaired",
                        )
                    )
        return removes + updates + adds, cursor

    def _lost_conf_files(
        self, new_paths: list[str], conf: ConfDir, live: Mapping[int, str]
    ) -> dict[str, int]:
        """Exports of ours whose conf file was lost (removed by hand, conf_dir wiped)
        while Ganesha still serves them: the one live id in our range that no file in
        conf_dir names, serving a path to export.  Without this, a new id would be added
        for the same Path, which Ganesha refuses (one Pseudo), every cycle, while the lost
        export keeps serving its old clients."""
        low, high = self.cfg.export_id_min, self.cfg.export_id_max
        claimed = {c.export_id for c in conf.ours.values()}
        claimed |= set(conf.foreign_ids)
        strays: dict[str, list[int]] = {}
        for export_id, path in live.items():
            if low <= export_id <= high and export_id not in claimed:
                strays.setdefault(path, []).append(export_id)
        return {p: strays[p][0] for p in new_paths if len(strays.get(p, ())) == 1}

    def _do(self, bus: GaneshaBus, op: Op) -> None:
        """One export changed and read back; raises on any failure (the caller undoes)."""
        conf = str(self.conf_dir / conf_name(op.export_id))
        if op.kind == "remove":
            if op.live_before:
                bus.remove(op.export_id)
            shown = bus.display(op.export_id)
            if shown is not None and (op.old_spec is None or shown.path == op.old_spec.path):
                raise ApplyError(
                    f"Ganesha export {op.export_id} ({op.key}) is still in force after RemoveExport"
                )
            self._remove_conf(op.export_id)  # only now may its id be given to another
            return
        assert op.new is not None and op.spec is not None
        self._write_conf(op.export_id, op.new)
        if op.kind == "update":
            bus.update(conf, op.export_id)
        else:
            bus.add(conf, op.export_id)
        problem = mismatch(op.spec, bus.display(op.export_id))
        if problem is not None:
            raise ApplyError(
                f"read-back of Ganesha export {op.export_id} ({op.key}) failed: it {problem}"
            )

    def _undo(self, bus: GaneshaBus, done: list[Op], put: list[RecordOp] | None = None) -> str:
        """Put back every record file and export this cycle touched (conf file, then
        DBus, read back); say how that went."""
        failed: list[str] = []
        for rec in reversed(put or []):
            try:
                self._put(rec.name, rec.old)
            except OSError as exc:
                failed.append(f"{rec.name}: {exc}")
        gone: GaneshaUnreachable | None = None  # once Ganesha stopped answering
        for op in reversed(done):
            try:
                if op.old is None:
                    self._remove_conf(op.export_id)
                else:
                    self._write_conf(op.export_id, op.old)
            except OSError as exc:
                failed.append(f"{conf_name(op.export_id)}: {exc}")
                continue
            if op.why == TAKEN_BACK:
                # what it served before is not known (its file was lost): it keeps serving
                # what it serves; its file is lost again, and the next sync takes it back
                continue
            if gone is not None:
                # its file is back; asking a server that does not answer would cost a
                # full timeout per export (days at 5,000), with the state lock held
                failed.append(f"export {op.export_id} ({op.key}): not checked ({gone})")
                continue
            try:
                shown = bus.display(op.export_id)
                ours = op.old_spec or op.spec
                if shown is not None and ours is not None and shown.path != ours.path:
                    continue  # the id is in force for another path: not ours to touch
                # in force before this cycle: its old self; else nothing
                want = op.old_spec if op.live_before else None
                if want is None:
                    if shown is not None:
                        bus.remove(op.export_id)
                    if bus.display(op.export_id) is not None:
                        failed.append(f"export {op.export_id} ({op.key}) is still in force")
                    continue
                if mismatch(want, shown) is None:
                    continue
                conf = str(self.conf_dir / conf_name(op.export_id))
                if shown is None:
                    bus.add(conf, op.export_id)
                else:
                    bus.update(conf, op.export_id)
                problem = mismatch(want, bus.display(op.export_id))
                if problem is not None:
                    failed.append(f"export {op.export_id} ({op.key}) {problem}")
            except GaneshaUnreachable as exc:
                gone = exc
                failed.append(f"export {op.export_id} ({op.key}): {exc}")
            except GaneshaCallError as exc:
                failed.append(f"export {op.export_id} ({op.key}): {exc}")
        if failed:
            log.error("UNDO FAILED: the exports in force are not a verified state")
            if self.pending_marker is not None:  # the next cycle says "failed", not "interrupted"
                pending.mark_failed(self.pending_marker, failed[0])
            return (
                "UNDO FAILED: " + "; ".join(failed[:5]) + "; the conf files of this cycle's "
                "exports are back as they were (Ganesha serves them at its next start), but what "
                "is in force is not verified: fix the cause, then run sync (it re-checks every "
                "export)"
            )
        self._clear_marker()
        return (
            f"restored the previous exports ({len(done)} Ganesha exports), re-applied them "
            "over DBus and verified them in force"
        )

    # ------------------------------------------------------------------ read back, undo
    def read_back(
        self, targets: Mapping[str, ExportsFile | None], missing_paths: frozenset[str] = frozenset()
    ) -> list[str]:
        """How Ganesha and conf_dir differ from ``targets`` (empty: they match)."""
        conf = self.read_conf_dir()
        desired = self._desired(targets, conf)
        problems: list[str] = []
        with self.bus_factory() as bus:
            try:
                for path, spec in sorted(desired.items()):
                    if path in missing_paths:
                        continue
                    c = conf.ours.get(path)
                    if c is None:
                        problems.append(f"{spec}: no conf file in {self.conf_dir}")
                        continue
                    if conf.texts[c.export_id] != render_conf(spec, c.export_id):
                        problems.append(f"{spec}: {conf_name(c.export_id)} says otherwise")
                    problem = mismatch(spec, bus.display(c.export_id))
                    if problem is not None:
                        problems.append(f"{spec}: Ganesha export {c.export_id} {problem}")
                for path, c in sorted(conf.ours.items()):
                    if path not in desired:
                        problems.append(f"{c.spec}: Ganesha export {c.export_id} is still there")
                carried = {b.record for c in conf.ours.values() for b in c.spec.blocks}
                for name, f in sorted(_bare(targets).items()):
                    want = render_record(f) if f is not None and name not in carried else None
                    have = conf.record_texts.get(name)
                    if have != want:
                        what = "says otherwise" if have and want else "is missing"
                        if want is None:
                            what = "is still there"
                        problems.append(f"{name}: record file {record_name(name)} {what}")
            except (GaneshaUnreachable, GaneshaCallError) as exc:
                problems.append(str(self._unavailable(bus, exc)))
        return problems

    def undo(
        self, current_raw: Mapping[str, str], missing_paths: frozenset[str] = frozenset()
    ) -> str:
        """Return to the last verified files (or ``current_raw`` without them), applied."""
        verified = self.last_verified() if self.last_verified is not None else None
        base = dict(verified) if verified is not None else dict(current_raw)
        goal: dict[str, ExportsFile | None] = {n: None for n in current_raw}
        for name, text in base.items():
            try:
                goal[name] = parse(name, text)
            except ManagedFileError as exc:
                return f"UNDO FAILED: {exc}"
        try:
            self.apply(goal, current_raw, missing_paths)
        except ApplyError as exc:
            return f"UNDO FAILED: {exc}"
        return "returned to the last verified files, applied them over DBus and verified them"


def _describe(exc: BaseException, op: Op | None) -> str:
    where = f" of Ganesha export {op.export_id} ({op.key})" if op else ""
    if isinstance(exc, GaneshaUnreachable):
        return f"Ganesha stopped answering during the {op.kind if op else 'apply'}{where}: {exc}"
    if isinstance(exc, GaneshaCallError):
        return f"Ganesha refused the {op.kind if op else 'change'}{where}: {exc}"
    if isinstance(exc, OSError):
        return f"cannot write {getattr(exc, 'filename', '') or 'a file'}: {exc.strerror or exc}"
    return str(exc)


def _record_ops(
    bare: Mapping[str, ExportsFile | None],
    checked: Mapping[str, str],
    conf: ConfDir,
    ops: list[Op],
) -> list[RecordOp]:
    """The record files to write or remove once ``ops`` are done: a target that no
    block carries after them keeps one (its owner and Keystone id); the others have
    none.  Record files of files that are not targets stay as they are.  ``checked``:
    the record texts apply rendered and checked already, by file name."""
    after: dict[int, ExportSpec | None] = {c.export_id: c.spec for c in conf.ours.values()}
    for op in ops:
        after[op.export_id] = op.spec
    carried = {b.record for spec in after.values() if spec is not None for b in spec.blocks}
    out: list[RecordOp] = []
    for name, f in sorted(bare.items()):
        new: str | None = None
        if f is not None and name not in carried:
            new = checked.get(name) or render_record(f)
        old = conf.record_texts.get(name)
        if new is not None and record_name(name) in conf.foreign_names:
            log.warning(
                "%s in ganesha.conf_dir is not nfs-exportd's: the record of %s (no line) "
                "is not written there; rename that file",
                record_name(name),
                name,
            )
        elif new != old:
            out.append(RecordOp(record_name(name), old, new))
    return out


def _summary(ops: list[Op], records: list[RecordOp]) -> str:
    if ops:
        n = {k: sum(1 for o in ops if o.kind == k) for k in ("add", "update", "remove")}
        out = f"ganesha: {n['add']} added, {n['update']} updated, {n['remove']} removed over DBus"
    else:
        out = "ganesha: nothing to change over DBus"
    if records:
        written = sum(1 for r in records if r.new is not None)
        out += f"; record files of files without exports: {written} written, "
        out += f"{len(records) - written} removed"
    return out
