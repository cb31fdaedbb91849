"""Managed exports files: render and parse (pure; listing exports_dir is ``read.exportsdir``).

A managed file starts with exactly ``# nfs-exportd managed file, do not edit: project=NAME``
(or ``public=NAME``); a project file then has ``# keystone-id=ID``, the Keystone id the
name is bound to (a comment to exportfs; files of older versions lack it and bind on first
sight); then ``PATH -OPTIONS CLIENT ...`` lines, clients as IP literals.
Files without the header are never rewritten or removed.
"""

from __future__ import annotations

from .addresses import AddressError, canonical_network
from .config import check_options
from .errors import NfsExportdError, StateError
from .model import (
    HEADER_PREFIX,
    KEYSTONE_ID_PREFIX,
    ExportLine,
    ExportsFile,
    FileKind,
    sorted_clients,
)
from .validate import KEYSTONE_ID_RE, check_name, normalise_path

_KINDS = {k.value: k for k in FileKind}  # the header's word -> its kind


def header_for(f: ExportsFile) -> str:
    return f"{HEADER_PREFIX}{f.kind.value}={f.owner}"


class RenderRefused(NfsExportdError):
    """A token about to be written is not one the grammar allows: a bug upstream (every
    value is checked where it is read), so nothing is written and the cycle fails."""


# Characters that change the meaning of an exports line; never in any token we write.
_UNSAFE_CHARS = frozenset(" \t\n\r\v\f\\*()#\"'")


def _refuse(f: ExportsFile, what: str) -> RenderRefused:
    return RenderRefused(
        f"refusing to write {f.filename}: {what}; nothing was written. This is a bug in "
        "nfs-exportd (the value passed the checks where it was read): please report it"
    )


def render(f: ExportsFile) -> str:
    """The file's text, after checking every token again (the second guard: paths,
    options, clients and the owner each match their grammar exactly, or RenderRefused)."""
    try:
        check_name(f.owner, f.kind.value)
    except ValueError as exc:
        raise _refuse(f, f"owner: {exc}") from None
    if f.filename != f.kind.filename(f.owner):
        raise _refuse(f, f"kind {f.kind.value!r} and owner {f.owner!r} do not match the file name")
    out = [header_for(f)]
    if f.keystone_id is not None:
        if not f.is_project or not _is_id(f.keystone_id):
            raise _refuse(f, f"keystone id {f.keystone_id!r} is not a Keystone id of a project")
        out.append(KEYSTONE_ID_PREFIX + f.keystone_id)
    seen: set[str] = set()
    for line in f.lines:
        try:
            # "/" is a normalised path, and never a volume: the whole server
            ok = normalise_path(line.path) == (line.path, False) and line.path != "/"
        except ValueError:
            ok = False
        if not ok or line.path in seen:
            raise _refuse(f, f"path {line.path!r} is not a checked, normalised absolute path")
        seen.add(line.path)
        try:
            ok = check_options(line.options) == line.options
        except ValueError:
            ok = False
        if not ok or _UNSAFE_CHARS.intersection(line.options):
            raise _refuse(f, f"options {line.options!r} of {line.path} are not a checked list")
        if not line.clients:  # "PATH -OPTIONS" alone exports to the world
            raise _refuse(f, f"{line.path} has no client")
        for client in line.clients:
            if not _canonical_client(client):
                raise _refuse(f, f"client {client!r} of {line.path} is not a canonical address")
        out.append(f"{line.path} -{line.options} {' '.join(line.clients)}")
    return "\n".join(out) + "\n"


def _is_id(text: object) -> bool:
    return isinstance(text, str) and KEYSTONE_ID_RE.fullmatch(text) is not None


def _canonical_client(text: str) -> bool:
    """Exactly the canonical text of a unicast address or network, nothing more."""
    if not isinstance(text, str):
        return False
    if _UNSAFE_CHARS.intersection(text) or "%" in text:
        return False
    try:  # remembered per text (canonical_network), shared with the files read in force
        return canonical_network(text) == text
    except AddressError:
        return False


class ManagedFileError(ValueError):
    pass


def _client(text: str, where: str) -> str:
    """A client token of a file in force, through the one address grammar (so that
    ``::ffff:a.b.c.d`` in force is compared as ``a.b.c.d``); a token that fails it (a zone
    id, loopback, ...) is an error naming file:line, never silently kept or dropped."""
    try:
        return canonical_network(text)
    except AddressError as exc:
        raise ManagedFileError(
            f"{where}: client {exc}; remove it from the file by hand (never written by "
            "nfs-exportd from checked data)"
        ) from None


