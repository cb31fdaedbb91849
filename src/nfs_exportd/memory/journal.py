"""The history journal: one entry per applied change, in ``state_dir/history``.

Each entry records when, what (pairs added, removed and updated, each with its reason),
the plan checksum (``NNNNNN.json``), and the complete set of managed files that was
verified after the change (``NNNNNN.files.json``, written first), so that ``rollback`` can
restore any entry through the normal apply path.  ``history`` and ``explain`` read only
the small summaries.  The
very first change also records the files in force before it (a ``baseline`` entry), so
that even the first change can be undone.

Entries are numbered (``000042.json``) and written atomically; the journal is bounded by
``history.retention_days`` and ``history.max_entries`` (the newest entry always stays).
An entry that cannot be parsed is reported, never silently used.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field

from ..errors import StateError
from ..exportsfile import ManagedFileError, parse
from ..fsutil import atomic_remove, atomic_write
from ..records import Count, Record, Time, parse_json

HISTORY = "history"
_NAME = re.compile(r"^(\d{6,})\.json$")
Kind = Literal["baseline", "sync", "rollback", "adopt"]
Row = tuple[str, str, str, str]  # project (or "public:NAME"), path, client, reason


@dataclass(frozen=True)
class PairChange:
    project: str  # project name, or "public:NAME"
    path: str
    client: str
    reason: str

    def as_row(self) -> Row:
        return (self.project, self.path, self.client, self.reason)


@dataclass(frozen=True)
class Entry:
    id: int
    time: float
    kind: Kind
    checksum: str
    reason: str  # one line: why this change happened
    added: tuple[PairChange, ...] = ()
    removed: tuple[PairChange, ...] = ()
    updated: tuple[PairChange, ...] = ()
    # the files verified after the change; None when only the summary was read
    files: Mapping[str, str] | None = field(default=None)
    user: str = ""
    file_count: int = 0

    def summary(self) -> dict[str, Any]:
        return EntryRecord.of(self).to_json()

    def to_json(self) -> dict[str, Any]:
        """The summary with the files themselves (``history --show ID --json``)."""
        return {**self.summary(), "files": dict(sorted((self.files or {}).items()))}


def _dir(state_dir: Path) -> Path:
    return state_dir / HISTORY


def _files_path(path: Path) -> Path:
    return path.with_name(path.name.replace(".json", ".files.json"))


class EntryRecord(Record):
    """``NNNNNN.json``: one entry's summary (``history`` reads only these)."""

    schema_: Literal[1] = Field(alias="schema")
    id: Annotated[int, Field(ge=1)]
    time: Time
    kind: Kind
    checksum: str = ""
    reason: str = ""
    user: str = ""
    added: list[Row] = Field(default_factory=list)
    removed: list[Row] = Field(default_factory=list)
    updated: list[Row] = Field(default_factory=list)
    files: Count = 0  # how many files NNNNNN.files.json holds

    @classmethod
    def of(cls, e: Entry) -> EntryRecord:
        return cls(
            schema_=1,
            id=e.id,
            time=e.time,
            kind=e.kind,
            checksum=e.checksum,
            reason=e.reason,
            user=e.user,
            added=[p.as_row() for p in e.added],
            removed=[p.as_row() for p in e.removed],
            updated=[p.as_row() for p in e.updated],
            files=e.file_count,
        )

    def to_entry(self) -> Entry:
        return Entry(
            id=self.id,
            time=self.time,
            kind=self.kind,
            checksum=self.checksum,
            reason=self.reason,
            added=tuple(PairChange(*r) for r in self.added),
            removed=tuple(PairChange(*r) for r in self.removed),
            updated=tuple(PairChange(*r) for r in self.updated),
            user=self.user,
            file_count=self.files,
        )


class FilesRecord(Record):
    """``NNNNNN.files.json``: the managed files verified after the entry's change."""

    schema_: Literal[1] = Field(alias="schema")
    id: int
    files: dict[str, str]  # file name -> its text


def _load(path: Path, with_files: bool = False) -> Entry:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise StateError(f"{path}: unreadable journal entry: {exc}") from None
    entry = parse_json(text, path, EntryRecord, "journal entry").to_entry()
    if not with_files:
        return entry
    fpath = _files_path(path)
    try:
        ftext = fpath.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise StateError(f"{fpath}: unreadable journal files: {exc}") from None
    fdata = parse_json(ftext, fpath, FilesRecord, "journal files")
    if fdata.id != entry.id or len(fdata.files) != entry.file_count:
        raise StateError(
            f"{fpath}: id {fdata.id} with {len(fdata.files)} files does not belong to journal "
            f"entry {entry.id} ({entry.file_count} files)"
        )
    return replace(entry, files=fdata.files)


def ids(state_dir: Path) -> list[int]:
    try:
        names = os.listdir(_dir(state_dir))
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise StateError(f"{_dir(state_dir)}: cannot list the journal: {exc}") from None
    return sorted(int(m.group(1)) for n in names if (m := _NAME.match(n)))


def load(state_dir: Path, entry_id: int) -> Entry:
    """One entry with its files (what rollback restores)."""
    path = _dir(state_dir) / f"{entry_id:06d}.json"
    if not path.exists():
        known = ids(state_dir)
        span = f"{known[0]}..{known[-1]}" if known else "none"
        raise StateError(f"{path}: no journal entry {entry_id} (entries: {span})")
    return _load(path, with_files=True)


def entries(state_dir: Path) -> list[Entry]:
    """Every entry's summary, oldest first (the files are not read)."""
    return [_load(_dir(state_dir) / f"{i:06d}.json") for i in ids(state_dir)]


