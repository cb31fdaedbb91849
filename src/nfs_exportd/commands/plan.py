"""``plan [--json] [--force]``: read, decide, print what would change; change nothing."""

from __future__ import annotations

import argparse
import json

from ..config import load_config
from ..cycle import load_served, make_plan, read_facts
from ..errors import EXIT_OK


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    served = load_served(cfg)
    facts = read_facts(cfg, served, writing=False)
    plan = make_plan(cfg, served, facts, force=args.force)
    if args.json:
        print(json.dumps(plan.to_json(), indent=1))
    else:
        print(plan.to_text())
    return EXIT_OK
