"""One reconcile cycle: read the facts, decide, apply, remember.

This is the only module that wires the three layers together.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from . import journal, state
from .backends.exportfs import ApplyResult, ExportfsBackend
from .check import QUIET, hold_key
from .config import Config
from .decide import Action, DecideInput, Hold, Plan, Policy, decide
from .errors import EXIT_HELD, EXIT_OK, NotRecorded, PlanMismatch, StateError
from .exportsfile import DirScan, render, scan
from .fsutil import remove_stale_temporaries
from .inventory import InventorySource, source_from_config
from .killpoints import kill_point
from .model import InventorySnapshot, Maintenance
from .projects import (
    PathSafety,
    ServedSet,
    check_served_paths,
    load_projects,
    served_from_config,
)

log = logging.getLogger("nfs_exportd")

# The time decide counts with (removal ages, confirmation spacing, deletion windows):
# one seam, so that tests move time forward instead of sleeping.
clock: Callable[[], float] = time.time


@dataclass(frozen=True)
class Facts:
    snapshot: InventorySnapshot
    scan: DirScan
    counters: state.Counters
    missing_paths: frozenset[str]
    maintenance: Maintenance
    rollback_hold: str | None = None  # set after ``rollback`` until ``release``
    # served paths that are not what they say (symlinks, system dirs, outside serve.roots)
    path_safety: PathSafety = field(default_factory=lambda: PathSafety({}, {}))


def load_served(cfg: Config) -> ServedSet:
    """Projects file + config -> what this server serves (raises ConfigError)."""
    projects = load_projects(cfg.projects_file, cfg.projects_file_max_bytes)
    for warning in projects.warnings:
        log.warning("%s", warning)
    return served_from_config(cfg, projects)


def read_maintenance(path: Path) -> Maintenance:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return Maintenance.OFF
    except OSError as exc:
        log.warning("%s exists but cannot be read (%s): treating it as maintenance", path, exc)
        return Maintenance.HOLD
    words = text.split()
    first = words[0].lower().rstrip(":;,.") if words else ""
    return Maintenance.FREEZE if first == "freeze" else Maintenance.HOLD


def read_facts(
    cfg: Config, served: ServedSet, *, writing: bool, source: InventorySource | None = None
) -> Facts:
    """Read everything a decision needs.  ``source`` is kept by ``run`` across cycles so
    that connections and tokens are reused; one-shot commands make their own."""
    dir_scan = scan(cfg.exports_dir)
    interest = frozenset(served.private) | frozenset(
        f.owner for f in dir_scan.managed.values() if f.kind == "project"
    )
    snapshot = (source or source_from_config(cfg)).read(interest)
    if snapshot.problem:
        log.warning("inventory unknown: %s", snapshot.problem)
    for project, why in sorted(snapshot.incomplete.items()):
        log.warning("inventory for project %s unknown: %s", project, why)
    paths = {e.path for exps in served.private.values() for e in exps}
    paths |= {p.path for p in served.public}
    missing = frozenset(p for p in paths if not Path(p).exists())
    safety = check_served_paths(paths, cfg.serve.roots)
    for why in (*safety.unsafe.values(), *safety.held.values()):
        log.warning("path-unsafe: %s", why)
    return Facts(
        snapshot=snapshot,
        scan=dir_scan,
        counters=state.load_counters(cfg.state_dir, move_corrupt=writing),
        missing_paths=missing,
        path_safety=safety,
        maintenance=read_maintenance(cfg.maintenance_file),
        rollback_hold=read_rollback_hold(cfg.state_dir),
    )


def read_rollback_hold(state_dir: Path) -> str | None:
    marker = state.load_rollback_hold(state_dir)
    return state.rollback_hold_detail(marker) if marker is not None else None


def confirmation_spacing(cfg: Config) -> float:
    """safety.confirmation_spacing_seconds, or half of interval_seconds when not set: a
    cycle run early (a signal, a retry, a human) may add, never confirm faster."""
    given = cfg.safety.confirmation_spacing_seconds
    return 0.5 * cfg.interval_seconds if given is None else given


def make_plan(
    cfg: Config,
    served: ServedSet,
    facts: Facts,
    *,
    force: bool = False,
    extra_holds: tuple[Hold, ...] = (),
) -> Plan:
    policy = Policy(
        confirmations=cfg.safety.removal_confirmations,
        max_removal_fraction=cfg.safety.max_removal_fraction,
        min_removal_count=cfg.safety.min_removal_count,
        maintenance=facts.maintenance,
        force=force,
        removal_min_age=cfg.safety.removal_min_age_seconds,
        disabled_projects=cfg.safety.disabled_projects,
        rollback_hold=facts.rollback_hold,
        max_project_deletions=cfg.safety.max_project_deletions,
        project_deletion_window=cfg.safety.project_deletion_window_seconds,
        max_project_shrink_fraction=cfg.safety.max_project_shrink_fraction,
        project_shrink_min_count=cfg.safety.project_shrink_min_count,
        confirmation_spacing=confirmation_spacing(cfg),
    )
    plan = decide(
        DecideInput(
            private=served.private,
            public=served.public,
            snapshot=facts.snapshot,
            in_force=facts.scan.managed,
            unmanaged=facts.scan.unmanaged,
            counters=facts.counters.values,
            missing_paths=facts.missing_paths,
            unsafe_paths=facts.path_safety.unsafe,
            held_paths=facts.path_safety.held,
            state_problem=facts.counters.problem,
            memory=facts.counters.memory,
            now=clock(),
            pinned_ids=served.ids,
        ),
        policy,
    )
    if extra_holds:
        plan = replace(plan, holds=plan.holds + extra_holds)
    return plan


def backend_for(cfg: Config) -> ExportfsBackend:
    return ExportfsBackend(
        cfg.exports_dir,
        cfg.exportfs_command,
        cfg.exportfs_timeout_seconds,
        cfg.etab_file,
        pending_marker=cfg.state_dir / state.APPLY_PENDING,
        last_verified=lambda: state.load_verified(cfg.state_dir),
    )


def _last_verified(cfg: Config) -> dict[str, str] | None:
    """The last verified copy; one that is not trusted counts as none (it is replaced)."""
    try:
        return state.load_verified(cfg.state_dir)
    except state.UntrustedVerified as exc:
        log.warning("%s", exc)
        return None


def log_decisions(plan: Plan) -> None:
    for c in plan.changes:
        log.info("%s %s %s -> %s (%s)", c.action.value, c.project, c.path, c.client, c.reason.value)
    for h in plan.holds:
        what = " ".join(x for x in (h.project, h.path, h.client) if x) or "everything"
        act = f" {h.action.value}" if h.action else ""
        log.info("held%s %s (%s)%s", act, what, h.reason.value, f": {h.detail}" if h.detail else "")


@dataclass(frozen=True)
class SyncResult:
    plan: Plan
    applied: ApplyResult
    exit_code: int

    def line(self) -> str:
        a = self.applied
        files = f"{len(a.written)} files written, {len(a.removed)} removed"
        ran = "exportfs ran" if a.ran_exportfs else "exportfs not run"
        verdict = "held" if self.exit_code == EXIT_HELD else "ok"
        return f"sync {verdict}: {self.plan.summary()}; {files}; {ran}"


def sync(
    cfg: Config,
    served: ServedSet,
    *,
    force: bool = False,
    plan_checksum: str | None = None,
    extra_holds: tuple[Hold, ...] = (),
    source: InventorySource | None = None,
) -> SyncResult:
    """One full cycle.  The caller holds the state lock."""
    started = time.time()
    try:
        return _sync(cfg, served, started, force, plan_checksum, extra_holds, source)
    except NotRecorded:
        raise  # its status is saved already (or cannot be)
    except Exception as exc:
        _save_error(cfg, started, str(exc), type(exc).__name__)
        raise


def _sync(
    cfg: Config,
    served: ServedSet,
    started: float,
    force: bool,
    plan_checksum: str | None,
    extra_holds: tuple[Hold, ...],
    source: InventorySource | None,
) -> SyncResult:
    for directory, private in (
        (cfg.exports_dir, False),
        (cfg.state_dir, True),
        (cfg.state_dir / state.VERIFIED, True),
        (cfg.state_dir / journal.HISTORY, True),
    ):
        stale = remove_stale_temporaries(directory, private)
        for name in stale.removed:
            log.info("removed %s/%s, left by an interrupted write", directory, name)
        for name in stale.left:
            log.warning(
                "left %s/%s alone: a temporary of another tool, or one of an older "
                "nfs-exportd (now named .nfs-exportd.*); remove it by hand if no tool writes it",
                directory,
                name,
            )
    facts = read_facts(cfg, served, writing=True, source=source)
    plan = make_plan(cfg, served, facts, force=force, extra_holds=extra_holds)
    if plan_checksum is not None and plan_checksum != plan.checksum:
        raise PlanMismatch(
            f"the plan is now {plan.checksum}, not the {plan_checksum} you reviewed; run plan again"
        )
    log_decisions(plan)
    applied = backend_for(cfg).apply(plan.files, facts.scan.raw, facts.missing_paths)
    kill_point("verified")
    # From here on the exports in force are changed and verified: a state file that
    # cannot be written is no reason to undo that, but it is never silent either.
    unsaved: list[str] = []
    try:
        if plan.counting:
            state.save_counters(cfg.state_dir, plan.counters, plan.memory)
        elif facts.counters.problem:
            # not rebuilt yet: keep saying so until a complete cycle has counted afresh
            state.save_counters(cfg.state_dir, {}, rebuilding=facts.counters.problem)
    except StateError as exc:
        unsaved.append(str(exc))
    rendered = {n: render(f) for n, f in plan.files.items() if f is not None}
    try:
        if applied.ran_exportfs or _last_verified(cfg) != rendered:
            state.save_verified(cfg.state_dir, rendered)
    except StateError as exc:
        unsaved.append(str(exc))
    changed = bool(applied.written or applied.removed)
    old_status = load_status_or_empty(cfg)
    unjournaled = old_status.get("unjournaled") if isinstance(old_status, dict) else None
    journal_errors: list[str] = []
    if unjournaled:
        _journal_catch_up(cfg, facts.scan.raw, unjournaled, journal_errors)
    if changed:
        journal_change(
            cfg,
            "sync",
            plan.checksum,
            plan.summary(),
            facts.scan.raw,
            rendered,
            plan,
            on_error=journal_errors,
        )
    if journal_errors:
        unjournaled = {
            "since": (unjournaled or {}).get("since") or started,
            "message": journal_errors[-1],
        }
    elif unjournaled:
        log.info("the journal has caught up with the changes it could not record")
        unjournaled = None
    unsaved += journal_errors
    code = EXIT_HELD if plan.held else EXIT_OK
    result = SyncResult(plan, applied, code)
    if not unsaved:
        problem = _save_status(
            cfg, plan, facts, started, "held" if plan.held else "ok", result.line(), unjournaled
        )
        if problem is None:
            return result
        raise NotRecorded(
            f"{result.line()}; but {problem}: status and check show the cycle before; "
            f"free space in state_dir {cfg.state_dir}"
        )
    if changed:
        head = (
            f"the change was applied and verified in force ({len(applied.written)} files "
            f"written, {len(applied.removed)} removed), but it is not recorded"
        )
    else:
        head = "the exports in force are verified, but the state could not be saved"
    message = f"{head}: {'; '.join(unsaved)}; free space in state_dir {cfg.state_dir}" + (
        ", then run sync: the journal catches up" if journal_errors else ""
    )
    problem = _save_status(cfg, plan, facts, started, "error", message, unjournaled)
    if problem is not None:
        message += f"; and {problem}: status and check show the cycle before"
    raise NotRecorded(message)


def _journal_catch_up(
    cfg: Config, in_force: dict[str, str], unjournaled: Any, errors: list[str]
) -> None:
    """Journal what earlier cycles applied while the journal could not be written: the
    files in force now against the newest entry's."""
    try:
        known = journal.ids(cfg.state_dir)
        last = journal.load(cfg.state_dir, known[-1]).files if known else None
    except StateError as exc:
        errors.append(str(exc))
        return
    if last is None:
        return  # no journal yet: this cycle's entry starts it, with a baseline
    since = unjournaled.get("since") if isinstance(unjournaled, dict) else None
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(since or 0)))
    journal_change(
        cfg,
        "sync",
        "",
        f"catch-up: changes applied since {when} while the journal could not be written",
        dict(last),
        in_force,
        on_error=errors,
    )


