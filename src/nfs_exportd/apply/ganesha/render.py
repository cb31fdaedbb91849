"""Managed lines -> one Ganesha EXPORT file per path, and back (pure).

A conf file in ``ganesha.conf_dir`` holds exactly one EXPORT block, for one path, with
one CLIENT block per managed line that serves this path (normally one; two while a
renamed project's old file still holds a pair that waits for its confirmations).  The
comment before each CLIENT block says whose line it is and carries its exportfs option
string, so the managed files in force are rebuilt from conf_dir alone (conf_dir is what
Ganesha serves at its start, so it is what is in force; no other record is kept)::

    # nfs-exportd managed Ganesha export, do not edit: export_id=1042
    # path=/srv/tools/home
    EXPORT {
        Export_Id = 1042;
        Path = "/srv/tools/home";
        Pseudo = "/srv/tools/home";
        Access_Type = None;
        FSAL { Name = VFS; }
        # record=tools.exports owner=project:tools keystone-id=9f1c options=rw,sync,root_squash
        CLIENT {
            Clients = 172.16.0.5, 172.16.0.9;
            Access_Type = RW;
            Squash = root_squash;
            SecType = sys;
        }
    }

A managed file without lines (a project with no instance left) has no EXPORT block to
carry it, so it is kept as a comment-only ``record-<file>.conf`` (Ganesha 4.3 starts
with such a file in its %dir and serves the others; AddExport/UpdateExport read only
the file they name).  Without it a lost state_dir would forget the project's Keystone
id, and a new project of the same name would inherit its volumes::

    # nfs-exportd managed Ganesha record, do not edit: record=tools.exports
    # owner=project:tools keystone-id=9f1c
    # no export: this file keeps the project's Keystone id while it has no volume line

One EXPORT per path because Ganesha refuses a second EXPORT with the same Pseudo, and
Pseudo is the Path itself (NFSv4 clients mount the same path as NFSv3 clients); the
Export_Id is the path's, so it survives a rename of the project.  The client lists of
two blocks never overlap (decide gives an address one owner; overlapping lists are
refused).  ``Access_Type = None`` at export level: a client in no CLIENT block gets
nothing (with RW there, every host gets in).  Ganesha's config parser is not forgiving
(one missing ``;`` crashes it at start; a hidden garbage file in a %dir drops every
export on a reload), so every token is checked against its grammar, and the rendered
text must parse back to exactly what was asked (``RenderRefused`` otherwise), before
anything is written.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from ...addresses import AddressError, parse_network
from ...config import EXPORT_ID_MAX, check_options
from ...exportsfile import RenderRefused
from ...ganesha_options import SEC_FLAVOURS, UINT32_MAX, ClientPerms, OptionError
from ...ganesha_options import ganesha_perms as _ganesha_perms
from ...model import EXPORTS_SUFFIX, ExportLine, ExportsFile, FileKind
from ...validate import KEYSTONE_ID_RE, NAME_RE, normalise_path

CONF_HEADER = "# nfs-exportd managed Ganesha export, do not edit: export_id="
CONF_NAME_RE = re.compile(r"export-(?P<id>[1-9][0-9]{0,4})\.conf")
RECORD_HEADER = "# nfs-exportd managed Ganesha record, do not edit: record="
_RECORD_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\.exports")
RECORD_NAME_RE = re.compile(rf"record-(?P<record>{_RECORD_RE.pattern})\.conf")
_RECORD_NOTE = "# no export: this file keeps the project's Keystone id while it has no volume line"
_ID = r"[1-9][0-9]{0,4}"
_CLIENTS_RE = re.compile(r"[0-9A-Fa-f.:/]+(, [0-9A-Fa-f.:/]+)*")
# characters that would change the meaning of a comment or a block: never in a token
_UNSAFE = frozenset(" \t\n\r\v\f\\*()#\"';{}")
# an option string means the same permissions every time (a refused one is not cached:
# it raises every time): worked out once, not once per line, render and parse
ganesha_perms = lru_cache(maxsize=4096)(_ganesha_perms)


@dataclass(frozen=True)
class ClientBlock:
    """One managed line's share of an export: whose line it is, and what it grants."""

    record: str  # the managed file it stands for: "tools.exports", "public-scratch.exports"
    owner: str  # "project:tools" or "public:scratch"
    keystone_id: str | None
    options: str  # the line's exportfs option string, exactly
    clients: tuple[str, ...]  # canonical addresses / networks, as in the managed file
    perms: ClientPerms

    def label(self, path: str) -> str:
        return f"{self.record}:{path}"