def pair_diff(
    before: Mapping[str, str], after: Mapping[str, str]
) -> tuple[set[tuple[str, str, str]], set[tuple[str, str, str]], set[tuple[str, str, str]]]:
    """(added, removed, options changed) (owner, path, client) between two sets of files.

    Only the files whose text differs are parsed: a file with the same text on both
    sides has the same pairs on both (its owner is in each key), so it adds nothing."""

    def pairs(files: Mapping[str, str]) -> dict[tuple[str, str, str], str]:
        out: dict[tuple[str, str, str], str] = {}
        for name, text in files.items():
            try:
                f = parse(name, text)
            except ManagedFileError:
                continue
            if f is None:
                continue
            owner = f.owner if f.is_project else f"public:{f.owner}"
            for line in f.lines:
                for c in line.clients:
                    out[(owner, line.path, c)] = line.options
        return out

    same = {n for n, t in before.items() if after.get(n) == t}
    old = pairs({n: t for n, t in before.items() if n not in same})
    new = pairs({n: t for n, t in after.items() if n not in same})
    added = set(new) - set(old)
    removed = set(old) - set(new)
    updated = {k for k in set(old) & set(new) if old[k] != new[k]}
    return added, removed, updated


def record(
    state_dir: Path,
    *,
    kind: Kind,
    checksum: str,
    reason: str,
    before: Mapping[str, str],
    after: Mapping[str, str],
    reasons: Mapping[tuple[str, str, str], str] | None = None,
    retention_days: float = 90,
    max_entries: int = 1000,
    now: float | None = None,
    baseline: Mapping[str, str] | None = None,
) -> Entry | None:
    """Journal one applied change (``before`` -> ``after``, both complete file sets).

    Returns the new entry, or None when nothing changed.  ``reasons`` gives the plan's
    reason per pair; pairs without one get ``kind`` as their reason.  ``baseline`` is what
    the first entry records as the state before, when it is not ``before`` (adopt: the
    same pairs were in force, under the original daemon's files).
    """
    added, removed, updated = pair_diff(before, after)
    if not (added or removed or updated) and dict(before) == dict(after):
        return None
    now = time.time() if now is None else now
    known = ids(state_dir)
    next_id = (known[-1] + 1) if known else 1
    hdir = _dir(state_dir)
    try:
        hdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StateError(f"{hdir}: cannot create the journal: {exc}") from None
    user = current_user()
    if not known:
        _write(
            hdir,
            Entry(
                next_id,
                now,
                "baseline",
                "",
                "files in force before the first change",
                files=dict(before if baseline is None else baseline),
                user=user,
                file_count=len(before if baseline is None else baseline),
            ),
        )
        next_id += 1
    why = reasons or {}

    def rows(keys: Iterable[tuple[str, str, str]]) -> tuple[PairChange, ...]:
        return tuple(PairChange(*k, why.get(k, kind)) for k in sorted(keys))

    entry = Entry(
        next_id,
        now,
        kind,
        checksum,
        reason,
        rows(added),
        rows(removed),
        rows(updated),
        files=dict(after),
        user=user,
        file_count=len(after),
    )
    _write(hdir, entry)
    prune(state_dir, retention_days=retention_days, max_entries=max_entries, now=now)
    return entry


LOGINUID = Path("/proc/self/loginuid")
UNSET_LOGINUID = 4294967295  # (uid_t)-1: no login session (a systemd service, a cron job)


def current_user(loginuid: Path = LOGINUID) -> str:
    """Who ran the command: the human who logged in (the audit login uid, which every
    ``sudo`` keeps: the documented ``sudo -u nfsmanager`` alias run from a root shell
    sets SUDO_USER to ``root``), else the sudo caller, else the process's user name."""
    import pwd

    try:
        uid = int(loginuid.read_text().strip())
    except (OSError, ValueError):
        uid = UNSET_LOGINUID
    if uid != UNSET_LOGINUID:
        try:
            return pwd.getpwuid(uid).pw_name
        except KeyError:
            return str(uid)
    if os.environ.get("SUDO_USER"):
        return os.environ["SUDO_USER"]
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def _write(hdir: Path, entry: Entry) -> None:
    """The files first: a summary that exists always has its files."""
    path = hdir / f"{entry.id:06d}.json"
    files = FilesRecord(schema_=1, id=entry.id, files=dict(sorted((entry.files or {}).items())))
    try:
        atomic_write(_files_path(path), json.dumps(files.to_json(), indent=1) + "\n", 0o600)
        atomic_write(path, json.dumps(entry.summary(), indent=1, sort_keys=True) + "\n", 0o600)
    except OSError as exc:
        raise StateError(f"{path}: cannot write journal entry: {exc}") from None


def prune(state_dir: Path, *, retention_days: float, max_entries: int, now: float) -> list[int]:
    """Drop entries beyond the count, and old ones from the oldest on until one is within
    the retention (entries are in time order: only a few summaries are read); the newest
    always stays."""
    known = ids(state_dir)
    if len(known) <= 1:
        return []
    drop = known[: max(0, len(known) - max_entries)]
    cutoff = now - retention_days * 86400
    for i in known[len(drop) : -1]:
        try:
            t = _load(_dir(state_dir) / f"{i:06d}.json").time
        except StateError:
            break  # unreadable entries are reported by whoever reads them
        if t >= cutoff:
            break
        drop.append(i)
    for i in drop:
        path = _dir(state_dir) / f"{i:06d}.json"
        try:
            atomic_remove(path)  # the summary first: no entry without its files
            with contextlib.suppress(FileNotFoundError):
                atomic_remove(_files_path(path))
        except OSError as exc:
            raise StateError(f"cannot prune journal entry {i}: {exc}") from None
    return drop
