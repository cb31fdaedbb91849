"""Validation of names and paths that end up in exports files (pure).

exports(5) is a line format where whitespace, parentheses, ``#`` and quotes change the
meaning of a line (``PATH (opts)`` with a space exports to the world), so only a
conservative character set is allowed.  Paths are normalised (``//`` and a trailing ``/``
are common in real files) and the caller is told, so it can warn.
"""

from __future__ import annotations

import re

NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")  # always fullmatch: "$" allows "\n"
PATH_COMPONENT_RE = re.compile(r"[A-Za-z0-9_.+@,=:-]+")
# a Keystone project id: 32 hex digits; LDAP-backed ones may be other words
KEYSTONE_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")


def check_name(name: object, what: str) -> str:
    """A project, volume or export name: ASCII letters, digits, ``_ . -``; no ``/`` or ``..``."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"{what} name must be a non-empty string, got {name!r}")
    if ".." in name or not NAME_RE.fullmatch(name):
        raise ValueError(
            f"{what} name {name!r} is not allowed (only ASCII letters, digits, '_', '.', '-'; "
            "no '/', '..', spaces or special characters)"
        )
    return name


def normalise_path(path: object) -> tuple[str, bool]:
    """Return the normalised absolute path and whether normalising changed it."""
    if not isinstance(path, str) or not path:
        raise ValueError(f"path must be a non-empty string, got {path!r}")
    if not path.startswith("/"):
        raise ValueError(f"path {path!r} is relative; an absolute path is required")
    parts = [p for p in path.split("/") if p]
    for part in parts:
        if part in (".", ".."):
            raise ValueError(f"path {path!r} contains '{part}'")
        if not PATH_COMPONENT_RE.fullmatch(part):
            raise ValueError(
                f"path {path!r} contains a character that is not allowed in exports "
                "(whitespace, newline, quotes, '(', ')', '#', '*', '\\', non-ASCII, ...)"
            )
    norm = "/" + "/".join(parts)
    return norm, norm != path


def path_within(inner: str, outer: str) -> bool:
    """True when ``inner`` is ``outer`` or lies below it (both normalised)."""
    return inner == outer or outer == "/" or inner.startswith(outer + "/")


# System trees: never exported, and never a serve root (nor anything below them).
SYSTEM_TREES = (
    "/etc", "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
    "/boot", "/dev", "/proc", "/sys", "/run", "/root",
)  # fmt: skip
# Too wide to be a root or an export as a whole (below them is fine: /var/nfs,
# /home/projects, ...): exporting one of them exports everything of everybody in it.
SYSTEM_TOPS = ("/", "/var", "/home", "/tmp")


def system_directory(path: str) -> str | None:
    """The system directory a normalised path is (or lies below), or None."""
    if path in SYSTEM_TOPS:
        return path
    for tree in SYSTEM_TREES:
        if path_within(path, tree):
            return tree
    return None


def check_root(value: object) -> str:
    """A ``serve.roots`` entry: a normalised absolute path that is no system directory."""
    path, _ = normalise_path(value)
    system = system_directory(path)
    if system is not None:
        raise ValueError(
            f"{path} is or lies in a system directory ({system}) and cannot be a serve root: "
            "list the directories that hold the exported volumes, e.g. /srv"
        )
    return path
