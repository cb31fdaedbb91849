"""Phases "timing" and "remember": whether this cycle counts toward confirmations, and
the lifecycle memory and removal counters a plan hands on to the next cycle."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from ..model import PairKey
from .inputs import DecideInput, Policy
from .lifecycle import Memory


@dataclass(frozen=True)
class Timing:
    complete: bool  # complete and unfrozen: evidence may be kept
    counting: bool  # ... and spaced enough from the last cycle that counted
    note: str | None = None  # why a complete cycle does not count


def timing(inp: DecideInput, policy: Policy) -> Timing:
    """A complete, unfrozen cycle counts only when it is at least confirmation_spacing
    after the last one that counted (a burst of cycles, whatever triggers it, confirms
    no faster than polling; a clock that went back counts, once, from the new time)."""
    complete = inp.snapshot.listing_complete and policy.frozen is None
    last = inp.memory.last_counted
    elapsed = None if last is None else inp.now - last
    spaced = elapsed is None or elapsed < 0 or elapsed >= policy.confirmation_spacing
    note = None
    if complete and not spaced:
        assert elapsed is not None
        note = (
            f"this cycle does not count toward confirmations: {elapsed:.1f} s since the "
            f"last one that did, less than confirmation_spacing_seconds "
            f"{policy.confirmation_spacing:g}"
        )
    return Timing(complete, complete and spaced, note)


def next_memory(
    inp: DecideInput,
    policy: Policy,
    when: Timing,
    assessed: Memory,
    names: Collection[str],
    shrink: tuple[str | None, Mapping[str, int]],
    shrinking: Collection[str],
    deleted_now: Collection[str],
) -> Memory:
    """The lifecycle memory to keep (only a complete cycle changes it).  ``assessed``:
    the memory after this cycle's project verdicts; ``shrink``: the whole inventory's
    implausible shrink (or None) and the instance counts seen; ``shrinking``: projects
    whose own shrink waits for a human (they keep their old count)."""
    if not when.complete:
        return inp.memory
    shrink_detail, counts = shrink
    if (shrink_detail is not None and not policy.force) or not when.counting:
        instances = dict(inp.memory.instances)
    else:
        instances = dict(counts)
        if not policy.force:
            for name in shrinking:
                instances[name] = inp.memory.instances[name]
    window = policy.project_deletion_window
    deletions = {n: t for n, t in inp.memory.deletions.items() if 0 <= inp.now - t < window}
    deletions.update({n: inp.now for n in deleted_now})
    return Memory(
        absent={k: v for k, v in assessed.absent.items() if k in names},
        known_ids=assessed.known_ids,
        instances=instances,
        deletions=deletions,
        last_counted=inp.now if when.counting else inp.memory.last_counted,
    )


def next_counters(
    inp: DecideInput, when: Timing, kept: Mapping[PairKey, int], removed: Collection[PairKey]
) -> dict[PairKey, int]:
    """A counting cycle keeps what the diff counted (``kept``); a complete one that does
    not count neither counts nor resets (removed pairs forget theirs); an incomplete one
    keeps the counters as they were."""
    if when.counting:
        return {k: v for k, v in kept.items() if k not in removed}
    if when.complete:
        return {k: v for k, v in inp.counters.items() if k not in removed}
    return dict(inp.counters)