def _options(text: str, where: str) -> str:
    """The option list of a line in force, checked as the config's are (what ``render``
    demands): a bad token is an error naming file:line when the file is read, not a
    refusal to write it later."""
    try:
        ok = check_options(text) == text and not _UNSAFE_CHARS.intersection(text)
        why = "" if ok else "unsafe characters"
    except ValueError as exc:
        ok, why = False, str(exc)
    if not ok:
        raise ManagedFileError(
            f"{where}: options {text!r}: {why}; fix or remove the line by hand (nfs-exportd "
            "writes only checked option lists)"
        )
    return text


def parse(filename: str, text: str) -> ExportsFile | None:
    """Parse a managed file; ``None`` when the file does not carry our header."""
    lines = text.split("\n")
    first = lines[0] if lines else ""
    if not first.startswith(HEADER_PREFIX):
        return None
    word, sep, owner = first[len(HEADER_PREFIX) :].partition("=")
    kind = _KINDS.get(word)
    if not sep or kind is None:
        raise ManagedFileError(f"{filename}:1: unrecognised nfs-exportd header {first!r}")
    try:
        check_name(owner, kind.value)
    except ValueError as exc:
        raise ManagedFileError(f"{filename}:1: {exc}") from None
    keystone_id = None
    second = lines[1] if len(lines) > 1 else ""
    if second.startswith(KEYSTONE_ID_PREFIX):
        keystone_id = second[len(KEYSTONE_ID_PREFIX) :]
        if kind is not FileKind.PROJECT or not _is_id(keystone_id):
            raise ManagedFileError(
                f"{filename}:2: {second!r} is not a Keystone id line of a project file; "
                "remove the line (the id is learnt again from Keystone)"
            )
    return ExportsFile(filename, kind, owner, parse_lines(filename, lines[1:], 2), keystone_id)


def parse_lines(filename: str, lines: list[str], first_no: int = 1) -> tuple[ExportLine, ...]:
    """``PATH -OPTIONS CLIENT ...`` lines (ours, and the original daemon's): clients must
    be IP literals or networks; ManagedFileError names file:line otherwise."""
    out: list[ExportLine] = []
    seen: set[str] = set()
    for no, raw in enumerate(lines, start=first_no):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{filename}:{no}"
        parts = line.split()
        if len(parts) < 2 or not parts[1].startswith("-"):
            raise ManagedFileError(f"{where}: expected 'PATH -OPTIONS CLIENT ...', got {line!r}")
        try:
            path, _ = normalise_path(parts[0])
        except ValueError as exc:
            raise ManagedFileError(f"{where}: {exc}") from None
        if path in seen:
            raise ManagedFileError(f"{where}: path {path} appears twice")
        seen.add(path)
        options = _options(parts[1][1:], where)
        clients = frozenset(_client(c, where) for c in parts[2:])
        out.append(ExportLine(path, options, sorted_clients(clients)))
    return tuple(out)


class UntrustedVerified(StateError):
    """The last verified copy is whole but a file in it is not what nfs-exportd renders
    (a hand edit, a bad restore of state_dir): the copy as a whole is not used."""


def rendered_problem(name: str, text: str) -> str | None:
    """Why ``text`` is not exactly what render writes for the managed file ``name``
    (None when it is).  Text that fails this is never written into exports_dir: an undo
    must not carry an edit past the renderer's checks (``*(rw,no_root_squash)``)."""
    try:
        parsed = parse(name, text)
    except ManagedFileError as exc:
        return str(exc)
    if parsed is None:
        return f"{name}: does not start with the nfs-exportd header"
    if name != parsed.kind.filename(parsed.owner):
        return (
            f"{name}: header says {parsed.kind.value}={parsed.owner} but the file name "
            "does not match"
        )
    try:
        again = render(parsed)
    except RenderRefused as exc:
        return f"{name}: not a file nfs-exportd writes ({str(exc).partition('; ')[0]})"
    if again != text:
        old, new = text.split("\n"), again.split("\n")
        no = next((i for i, (a, b) in enumerate(zip(old, new, strict=False)) if a != b), None)
        no = min(len(old), len(new)) if no is None else no
        got = old[no] if no < len(old) else "(end of file)"
        return f"{name}:{no + 1}: {got!r} is not what nfs-exportd writes there"
    return None
