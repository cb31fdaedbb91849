"""The values every per-file phase reads: the input, the policy, ownership, counting."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .claims import Ownership
from .inputs import DecideInput, Policy


@dataclass(frozen=True)
class Cycle:
    inp: DecideInput
    policy: Policy
    ownership: Ownership
    counting: bool  # this cycle counts toward confirmations (complete, unfrozen, spaced)
    served_for: Mapping[str, str] = field(default_factory=dict)  # path -> label served for
