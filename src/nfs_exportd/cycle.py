"""One reconcile cycle: read the facts, decide, apply, remember.

This is the only module that wires the three layers together.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from .addresses import clear_caches
from .apply.exportfs import ApplyResult, ExportfsBackend
from .apply.ganesha.backend import STATE_FILE as GANESHA_STATE
from .apply.ganesha.backend import ConfDir, GaneshaBackend, forget_clients
from .config import Config
from .decide import Action, DecideInput, Hold, Plan, Policy, decide
from .errors import EXIT_HELD, EXIT_OK, NotRecorded, PlanMismatch, StateError
from .exportsfile import UntrustedVerified, render
from .fsutil import remove_stale_temporaries
from .killpoints import kill_point
from .memory import journal, running, state
from .memory import status as status_file
from .model import ExportsFile, InventorySnapshot, Maintenance, client_sort_key
from .ops.check import QUIET, hold_key
from .read.exportsdir import DirScan, scan
from .read.inventory import InventorySource, source_from_config
from .read.projects import (
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


# Warnings about the projects file already logged by this process: the run loop re-reads
# the file every cycle, and the same "normalised" warning every minute is noise.
_warned: set[str] = set()


def load_served(cfg: Config) -> ServedSet:
    """Projects file + config -> what this server serves (raises ConfigError)."""
    projects = load_projects(cfg.projects_file, cfg.projects_file_max_bytes)
    for warning in projects.warnings:
        if warning not in _warned:
            _warned.add(warning)
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
    # ganesha: conf_dir read once for the scan and the foreign-file check (apply reads
    # it again: it must act on what is there when it changes anything)
    conf = ganesha_backend(cfg).read_conf_dir() if cfg.backend == "ganesha" else None
    dir_scan = scan_in_force(cfg, conf)
    interest = frozenset(served.private) | frozenset(
        f.owner for f in dir_scan.managed.values() if f.is_project
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
    if conf is not None:
        safety = _foreign_held(cfg, paths, safety, conf)
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


def _foreign_held(cfg: Config, paths: set[str], safety: PathSafety, conf: ConfDir) -> PathSafety:
    """ganesha: a served path that a file in conf_dir not ours exports, or whose
    Export_Id of ours it names, is held (nothing added; what is in force stays): Ganesha
    would refuse our EXPORT of it, which failed (and undid) every change of every cycle,
    or serves the foreign export under our id, which was only a log line while sync
    said ok."""
    foreign = ganesha_backend(cfg).foreign_conflicts(conf)
    held = dict(safety.held)
    for path in sorted(paths):
        if path in foreign and path not in safety.unsafe:
            held[path] = foreign[path]
    return PathSafety(safety.unsafe, held)


def scan_in_force(cfg: Config, conf: ConfDir | None = None) -> DirScan:
    """The managed files in force, for every reader (sync, plan, status, explain,
    rollback, adopt).  exportfs: the files in exports_dir (the kernel server reads them).
    ganesha: rebuilt from ganesha.conf_dir, which Ganesha serves at its start and each
    apply verifies live; exports_dir is not read (nor written), so losing state_dir
    cannot make decide see nothing in force and remove every export.  ``conf``: this
    cycle's read of ganesha.conf_dir (default: read it now)."""
    if cfg.backend == "ganesha":
        managed = ganesha_backend(cfg).in_force(conf)
        return DirScan(managed, frozenset(), {n: render(f) for n, f in managed.items()})
    return scan(cfg.exports_dir)


def forget_texts() -> None:
    """After a cycle of ``run``: drop what the address parser, the client sort key and
    the Ganesha render and read-back remember per text (up to 2^18 entries each, ~130 MB
    at the end of a long ``run``); a cycle fills them again in a fraction of its time."""
    clear_caches()
    client_sort_key.cache_clear()
    forget_clients()


def read_rollback_hold(state_dir: Path) -> str | None:
    marker = state.load_rollback_hold(state_dir)
    return marker.detail() if marker is not None else None


