"""Scripted faults: the failure states the daemon must survive, on demand.

A rule matches requests by service, method, region and a regular expression searched in
the raw request path (query string included, so ``marker=`` can select "every page but
the first").  ``after`` skips the first N matches and ``count`` limits how many times the
rule fires, so "the third page of the server listing fails once" is one rule.  Every
rule that fires contributes its delay; the first firing rule with an action decides the
answer: a status code, a dropped connection, a malformed body or a truncated one.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Any

SERVICES = ("identity", "compute", "network")


@dataclass
class FaultRule:
    id: int
    service: str | None = None
    method: str | None = None
    path_regex: str | None = None
    region: str | None = None
    status: int | None = None
    body: Any = None
    delay: float = 0.0
    drop: bool = False
    malformed: bool = False
    truncated: bool = False
    count: int | None = None
    after: int = 0
    matched: int = 0
    fired: int = 0
    _regex: re.Pattern[str] | None = field(default=None, repr=False)

    @property
    def has_action(self) -> bool:
        return self.status is not None or self.drop or self.malformed or self.truncated

    def matches(self, service: str, method: str, region: str | None, raw_path: str) -> bool:
        if self.service is not None and self.service != service:
            return False
        if self.method is not None and self.method.upper() != method:
            return False
        if self.region is not None and self.region != region:
            return False
        return self._regex is None or self._regex.search(raw_path) is not None


@dataclass(frozen=True)
class Fired:
    """What the fault rules decided for one request."""

    delay: float = 0.0
    rule: FaultRule | None = None  # the first firing rule with an action


class FaultTable:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []
        self._next_id = 1

    def add(self, **kw: Any) -> int:
        service = kw.get("service")
        if service is not None and service not in SERVICES:
            raise ValueError(f"service must be one of {', '.join(SERVICES)} or None")
        count = kw.get("count")
        if count is not None and count < 1:
            raise ValueError("count must be >= 1 (or None for every match)")
        if kw.get("after", 0) < 0 or kw.get("delay", 0.0) < 0:
            raise ValueError("after and delay must not be negative")
        status = kw.get("status")
        if status is not None and not 100 <= status <= 599:
            raise ValueError(f"status {status} is not an HTTP status code")
        regex = re.compile(kw["path_regex"]) if kw.get("path_regex") else None
        with self._lock:
            rule = FaultRule(id=self._next_id, _regex=regex, **kw)
            self._next_id += 1
            self._rules.append(rule)
            return rule.id

    def remove(self, rule_id: int) -> None:
        with self._lock:
            self._rules = [r for r in self._rules if r.id != rule_id]

    def clear(self) -> None:
        with self._lock:
            self._rules = []

    def rules(self) -> list[FaultRule]:
        with self._lock:
            return list(self._rules)

    def evaluate(self, service: str, method: str, region: str | None, raw_path: str) -> Fired:
        delay = 0.0
        chosen: FaultRule | None = None
        with self._lock:
            for rule in self._rules:
                if not rule.matches(service, method, region, raw_path):
                    continue
                rule.matched += 1
                if rule.matched <= rule.after:
                    continue
                if rule.count is not None and rule.fired >= rule.count:
                    continue
                rule.fired += 1
                delay += rule.delay
                if chosen is None and rule.has_action:
                    chosen = rule
        return Fired(delay, chosen)
