"""``rollback``: restore a journaled set of verified files through the normal apply path.

The restored files are written atomically, applied with exportfs and read back like any
sync; the rollback is journaled itself.  Restored pairs whose address now belongs to
another project (an instance the inventory shows, or another project's managed file in
force) are dropped and reported: a rollback must never export one address for two
projects.  So are restored lines whose path the projects file no longer serves for that
project (a volume moved to another project since the entry) or that is unsafe now.
"Another project" is by Keystone id, as everywhere (``decide.lifecycle.aliases``): a
project renamed since the restored entry is the same project under its new name, and
keeps its pairs.  Afterwards a ``rollback-hold`` marker makes every later cycle hold all
changes except conflict removals, so that the running daemon does not undo the rollback,
until ``release``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from . import journal, state
from .config import Config
from .cycle import backend_for, journal_change
from .decide.lifecycle import aliases
from .errors import StateError, UsageError
from .exportsfile import ManagedFileError, parse, render, scan
from .inventory import source_from_config
from .model import ExportLine, ExportsFile
from .projects import ServedSet, check_served_paths
from .validate import path_within

log = logging.getLogger("nfs_exportd")


@dataclass
class RollbackResult:
    target: journal.Entry
    entry: journal.Entry | None  # the rollback's own journal entry (None: nothing changed)
    dropped: list[tuple[str, str, str, str]] = field(default_factory=list)  # + why
    skipped: list[str] = field(default_factory=list)  # files left alone, with why
    inventory_note: str = ""


def pick_target(cfg: Config, to: int | None) -> journal.Entry:
    known = journal.ids(cfg.state_dir)
    if not known:
        raise UsageError(f"{cfg.state_dir}/history: the journal is empty; nothing to roll back to")
    if to is None:
        if len(known) < 2:
            raise UsageError(
                "the journal has only one entry (the state in force); give --to ID "
                "(see nfs-exportd history)"
            )
        to = known[-2]  # the state before the last change
    return journal.load(cfg.state_dir, to)


def rollback(cfg: Config, served: ServedSet, to: int | None, force: bool) -> RollbackResult:
    """Restore entry ``to`` (default: the one before the newest).  The caller holds the lock."""
    target = pick_target(cfg, to)
    result = RollbackResult(target, None)
    current = scan(cfg.exports_dir)
    parsed: dict[str, ExportsFile] = {}
    for name, text in sorted((target.files or {}).items()):
        try:
            f = parse(name, text)
        except ManagedFileError as exc:
            raise StateError(f"journal entry {target.id}: {exc}") from None
        if f is None:
            raise StateError(f"journal entry {target.id}: {name} has no nfs-exportd header")
        if name in current.unmanaged:
            result.skipped.append(f"{name}: a file without our header has this name now")
            continue
        parsed[name] = f

    # Who owns each address now: the instances the inventory shows (positive evidence,
    # even from a partial read), and always the other projects' managed files in force
    # (an address another project exports now is never handed back to this one).
    claims: dict[str, set[str]] = {}
    snap = source_from_config(cfg).read(
        frozenset(served.private) | {f.owner for f in parsed.values() if f.kind == "project"}
    )
    for project, insts in snap.instances.items():
        for inst in insts:
            for addr in inst.addresses:
                claims.setdefault(str(addr), set()).add(project)
    for ip, foreign in snap.claims.items():  # a port of an unlisted project, of X on Y, ...
        claims.setdefault(ip, set()).update(f"({c.detail})" for c in foreign)
    # ids: the listing's, and those the daemon remembers (a renamed name, a bound name)
    listed = {r.name: r.id for r in snap.projects.values()} if snap.projects else {}
    known = state.load_counters(cfg.state_dir, move_corrupt=False).memory.known_ids
    involved = {f.owner for f in parsed.values() if f.kind == "project"}
    unknown = sorted(p for p in involved if not snap.project_complete(p))
    if snap.listing_complete and not unknown:
        result.inventory_note = "checked against a complete inventory listing"
    elif not snap.listing_complete and not force:
        raise UsageError(
            f"cannot check that the restored addresses still belong to their projects: "
            f"inventory unknown: {snap.problem}; retry when the cloud answers, or pass --force"
        )
    else:
        if not snap.listing_complete:
            result.inventory_note = (
                f"inventory unknown ({snap.problem}); checked only against the other "
                "projects' files in force (--force)"
            )
        else:
            result.inventory_note = (
                f"inventory unknown for {', '.join(unknown)}; checked against the instances "
                "known and the other projects' files in force"
            )
        log.warning("%s", result.inventory_note)
    in_force_owner: dict[str, set[str]] = {}
    for f in current.managed.values():
        if f.kind == "project":
            for _path, client in f.pairs():
                in_force_owner.setdefault(client, set()).add(f.owner)
    # Within the restored set, an address in two projects' files stays with neither
    # (unless the inventory says whose it is).
    restored_owner: dict[str, set[str]] = {}
    for f in parsed.values():
        if f.kind == "project":
            for _path, client in f.pairs():
                restored_owner.setdefault(client, set()).add(f.owner)

    # Paths are checked as they stand now: a restored line whose path the projects file no
    # longer serves for that project (a volume given to another project since the entry),
    # or whose path is unsafe now (a symlink, a system directory, a serve root), is
    # dropped: an old entry never hands a volume back to its former owner.
    served_paths = {e.path for exps in served.private.values() for e in exps}
    unsafe = check_served_paths(served_paths, cfg.serve.roots).unsafe

    def path_problem(owner: str, path: str) -> str | None:
        if path in unsafe:
            return f"path now unsafe: {unsafe[path]}"
        names = aliases(owner, listed, known)
        if any(e.path == path for n in names for e in served.private.get(n, ())):
            return None
        others = sorted(
            n
            for n, exps in served.private.items()
            if n not in names
            and any(path_within(e.path, path) or path_within(path, e.path) for e in exps)
        )
        if others:
            return f"path now served for project {', '.join(others)}"
        return f"path no longer served for project {owner} in the projects file"

    targets: dict[str, ExportsFile | None] = {}
    for name, f in parsed.items():
        if f.kind != "project":
            targets[name] = f
            continue
        now_file = current.managed.get(name)
        pid = (now_file.keystone_id if now_file is not None else None) or f.keystone_id
        lines = []
        for line in f.lines:
            problem = path_problem(f.owner, line.path)
            if problem is not None:
                result.dropped.extend((f.owner, line.path, c, problem) for c in line.clients)
                continue
            keep = []
            for client in line.clients:
                others = (
                    claims.get(client, set())
                    | in_force_owner.get(client, set())
                    | (set() if client in claims else restored_owner.get(client, set()))
                ) - aliases(f.owner, listed, known)
                if others:
                    why = f"now belongs to project {', '.join(sorted(others))}"
                    result.dropped.append((f.owner, line.path, client, why))
                else:
                    keep.append(client)
            if keep:
                lines.append(ExportLine(line.path, line.options, tuple(keep)))
        targets[name] = ExportsFile(name, f.kind, f.owner, tuple(lines), pid)
    for name in current.managed:
        if name not in targets:
            targets[name] = None  # it did not exist then

    # The removal bound of sync applies to a rollback too: an old entry can be far from
    # what is in force (before an adopt, before many projects were added).
    def pairs(files: Mapping[str, ExportsFile | None]) -> set[tuple[str, str, str]]:
        return {(f.owner, p, c) for f in files.values() if f is not None for p, c in f.pairs()}

    now_pairs = pairs(current.managed)
    lost = now_pairs - pairs(targets)
    limit = cfg.safety.max_removal_fraction * len(now_pairs)
    if len(lost) > limit and len(lost) > cfg.safety.min_removal_count and not force:
        raise UsageError(
            f"rollback to entry {target.id} would remove {len(lost)} of {len(now_pairs)} pairs "
            f"in force, more than safety.max_removal_fraction {cfg.safety.max_removal_fraction}"
            f" (and safety.min_removal_count {cfg.safety.min_removal_count}); review it with "
            f"'nfs-exportd history --show {target.id}' and pass --force to roll back anyway"
        )

    before = dict(current.raw)
    backend = backend_for(cfg)
    missing = frozenset(
        ln.path
        for f in targets.values()
        if f is not None
        for ln in f.lines
        if not Path(ln.path).exists()
    )
    backend.apply(targets, current.raw, missing)
    after = {n: render(f) for n, f in targets.items() if f is not None}
    state.save_verified(cfg.state_dir, after)
    reason = f"rollback to journal entry {target.id}"
    if result.dropped:
        reason += (
            f"; {len(result.dropped)} restored pair(s) dropped (address or path now elsewhere)"
        )
    result.entry = journal_change(cfg, "rollback", "", reason, before, after)
    state.save_rollback_hold(
        cfg.state_dir,
        state.RollbackHold(
            time=time.time(),
            to=target.id,
            entry=result.entry.id if result.entry else None,
            user=journal.current_user(),
            dropped=list(result.dropped),
        ),
    )
    return result