@dataclass(frozen=True)
class ExportSpec:
    """What Ganesha must serve for one path: one CLIENT block per line, by record."""

    path: str
    blocks: tuple[ClientBlock, ...]

    @property
    def clients(self) -> tuple[str, ...]:
        return tuple(c for b in self.blocks for c in b.clients)

    def __str__(self) -> str:
        return ", ".join(b.label(self.path) for b in self.blocks) or self.path


@dataclass(frozen=True)
class ConfExport:
    """A conf file of ours, parsed: its id and the spec it serves."""

    export_id: int
    spec: ExportSpec

    @property
    def filename(self) -> str:
        return conf_name(self.export_id)


class ConfFileError(ValueError):
    """A conf file with our header that is not exactly what we write."""


def conf_name(export_id: int) -> str:
    return f"export-{export_id}.conf"


def blocks_of(f: ExportsFile) -> dict[str, ClientBlock]:
    """path -> the CLIENT block of each line of one managed file; RenderRefused when a
    line's options have no Ganesha meaning (the config refuses them: a file in force can
    still carry them)."""
    out: dict[str, ClientBlock] = {}
    for line in f.lines:
        try:
            perms = ganesha_perms(line.options)
        except OptionError as exc:
            raise RenderRefused(
                f"refusing to apply {f.filename} {line.path} with backend ganesha: {exc}; "
                "nothing was changed"
            ) from None
        out[line.path] = ClientBlock(
            f.filename,
            f"{f.kind.value}:{f.owner}",
            f.keystone_id,
            line.options,
            tuple(line.clients),
            perms,
        )
    return out


def specs_of(blocks: dict[str, list[ClientBlock]]) -> dict[str, ExportSpec]:
    """path -> its export, the blocks in record order; RenderRefused when two blocks of
    one path share an address (decide gives an address one owner: a bug upstream)."""
    out: dict[str, ExportSpec] = {}
    for path, bs in sorted(blocks.items()):
        bs = sorted(bs, key=lambda b: b.record)
        out[path] = ExportSpec(path, tuple(bs))
        if len({b.record for b in bs}) < 2:
            continue  # only blocks of different records are compared (one, nearly always)
        seen: list[tuple[str, ipaddress.IPv4Network | ipaddress.IPv6Network]] = []
        for b in bs:
            for c in b.clients:
                try:
                    net = ipaddress.ip_network(c, strict=False)
                except ValueError:
                    continue  # render_conf refuses it with its reason
                for rec, other in seen:
                    if rec != b.record and net.version == other.version and net.overlaps(other):
                        raise RenderRefused(
                            f"refusing to write the Ganesha export of {path}: {rec} and "
                            f"{b.record} both give it to {c}; nothing was changed. This is a "
                            "bug in nfs-exportd (an address has one owner): please report it"
                        )
                seen.append((b.record, net))
    return out


def files_of(
    exports: Sequence[ConfExport], records: Sequence[ExportsFile] = ()
) -> dict[str, ExportsFile]:
    """The managed files these exports (and record files of files without lines) stand
    for (what is in force), lines by path; ConfFileError when they disagree about a file
    (kind, owner, keystone id)."""
    by_record: dict[str, list[tuple[str, ClientBlock, str]]] = {}
    for c in exports:
        for b in c.spec.blocks:
            by_record.setdefault(b.record, []).append((c.spec.path, b, c.filename))
    out: dict[str, ExportsFile] = {}
    for record, rows in sorted(by_record.items()):
        rows.sort(key=lambda r: r[0])
        kind_word, _, owner = rows[0][1].owner.partition(":")
        kind = FileKind(kind_word)
        kid = rows[0][1].keystone_id
        for path, b, fname in rows:
            if b.owner != rows[0][1].owner or b.keystone_id != kid:
                raise ConfFileError(
                    f"{fname}: the block of {record} for {path} says {b.owner} "
                    f"keystone-id={b.keystone_id}, {rows[0][2]} says {rows[0][1].owner} "
                    f"keystone-id={kid}"
                )
        if kind.filename(owner) != record or (kid is not None and kind is not FileKind.PROJECT):
            raise ConfFileError(
                f"{rows[0][2]}: record {record} is not the file of {kind_word} {owner}"
            )
        lines = tuple(ExportLine(p, b.options, b.clients) for p, b, _ in rows)
        out[record] = ExportsFile(record, kind, owner, lines, kid)
    for f in records:
        have = out.get(f.filename)
        if have is None:
            out[f.filename] = f
        elif (have.kind, have.owner, have.keystone_id) != (f.kind, f.owner, f.keystone_id):
            # both are left by an interrupted apply; they must agree
            raise ConfFileError(
                f"{record_name(f.filename)}: says {f.kind.value}:{f.owner} "
                f"keystone-id={f.keystone_id}, the export blocks of {f.filename} say "
                f"{have.kind.value}:{have.owner} keystone-id={have.keystone_id}"
            )
    return dict(sorted(out.items()))


