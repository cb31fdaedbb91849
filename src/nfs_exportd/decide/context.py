"""The values every per-file phase reads: the input, the policy, ownership, counting."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property

from .claims import Ownership
from .inputs import DecideInput, Policy
from .owners import ServedIndex


@dataclass(frozen=True)
class Cycle:
    inp: DecideInput
    policy: Policy
    ownership: Ownership
    counting: bool  # this cycle counts toward confirmations (complete, unfrozen, spaced)
    served_for: Mapping[str, str] = field(default_factory=dict)  # path -> label served for

    @cached_property
    def served_index(self) -> ServedIndex:
        """``served_for`` indexed by path (built once per cycle)."""
        return ServedIndex(self.served_for)
