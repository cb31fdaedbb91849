"""Export_Id allocation (pure).

An export keeps its id for as long as its conf file exists (the id is in the file's name
and header).  A new export gets the next free id upwards from a cursor that only moves
forward (wrapping at the top of the range), so an id that was just given up is not handed
to someone else soon: a client that still holds a file handle of a removed export gets
"stale", never another project's volume.  Never free: ids of every conf file of ours
(also the ones being removed: their removal is not read back yet), ids Ganesha reports in
use, ids named by other files in conf_dir, and ids given up in this very cycle (an undo
re-adds those exports with their old ids).
"""

from __future__ import annotations

from collections.abc import Iterable, Set


class IdsExhausted(ValueError):
    """The Export_Id range has fewer free ids than new exports."""


def allocate(
    count: int, taken: Set[int], low: int, high: int, cursor: int
) -> tuple[list[int], int]:
    """``count`` free ids in ``low..high``, scanning upwards from ``cursor`` (wrapping);
    returns them and the new cursor (one past the last id given)."""
    if not low <= cursor <= high:
        cursor = low
    size = high - low + 1
    out: list[int] = []
    for step in range(size):
        if len(out) == count:
            break
        candidate = low + (cursor - low + step) % size
        if candidate not in taken:
            out.append(candidate)
    if len(out) < count:
        free = size - len({t for t in taken if low <= t <= high})
        raise IdsExhausted(
            f"ganesha.export_id_min..export_id_max ({low}..{high}) has {free} free Export_Ids "
            f"and {count} new exports need one each; nothing was changed: widen the range"
        )
    if not out:
        return out, cursor
    nxt = out[-1] + 1
    return out, nxt if nxt <= high else low


def next_cursor(saved: int | None, ours: Iterable[int], low: int, high: int) -> int:
    """The cursor to start from: the saved one, or (state lost) one past our highest id."""
    if saved is not None and low <= saved <= high:
        return saved
    top = max((i for i in ours if low <= i <= high), default=low - 1)
    return top + 1 if top < high else low