def record_name(record: str) -> str:
    """The record file of a managed file without lines: never an export-ID.conf name."""
    return f"record-{record}.conf"


def render_record(f: ExportsFile) -> str:
    """The comment-only record file of a managed file without lines; every token
    checked, and the text parsed back."""
    what = record_name(f.filename)
    if f.lines:
        raise _refuse(what, "the file has lines (its blocks carry it)")
    if not _RECORD_RE.fullmatch(f.filename) or ".." in f.filename:
        raise _refuse(what, f"record name {f.filename!r} is not a managed file name")
    if not NAME_RE.fullmatch(f.owner) or ".." in f.owner or f.kind.filename(f.owner) != f.filename:
        raise _refuse(what, f"owner {f.owner!r} is not the owner of {f.filename}")
    if f.keystone_id is not None and (
        not KEYSTONE_ID_RE.fullmatch(f.keystone_id) or f.kind is not FileKind.PROJECT
    ):
        raise _refuse(what, f"keystone id {f.keystone_id!r} is not the id of a project")
    owner = f"# owner={f.kind.value}:{f.owner}"
    if f.keystone_id is not None:
        owner += f" keystone-id={f.keystone_id}"
    text = "\n".join([f"{RECORD_HEADER}{f.filename}", owner, _RECORD_NOTE, ""])
    try:
        back = parse_record(what, text)
    except ConfFileError as exc:
        raise _refuse(what, f"the rendered record does not parse back ({exc})") from None
    if back != f:
        raise _refuse(what, "the rendered record parses back to something else")
    return text


_RECORD_LINES = (
    re.compile(rf"{re.escape(RECORD_HEADER)}(?P<record>\S+)"),
    re.compile(
        r"# owner=(?P<kind>project|public):(?P<owner>[A-Za-z0-9_][A-Za-z0-9_.-]*)"
        r"(?: keystone-id=(?P<kid>[A-Za-z0-9_-]{1,64}))?"
    ),
    re.compile(re.escape(_RECORD_NOTE)),
)


def _whole_lines(filename: str, text: str) -> list[str]:
    """A file of ours as lines; a file without its last newline was cut short."""
    lines = text.split("\n")
    if lines[-1] != "":
        raise ConfFileError(f"{filename}: does not end with a newline (cut short?)")
    lines.pop()
    return lines


def parse_record(filename: str, text: str) -> ExportsFile:
    """Parse a record file of ours, strictly: the file without lines it keeps;
    ConfFileError names file:line."""
    m = RECORD_NAME_RE.fullmatch(filename)
    if m is None:
        raise ConfFileError(f"{filename}: not a record file name (record-FILE.exports.conf)")
    lines = _whole_lines(filename, text)
    src = _Lines(filename, lines)
    found: dict[str, str] = {}
    for rx in _RECORD_LINES:
        found.update((k, v) for k, v in src.need(rx).groupdict().items() if v is not None)
    if src.no != len(lines):
        raise ConfFileError(f"{filename}:{src.no + 1}: unexpected text after the record")
    record, owner, kid = found["record"], found["owner"], found.get("kid")
    if record != m["record"]:
        raise ConfFileError(f"{filename}: holds record {record}, not the record of its name")
    if not NAME_RE.fullmatch(owner) or (kid is not None and not KEYSTONE_ID_RE.fullmatch(kid)):
        raise ConfFileError(f"{filename}:2: owner or keystone id is not a name/id")
    kind = FileKind(found["kind"])
    if kind.filename(owner) != record or (kid is not None and kind is not FileKind.PROJECT):
        raise ConfFileError(f"{filename}: record {record} is not the file of {kind.value} {owner}")
    return ExportsFile(record, kind, owner, (), kid)


