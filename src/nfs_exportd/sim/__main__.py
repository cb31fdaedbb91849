"""``python -m nfs_exportd.sim serve|gen``: the same as ``nfs-exportd sim``."""

from __future__ import annotations

import argparse
import sys

from .cli import add_parser, main

if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m nfs_exportd.sim")
    add_parser(parser.add_subparsers(dest="command", required=True))
    sys.exit(main(parser.parse_args(["sim", *sys.argv[1:]])))
