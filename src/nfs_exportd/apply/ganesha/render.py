"""One managed line -> one Ganesha EXPORT file, and back (pure).

A conf file in ``ganesha.conf_dir`` holds exactly one EXPORT block and says whose it is
in its header, so the map (record, path) -> Export_Id is recovered from conf_dir itself
(no other state is needed to keep ids stable)::

    # nfs-exportd managed Ganesha export, do not edit: export_id=1042
    # record=tools.exports owner=project:tools keystone-id=9f1c
    # path=/srv/tools/home
    EXPORT {
        Export_Id = 1042;
        Path = "/srv/tools/home";
        Pseudo = "/srv/tools/home";
        Access_Type = None;
        FSAL { Name = VFS; }
        CLIENT {
            Clients = 172.16.0.5, 172.16.0.9;
            Access_Type = RW;
            Squash = root_squash;
            SecType = sys;
        }
    }

Pseudo is the Path itself: NFSv4 clients mount the same path as NFSv3 clients.
``Access_Type = None`` at export level: a client in no CLIENT block gets nothing (with
RW there, every host gets in).  Ganesha's config parser is not forgiving (one missing
``;`` crashes it at start; a hidden garbage file in a %dir drops every export on a
reload), so every token is checked against its grammar, and the rendered text must parse
back to exactly what was asked (``RenderRefused`` otherwise), before anything is written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ...addresses import AddressError, parse_network
from ...config import EXPORT_ID_MAX
from ...exportsfile import RenderRefused
from ...ganesha_options import SEC_FLAVOURS, UINT32_MAX, ClientPerms, OptionError, ganesha_perms
from ...model import EXPORTS_SUFFIX, ExportsFile
from ...validate import KEYSTONE_ID_RE, NAME_RE, normalise_path

CONF_HEADER = "# nfs-exportd managed Ganesha export, do not edit: export_id="
CONF_NAME_RE = re.compile(r"export-(?P<id>[1-9][0-9]{0,4})\.conf")
_RECORD_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\.exports")
_ID = r"[1-9][0-9]{0,4}"
_CLIENTS_RE = re.compile(r"[0-9A-Fa-f.:/]+(, [0-9A-Fa-f.:/]+)*")


@dataclass(frozen=True, order=True)
class ExportKey:
    """Which managed line an export is: its record file (``tools.exports``) and path."""

    record: str
    path: str

    def __str__(self) -> str:
        return f"{self.record}:{self.path}"


@dataclass(frozen=True)
class ExportSpec:
    """What Ganesha must serve for one managed line."""

    key: ExportKey
    owner: str  # "project:tools" or "public:scratch"
    keystone_id: str | None
    clients: tuple[str, ...]  # canonical addresses / networks, as in the managed file
    perms: ClientPerms


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


def specs_of(f: ExportsFile) -> list[ExportSpec]:
    """The exports one managed file stands for (one per line); RenderRefused when a line's
    options have no Ganesha meaning (the config refuses them: a file in force can still
    carry them)."""
    out = []
    for line in f.lines:
        try:
            perms = ganesha_perms(line.options)
        except OptionError as exc:
            raise RenderRefused(
                f"refusing to apply {f.filename} {line.path} with backend ganesha: {exc}; "
                "nothing was changed"
            ) from None
        out.append(
            ExportSpec(
                ExportKey(f.filename, line.path),
                f"{f.kind.value}:{f.owner}",
                f.keystone_id,
                tuple(line.clients),
                perms,
            )
        )
    return out


def _refuse(spec: ExportSpec, what: str) -> RenderRefused:
    return RenderRefused(
        f"refusing to write the Ganesha export of {spec.key}: {what}; nothing was changed. "
        "This is a bug in nfs-exportd (the value passed the checks where it was read): "
        "please report it"
    )


def _check_client(spec: ExportSpec, client: str) -> None:
    try:
        ok = isinstance(client, str) and str(parse_network(client)) == client
    except AddressError:
        ok = False
    if not ok:
        raise _refuse(spec, f"client {client!r} is not a canonical address or network")


def render_conf(spec: ExportSpec, export_id: int) -> str:
    """The conf file of one export; every token checked, and the text parsed back."""
    if not 1 <= export_id <= EXPORT_ID_MAX:
        raise _refuse(spec, f"Export_Id {export_id} is outside 1..{EXPORT_ID_MAX}")
    if not _RECORD_RE.fullmatch(spec.key.record) or ".." in spec.key.record:
        raise _refuse(spec, f"record name {spec.key.record!r} is not a managed file name")
    try:
        ok = normalise_path(spec.key.path) == (spec.key.path, False) and spec.key.path != "/"
    except ValueError:
        ok = False
    if not ok:
        raise _refuse(spec, f"path {spec.key.path!r} is not a checked, normalised absolute path")
    kind, _, name = spec.owner.partition(":")
    if kind not in ("project", "public") or not NAME_RE.fullmatch(name) or ".." in name:
        raise _refuse(spec, f"owner {spec.owner!r} is not project:NAME or public:NAME")
    if spec.keystone_id is not None and not KEYSTONE_ID_RE.fullmatch(spec.keystone_id):
        raise _refuse(spec, f"keystone id {spec.keystone_id!r} is not an id")
    if not spec.clients:
        raise _refuse(spec, "no client (an export without clients would serve nobody)")
    for client in spec.clients:
        _check_client(spec, client)
    p = spec.perms
    if p.access not in ("RW", "RO") or p.squash not in (
        "root_squash",
        "no_root_squash",
        "all_squash",
    ):
        raise _refuse(spec, f"access {p.access!r} / squash {p.squash!r} not known")
    if not p.sec or any(s not in SEC_FLAVOURS for s in p.sec):
        raise _refuse(spec, f"SecType {p.sec!r} not known")
    for anon in (p.anon_uid, p.anon_gid):
        if anon is not None and (isinstance(anon, bool) or not 0 <= anon <= UINT32_MAX):
            raise _refuse(spec, f"anonymous id {anon!r} out of range")
    owner_line = f"# record={spec.key.record} owner={spec.owner}"
    if spec.keystone_id is not None:
        owner_line += f" keystone-id={spec.keystone_id}"
    client_lines = [
        f"        Clients = {', '.join(spec.clients)};",
        f"        Access_Type = {p.access};",
        f"        Squash = {p.squash};",
        f"        SecType = {', '.join(p.sec)};",
    ]
    if p.anon_uid is not None:
        client_lines.append(f"        Anonymous_Uid = {p.anon_uid};")
    if p.anon_gid is not None:
        client_lines.append(f"        Anonymous_Gid = {p.anon_gid};")
    if p.privileged_port is not None:
        client_lines.append(f"        PrivilegedPort = {str(p.privileged_port).lower()};")
    text = "\n".join(
        [
            f"{CONF_HEADER}{export_id}",
            owner_line,
            f"# path={spec.key.path}",
            "EXPORT {",
            f"    Export_Id = {export_id};",
            f'    Path = "{spec.key.path}";',
            f'    Pseudo = "{spec.key.path}";',
            "    Access_Type = None;",
            "    FSAL { Name = VFS; }",
            "    CLIENT {",
            *client_lines,
            "    }",
            "}",
            "",
        ]
    )
    try:
        back = parse_conf(conf_name(export_id), text)
    except ConfFileError as exc:
        raise _refuse(spec, f"the rendered block does not parse back ({exc})") from None
    if back != ConfExport(export_id, spec):
        raise _refuse(spec, "the rendered block parses back to something else")
    return text


# The one grammar of a conf file of ours: line by line, nothing else allowed.
_LINES = (
    re.compile(rf"# nfs-exportd managed Ganesha export, do not edit: export_id=(?P<id>{_ID})"),
    re.compile(
        r"# record=(?P<record>\S+) owner=(?P<kind>project|public):(?P<owner>\S+)"
        r"(?: keystone-id=(?P<kid>\S+))?"
    ),
    re.compile(r"# path=(?P<path>/\S*)"),
    re.compile(r"EXPORT \{"),
    re.compile(rf"    Export_Id = (?P<id>{_ID});"),
    re.compile(r'    Path = "(?P<path>/[^"\\;{}\s]*)";'),
    re.compile(r'    Pseudo = "(?P<path>/[^"\\;{}\s]*)";'),
    re.compile(r"    Access_Type = None;"),
    re.compile(r"    FSAL \{ Name = VFS; \}"),
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
_TAIL = (re.compile(r"    \}"), re.compile(r"\}"))


def is_ours(text: str) -> bool:
    return text.startswith(CONF_HEADER)


def parse_conf(filename: str, text: str) -> ConfExport:
    """Parse a conf file of ours (``is_ours``), strictly; ConfFileError names file:line."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    else:
        raise ConfFileError(f"{filename}: does not end with a newline (cut short?)")
    found: dict[str, str] = {}
    no = 0

    def take(rx: re.Pattern[str]) -> re.Match[str] | None:
        nonlocal no
        if no < len(lines) and (m := rx.fullmatch(lines[no])):
            no += 1
            return m
        return None

    for rx in _LINES:
        m = take(rx)
        if m is None:
            got = lines[no] if no < len(lines) else "(end of file)"
            raise ConfFileError(f"{filename}:{no + 1}: {got!r} is not what nfs-exportd writes")
        for k, v in m.groupdict().items():
            if v is None:
                continue
            if k in found and found[k] != v:
                raise ConfFileError(f"{filename}:{no}: {k} {v!r} disagrees with {found[k]!r}")
            found[k] = v
    extra: dict[str, str] = {}
    for name, rx in _OPTIONAL:
        if m := take(rx):
            extra[name] = m["v"]
    for rx in _TAIL:
        if take(rx) is None:
            got = lines[no] if no < len(lines) else "(end of file)"
            raise ConfFileError(f"{filename}:{no + 1}: {got!r} is not what nfs-exportd writes")
    if no != len(lines):
        raise ConfFileError(f"{filename}:{no + 1}: unexpected text after the EXPORT block")
    export_id = int(found["id"])
    if filename != conf_name(export_id):
        raise ConfFileError(f"{filename}: holds Export_Id {export_id}, not the id of its name")
    if not _RECORD_RE.fullmatch(found["record"]) or not found["record"].endswith(EXPORTS_SUFFIX):
        raise ConfFileError(f"{filename}:2: record {found['record']!r} is not a managed file")
    if not NAME_RE.fullmatch(found["owner"]) or (
        found.get("kid") is not None and not KEYSTONE_ID_RE.fullmatch(found["kid"])
    ):
        raise ConfFileError(f"{filename}:2: owner or keystone id is not a name/id")
    try:
        path, changed = normalise_path(found["path"])
    except ValueError as exc:
        raise ConfFileError(f"{filename}: {exc}") from None
    if changed or path == "/":
        raise ConfFileError(f"{filename}: path {found['path']!r} is not a normalised volume path")
    if not _CLIENTS_RE.fullmatch(found["clients"]):
        raise ConfFileError(f"{filename}: Clients {found['clients']!r} are not addresses")
    clients = tuple(found["clients"].split(", "))
    for c in clients:
        try:
            if str(parse_network(c)) != c:
                raise AddressError(f"{c!r} is not canonical")
        except AddressError as exc:
            raise ConfFileError(f"{filename}: client {exc}") from None
    sec = tuple(found["sec"].split(", "))
    if any(s not in SEC_FLAVOURS for s in sec):
        raise ConfFileError(f"{filename}: SecType {found['sec']!r} not known")
    anon = {k: int(v) for k, v in extra.items() if k != "privileged_port"}
    if any(v > UINT32_MAX for v in anon.values()):
        raise ConfFileError(f"{filename}: anonymous id out of range")
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
    spec = ExportSpec(
        ExportKey(found["record"], path),
        f"{found['kind']}:{found['owner']}",
        found.get("kid"),
        clients,
        perms,
    )
    return ConfExport(export_id, spec)
