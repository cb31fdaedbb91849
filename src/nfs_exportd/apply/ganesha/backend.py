"""Apply layer for NFS-Ganesha: one EXPORT per managed line, changed one by one over DBus.

The managed files in ``exports_dir`` stay the record of what is in force (read by plan,
status, explain, history, rollback as with exportfs); no server reads them.  Ganesha
serves the conf files in ``ganesha.conf_dir`` (one export each, %dir-included by
ganesha.conf, so a Ganesha restart serves the last applied state: fail static).

A cycle: check that Ganesha answers (nothing is written before), render and check every
block, then write the records, and per changed export write its conf file atomically
(temporary in ``staging_dir``, never in conf_dir: Ganesha's %dir reads hidden files too)
and call RemoveExport / UpdateExport / AddExport, reading each back with DisplayExport.
On any failure, every export this cycle touched is put back (conf file and DBus), read
back, and the records are restored.  Never a SIGHUP or a full reload.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ...config import GaneshaConfig
from ...errors import ApplyError, BackendUnavailable, StateError
from ...exportsfile import ManagedFileError, RenderRefused, parse, render
from ...fsutil import atomic_remove, atomic_write, fsync_dir
from ...model import ExportsFile
from ...records import Record, dumps, parse_json
from .. import pending
from ..exportfs import ApplyResult
from .dbus import Displayed, GaneshaBus, GaneshaCallError, GaneshaUnreachable
from .ids import IdsExhausted, allocate, next_cursor
from .render import (
    CONF_NAME_RE,
    ConfExport,
    ConfFileError,
    ExportKey,
    ExportSpec,
    conf_name,
    is_ours,
    parse_conf,
    render_conf,
    specs_of,
)

log = logging.getLogger(__name__)

STATE_FILE = "ganesha.json"
CONF_MAX_BYTES = 1 << 20
_FOREIGN_ID = re.compile(r"Export_Id\s*=\s*([0-9]+)", re.I)
_TEMP_RE = re.compile(r"^\.nfs-exportd\.export-[0-9]+\.conf\.tmp-(?P<pid>[0-9]+)$")


class GaneshaState(Record):
    """What the backend remembers between cycles (losing it is harmless: the next cycle
    re-checks every export, and ids come from the conf files)."""

    bus_owner: str | None = None  # unique bus name of Ganesha at the last verified apply
    next_id: int | None = None  # allocation cursor: ids are not reused soon


OpKind = Literal["add", "update", "remove"]


@dataclass
class Op:
    kind: OpKind
    key: ExportKey
    export_id: int
    old: str | None  # conf text before this cycle (None: no file)
    new: str | None  # conf text after (None: the file goes)
    live_before: bool
    spec: ExportSpec | None  # what must be in force after (None: nothing)
    old_spec: ExportSpec | None
    why: str = ""


@dataclass
class ConfDir:
    ours: dict[ExportKey, ConfExport] = field(default_factory=dict)
    texts: dict[int, str] = field(default_factory=dict)  # our Export_Id -> file text
    extra: list[ConfExport] = field(default_factory=list)  # a second file for one key
    foreign_ids: set[int] = field(default_factory=set)


def mismatch(spec: ExportSpec, shown: Displayed | None) -> str | None:
    """How the export Ganesha serves differs from ``spec`` (None: it matches).  Compared:
    the Path and the client list.  Not compared: the Pseudo, because DisplayExport's
    "pseudopath" returns the Path in Ganesha 4.3."""
    if shown is None:
        return "is not in force"
    if shown.path != spec.key.path:
        return f"is in force with Path {shown.path}, not {spec.key.path}"
    want = {ipaddress.ip_network(c, strict=False) for c in spec.clients}
    try:
        got = {ipaddress.ip_network(c, strict=False) for c in shown.clients}
    except ValueError:
        return f"is in force with clients {', '.join(shown.clients)} (not addresses)"
    if got != want:
        extra = sorted(str(c) for c in got - want)
        lack = sorted(str(c) for c in want - got)
        return "is in force with other clients" + (
            (f" (also {', '.join(extra)})" if extra else "")
            + (f" (missing {', '.join(lack)})" if lack else "")
        )
    for entry in shown.raw_clients:
        problem = _perms_problem(spec, entry)
        if problem is not None:
            return f"is in force for {entry[0]} with {problem}"
    return None


# export_perms option bits, as Ganesha 4.x encodes them (nfs_exports.h), in the 9th field
# of each DisplayExport client tuple; the anonymous uid and gid are the 6th and 7th
_SQUASH_BITS = {0x0: "no_root_squash", 0x2: "root_squash", 0x4: "all_squash"}
_READ, _WRITE = 0x20, 0x40


def _perms_problem(spec: ExportSpec, entry: tuple[object, ...]) -> str | None:
    """How one live client entry's permissions differ from the spec's (None: same)."""
    try:
        opts, uid, gid = int(str(entry[8])), int(str(entry[5])), int(str(entry[6]))
    except (IndexError, ValueError):
        return f"an unreadable permission entry {entry!r}"
    p = spec.perms
    access = "RW" if opts & _WRITE else ("RO" if opts & _READ else "no access")
    squash = _SQUASH_BITS.get(opts & 0x7, f"squash bits {opts & 0x7:#x}")
    if access != p.access or squash != p.squash:
        return f"{access}/{squash}, not {p.access}/{p.squash}"
    if (p.anon_uid is not None and uid != p.anon_uid) or (
        p.anon_gid is not None and gid != p.anon_gid
    ):
        return f"anonymous uid/gid {uid}/{gid}, not {p.anon_uid}/{p.anon_gid}"
    return None


class GaneshaBackend:
    name = "ganesha"

    def __init__(
        self,
        exports_dir: Path,
        cfg: GaneshaConfig,
        state_file: Path,
        pending_marker: Path | None = None,
        last_verified: Callable[[], Mapping[str, str] | None] | None = None,
        bus: Callable[[], GaneshaBus] | None = None,
    ) -> None:
        self.exports_dir = exports_dir
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
        try:
            names = sorted(os.listdir(self.conf_dir))
        except OSError as exc:
            raise StateError(f"{self.conf_dir}: cannot list ganesha.conf_dir: {exc}") from None
        for name in names:
            path = self.conf_dir / name
            try:
                if not path.is_file():
                    continue
                with open(path, "rb") as fh:
                    text = fh.read(CONF_MAX_BYTES).decode("utf-8", errors="replace")
            except OSError as exc:
                raise StateError(f"{path}: cannot read: {exc}") from None
            if not is_ours(text):
                out.foreign_ids |= {int(i) for i in _FOREIGN_ID.findall(text) if len(i) < 7}
                continue
            if not CONF_NAME_RE.fullmatch(name):
                raise StateError(
                    f"{path}: has the nfs-exportd header but not the name export-ID.conf; "
                    "remove it by hand (nfs-exportd never writes such a file)"
                )
            try:
                conf = parse_conf(name, text)
            except ConfFileError as exc:
                raise StateError(
                    f"{self.conf_dir}/{exc}; Ganesha may not load it at its next start: "
                    "remove it by hand (its export stays in force; the next sync writes "
                    "the file again and takes the export back)"
                ) from None
            out.texts[conf.export_id] = text
            if conf.spec.key in out.ours:
                out.extra.append(conf)
            else:
                out.ours[conf.spec.key] = conf
        return out

    def _write_conf(self, export_id: int, text: str) -> None:
        """Atomically: temporary in staging_dir (same filesystem), fsync, rename in."""
        final = self.conf_dir / conf_name(export_id)
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
        with contextlib.suppress(FileNotFoundError):
            atomic_remove(self.conf_dir / conf_name(export_id))

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

    # ------------------------------------------------------------------ apply
    def apply(
        self,
        targets: Mapping[str, ExportsFile | None],
        current_raw: Mapping[str, str],
        missing_paths: frozenset[str] = frozenset(),
    ) -> ApplyResult:
        """Bring Ganesha, conf_dir and the records to ``targets``; on failure undo this
        cycle's changes, read them back, and raise ApplyError (BackendUnavailable when
        Ganesha cannot be reached before anything changed)."""
        new_text = {n: (render(f) if f is not None else None) for n, f in targets.items()}
        changed = {n: t for n, t in new_text.items() if t != current_raw.get(n)}
        changed = {n: t for n, t in changed.items() if not (t is None and n not in current_raw)}
        desired: dict[ExportKey, ExportSpec] = {}
        for f in targets.values():
            if f is not None:
                desired.update((s.key, s) for s in specs_of(f))  # RenderRefused: nothing done
        self._check_dirs()
        conf = self.read_conf_dir()
        bus = self.bus_factory()
        try:
            return self._apply(bus, targets, current_raw, changed, desired, conf, missing_paths)
        finally:
            bus.close()

    def _scope(self, targets: Mapping[str, ExportsFile | None], key: ExportKey) -> bool:
        """Whether a conf export of ours is this apply's business: its record is a target,
        or its record no longer exists (an orphan of an interrupted apply: not in force by
        the record, so it goes).  Others (adopt applies a few files) are left alone."""
        if key.record in targets:
            return True
        return not (self.exports_dir / key.record).exists()

    def _apply(
        self,
        bus: GaneshaBus,
        targets: Mapping[str, ExportsFile | None],
        current_raw: Mapping[str, str],
        changed: Mapping[str, str | None],
        desired: Mapping[ExportKey, ExportSpec],
        conf: ConfDir,
        missing_paths: frozenset[str],
    ) -> ApplyResult:
        state = self._load_state()
        interrupted = pending.interrupted(self.pending_marker) if self.pending_marker else None
        try:
            owner = bus.owner()
            live = bus.show()
        except (GaneshaUnreachable, GaneshaCallError) as exc:
            raise self._unavailable(bus, exc) from None
        full = ""
        if interrupted:
            full = f"the last apply ({interrupted}) was interrupted before it was verified"
        elif state.bus_owner is None:
            full = "no earlier verified apply is remembered"
        elif state.bus_owner != owner:
            full = f"Ganesha restarted (bus name {state.bus_owner} -> {owner})"
        if full:
            log.warning("%s: checking every export of ours with DisplayExport", full)
        try:
            ops, cursor = self._plan_ops(
                bus, targets, desired, conf, live, missing_paths, state, bool(full), current_raw
            )
        except IdsExhausted as exc:
            raise ApplyError(str(exc)) from None
        except (GaneshaUnreachable, GaneshaCallError) as exc:
            raise self._unavailable(bus, exc) from None
        result = ApplyResult()
        if not ops and not changed:
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
        written: list[str] = []
        done: list[Op] = []
        try:
            for name, text in sorted(changed.items()):
                path = self.exports_dir / name
                written.append(name)
                if text is None:
                    atomic_remove(path)
                    result.removed.append(name)
                else:
                    atomic_write(path, text)
                    result.written.append(name)
            for op in ops:
                done.append(op)
                self._do(bus, op)
        except (OSError, GaneshaUnreachable, GaneshaCallError, ApplyError) as exc:
            what = _describe(exc, done[-1] if done else None)
            undo = self._undo(bus, done, written, current_raw)
            raise ApplyError(f"{what}; {undo}") from None
        result.ran_exportfs = bool(ops)
        result.summary = _summary(ops)
        self._save_state(GaneshaState(bus_owner=owner, next_id=cursor))
        self._clear_marker()
        return result

    def _plan_ops(
        self,
        bus: GaneshaBus,
        targets: Mapping[str, ExportsFile | None],
        desired: Mapping[ExportKey, ExportSpec],
        conf: ConfDir,
        live: Mapping[int, str],
        missing_paths: frozenset[str],
        state: GaneshaState,
        full: bool,
        current_raw: Mapping[str, str],
    ) -> tuple[list[Op], int]:
        """What to do, in order (removals, updates, additions: a path handed from one
        record to another must leave before it comes back); ids allocated, no change."""
        ours_ids = {c.export_id for c in conf.ours.values()} | {c.export_id for c in conf.extra}
        taken = ours_ids | set(live) | conf.foreign_ids
        new_keys = sorted(k for k in desired if k not in conf.ours)
        lost = self._lost_conf_files(new_keys, conf, live, current_raw)
        new_keys = [k for k in new_keys if k not in lost]
        cursor = next_cursor(
            state.next_id, ours_ids, self.cfg.export_id_min, self.cfg.export_id_max
        )
        fresh, cursor = allocate(
            len(new_keys), taken, self.cfg.export_id_min, self.cfg.export_id_max, cursor
        )
        ids = dict(zip(new_keys, fresh, strict=True))
        ids.update((k, i) for k, (i, _spec) in lost.items())
        removes: list[Op] = []
        updates: list[Op] = []
        adds: list[Op] = []
        for extra in conf.extra:
            removes.append(
                Op(
                    "remove",
                    extra.spec.key,
                    extra.export_id,
                    conf.texts[extra.export_id],
                    None,
                    extra.export_id in live,
                    None,
                    extra.spec,
                    "a second conf file for one export",
                )
            )
        for key, c in sorted(conf.ours.items()):
            if key in desired:
                continue
            if self._scope(targets, key):
                removes.append(
                    Op(
                        "remove",
                        key,
                        c.export_id,
                        conf.texts[c.export_id],
                        None,
                        c.export_id in live,
                        None,
                        c.spec,
                    )
                )
            elif full and c.export_id not in live:
                text = conf.texts[c.export_id]
                adds.append(
                    Op("add", key, c.export_id, text, text, False, c.spec, c.spec, "re-added")
                )
        for key, spec in sorted(desired.items()):
            old_conf = conf.ours.get(key)
            export_id = old_conf.export_id if old_conf else ids[key]
            text = render_conf(spec, export_id)
            old = conf.texts.get(export_id) if old_conf else None
            is_live = export_id in live
            old_spec = old_conf.spec if old_conf else None
            if key in lost:
                # its conf file was lost while Ganesha serves it: write it again and
                # update the export; an undo writes back what the record says is in force
                old_spec = lost[key][1]
                log.warning(
                    "Ganesha export %d (%s) is in force but its conf file %s is missing; "
                    "taking it back",
                    export_id,
                    key,
                    conf_name(export_id),
                )
                old = render_conf(old_spec, export_id)
                updates.append(Op("update", key, export_id, old, text, True, spec, old_spec))
                continue
            if key.path in missing_paths and (old != text or not is_live):
                log.warning(
                    "%s: path %s does not exist; its Ganesha export %s is left as it is",
                    key.record,
                    key.path,
                    export_id,
                )
                continue
            if old != text:
                kind: OpKind = "update" if is_live else "add"
                (updates if is_live else adds).append(
                    Op(kind, key, export_id, old, text, is_live, spec, old_spec)
                )
            elif not is_live:
                log.warning("Ganesha export %d (%s) is not in force; re-adding it", export_id, key)
                adds.append(Op("add", key, export_id, old, text, False, spec, old_spec, "re-added"))
            elif full:
                problem = mismatch(spec, bus.display(export_id))
                if problem is not None:
                    log.warning("Ganesha export %d (%s) %s; updating it", export_id, key, problem)
                    updates.append(
                        Op("update", key, export_id, old, text, True, spec, old_spec, "repaired")
                    )
        return removes + updates + adds, cursor

    def _lost_conf_files(
        self,
        new_keys: list[ExportKey],
        conf: ConfDir,
        live: Mapping[int, str],
        current_raw: Mapping[str, str],
    ) -> dict[ExportKey, tuple[int, ExportSpec]]:
        """Exports of ours whose conf file was lost (removed by hand, conf_dir wiped)
        while Ganesha still serves them: a live id in our range that no file in conf_dir
        names, serving the path of a line the records say is in force.  Without this,
        a new id would be added for the same Path, which Ganesha refuses (one Pseudo),
        every cycle, while the lost export keeps serving its old clients."""
        low, high = self.cfg.export_id_min, self.cfg.export_id_max
        claimed = {c.export_id for c in conf.ours.values()} | {c.export_id for c in conf.extra}
        claimed |= conf.foreign_ids
        strays: dict[str, list[int]] = {}
        for export_id, path in live.items():
            if low <= export_id <= high and export_id not in claimed:
                strays.setdefault(path, []).append(export_id)
        in_force: dict[ExportKey, ExportSpec] = {}
        for name, text in current_raw.items():
            try:
                f = parse(name, text)
                in_force.update((s.key, s) for s in (specs_of(f) if f is not None else ()))
            except (ManagedFileError, RenderRefused):
                continue
        out: dict[ExportKey, tuple[int, ExportSpec]] = {}
        for key in new_keys:
            same_path = [k for k in new_keys if k.path == key.path]
            ids = strays.get(key.path, [])
            if len(ids) == 1 and same_path == [key] and key in in_force:
                out[key] = (ids[0], in_force[key])
        return out

    def _do(self, bus: GaneshaBus, op: Op) -> None:
        """One export changed and read back; raises on any failure (the caller undoes)."""
        conf = str(self.conf_dir / conf_name(op.export_id))
        if op.kind == "remove":
            if op.live_before:
                bus.remove(op.export_id)
            shown = bus.display(op.export_id)
            if shown is not None:
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

    def _undo(
        self, bus: GaneshaBus, done: list[Op], written: list[str], current_raw: Mapping[str, str]
    ) -> str:
        """Put back every export this cycle touched (conf file, then DBus, read back) and
        the records it wrote; say how that went."""
        failed: list[str] = []
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
            if gone is not None:
                # its file is back; asking a server that does not answer would cost a
                # full timeout per export (days at 5,000), with the state lock held
                failed.append(f"export {op.export_id} ({op.key}): not checked ({gone})")
                continue
            try:
                shown = bus.display(op.export_id)
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
        for name in written:
            path = self.exports_dir / name
            try:
                old = current_raw.get(name)
                if old is None:
                    with contextlib.suppress(FileNotFoundError):
                        atomic_remove(path)
                else:
                    atomic_write(path, old)
            except OSError as exc:
                failed.append(f"{name}: {exc}")
        if failed:
            log.error("UNDO FAILED: the exports in force are not a verified state")
            return (
                "UNDO FAILED: " + "; ".join(failed[:5]) + "; the conf files of this cycle's "
                "exports are back as they were (Ganesha serves them at its next start), but what "
                "is in force is not verified: fix the cause, then run sync (it re-checks every "
                "export)"
            )
        self._clear_marker()
        return (
            f"restored the previous exports ({len(done)} Ganesha exports, {len(written)} "
            "records), re-applied them over DBus and verified them in force"
        )

    # ------------------------------------------------------------------ read back, undo
    def read_back(
        self, targets: Mapping[str, ExportsFile | None], missing_paths: frozenset[str] = frozenset()
    ) -> list[str]:
        """How Ganesha and conf_dir differ from ``targets`` (empty: they match)."""
        desired = {s.key: s for f in targets.values() if f is not None for s in specs_of(f)}
        conf = self.read_conf_dir()
        problems: list[str] = []
        with self.bus_factory() as bus:
            try:
                for key, spec in sorted(desired.items()):
                    if key.path in missing_paths:
                        continue
                    c = conf.ours.get(key)
                    if c is None:
                        problems.append(f"{key}: no conf file in {self.conf_dir}")
                        continue
                    if conf.texts[c.export_id] != render_conf(spec, c.export_id):
                        problems.append(f"{key}: {conf_name(c.export_id)} says otherwise")
                    problem = mismatch(spec, bus.display(c.export_id))
                    if problem is not None:
                        problems.append(f"{key}: Ganesha export {c.export_id} {problem}")
                for key, c in sorted(conf.ours.items()):
                    if key not in desired and self._scope(targets, key):
                        problems.append(f"{key}: Ganesha export {c.export_id} is still there")
            except (GaneshaUnreachable, GaneshaCallError) as exc:
                problems.append(str(self._unavailable(bus, exc)))
        return problems

    def undo(
        self, current_raw: Mapping[str, str], missing_paths: frozenset[str] = frozenset()
    ) -> str:
        """Return to the last verified records (or ``current_raw`` without one), applied."""
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


def _summary(ops: list[Op]) -> str:
    n = {k: sum(1 for o in ops if o.kind == k) for k in ("add", "update", "remove")}
    return f"ganesha: {n['add']} added, {n['update']} updated, {n['remove']} removed over DBus"
