"""Phase "target files": the content of every managed file after the plan, and the guard
that refuses a plan exporting one path (or nested paths) for two files."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ..errors import NfsExportdError
from ..model import ExportLine, ExportsFile, PairKey, sorted_clients
from .diff import PathOutcome
from .inputs import DecideInput
from .owners import Owner


@dataclass(frozen=True)
class FilePlan:
    """One considered file after diff and bounds."""

    owner: Owner
    paths: Mapping[str, PathOutcome]
    keystone_id: str | None  # the id its header line records (projects only)
    deleted: bool = False  # its project's deletion is confirmed: the file goes when empty


def target_files(
    plans: Mapping[str, FilePlan],
    removed: frozenset[PairKey],
    inp: DecideInput,
    frozen: bool,
) -> tuple[dict[str, ExportsFile | None], list[str]]:
    """filename -> the file to write (None: delete it), and notes.  ``removed``: the
    pairs this plan removes; a path keeps the options in force while frozen, missing,
    held or no longer served."""
    files: dict[str, ExportsFile | None] = {}
    notes: list[str] = []
    for fname, fp in plans.items():
        label = fp.owner.label
        lines: list[ExportLine] = []
        for path, st in sorted(fp.paths.items()):
            result = {c for c in st.result if PairKey(label, path, c) not in removed}
            if not result:
                continue
            keep_options = (
                frozen or path in inp.missing_paths or path in inp.held_paths or st.options is None
            )
            options = (st.current_options if keep_options else st.options) or st.options
            assert options is not None
            lines.append(ExportLine(path, options, sorted_clients(result)))
        current = inp.in_force.get(fname)
        if frozen and current is not None and (lines or not current.lines):
            # frozen: nothing changes, not even the file's existence or the id it records
            # (a file goes only when the removals a freeze lets through emptied it)
            files[fname] = ExportsFile(
                fname, fp.owner.kind, fp.owner.name, tuple(lines), current.keystone_id
            )
        elif not lines and (not _configured(fp.owner, inp) or fp.deleted):
            files[fname] = None  # nothing left and nothing served (or deleted): the file goes
            if fname in inp.in_force:
                notes.append(f"{fname}: no longer served and empty; removed")
        else:
            files[fname] = ExportsFile(
                fname, fp.owner.kind, fp.owner.name, tuple(lines), fp.keystone_id
            )
    return files, notes


def _configured(owner: Owner, inp: DecideInput) -> bool:
    if owner.is_project:
        return owner.name in inp.private
    return any(p.name == owner.name for p in inp.public)


class PlanBug(NfsExportdError):
    """The plan would export one path (or nested paths) for two files: a bug in decide
    (a moved path leaves its old file in the same plan), so nothing is written."""


def check_one_owner_per_path(
    files: Mapping[str, ExportsFile | None],
    in_force: Mapping[str, ExportsFile],
    one_project: Callable[[str, str], bool],
) -> None:
    """Refuse a plan that puts a path, or a path inside it, into two files, unless both
    lines are already in force exactly so (then the plan does not make it worse) or both
    files are one project's (a rename: same Keystone id, the old name's pairs waiting for
    their confirmations while the new name's file has the path)."""
    by_path: dict[str, set[str]] = {}
    for fname, f in files.items():
        for ln in f.lines if f is not None else ():
            by_path.setdefault(ln.path, set()).add(fname)

    def in_force_now(path: str, fname: str) -> bool:
        f = in_force.get(fname)
        return f is not None and any(ln.path == path for ln in f.lines)

    for path, fnames in sorted(by_path.items()):
        parts = path.split("/")
        for n in range(1, len(parts) + 1):  # the path itself and every parent of it
            outer = "/".join(parts[:n]) or "/"
            for fname in sorted(fnames):
                for oname in sorted(by_path.get(outer, set()) - {fname}):
                    if in_force_now(path, fname) and in_force_now(outer, oname):
                        continue
                    if one_project(fname, oname):
                        continue
                    raise PlanBug(
                        f"refusing the plan: {outer} ({oname}) and {path} ({fname}) would "
                        "both be exported; nothing was written. This is a bug in "
                        "nfs-exportd: please report it"
                    )
