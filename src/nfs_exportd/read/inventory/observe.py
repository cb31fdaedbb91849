"""Control-plane request observations, reported by inventory sources.

The read layer only reports (service, status, seconds); whoever cares (the metrics module)
listens.  This keeps prometheus out of the read layer and the read layer testable alone.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

Listener = Callable[[str, str, float], None]

_listeners: list[Listener] = []
_lock = threading.Lock()
log = logging.getLogger("nfs_exportd")


def add_listener(fn: Listener) -> None:
    with _lock:
        if fn not in _listeners:
            _listeners.append(fn)


def remove_listener(fn: Listener) -> None:
    with _lock:
        if fn in _listeners:
            _listeners.remove(fn)


def report(service: str, status: str, seconds: float) -> None:
    """One request to ``service`` (identity, compute, network) ended with ``status`` (an
    HTTP code, or ``error`` when no answer came) after ``seconds``."""
    with _lock:
        listeners = list(_listeners)
    for fn in listeners:
        try:
            fn(service, status, seconds)
        except Exception:  # a listener must never break a read
            log.debug("request listener failed", exc_info=True)
