"""``explain IP | --project NAME [--json]``: why an address (or a project) has the
exports it has - read and decide as ``plan`` does, then ``ops.explain`` tells the story."""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging

from ..config import load_config
from ..cycle import load_served, make_plan, read_facts
from ..errors import EXIT_OK, NfsExportdError, UsageError
from ..memory import journal
from ..ops import explain

log = logging.getLogger("nfs_exportd")


def run(args: argparse.Namespace) -> int:
    if (args.ip is None) == (args.project is None):
        raise UsageError("explain: give an address, or --project NAME (one of them)")
    if args.project is not None and not args.project.strip():
        raise UsageError("explain: --project needs a project name")
    if args.ip is not None:
        try:
            ipaddress.ip_address(args.ip.strip())
        except ValueError:
            raise UsageError(f"explain: {args.ip!r} is not an IP address") from None
    cfg = load_config(args.config)
    served = load_served(cfg)
    facts = read_facts(cfg, served, writing=False)
    plan = make_plan(cfg, served, facts)
    try:
        entries = journal.entries(cfg.state_dir)
    except NfsExportdError as exc:
        log.warning("journal unreadable, 'since' unknown: %s", exc)
        entries = []
    ctx = explain.Context(
        in_force=facts.scan.managed,
        snapshot=facts.snapshot,
        served=served.private,
        plan=plan,
        journal=entries,
        confirmations=cfg.safety.removal_confirmations,
        known_ids=facts.counters.memory.known_ids,
    )
    if args.ip is not None:
        result = explain.explain_ip(ctx, args.ip)
        text = explain.ip_text(result)
    else:
        result = explain.explain_project(ctx, args.project)
        if not result["exists"]:
            listed = sorted((facts.snapshot.projects or {}).keys())
            raise UsageError(
                f"explain: there is no project {args.project!r}: not in the projects file, "
                "not in force here and not in the complete Keystone listing "
                f"({len(listed)} projects: {', '.join(listed[:10])}"
                f"{', ...' if len(listed) > 10 else ''}); check the name"
            )
        text = explain.project_text(result)
    print(json.dumps(result, indent=1, sort_keys=True) if args.json else text)
    return EXIT_OK