# ``run`` waits interval_seconds x uniform(JITTER) from the end of one cycle to the next
JITTER = (0.9, 1.1)


def confirmation_spacing(cfg: Config) -> float:
    """safety.confirmation_spacing_seconds, or, when not set, the shortest wait ``run``
    makes between two regular cycles (JITTER[0] x interval_seconds): every regular cycle
    counts, and a cycle run early (a notification, change polling, a signal, a retry, a
    human) may add, never confirm faster than polling would."""
    given = cfg.safety.confirmation_spacing_seconds
    return JITTER[0] * cfg.interval_seconds if given is None else given


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


class Backend(Protocol):
    """What applies managed files: apply them (verified, undone on failure), read back
    how the exports in force differ from them, and undo to the last verified state."""

    name: str

    def apply(
        self,
        targets: Mapping[str, ExportsFile | None],
        current_raw: Mapping[str, str],
        missing_paths: frozenset[str] = frozenset(),
    ) -> ApplyResult: ...

    def read_back(
        self, targets: Mapping[str, ExportsFile | None], missing_paths: frozenset[str] = frozenset()
    ) -> list[str]: ...

    def undo(
        self, current_raw: Mapping[str, str], missing_paths: frozenset[str] = frozenset()
    ) -> str: ...


def ganesha_backend(cfg: Config) -> GaneshaBackend:
    return GaneshaBackend(
        cfg.ganesha,
        cfg.state_dir / GANESHA_STATE,
        pending_marker=cfg.state_dir / state.APPLY_PENDING,
        last_verified=lambda: state.load_verified(cfg.state_dir),
    )


def backend_for(cfg: Config) -> Backend:
    if cfg.backend == "ganesha":
        return ganesha_backend(cfg)
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
    except UntrustedVerified as exc:
        log.warning("%s", exc)
        return None


def log_changes(plan: Plan) -> None:
    """The changes of a plan, logged once they are applied and verified (never before:
    an apply that fails and is undone must not leave "add" lines behind)."""
    for c in plan.changes:
        log.info(
            "applied %s %s %s -> %s (%s)",
            c.action.value,
            c.project,
            c.path,
            c.client,
            c.reason.value,
        )


HOLD_REMINDER_SECONDS = 3600.0  # how often a hold that did not change is logged again
_NOUNS = {"add": "additions", "remove": "removals", "update": "updates", "": "holds"}


def _hold_line(reason: str, action: str, items: list[tuple[str, str]]) -> str:
    """One log line for the holds of one reason and action, collapsed: 90 pairs held on
    an unknown listing are one line, not 90."""
    if len(items) == 1:
        what, detail = items[0]
        act = f" {action}" if action else ""
        return f"held{act} {what} ({reason})" + (f": {detail}" if detail else "")
    details = list(dict.fromkeys(d for _, d in items))
    more = f" and {len(items) - 3} more" if len(items) > 3 else ""
    head = f"held {len(items)} {_NOUNS[action]} ({reason})"
    if len(details) == 1:
        shown = ", ".join(w for w, _ in items[:3])
        return head + (f": {details[0]}" if details[0] else "") + f" ({shown}{more})"
    shown = "; ".join(f"{w}: {d}" if d else w for w, d in items[:3])
    return f"{head}: {shown}{more}"


