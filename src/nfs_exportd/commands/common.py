"""What several commands share: the lock wait, the metrics exporter, the live status."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ..config import Config
from ..decide import Reason
from ..memory import state
from ..memory import status as status_file
from ..ops.check import hold_key

if TYPE_CHECKING:
    from ..ops.metrics import Exporter

LOCK_WAIT = 120.0  # seconds a command waits for a cycle in progress to finish


def new_exporter(cfg: Config) -> Exporter:
    """The metrics exporter, imported only by the commands that export: prometheus_client
    loads http.server, which ``check``, ``plan`` and ``status`` have no use for."""
    from ..ops.metrics import Exporter

    return Exporter(cfg)


def when(t: float) -> str:
    """Local time with its UTC offset: a time read off a server in another zone (or
    pasted into a ticket) is otherwise off by hours."""
    return time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(t))


def parse_since(text: str, now: float) -> float:
    """``history --since``: an age (``90m``, ``6h``, ``2d``, ``45s``) or an ISO 8601 time
    (``2026-11-23``, ``2026-11-23T14:00``, ``2026-11-23 14:00+01:00``; local time
    without an offset).  UsageError naming the option otherwise."""
    import re
    from datetime import datetime

    from ..errors import UsageError

    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", text)
    if m:
        return now - float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    try:
        return datetime.fromisoformat(text.strip()).timestamp()  # naive: local time
    except ValueError:
        raise UsageError(
            f"history --since {text!r}: not a time; give an ISO 8601 time "
            "(2026-11-23, 2026-11-23T14:00, 2026-11-23T14:00+01:00) or an age (90m, 6h, 2d)"
        ) from None


def live_status(cfg: Config) -> status_file.Status | None:
    """status.json, with the rollback-hold as it is now: rollback and release change it
    between cycles, and status and check must say so at once."""
    st = status_file.load(cfg.state_dir)
    marker = state.load_rollback_hold(cfg.state_dir)
    if st is None:
        return None
    holds = dict(st.holds_by_reason)
    seen = dict(st.hold_first_seen)
    if marker is not None:
        detail: str | None = marker.detail()
        holds.setdefault(Reason.ROLLBACK_HOLD.value, 1)
        since = marker.since if marker.since is not None else time.time()
        seen.setdefault(hold_key(Reason.ROLLBACK_HOLD.value, None, None, None), since)
    else:
        detail = None
        holds.pop(Reason.ROLLBACK_HOLD.value, None)
        seen = {k: v for k, v in seen.items() if not k.startswith("rollback-hold|")}
    return st.model_copy(
        update={
            "rollback_hold": detail,
            "holds_by_reason": holds,
            "hold_first_seen": seen,
            "held_since": min(seen.values()) if seen else None,
        }
    )
