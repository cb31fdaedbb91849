"""Where ``exportfs-sandbox`` lies: the real exportfs in a private mount namespace, for
the tests and ``make demo`` (``exportfs_command: [SANDBOX, DIR]``)."""

from __future__ import annotations

from pathlib import Path

SANDBOX = Path(__file__).with_name("exportfs-sandbox")