def _refuse(what_of: str, what: str) -> RenderRefused:
    return RenderRefused(
        f"refusing to write the Ganesha export of {what_of}: {what}; nothing was changed. "
        "This is a bug in nfs-exportd (the value passed the checks where it was read): "
        "please report it"
    )


def _canonical(client: object) -> bool:
    return isinstance(client, str) and _canonical_str(client)


def clear_caches() -> None:
    """Forget the client strings remembered (``run``, after each cycle)."""
    _canonical_str.cache_clear()


@lru_cache(maxsize=65536)
def _canonical_str(client: str) -> bool:
    """An address or network written as parse_network writes it (asked once per client
    and cycle by the render and again by its parse back: worked out once)."""
    try:
        return str(parse_network(client)) == client
    except AddressError:
        return False


def _options_ok(options: str) -> bool:
    try:
        return check_options(options) == options and not _UNSAFE.intersection(options)
    except ValueError:
        return False


def _check_block(spec: ExportSpec, b: ClientBlock) -> None:
    label = b.label(spec.path)
    if not _RECORD_RE.fullmatch(b.record) or ".." in b.record:
        raise _refuse(label, f"record name {b.record!r} is not a managed file name")
    kind, _, name = b.owner.partition(":")
    if kind not in ("project", "public") or not NAME_RE.fullmatch(name) or ".." in name:
        raise _refuse(label, f"owner {b.owner!r} is not project:NAME or public:NAME")
    if b.keystone_id is not None and not KEYSTONE_ID_RE.fullmatch(b.keystone_id):
        raise _refuse(label, f"keystone id {b.keystone_id!r} is not an id")
    if not _options_ok(b.options):
        raise _refuse(label, f"options {b.options!r} are not a checked list")
    try:
        ok = ganesha_perms(b.options) == b.perms
    except OptionError:
        ok = False
    if not ok:
        raise _refuse(label, f"the permissions are not what options {b.options} mean")
    if not b.clients:
        raise _refuse(label, "no client (an export without clients would serve nobody)")
    for client in b.clients:
        if not _canonical(client):
            raise _refuse(label, f"client {client!r} is not a canonical address or network")
    p = b.perms
    if p.access not in ("RW", "RO") or p.squash not in (
        "root_squash",
        "no_root_squash",
        "all_squash",
    ):
        raise _refuse(label, f"access {p.access!r} / squash {p.squash!r} not known")
    if not p.sec or any(s not in SEC_FLAVOURS for s in p.sec):
        raise _refuse(label, f"SecType {p.sec!r} not known")
    for anon in (p.anon_uid, p.anon_gid):
        if anon is not None and (isinstance(anon, bool) or not 0 <= anon <= UINT32_MAX):
            raise _refuse(label, f"anonymous id {anon!r} out of range")


def _block_lines(b: ClientBlock) -> list[str]:
    comment = f"    # record={b.record} owner={b.owner}"
    if b.keystone_id is not None:
        comment += f" keystone-id={b.keystone_id}"
    comment += f" options={b.options}"
    p = b.perms
    out = [
        comment,
        "    CLIENT {",
        f"        Clients = {', '.join(b.clients)};",
        f"        Access_Type = {p.access};",
        f"        Squash = {p.squash};",
        f"        SecType = {', '.join(p.sec)};",
    ]
    if p.anon_uid is not None:
        out.append(f"        Anonymous_Uid = {p.anon_uid};")
    if p.anon_gid is not None:
        out.append(f"        Anonymous_Gid = {p.anon_gid};")
    if p.privileged_port is not None:
        out.append(f"        PrivilegedPort = {str(p.privileged_port).lower()};")
    out.append("    }")
    return out


