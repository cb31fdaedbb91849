"""Time spent waiting on HTTP, measured around the calls (bench/cycles.py).

On PYTHONPATH with ``BENCH_HTTP_LOG`` set, every ``requests`` HTTP call (keystoneauth,
openstacksdk and novaclient all send through ``HTTPAdapter.send``) is timed; at exit the
union of the calls' intervals (threads overlap: per-project mode) is written to that file.
The measured program's code is not changed.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
from typing import Any

INTERVALS: list[tuple[float, float]] = []
_lock = threading.Lock()


def union(intervals: list[tuple[float, float]]) -> float:
    """Seconds covered by at least one interval."""
    total, end = 0.0, float("-inf")
    for a, b in sorted(intervals):
        if b > end:
            total += b - max(a, end)
            end = b
    return total


def _install(path: str) -> None:
    from requests.adapters import HTTPAdapter

    send = HTTPAdapter.send

    def timed(self: Any, *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return send(self, *args, **kwargs)
        finally:
            with _lock:
                INTERVALS.append((t0, time.perf_counter()))

    HTTPAdapter.send = timed  # type: ignore[method-assign]

    def dump() -> None:
        with open(path, "w", encoding="utf-8") as f:
            f.write(f"{union(INTERVALS)} {len(INTERVALS)}\n")

    atexit.register(dump)


if os.environ.get("BENCH_HTTP_LOG"):
    _install(os.environ["BENCH_HTTP_LOG"])
