"""``adopt``: take over the header-less ``<project>.exports`` files of the original daemon.

The switch-over must remove nothing by itself.  Each file the original wrote
(``PATH -rw,nohide,no_subtree_check,async,no_root_squash IP IP ...``) is parsed, matched to
a project of the projects file by its name, and rewritten with our header and exactly the
same paths, options and clients, through the normal apply path (atomic, exportfs, read
back, undo on failure).  What differs from our config (options above all) is not changed
here: it shows as entries of the plan that the next ``sync`` applies, under the usual
safety rules, and adopt prints that plan.

A file is left alone, with the reason printed, when its name is not a project served
here, when it exports a path that project does not serve here, or when a line is not
``PATH -OPTIONS IP ...`` (host names, wildcards, per-client options).
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass, field, replace

from ..config import Config, load_config
from ..cycle import (
    Facts,
    apply_and_record,
    backend_for,
    load_served,
    make_plan,
    read_facts,
    record_unjournaled,
)
from ..decide import Plan
from ..errors import EXIT_OK, StateError
from ..exportsfile import ManagedFileError, parse_lines, render
from ..memory import state
from ..model import EXPORTS_SUFFIX, ExportsFile, FileKind
from ..read.projects import ServedSet
from ..validate import check_name
from .common import LOCK_WAIT

log = logging.getLogger("nfs_exportd")


@dataclass
class AdoptResult:
    adopted: dict[str, ExportsFile] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # filename -> why
    next_plan: Plan | None = None
    applied: bool = False
    entry_id: int | None = None

    @property
    def pairs(self) -> int:
        return sum(len(f.pairs()) for f in self.adopted.values())


def find(cfg: Config, served: ServedSet, facts: Facts) -> AdoptResult:
    """Which header-less files can be adopted, and why the others cannot."""
    res = AdoptResult()
    for name in sorted(facts.scan.unmanaged):
        path = cfg.exports_dir / name
        stem = name[: -len(EXPORTS_SUFFIX)]
        if stem.startswith("public_") or stem.startswith("public-"):
            res.skipped[name] = (
                "a public export: configure it under public_exports, then remove this file "
                "by hand (nfs-exportd writes public-NAME.exports)"
            )
            continue
        try:
            check_name(stem, "project")
        except ValueError as exc:
            res.skipped[name] = f"not a project file name: {exc}"
            continue
        if stem not in served.private:
            res.skipped[name] = (
                f"project {stem} has no volumes served here (projects file and serve.hosts); "
                "left alone"
            )
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            res.skipped[name] = f"cannot read: {exc}"
            continue
        try:
            lines = parse_lines(f"{path}", text.split("\n"))
        except ManagedFileError as exc:
            res.skipped[name] = f"not in the original daemon's format: {exc}"
            continue
        ours = {e.path for e in served.private[stem]}
        foreign = sorted(ln.path for ln in lines if ln.path not in ours)
        if foreign:
            res.skipped[name] = (
                f"exports {', '.join(foreign)}, which project {stem} does not serve here; "
                "left alone"
            )
            continue
        res.adopted[name] = ExportsFile(name, FileKind.PROJECT, stem, lines)
    return res


def adopt(cfg: Config, served: ServedSet, *, dry_run: bool) -> AdoptResult:
    """Find, then (unless ``dry_run``) rewrite the adoptable files as ours.  The caller
    holds the state lock when not a dry run."""
    facts = read_facts(cfg, served, writing=False)
    res = find(cfg, served, facts)
    after_scan = replace(
        facts.scan,
        managed={**facts.scan.managed, **res.adopted},
        unmanaged=facts.scan.unmanaged - set(res.adopted),
        raw={**facts.scan.raw, **{n: render(f) for n, f in res.adopted.items()}},
    )
    res.next_plan = make_plan(cfg, served, replace(facts, scan=after_scan))
    if dry_run or not res.adopted:
        return res
    current_raw: dict[str, str] = {}
    for name in res.adopted:
        try:
            current_raw[name] = (cfg.exports_dir / name).read_text(encoding="utf-8")
        except OSError as exc:
            raise StateError(f"{cfg.exports_dir / name}: cannot read: {exc}") from None
    # The same pairs and options, now with our header: exportfs must end where it began.
    rec = apply_and_record(
        cfg,
        backend_for(cfg),
        res.adopted,
        dict(facts.scan.raw),
        kind="adopt",
        reason=f"adopted {len(res.adopted)} files of the original daemon ({res.pairs} pairs)",
        after=dict(after_scan.raw),
        current_raw=current_raw,
        missing=facts.missing_paths,
        # the pairs in force before were the same, under the original's files: a rollback
        # to the baseline must not take them away
        baseline=dict(after_scan.raw),
    )
    res.applied = True
    entry = rec.entry
    record_unjournaled(cfg, rec)
    if rec.unsaved:
        raise rec.not_recorded(
            cfg, f"adopted {len(res.adopted)} files (applied and verified), but not recorded"
        )
    res.entry_id = entry.id if entry else None
    return res


def text(res: AdoptResult, dry_run: bool) -> str:
    verb = "would adopt" if dry_run else "adopted"
    rows = [f"{verb} {len(res.adopted)} files ({res.pairs} pairs), left {len(res.skipped)} alone"]
    for name, f in sorted(res.adopted.items()):
        opts = sorted({ln.options for ln in f.lines})
        rows.append(
            f"  {name}: project {f.owner}, {len(f.lines)} paths, {len(f.pairs())} pairs, "
            f"options {' | '.join(opts)}"
        )
    for name, why in sorted(res.skipped.items()):
        rows.append(f"  left alone {name}: {why}")
    if res.next_plan is not None:
        rows.append("the next sync then plans (option differences included):")
        rows.extend("  " + line for line in res.next_plan.to_text().splitlines())
    return "\n".join(rows)


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    served = load_served(cfg)
    if args.dry_run:
        res = adopt(cfg, served, dry_run=True)
    else:
        with state.StateLock(cfg.state_dir, wait=LOCK_WAIT):
            res = adopt(cfg, served, dry_run=False)
    print(text(res, args.dry_run))
    return EXIT_OK