def journal_change(
    cfg: Config,
    kind: str,
    checksum: str,
    reason: str,
    before: dict[str, str],
    after: dict[str, str],
    plan: Plan | None = None,
    baseline: dict[str, str] | None = None,
    on_error: list[str] | None = None,
) -> journal.Entry | None:
    """Journal an applied change.  A journal that cannot be written is logged (and added
    to ``on_error``), not undone: the change is applied and verified already, and undoing
    it would be worse."""
    reasons = {(c.project, c.path, c.client): c.reason.value for c in plan.changes} if plan else {}
    try:
        entry = journal.record(
            cfg.state_dir,
            kind=kind,
            checksum=checksum,
            reason=reason,
            before=before,
            after=after,
            reasons=reasons,
            retention_days=cfg.history.retention_days,
            max_entries=cfg.history.max_entries,
            baseline=baseline,
        )
    except Exception as exc:
        log.error("could not journal the change: %s", exc)
        if on_error is not None:
            on_error.append(f"the journal could not be written: {exc}")
        return None
    if entry is not None:
        log.info(
            "journal entry %d: %d added, %d removed, %d updated (%s)",
            entry.id,
            len(entry.added),
            len(entry.removed),
            len(entry.updated),
            kind,
        )
    return entry


def load_status_or_empty(cfg: Config) -> dict[str, Any]:
    """The last saved status, or {} when there is none or it cannot be read."""
    try:
        return state.load_status(cfg.state_dir) or {}
    except Exception:
        return {}


