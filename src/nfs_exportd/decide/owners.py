"""Phase "owners": which managed files a plan considers, and whose each path is now.

A file is considered when the projects file or the config serves something for it, or
when it is in force (what is in force and no longer served must still be taken down).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping
from dataclasses import dataclass

from ..model import (
    EXPORTS_SUFFIX,
    PUBLIC_FILE_PREFIX,
    ExportsFile,
    FileKind,
    PublicExport,
    ServedExport,
)

PUBLIC_OWNER_PREFIX = "public:"


def project_filename(project: str) -> str:
    return project + EXPORTS_SUFFIX


def public_filename(name: str) -> str:
    return PUBLIC_FILE_PREFIX + name + EXPORTS_SUFFIX


@dataclass(frozen=True, order=True)
class Owner:
    """Whose a managed file is."""

    kind: FileKind
    name: str

    @property
    def is_project(self) -> bool:
        return self.kind == FileKind.PROJECT

    @property
    def label(self) -> str:
        """The owner as plans, counters and holds name it (``public:NAME`` for public)."""
        return self.name if self.is_project else PUBLIC_OWNER_PREFIX + self.name


def owners_to_consider(
    private: Mapping[str, tuple[ServedExport, ...]],
    public: tuple[PublicExport, ...],
    in_force: Mapping[str, ExportsFile],
) -> dict[str, Owner]:
    """filename -> owner: every file served now, and every managed file in force."""
    owners: dict[str, Owner] = {}
    for project in private:
        owners[project_filename(project)] = Owner(FileKind.PROJECT, project)
    for pub in public:
        owners[public_filename(pub.name)] = Owner(FileKind.PUBLIC, pub.name)
    for fname, f in in_force.items():
        owners.setdefault(fname, Owner(f.kind, f.owner))
    return owners


def project_names(
    private: Mapping[str, tuple[ServedExport, ...]], in_force: Mapping[str, ExportsFile]
) -> frozenset[str]:
    """The projects a plan is about: served now, or with a file in force."""
    return frozenset(private) | {f.owner for f in in_force.values() if f.is_project}


def served_for(
    private: Mapping[str, tuple[ServedExport, ...]], public: tuple[PublicExport, ...]
) -> dict[str, str]:
    """path -> the label the projects file and config serve it for now (a moved volume
    is its new owner's at once)."""
    out: dict[str, str] = {}
    for project, exps in private.items():
        for exp in exps:
            out[exp.path] = project
    for pub in public:
        out[pub.path] = PUBLIC_OWNER_PREFIX + pub.name
    return out


class ServedIndex:
    """``served_for`` indexed by path, to ask "which labels serve a path inside or around
    this one" in O(depth + answers) instead of a scan of every served path per path in
    force (which made a cycle quadratic in the number of paths)."""

    def __init__(self, served: Mapping[str, str]) -> None:
        self.served = served
        self.ordered = sorted(served)

    def around(self, path: str) -> set[str]:
        """The labels of served paths equal to ``path``, above it or below it (both
        normalised), as ``path_within`` either way says."""
        found: set[str] = set()
        served = self.served
        if path == "/":
            return set(served.values())
        if "/" in served:
            found.add(served["/"])
        parts = path.split("/")
        for i in range(2, len(parts) + 1):  # "/a", "/a/b", ..., the path itself
            label = served.get("/".join(parts[:i]))
            if label is not None:
                found.add(label)
        prefix = path + "/"
        ordered = self.ordered
        for j in range(bisect_left(ordered, prefix), len(ordered)):
            if not ordered[j].startswith(prefix):
                break
            found.add(served[ordered[j]])
        return found
