"""The rules of ``rollback`` (pure): which restored pairs may come back, and whether the
restore is within the removal bound.

A rollback hands back an old journal entry's files, never an address or a path that
belongs to someone else now:

* a restored pair whose address another project claims now (an instance the inventory
  shows, even from a partial read; a port or server of another project; another
  project's managed file in force) is dropped, and so is an address two restored
  project files share, unless the inventory says whose it is;
* a restored line whose path the projects file no longer serves for that project (a
  volume moved to another project since the entry), or that is unsafe now, is dropped;
* "another project" is by Keystone id (``lifecycle.aliases``): a project renamed since
  the entry keeps its pairs under the new name;
* the restore is bounded like a sync: more removals than ``max_removal_fraction`` of the
  pairs in force (and ``min_removal_count``) need ``force``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from ..errors import UsageError
from ..model import ExportLine, ExportsFile, InventorySnapshot, ServedExport
from ..validate import path_within
from .lifecycle import aliases

Dropped = tuple[str, str, str, str]  # project, path, client, why


@dataclass(frozen=True)
class RestoreInput:
    entry_id: int
    restored: Mapping[str, ExportsFile]  # the entry's files that may be restored
    in_force: Mapping[str, ExportsFile]  # managed files in force now
    snapshot: InventorySnapshot  # the inventory now (possibly partial)
    known_ids: Mapping[str, str]  # the daemon's memory: name -> Keystone id
    private: Mapping[str, tuple[ServedExport, ...]]  # what the projects file serves now
    unsafe_paths: Mapping[str, str] = field(default_factory=dict)  # path -> why, now
    force: bool = False
    max_removal_fraction: float = 0.25
    min_removal_count: int = 10


@dataclass(frozen=True)
class Restore:
    files: dict[str, ExportsFile | None]  # filename -> file to write (None: delete it)
    dropped: tuple[Dropped, ...] = ()
    inventory_note: str = ""
    inventory_partial: bool = False  # the note is a warning: checked on partial data


def restore_claims(snap: InventorySnapshot) -> dict[str, set[str]]:
    """address -> who claims it now: the projects whose instances show it (positive
    evidence, even from a partial read) and every foreign claim, by its description."""
    claims: dict[str, set[str]] = {}
    for project, insts in snap.instances.items():
        for inst in insts:
            for addr in inst.addresses:
                claims.setdefault(str(addr), set()).add(project)
    for ip, foreign in snap.claims.items():  # a port of an unlisted project, of X on Y, ...
        claims.setdefault(ip, set()).update(f"({c.detail})" for c in foreign)
    return claims


def inventory_check(inp: RestoreInput) -> tuple[str, bool]:
    """How the restored addresses could be checked (note, partial); an unknown listing
    refuses the rollback unless forced."""
    snap = inp.snapshot
    involved = {f.owner for f in inp.restored.values() if f.is_project}
    unknown = sorted(p for p in involved if not snap.project_complete(p))
    if snap.listing_complete and not unknown:
        return "checked against a complete inventory listing", False
    if not snap.listing_complete and not inp.force:
        raise UsageError(
            f"cannot check that the restored addresses still belong to their projects: "
            f"inventory unknown: {snap.problem}; retry when the cloud answers, or pass --force"
        )
    if not snap.listing_complete:
        return (
            f"inventory unknown ({snap.problem}); checked only against the other "
            "projects' files in force (--force)"
        ), True
    return (
        f"inventory unknown for {', '.join(unknown)}; checked against the instances "
        "known and the other projects' files in force"
    ), True


def _owners_of(files: Collection[ExportsFile]) -> dict[str, set[str]]:
    """address -> the projects whose files export it."""
    out: dict[str, set[str]] = {}
    for f in files:
        if f.is_project:
            for _path, client in f.pairs():
                out.setdefault(client, set()).add(f.owner)
    return out


def path_problem(inp: RestoreInput, owner: str, path: str, names: frozenset[str]) -> str | None:
    """Why a restored line of ``owner`` (whose names now are ``names``) may not come
    back, or None."""
    if path in inp.unsafe_paths:
        return f"path now unsafe: {inp.unsafe_paths[path]}"
    if any(e.path == path for n in names for e in inp.private.get(n, ())):
        return None
    others = sorted(
        n
        for n, exps in inp.private.items()
        if n not in names
        and any(path_within(e.path, path) or path_within(path, e.path) for e in exps)
    )
    if others:
        return f"path now served for project {', '.join(others)}"
    return f"path no longer served for project {owner} in the projects file"


def restore_file(
    inp: RestoreInput,
    f: ExportsFile,
    claims: Mapping[str, set[str]],
    in_force_owner: Mapping[str, set[str]],
    restored_owner: Mapping[str, set[str]],
) -> tuple[ExportsFile, list[Dropped]]:
    """One restored project file, without what belongs to someone else now."""
    snap = inp.snapshot
    listed = {r.name: r.id for r in snap.projects.values()} if snap.projects else {}
    names = aliases(f.owner, listed, inp.known_ids)
    now_file = inp.in_force.get(f.filename)
    pid = (now_file.keystone_id if now_file is not None else None) or f.keystone_id
    dropped: list[Dropped] = []
    lines = []
    for line in f.lines:
        problem = path_problem(inp, f.owner, line.path, names)
        if problem is not None:
            dropped.extend((f.owner, line.path, c, problem) for c in line.clients)
            continue
        keep = []
        for client in line.clients:
            others = (
                claims.get(client, set())
                | in_force_owner.get(client, set())
                | (set() if client in claims else restored_owner.get(client, set()))
            ) - names
            if others:
                why = f"now belongs to project {', '.join(sorted(others))}"
                dropped.append((f.owner, line.path, client, why))
            else:
                keep.append(client)
        if keep:
            lines.append(ExportLine(line.path, line.options, tuple(keep)))
    return ExportsFile(f.filename, f.kind, f.owner, tuple(lines), pid), dropped


def check_removal_bound(inp: RestoreInput, files: Mapping[str, ExportsFile | None]) -> None:
    """The removal bound of sync applies to a rollback too: an old entry can be far from
    what is in force (before an adopt, before many projects were added)."""

    def pairs(fs: Mapping[str, ExportsFile | None]) -> set[tuple[str, str, str]]:
        return {(f.owner, p, c) for f in fs.values() if f is not None for p, c in f.pairs()}

    now_pairs = pairs(inp.in_force)
    lost = now_pairs - pairs(files)
    limit = inp.max_removal_fraction * len(now_pairs)
    if len(lost) > limit and len(lost) > inp.min_removal_count and not inp.force:
        raise UsageError(
            f"rollback to entry {inp.entry_id} would remove {len(lost)} of {len(now_pairs)} "
            f"pairs in force, more than safety.max_removal_fraction {inp.max_removal_fraction}"
            f" (and safety.min_removal_count {inp.min_removal_count}); review it with "
            f"'nfs-exportd history --show {inp.entry_id}' and pass --force to roll back anyway"
        )


def restore(inp: RestoreInput) -> Restore:
    """The files a rollback writes, what it drops and why; UsageError when it may not
    run (inventory unknown, too many removals) unless forced."""
    note, partial = inventory_check(inp)
    claims = restore_claims(inp.snapshot)
    in_force_owner = _owners_of(list(inp.in_force.values()))
    # within the restored set, an address in two projects' files stays with neither
    # (unless the inventory says whose it is)
    restored_owner = _owners_of(list(inp.restored.values()))
    files: dict[str, ExportsFile | None] = {}
    dropped: list[Dropped] = []
    for name, f in inp.restored.items():
        if not f.is_project:
            files[name] = f
            continue
        files[name], lost = restore_file(inp, f, claims, in_force_owner, restored_owner)
        dropped += lost
    for name in inp.in_force:
        if name not in files:
            files[name] = None  # it did not exist then
    check_removal_bound(inp, files)
    return Restore(files, tuple(dropped), note, partial)
