"""The history journal: one entry per applied change, in ``state_dir/history``.

Each entry records when, what (pairs added, removed and updated, each with its reason),
the plan checksum, and the complete set of managed files that was verified after the
change, so that ``rollback`` can restore any entry through the normal apply path.  The
very first change also records the files in force before it (a ``baseline`` entry), so
that even the first change can be undone.

Entries are numbered (``000042.json``) and written atomically; the journal is bounded by
``history.retention_days`` and ``history.max_entries`` (the newest entry always stays).
An entry that cannot be parsed is reported, never silently used.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import StateError
from .exportsfile import ManagedFileError, parse
from .fsutil import atomic_remove, atomic_write

HISTORY = "history"
_NAME = re.compile(r"^(\d{6,})\.json$")


@dataclass(frozen=True)
class PairChange:
    project: str  # project name, or "public:NAME"
    path: str
    client: str
    reason: str

    def to_list(self) -> list[str]:
        return [self.project, self.path, self.client, self.reason]


@dataclass(frozen=True)
class Entry:
    id: int
    time: float
    kind: str  # baseline | sync | rollback | adopt
    checksum: str
    reason: str  # one line: why this change happened
    added: tuple[PairChange, ...] = ()
    removed: tuple[PairChange, ...] = ()
    updated: tuple[PairChange, ...] = ()
    files: Mapping[str, str] = field(default_factory=dict)  # verified after the change
    user: str = ""

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "time": self.time,
            "kind": self.kind,
            "checksum": self.checksum,
            "reason": self.reason,
            "user": self.user,
            "added": [p.to_list() for p in self.added],
            "removed": [p.to_list() for p in self.removed],
            "updated": [p.to_list() for p in self.updated],
            "files": len(self.files),
        }

    def to_json(self) -> dict[str, Any]:
        return {**self.summary(), "schema": 1, "files": dict(sorted(self.files.items()))}


def _dir(state_dir: Path) -> Path:
    return state_dir / HISTORY


def _pairs(items: Any, where: str) -> tuple[PairChange, ...]:
    if not isinstance(items, list):
        raise ValueError(f"{where}: expected a list")
    out = []
    for it in items:
        if not (isinstance(it, list) and len(it) == 4 and all(isinstance(x, str) for x in it)):
            raise ValueError(f"{where}: bad pair {it!r}")
        out.append(PairChange(*it))
    return tuple(out)


def _load(path: Path) -> Entry:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("schema") != 1:
            raise ValueError("not a schema 1 journal entry")
        files = data["files"]
        if not isinstance(files, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in files.items()
        ):
            raise ValueError("files must map names to text")
        return Entry(
            id=int(data["id"]),
            time=float(data["time"]),
            kind=str(data["kind"]),
            checksum=str(data.get("checksum", "")),
            reason=str(data.get("reason", "")),
            added=_pairs(data.get("added", []), "added"),
            removed=_pairs(data.get("removed", []), "removed"),
            updated=_pairs(data.get("updated", []), "updated"),
            files=files,
            user=str(data.get("user", "")),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StateError(f"{path}: unreadable journal entry: {exc}") from None


def ids(state_dir: Path) -> list[int]:
    try:
        names = os.listdir(_dir(state_dir))
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise StateError(f"{_dir(state_dir)}: cannot list the journal: {exc}") from None
    return sorted(int(m.group(1)) for n in names if (m := _NAME.match(n)))


def load(state_dir: Path, entry_id: int) -> Entry:
    path = _dir(state_dir) / f"{entry_id:06d}.json"
    if not path.exists():
        known = ids(state_dir)
        span = f"{known[0]}..{known[-1]}" if known else "none"
        raise StateError(f"{path}: no journal entry {entry_id} (entries: {span})")
    return _load(path)


def entries(state_dir: Path) -> list[Entry]:
    return [_load(_dir(state_dir) / f"{i:06d}.json") for i in ids(state_dir)]


def pair_diff(
    before: Mapping[str, str], after: Mapping[str, str]
) -> tuple[set[tuple[str, str, str]], set[tuple[str, str, str]], set[tuple[str, str, str]]]:
    """(added, removed, options changed) (owner, path, client) between two sets of files."""

    def pairs(files: Mapping[str, str]) -> dict[tuple[str, str, str], str]:
        out: dict[tuple[str, str, str], str] = {}
        for name, text in files.items():
            try:
                f = parse(name, text)
            except ManagedFileError:
                continue
            if f is None:
                continue
            owner = f.owner if f.kind == "project" else f"public:{f.owner}"
            for line in f.lines:
                for c in line.clients:
                    out[(owner, line.path, c)] = line.options
        return out

    old, new = pairs(before), pairs(after)
    added = set(new) - set(old)
    removed = set(old) - set(new)
    updated = {k for k in set(old) & set(new) if old[k] != new[k]}
    return added, removed, updated


def record(
    state_dir: Path,
    *,
    kind: str,
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
    user = _user()
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
        dict(after),
        user,
    )
    _write(hdir, entry)
    prune(state_dir, retention_days=retention_days, max_entries=max_entries, now=now)
    return entry


def _user() -> str:
    """Who ran the command: the sudo caller if any, else the process's user name."""
    if os.environ.get("SUDO_USER"):
        return os.environ["SUDO_USER"]
    try:
        import pwd

        return pwd.getpwuid(os.geteuid()).pw_name
    except (KeyError, ImportError):
        return str(os.geteuid())


def _write(hdir: Path, entry: Entry) -> None:
    path = hdir / f"{entry.id:06d}.json"
    try:
        atomic_write(path, json.dumps(entry.to_json(), indent=1, sort_keys=True) + "\n", 0o600)
    except OSError as exc:
        raise StateError(f"{path}: cannot write journal entry: {exc}") from None


def prune(state_dir: Path, *, retention_days: float, max_entries: int, now: float) -> list[int]:
    """Drop entries older than the retention or beyond the count; the newest stays."""
    known = ids(state_dir)
    if len(known) <= 1:
        return []
    drop = set(known[: max(0, len(known) - max_entries)])
    cutoff = now - retention_days * 86400
    for i in known[:-1]:
        if i in drop:
            continue
        try:
            t = json.loads((_dir(state_dir) / f"{i:06d}.json").read_text()).get("time", now)
        except (OSError, ValueError, AttributeError):
            continue  # unreadable entries are reported by whoever reads them
        if isinstance(t, int | float) and t < cutoff:
            drop.add(i)
    for i in sorted(drop):
        try:
            atomic_remove(_dir(state_dir) / f"{i:06d}.json")
        except OSError as exc:
            raise StateError(f"cannot prune journal entry {i}: {exc}") from None
    return sorted(drop)
