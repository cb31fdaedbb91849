"""``config check``: validate the config file and the projects file it names.

For Puppet's ``validate_cmd`` and for a human before a SIGHUP: it reads only those two
files (never status.json, the cloud or exportfs), so it works on a new server and on a
copy of the file in another directory.  Exit 0 valid, 2 invalid (the message names the
file and the key).
"""

from __future__ import annotations

import argparse

from ..config import load_config
from ..cycle import load_served
from ..errors import EXIT_OK


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    served = load_served(cfg)
    print(
        f"config OK: {args.config}: backend {cfg.backend}, inventory {cfg.inventory.source}, "
        f"projects file {cfg.projects_file}: {len(served.private)} projects with volumes "
        f"on this server, {len(served.public)} public exports"
    )
    return EXIT_OK
