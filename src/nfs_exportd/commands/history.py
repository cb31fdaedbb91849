"""``history [--json] [--show ID]``: the journal of applied changes."""

from __future__ import annotations

import argparse
import json
import logging
import time

from ..errors import EXIT_OK, UsageError
from ..memory import journal, running
from .common import parse_since, when

log = logging.getLogger("nfs_exportd")


def run(args: argparse.Namespace) -> int:
    cfg, fallback = running.load_or_running(args.config)
    if fallback:
        log.warning("%s", fallback.line())
    if args.show is not None:
        entry = journal.load(cfg.state_dir, args.show)
        if args.json:
            print(json.dumps(entry.to_json(), indent=1, sort_keys=True))
        else:
            print(entry_text(entry))
            for name, text in sorted((entry.files or {}).items()):
                print(f"--- {name}")
                print(text, end="")
        return EXIT_OK
    entries = journal.entries(cfg.state_dir)
    if args.since is not None:
        since = parse_since(args.since, time.time())
        entries = [e for e in entries if e.time >= since]
    if args.limit is not None:
        if args.limit < 1:
            raise UsageError(f"history --limit {args.limit}: give a number of entries >= 1")
        entries = entries[-args.limit :]
    if args.json:
        print(json.dumps({"schema": 1, "entries": [e.summary() for e in entries]}, indent=1))
        return EXIT_OK
    if not entries and (args.since is not None or args.limit is not None):
        print(f"no journal entry matches ({cfg.state_dir}/history)")
    elif not entries:
        print(f"the journal is empty ({cfg.state_dir}/history)")
    for e in entries:
        print(entry_text(e))
    return EXIT_OK


def entry_text(e: journal.Entry) -> str:
    head = (
        f"{e.id:>5}  {when(e.time)}  {e.kind:<8} +{len(e.added)} -{len(e.removed)} "
        f"~{len(e.updated)}  {e.file_count} files  {e.user}  {e.reason}"
    )
    rows = [head]
    for sign, pairs in (("+", e.added), ("-", e.removed), ("~", e.updated)):
        for p in pairs[:20]:
            rows.append(f"         {sign} {p.project} {p.path} {p.client}  ({p.reason})")
        if len(pairs) > 20:
            rows.append(f"         {sign} ... and {len(pairs) - 20} more (history --show {e.id})")
    return "\n".join(rows)