@dataclass
class HoldLog:
    """Holds are logged when they start, change and end, and as a reminder every
    HOLD_REMINDER_SECONDS: not every cycle (a daemon holding 18 pending confirmations
    wrote 18 lines a minute, which buried everything else).  One per process: a one-shot
    sync logs all of its holds."""

    last: dict[tuple[str, str], tuple[str, ...]] | None = None
    logged_at: float = 0.0

    def reset(self) -> None:
        """Forget what was logged: the next cycle logs every hold (a one-shot sync)."""
        self.last, self.logged_at = None, 0.0

    def log(self, holds: tuple[Hold, ...], now: float) -> None:
        groups: dict[tuple[str, str], list[tuple[str, str]]] = {}
        for h in sorted(holds, key=Hold.sort_key):
            what = h.scope()
            key = (h.reason.value, h.action.value if h.action else "")
            groups.setdefault(key, []).append((what, h.detail))
        shape = {k: tuple(w for w, _ in v) for k, v in groups.items()}
        old = self.last or {}
        changed = False
        for key, items in groups.items():
            if old.get(key) != shape[key]:
                changed = True
                log.info("%s", _hold_line(*key, items))
        for reason, action in sorted(old.keys() - groups.keys()):
            changed = True
            noun = _NOUNS[action] if len(old[(reason, action)]) > 1 else "hold"
            log.info("%s %s ended (%s)", len(old[(reason, action)]), noun, reason)
        if changed:
            self.logged_at = now
        elif groups and now - self.logged_at >= HOLD_REMINDER_SECONDS:
            counts = ", ".join(f"{k[0]}={len(v)}" for k, v in sorted(groups.items()))
            log.info("still held, unchanged since %s: %s", _when(self.logged_at), counts)
            self.logged_at = now
        self.last = shape


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


hold_log = HoldLog()


def log_decisions(plan: Plan) -> None:
    """The holds of a plan, as they start, change and end (``HoldLog``)."""
    hold_log.log(plan.holds, time.time())