def render_conf(spec: ExportSpec, export_id: int) -> str:
    """The conf file of one path's export; every token checked, and the text parsed back."""
    if not 1 <= export_id <= EXPORT_ID_MAX:
        raise _refuse(spec.path, f"Export_Id {export_id} is outside 1..{EXPORT_ID_MAX}")
    try:
        ok = normalise_path(spec.path) == (spec.path, False) and spec.path != "/"
    except ValueError:
        ok = False
    if not ok or _UNSAFE.intersection(spec.path):
        raise _refuse(spec.path, "the path is not a checked, normalised absolute path")
    if not spec.blocks:
        raise _refuse(spec.path, "no CLIENT block (an export that serves nobody)")
    records = [b.record for b in spec.blocks]
    if records != sorted(set(records)):
        raise _refuse(spec.path, f"blocks not one per record, in order: {records}")
    specs_of({spec.path: list(spec.blocks)})  # overlapping client lists: refused
    body: list[str] = []
    for b in spec.blocks:
        _check_block(spec, b)
        body += _block_lines(b)
    text = "\n".join(
        [
            f"{CONF_HEADER}{export_id}",
            f"# path={spec.path}",
            "EXPORT {",
            f"    Export_Id = {export_id};",
            f'    Path = "{spec.path}";',
            f'    Pseudo = "{spec.path}";',
            "    Access_Type = None;",
            "    FSAL { Name = VFS; }",
            *body,
            "}",
            "",
        ]
    )
    try:
        back = parse_conf(conf_name(export_id), text)
    except ConfFileError as exc:
        raise _refuse(spec.path, f"the rendered block does not parse back ({exc})") from None
    if back != ConfExport(export_id, spec):
        raise _refuse(spec.path, "the rendered block parses back to something else")
    return text


# The one grammar of a conf file of ours: line by line, nothing else allowed.
_HEAD = (
    re.compile(rf"# nfs-exportd managed Ganesha export, do not edit: export_id=(?P<id>{_ID})"),
    re.compile(r"# path=(?P<path>/\S*)"),
    re.compile(r"EXPORT \{"),
    re.compile(rf"    Export_Id = (?P<id>{_ID});"),
    re.compile(r'    Path = "(?P<path>/[^"\\;{}\s]*)";'),
    re.compile(r'    Pseudo = "(?P<path>/[^"\\;{}\s]*)";'),
    re.compile(r"    Access_Type = None;"),
    re.compile(r"    FSAL \{ Name = VFS; \}"),
)
_BLOCK = (
    re.compile(
        r"    # record=(?P<record>\S+) owner=(?P<kind>project|public):(?P<owner>\S+)"
        r"(?: keystone-id=(?P<kid>\S+))? options=(?P<options>\S+)"
    ),
    re.compile(r"    CLIENT \{"),
    re.compile(r"        Clients = (?P<clients>[^;]+);"),
    re.compile(r"        Access_Type = (?P<access>RW|RO);"),
    re.compile(r"        Squash = (?P<squash>root_squash|no_root_squash|all_squash);"),
    re.compile(r"        SecType = (?P<sec>[a-z0-9]+(?:, [a-z0-9]+)*);"),
)
_OPTIONAL = (
    ("anon_uid", re.compile(r"        Anonymous_Uid = (?P<v>0|[1-9][0-9]{0,9});")),
    ("anon_gid", re.compile(r"        Anonymous_Gid = (?P<v>0|[1-9][0-9]{0,9});")),
    ("privileged_port", re.compile(r"        PrivilegedPort = (?P<v>true|false);")),
)
_BLOCK_END = re.compile(r"    \}")
_END = re.compile(r"\}")


def is_ours(text: str) -> bool:
    """A conf file or a record file of ours (by its header)."""
    return text.startswith((CONF_HEADER, RECORD_HEADER))


class _Lines:
    def __init__(self, filename: str, lines: list[str]) -> None:
        self.filename, self.lines, self.no = filename, lines, 0

    def take(self, rx: re.Pattern[str]) -> re.Match[str] | None:
        if self.no < len(self.lines) and (m := rx.fullmatch(self.lines[self.no])):
            self.no += 1
            return m
        return None

    def need(self, rx: re.Pattern[str]) -> re.Match[str]:
        m = self.take(rx)
        if m is None:
            got = self.lines[self.no] if self.no < len(self.lines) else "(end of file)"
            raise ConfFileError(
                f"{self.filename}:{self.no + 1}: {got!r} is not what nfs-exportd writes"
            )
        return m