def _save_error(cfg: Config, started: float, message: str, kind: str = "") -> None:
    """Record a failed cycle; what is in force did not change, so the counts stay."""
    status = load_status_or_empty(cfg)
    status["schema"] = 1
    status.setdefault("first_cycle", started)
    status["last_cycle"] = {
        "started": started,
        "finished": time.time(),
        "result": "error",
        "message": message,
        "error": kind,
    }
    try:
        state.save_status(cfg.state_dir, status)
    except Exception as exc:
        log.error("could not save status: %s", exc)


def _save_status(
    cfg: Config,
    plan: Plan,
    facts: Facts,
    started: float,
    result: str,
    message: str,
    unjournaled: dict[str, Any] | None = None,
) -> str | None:
    """Save status.json; returns what went wrong when it could not be saved."""
    files = [f for f in plan.files.values() if f is not None]
    status: dict[str, Any] = {
        "schema": 1,
        "last_cycle": {
            "started": started,
            "finished": time.time(),
            "result": result,
            "message": message,
        },
        "inventory": {
            "source": facts.snapshot.source,
            "complete": facts.snapshot.listing_complete,
            "problem": facts.snapshot.problem,
            "incomplete_projects": dict(facts.snapshot.incomplete),
        },
        "maintenance": facts.maintenance.value,
        "rollback_hold": facts.rollback_hold,
        "holds_by_reason": plan.holds_by_reason(),
        "counts": {
            "files": len(files),
            "projects": sum(1 for f in files if f.kind == "project"),
            "exports": sum(len(f.lines) for f in files),
            "pairs": sum(len(f.pairs()) for f in files),
            "clients": len({c for f in files for ln in f.lines for c in ln.clients}),
        },
        "applied": {a.value: plan.count(a) for a in Action},
        "plan": plan.to_json(),
    }
    old = load_status_or_empty(cfg)
    status["first_cycle"] = old.get("first_cycle") or started
    if facts.snapshot.listing_complete:
        status["last_complete_inventory"] = time.time()
    elif "last_complete_inventory" in old:
        status["last_complete_inventory"] = old["last_complete_inventory"]
    # since when cycles have held something other than maintenance (check warns on it)
    # since when each hold in force has held (so that a churn of young holds never looks
    # like one long hold); held_since is the oldest
    seen_raw = old.get("hold_first_seen")
    seen: dict[str, float] = seen_raw if isinstance(seen_raw, dict) else {}
    first_seen = {}
    for h in plan.holds:
        if h.reason.value not in QUIET:
            key = hold_key(h.reason.value, h.project, h.path, h.client)
            first_seen[key] = seen.get(key) or started
    status["hold_first_seen"] = first_seen
    status["held_since"] = min(first_seen.values()) if first_seen else None
    # a change in force that the journal lacks: until a later cycle catches up
    status["unjournaled"] = unjournaled
    try:
        state.save_status(cfg.state_dir, status)
    except Exception as exc:
        log.error("could not save status: %s", exc)
        return f"status could not be saved: {exc}"
    return None
