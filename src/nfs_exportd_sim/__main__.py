"""``python -m nfs_exportd_sim serve|gen``: the same as ``nfs-exportd-sim``."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m nfs_exportd_sim"))