def _parse_block(src: _Lines) -> ClientBlock:
    filename, first = src.filename, src.no + 1
    found: dict[str, str] = {}
    for rx in _BLOCK:
        found.update((k, v) for k, v in src.need(rx).groupdict().items() if v is not None)
    extra: dict[str, str] = {}
    for name, rx in _OPTIONAL:
        if m := src.take(rx):
            extra[name] = m["v"]
    src.need(_BLOCK_END)
    where = f"{filename}:{first}"
    if not _RECORD_RE.fullmatch(found["record"]) or not found["record"].endswith(EXPORTS_SUFFIX):
        raise ConfFileError(f"{where}: record {found['record']!r} is not a managed file")
    if not NAME_RE.fullmatch(found["owner"]) or (
        found.get("kid") is not None and not KEYSTONE_ID_RE.fullmatch(found["kid"])
    ):
        raise ConfFileError(f"{where}: owner or keystone id is not a name/id")
    if not _options_ok(found["options"]):
        raise ConfFileError(f"{where}: options {found['options']!r} are not a checked list")
    if not _CLIENTS_RE.fullmatch(found["clients"]):
        raise ConfFileError(f"{where}: Clients {found['clients']!r} are not addresses")
    clients = tuple(found["clients"].split(", "))
    for c in clients:
        if _canonical_str(c):
            continue
        try:
            parse_network(c)
        except AddressError as exc:
            raise ConfFileError(f"{where}: client {exc}") from None
        raise ConfFileError(f"{where}: client {c!r} is not canonical")
    sec = tuple(found["sec"].split(", "))
    if any(s not in SEC_FLAVOURS for s in sec):
        raise ConfFileError(f"{where}: SecType {found['sec']!r} not known")
    anon = {k: int(v) for k, v in extra.items() if k != "privileged_port"}
    if any(v > UINT32_MAX for v in anon.values()):
        raise ConfFileError(f"{where}: anonymous id out of range")
    perms = ClientPerms(
        access=found["access"],
        squash=found["squash"],
        sec=sec,
        anon_uid=anon.get("anon_uid"),
        anon_gid=anon.get("anon_gid"),
        privileged_port=(extra["privileged_port"] == "true")
        if "privileged_port" in extra
        else None,
    )
    try:
        meant = ganesha_perms(found["options"])
    except OptionError as exc:
        raise ConfFileError(f"{where}: options {found['options']}: {exc}") from None
    if meant != perms:
        raise ConfFileError(
            f"{where}: the CLIENT block is not what options={found['options']} mean"
        )
    return ClientBlock(
        found["record"],
        f"{found['kind']}:{found['owner']}",
        found.get("kid"),
        found["options"],
        clients,
        perms,
    )


def parse_conf(filename: str, text: str) -> ConfExport:
    """Parse a conf file of ours (``is_ours``), strictly; ConfFileError names file:line."""
    lines = _whole_lines(filename, text)
    src = _Lines(filename, lines)
    found: dict[str, str] = {}
    for rx in _HEAD:
        m = src.need(rx)
        for k, v in m.groupdict().items():
            if k in found and found[k] != v:
                raise ConfFileError(f"{filename}:{src.no}: {k} {v!r} disagrees with {found[k]!r}")
            found[k] = v
    blocks: list[ClientBlock] = []
    while src.no < len(lines) and lines[src.no].startswith("    # record="):
        blocks.append(_parse_block(src))
    if not blocks:
        src.need(_BLOCK[0])  # names the line where a block was expected
    src.need(_END)
    if src.no != len(lines):
        raise ConfFileError(f"{filename}:{src.no + 1}: unexpected text after the EXPORT block")
    records = [b.record for b in blocks]
    if records != sorted(set(records)):
        raise ConfFileError(f"{filename}: CLIENT blocks not one per record, in order")
    export_id = int(found["id"])
    if filename != conf_name(export_id):
        raise ConfFileError(f"{filename}: holds Export_Id {export_id}, not the id of its name")
    try:
        path, changed = normalise_path(found["path"])
    except ValueError as exc:
        raise ConfFileError(f"{filename}: {exc}") from None
    if changed or path == "/":
        raise ConfFileError(f"{filename}: path {found['path']!r} is not a normalised volume path")
    spec = ExportSpec(path, tuple(blocks))
    try:
        specs_of({path: blocks})
    except RenderRefused:
        raise ConfFileError(f"{filename}: two CLIENT blocks share an address") from None
    return ConfExport(export_id, spec)
