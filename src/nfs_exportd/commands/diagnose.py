"""``diagnose [--since 15m] [--json] [--check] [--source ...]``: the NFS server's refused
requests, grouped by cause in plain words, most important first.

Reads the refusal lines of the window (``read.refusals``), the inventory, the exports in
force and the plan as ``plan`` does (changing nothing), and lets ``decide.diagnose`` name
the causes.  ``--check`` is an Icinga plugin: it never raises, every failure is UNKNOWN.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import time
from pathlib import Path

from ..config import Config, DiagnoseSource, load_config
from ..cycle import load_served, make_plan, read_facts
from ..decide import diagnose as dx
from ..errors import EXIT_OK, NfsExportdError, UsageError
from ..memory import journal
from ..memory import status as status_file
from ..read import refusals

log = logging.getLogger("nfs_exportd")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str) -> float:
    """``15m``, ``90s``, ``2h``, ``1d`` (or plain seconds) -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not m or float(m.group(1)) <= 0:
        raise UsageError(f"diagnose --since {text!r}: expected a duration like 15m, 2h or 90s")
    return float(m.group(1)) * _UNITS[m.group(2) or "s"]


def parse_source(text: str) -> DiagnoseSource:
    """``file:PATH``, ``journal-unit:UNIT`` or ``journal-id:SYSLOG_IDENTIFIER``."""
    kind, _, value = text.partition(":")
    try:
        if kind == "file" and value:
            return DiagnoseSource(kind="file", path=value)  # type: ignore[arg-type]
        if kind == "journal-unit" and value:
            return DiagnoseSource(kind="journal", unit=value)
        if kind == "journal-id" and value:
            return DiagnoseSource(kind="journal", identifier=value)
    except ValueError as exc:
        raise UsageError(f"diagnose --source {text!r}: {exc}") from None
    raise UsageError(
        f"diagnose --source {text!r}: expected file:PATH, journal-unit:UNIT or "
        "journal-id:IDENTIFIER"
    )


def report(cfg: Config, args: argparse.Namespace, now: float) -> dict[str, object]:
    window = parse_since(args.since) if args.since else cfg.diagnose.window_seconds
    since = now - window
    sources = (
        tuple(parse_source(s) for s in args.source)
        if args.source
        else cfg.diagnose.sources_for(cfg.backend)
    )
    found: list[dx.Refusal] = []
    reports: list[dx.SourceReport] = []
    for src in sources:
        got = refusals.read_source(src, since, now, cfg.diagnose.timeout_seconds)
        found += got.refusals
        reports.append(got.report)
        if got.report.error:
            log.warning("diagnose: %s", got.report.error)
    warnings: list[str] = []
    if cfg.backend == "ganesha":
        levels = refusals.ganesha_log_levels(
            cfg.ganesha.dbus_address, min(cfg.diagnose.timeout_seconds, 10)
        )
        warnings += dx.log_level_warnings(levels)
    served = load_served(cfg)
    facts = read_facts(cfg, served, writing=False)
    plan = make_plan(cfg, served, facts)
    try:
        st = status_file.load(cfg.state_dir)
    except NfsExportdError as exc:
        log.warning("status unreadable, 'held since' unknown: %s", exc)
        st = None
    return dx.diagnose(
        dx.Inputs(
            refusals=found,
            snapshot=facts.snapshot,
            in_force=facts.scan.managed,
            served=served.private,
            public=served.public,
            plan=plan,
            since=since,
            until=now,
            sources=reports,
            hold_since=dict(st.hold_first_seen) if st is not None else {},
            warnings=warnings,
            maintenance_since=_mtime(cfg.maintenance_file),
            removed=_removed(cfg, since - JOURNAL_LOOKBACK),
        )
    )


JOURNAL_LOOKBACK = 7 * 86400.0  # a VM refused a week after its address was removed


def _removed(cfg: Config, after: float) -> dict[str, list[dx.Removal]]:
    """Removals in the journal of applied changes since ``after``, by address."""
    try:
        entries = journal.entries(cfg.state_dir)
    except NfsExportdError as exc:
        log.warning("journal unreadable, removals unknown: %s", exc)
        return {}
    out: dict[str, list[dx.Removal]] = {}
    for e in entries:
        if e.time < after or e.kind == "baseline":
            continue
        for p in e.removed:
            out.setdefault(p.client, []).append(
                dx.Removal(e.time, e.id, p.project, p.path, p.reason)
            )
    return out


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def run(args: argparse.Namespace) -> int:
    if args.check:
        return _check(args)
    cfg = load_config(args.config)
    now = time.time()
    rep = report(cfg, args, now)
    _metrics(cfg, rep, now)
    print(json.dumps(rep, indent=1, sort_keys=True) if args.json else dx.text(rep))
    return EXIT_OK


def _check(args: argparse.Namespace) -> int:
    """Never raises: a plugin must answer, whatever happens."""
    try:
        cfg = load_config(args.config)
        now = time.time()
        rep = report(cfg, args, now)
        _metrics(cfg, rep, now)
        line = dx.check_line(rep)
        code = int(rep["verdict"]["code"])  # type: ignore[index]
    except NfsExportdError as exc:
        line, code = f"NFS-EXPORTD-DIAGNOSE UNKNOWN - {' '.join(str(exc).split())}", dx.UNKNOWN
    except Exception as exc:
        line, code = f"NFS-EXPORTD-DIAGNOSE UNKNOWN - {type(exc).__name__}: {exc}", dx.UNKNOWN
    print(line[:1024])
    return code


def _metrics(cfg: Config, rep: dict[str, object], now: float) -> None:
    path = cfg.diagnose.metrics_textfile
    if path is None:
        return
    from ..ops.metrics import write_refusals

    causes = rep["causes"]
    assert isinstance(causes, list)
    write_refusals(path, {c["cause"]: c["refusals"] for c in causes}, now)
