"""``rollback``: restore a journaled set of verified files through the normal apply path.

The restored files are written atomically, applied with exportfs and read back like any
sync; the rollback is journaled itself.  What may be restored is decided by the pure
rules of ``decide.restore`` (no address or path that belongs to someone else now, the
removal bound of sync); this module reads their inputs and applies the result.
Afterwards a ``rollback-hold`` marker makes every later cycle hold all
changes except conflict removals, so that the running daemon does not undo the rollback,
until ``release``.
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..config import Config, load_config
from ..cycle import (
    apply_and_record,
    backend_for,
    load_served,
    record_unjournaled,
    scan_in_force,
)
from ..decide.restore import RestoreInput, restore
from ..errors import EXIT_OK, StateError, UsageError
from ..exportsfile import ManagedFileError, parse
from ..memory import journal, state
from ..model import ExportsFile
from ..read.inventory import source_from_config
from ..read.projects import ServedSet, check_served_paths
from .common import LOCK_WAIT, when

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
    current = scan_in_force(cfg)
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

    snap = source_from_config(cfg).read(
        frozenset(served.private) | {f.owner for f in parsed.values() if f.is_project}
    )
    served_paths = {e.path for exps in served.private.values() for e in exps}
    plan = restore(
        RestoreInput(
            entry_id=target.id,
            restored=parsed,
            in_force=current.managed,
            snapshot=snap,
            # ids: the listing's, and those the daemon remembers (a renamed name, a bound one)
            known_ids=state.load_counters(cfg.state_dir, move_corrupt=False).memory.known_ids,
            private=served.private,
            # paths are checked as they stand now (a symlink, a system directory, a root)
            unsafe_paths=check_served_paths(served_paths, cfg.serve.roots).unsafe,
            force=force,
            max_removal_fraction=cfg.safety.max_removal_fraction,
            min_removal_count=cfg.safety.min_removal_count,
        )
    )
    result.inventory_note = plan.inventory_note
    if plan.inventory_partial:
        log.warning("%s", result.inventory_note)
    result.dropped.extend(plan.dropped)
    targets = plan.files

    missing = frozenset(
        ln.path
        for f in targets.values()
        if f is not None
        for ln in f.lines
        if not Path(ln.path).exists()
    )
    reason = f"rollback to journal entry {target.id}"
    if result.dropped:
        reason += (
            f"; {len(result.dropped)} restored pair(s) dropped (address or path now elsewhere)"
        )
    rec = apply_and_record(
        cfg,
        backend_for(cfg),
        targets,
        dict(current.raw),
        kind="rollback",
        reason=reason,
        missing=missing,
    )
    result.entry = rec.entry
    # the marker first, whatever else could not be remembered: without it the running
    # daemon would undo the rollback
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
    record_unjournaled(cfg, rec)
    if rec.unsaved:
        raise rec.not_recorded(
            cfg,
            f"the rollback to entry {target.id} is applied and verified in force, "
            "but it is not recorded",
        )
    return result


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    served = load_served(cfg)
    with state.StateLock(cfg.state_dir, wait=LOCK_WAIT):
        res = rollback(cfg, served, args.to, args.force)
    for owner, path, client, why in res.dropped:
        print(f"dropped {owner} {path} {client}: {why}")
    for why in res.skipped:
        print(f"skipped {why}")
    e = res.entry
    changed = f"+{len(e.added)} -{len(e.removed)} ~{len(e.updated)}" if e else "nothing changed"
    print(
        f"rolled back to journal entry {res.target.id} ({when(res.target.time)}): {changed}; "
        f"{res.inventory_note}; every change except conflict removals now holds "
        "(rollback-hold) until 'nfs-exportd release'"
    )
    return EXIT_OK