@dataclass(frozen=True)
class SyncResult:
    plan: Plan
    applied: ApplyResult
    exit_code: int

    def line(self) -> str:
        a = self.applied
        files = f"{len(a.written)} files written, {len(a.removed)} removed"
        ran = a.summary or ("exportfs ran" if a.ran_exportfs else "exportfs not run")
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
    except PlanMismatch:
        raise  # an operator's command refused: not a failed cycle, status unchanged
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
    dirs = [] if cfg.backend == "ganesha" else [(cfg.exports_dir, False)]  # ganesha: unused
    for directory, private in (
        *dirs,
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
    running.remember(cfg)  # what status, history and check fall back to
    facts = read_facts(cfg, served, writing=True, source=source)
    plan = make_plan(cfg, served, facts, force=force, extra_holds=extra_holds)
    if plan_checksum is not None:
        check_plan_checksum(plan_checksum, plan.checksum)
    log_decisions(plan)

    def remember_counters() -> None:
        if plan.counting:
            state.save_counters(cfg.state_dir, plan.counters, plan.memory)
        elif facts.counters.problem:
            # not rebuilt yet: keep saying so until a complete cycle has counted afresh
            state.save_counters(cfg.state_dir, {}, rebuilding=facts.counters.problem)

    rec = apply_and_record(
        cfg,
        backend_for(cfg),
        plan.files,
        facts.scan.raw,
        kind="sync",
        reason=plan.summary(),
        checksum=plan.checksum,
        plan=plan,
        missing=facts.missing_paths,
        remember=remember_counters,
        started=started,
    )
    applied, unjournaled = rec.applied, rec.unjournaled
    log_changes(plan)
    code = EXIT_HELD if plan.held else EXIT_OK
    result = SyncResult(plan, applied, code)
    if not rec.unsaved:
        problem = _save_status(
            cfg, plan, facts, started, "held" if plan.held else "ok", result.line(), unjournaled
        )
        if problem is None:
            return result
        raise NotRecorded(
            f"{result.line()}; but {problem}: status and check show the cycle before; "
            f"free space in state_dir {cfg.state_dir}"
        )
    if rec.changed:
        head = (
            f"the change was applied and verified in force ({len(applied.written)} files "
            f"written, {len(applied.removed)} removed), but it is not recorded"
        )
    else:
        head = "the exports in force are verified, but the state could not be saved"
    message = str(rec.not_recorded(cfg, head))
    problem = _save_status(cfg, plan, facts, started, "error", message, unjournaled)
    if problem is not None:
        message += f"; and {problem}: status and check show the cycle before"
    raise NotRecorded(message)


MIN_CHECKSUM_PREFIX = 12  # what the text plan prints


def check_plan_checksum(given: str, actual: str) -> None:
    """``--plan-checksum``: the whole sha256, or a prefix of at least 12 hex digits (the
    text plan prints 12).  Raises PlanMismatch worded for what happened."""
    given = given.strip().lower()
    if len(given) < MIN_CHECKSUM_PREFIX or any(c not in "0123456789abcdef" for c in given):
        raise PlanMismatch(
            f"--plan-checksum {given!r} is not a plan checksum: give the sha256 that "
            f"'nfs-exportd plan' prints (at least its first {MIN_CHECKSUM_PREFIX} hex digits)"
        )
    if not actual.startswith(given):
        raise PlanMismatch(
            f"refused, nothing changed: the plan now is {actual[:MIN_CHECKSUM_PREFIX]}, not "
            f"the {given[:MIN_CHECKSUM_PREFIX]} you passed (the cloud or the files changed "
            "since you reviewed it, or the checksum is mistyped); run 'nfs-exportd plan' "
            "again (with --force if you sync with --force) and pass its checksum"
        )


@dataclass
class Recorded:
    """What one apply-and-remember did, and what it could not remember."""

    applied: ApplyResult
    entry: journal.Entry | None = None
    unsaved: list[str] = field(default_factory=list)  # why parts of state_dir were not written
    journal_failed: bool = False  # the journal lags: status says so, the next sync catches up
    unjournaled: status_file.Unjournaled | None = None  # status.json's after this

    @property
    def changed(self) -> bool:
        return bool(self.applied.written or self.applied.removed)

    def not_recorded(self, cfg: Config, head: str) -> NotRecorded:
        """The error a command raises when the change is in force but not remembered."""
        return NotRecorded(
            f"{head}: {'; '.join(self.unsaved)}; free space in state_dir {cfg.state_dir}"
            + (", then run sync: the journal catches up" if self.journal_failed else "")
        )


def apply_and_record(
    cfg: Config,
    backend: Backend,
    files: Mapping[str, ExportsFile | None],
    before: dict[str, str],
    *,
    kind: journal.Kind,
    reason: str,
    checksum: str = "",
    plan: Plan | None = None,
    after: dict[str, str] | None = None,
    current_raw: Mapping[str, str] | None = None,
    missing: frozenset[str] = frozenset(),
    baseline: dict[str, str] | None = None,
    remember: Callable[[], None] | None = None,
    started: float | None = None,
) -> Recorded:
    """The one apply-then-remember sequence of sync, run, rollback and adopt.

    The backend applies ``files`` (verified, undone on failure: then nothing is
    remembered).  From then on the exports in force are changed and verified, so no
    failure to remember undoes them, and none is silent: in order, ``remember`` (the
    counters of a sync), the last verified files (``after``: what is in force now, by
    default the rendered ``files``), a catch-up entry for what earlier commands could
    not journal, and the journal entry of this change; what fails is in ``unsaved``.
    ``before`` is what was in force (the journal's before); ``current_raw`` is what the
    backend compares against, when not all of it (adopt).
    """
    applied = backend.apply(files, before if current_raw is None else current_raw, missing)
    kill_point("verified")
    rec = Recorded(applied)
    if remember is not None:
        try:
            remember()
        except StateError as exc:
            rec.unsaved.append(str(exc))
    rendered = applied.rendered or {n: render(f) for n, f in files.items() if f is not None}
    in_force = rendered if after is None else after
    try:
        if applied.ran_exportfs or after is not None:
            state.save_verified(cfg.state_dir, in_force)
        elif not state.verified_matches(cfg.state_dir, in_force):
            _last_verified(cfg)  # says why an untrusted copy is replaced
            state.save_verified(cfg.state_dir, in_force)
    except StateError as exc:
        rec.unsaved.append(str(exc))
    unjournaled = status_file.load_or_empty(cfg.state_dir).unjournaled
    errors: list[str] = []
    if unjournaled:
        _journal_catch_up(cfg, before, unjournaled, errors)
    if rec.changed or kind != "sync":  # rollback and adopt journal even a no-op
        rec.entry = journal_change(
            cfg, kind, checksum, reason, before, in_force, plan, baseline, on_error=errors
        )
    if errors:
        rec.journal_failed = True
        since = unjournaled.since if unjournaled else (time.time() if started is None else started)
        rec.unjournaled = status_file.Unjournaled(since=since, message=errors[-1])
    elif unjournaled:
        log.info("the journal has caught up with the changes it could not record")
    rec.unsaved += errors
    return rec


def record_unjournaled(cfg: Config, rec: Recorded) -> None:
    """For commands other than sync (which saves it with its status): keep status.json's
    ``unjournaled`` true, so that check warns and the next sync catches up."""
    status = status_file.load_or_empty(cfg.state_dir)
    if status.unjournaled == rec.unjournaled:
        return
    try:
        status_file.save(cfg.state_dir, status.model_copy(update={"unjournaled": rec.unjournaled}))
    except Exception as exc:
        log.error("could not save status: %s", exc)
        rec.unsaved.append(f"status could not be saved: {exc}")


def _journal_catch_up(
    cfg: Config,
    in_force: dict[str, str],
    unjournaled: status_file.Unjournaled,
    errors: list[str],
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
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(unjournaled.since))
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
    kind: journal.Kind,
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


def _save_error(cfg: Config, started: float, message: str, kind: str = "") -> None:
    """Record a failed cycle; what is in force did not change, so the counts stay."""
    old = status_file.load_or_empty(cfg.state_dir)
    last = status_file.LastCycle(
        started=started, finished=time.time(), result="error", message=message, error=kind
    )
    new = old.model_copy(update={"first_cycle": old.first_cycle or started, "last_cycle": last})
    try:
        status_file.save(cfg.state_dir, new)
    except Exception as exc:
        log.error("could not save status: %s", exc)


def _save_status(
    cfg: Config,
    plan: Plan,
    facts: Facts,
    started: float,
    result: status_file.Result,
    message: str,
    unjournaled: status_file.Unjournaled | None = None,
) -> str | None:
    """Save status.json; returns what went wrong when it could not be saved."""
    files = [f for f in plan.files.values() if f is not None]
    old = status_file.load_or_empty(cfg.state_dir)
    # since when each loud hold in force has held (so that a churn of young holds never
    # looks like one long hold); held_since is the oldest (check warns on it)
    first_seen = {}
    for h in plan.holds:
        if h.reason.value not in QUIET:
            key = hold_key(h.reason.value, h.project, h.path, h.client)
            first_seen[key] = old.hold_first_seen.get(key) or started
    new = status_file.Status(
        first_cycle=old.first_cycle or started,
        last_cycle=status_file.LastCycle(
            started=started, finished=time.time(), result=result, message=message
        ),
        inventory=status_file.InventoryStatus(
            source=facts.snapshot.source,
            complete=facts.snapshot.listing_complete,
            problem=facts.snapshot.problem,
            incomplete_projects=dict(facts.snapshot.incomplete),
        ),
        inventory_at=started,
        maintenance=facts.maintenance,
        rollback_hold=facts.rollback_hold,
        holds_by_reason=plan.holds_by_reason(),
        counts=status_file.Counts(
            files=len(files),
            projects=sum(1 for f in files if f.is_project),
            exports=sum(len(f.lines) for f in files),
            pairs=sum(len(f.pairs()) for f in files),
            clients=len({c for f in files for ln in f.lines for c in ln.clients}),
        ),
        applied={a.value: plan.count(a) for a in Action},
        plan=status_file.PlanRecord.of(plan.to_json()),
        hold_first_seen=first_seen,
        held_since=min(first_seen.values()) if first_seen else None,
        # a change in force that the journal lacks: until a later cycle catches up
        unjournaled=unjournaled,
    )
    complete_at = time.time() if facts.snapshot.listing_complete else old.last_complete_inventory
    if complete_at is not None:  # never complete: the key stays absent
        new = new.model_copy(update={"last_complete_inventory": complete_at})
    try:
        status_file.save(cfg.state_dir, new)
    except Exception as exc:
        log.error("could not save status: %s", exc)
        return f"status could not be saved: {exc}"
    return None
