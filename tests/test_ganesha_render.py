"""backend: ganesha, the pure parts: option mapping, the rendered EXPORT block (every token
checked, parsed back), one export per path with one CLIENT block per managed line, the
managed files rebuilt exactly from the conf files, the strict conf-file grammar,
Export_Id allocation, and the config rules (exports_dir default and refusals, options
without a Ganesha meaning)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

from nfs_exportd.apply.ganesha.ids import IdsExhausted, allocate, next_cursor
from nfs_exportd.apply.ganesha.render import (
    ClientBlock,
    ConfFileError,
    ExportSpec,
    blocks_of,
    files_of,
    is_ours,
    parse_conf,
    parse_record,
    record_name,
    render_conf,
    render_record,
    specs_of,
)
from nfs_exportd.config import load_config
from nfs_exportd.errors import ConfigError
from nfs_exportd.exportsfile import RenderRefused, render
from nfs_exportd.ganesha_options import ClientPerms, OptionError, ganesha_perms
from nfs_exportd.model import ExportLine, ExportsFile, FileKind

# ------------------------------------------------------------------ options

MAPPED = [
    ("rw,sync,no_subtree_check,root_squash", ClientPerms("RW", "root_squash", ("sys",))),
    ("ro", ClientPerms("RO", "root_squash", ("sys",))),
    ("sync", ClientPerms("RO", "root_squash", ("sys",))),  # exports(5): ro unless rw
    ("rw,no_root_squash", ClientPerms("RW", "no_root_squash", ("sys",))),
    ("rw,all_squash,anonuid=1000,anongid=50", ClientPerms("RW", "all_squash", ("sys",), 1000, 50)),
    ("rw,no_root_squash,all_squash", ClientPerms("RW", "all_squash", ("sys",))),
    ("rw,all_squash,no_all_squash", ClientPerms("RW", "root_squash", ("sys",))),
    ("rw,sec=krb5p:krb5", ClientPerms("RW", "root_squash", ("krb5p", "krb5"))),
    ("rw,insecure", ClientPerms("RW", "root_squash", ("sys",), privileged_port=False)),
    ("rw,secure,crossmnt,fsid=7,async,wdelay", ClientPerms("RW", privileged_port=True)),
]


@pytest.mark.parametrize(("options", "perms"), MAPPED, ids=[m[0] for m in MAPPED])
def test_options_map_to_client_permissions(options: str, perms: ClientPerms) -> None:
    assert ganesha_perms(options) == perms


REFUSED = [
    ("rw,ro", "both rw and ro"),
    ("ro,root_squash,no_root_squash", "both root_squash"),
    ("rw,sec=sys:gss", "sec=sys:gss"),
    ("rw,sec=sys:sys", "each once"),
    ("rw,anonuid=-1", "anonuid=-1"),
    ("rw,anonuid=4294967296", "anonuid=4294967296"),
    ("rw,anongid=01", "anongid=01"),
    ("rw,mountpoint", "'mountpoint' has no Ganesha equivalent"),
    ("rw,refer=/a@b", "'refer=/a@b'"),
    ("rw=1", "'rw=1'"),
]


@pytest.mark.parametrize(("options", "why"), REFUSED, ids=[r[0] for r in REFUSED])
def test_options_without_a_ganesha_meaning_are_refused(options: str, why: str) -> None:
    with pytest.raises(OptionError, match=why.replace("(", r"\(")):
        ganesha_perms(options)


# ------------------------------------------------------------------ render

FILE = ExportsFile(
    "tools.exports",
    FileKind.PROJECT,
    "tools",
    (
        ExportLine("/srv/tools/home", "rw,sync,no_subtree_check,root_squash", ("172.16.0.5",)),
        ExportLine(
            "/srv/tools/project",
            "ro,all_squash,anonuid=0,anongid=4294967295,insecure",
            ("172.16.0.5", "172.16.0.9", "fd00::5", "10.1.0.0/16"),
        ),
    ),
    keystone_id="9f1c",
)

EXPECTED = """\
# nfs-exportd managed Ganesha export, do not edit: export_id=1042
# path=/srv/tools/home
EXPORT {
    Export_Id = 1042;
    Path = "/srv/tools/home";
    Pseudo = "/srv/tools/home";
    Access_Type = None;
    FSAL { Name = VFS; }
    # record=tools.exports owner=project:tools keystone-id=9f1c \
options=rw,sync,no_subtree_check,root_squash
    CLIENT {
        Clients = 172.16.0.5;
        Access_Type = RW;
        Squash = root_squash;
        SecType = sys;
    }
}
"""


def _specs(*files: ExportsFile) -> dict[str, ExportSpec]:
    blocks: dict[str, list[ClientBlock]] = {}
    for f in files:
        for path, block in blocks_of(f).items():
            blocks.setdefault(path, []).append(block)
    return specs_of(blocks)


def test_one_export_per_path_rendered_exactly() -> None:
    specs = _specs(FILE)
    home, project = specs["/srv/tools/home"], specs["/srv/tools/project"]
    assert render_conf(home, 1042) == EXPECTED
    text = render_conf(project, 65535)
    assert "Clients = 172.16.0.5, 172.16.0.9, fd00::5, 10.1.0.0/16;" in text
    assert "Access_Type = RO;" in text and "Squash = all_squash;" in text
    assert "Anonymous_Uid = 0;\n        Anonymous_Gid = 4294967295;" in text
    assert "PrivilegedPort = false;" in text
    # the export level denies: clients of no CLIENT block get nothing
    assert text.count("Access_Type = None;") == 1
    assert is_ours(text)
    assert parse_conf("export-65535.conf", text).spec == project


def test_the_files_in_force_are_rebuilt_exactly_from_the_conf_files() -> None:
    """conf_dir is what is in force: parsing the conf files back gives the very managed
    file that was rendered (options string, clients, keystone id), byte for byte."""
    confs = [
        parse_conf(f"export-{i}.conf", render_conf(spec, i))
        for i, spec in enumerate(_specs(FILE).values(), start=1000)
    ]
    assert files_of(confs) == {"tools.exports": FILE}
    assert render(files_of(confs)["tools.exports"]) == render(FILE)


def test_a_renamed_project_shares_one_export_per_path_with_one_block_each() -> None:
    """While the old name's file still holds a pair (its removal waits), both files hold
    the path: one EXPORT (one Pseudo), one CLIENT block per file, and both files come
    back from it."""
    old = ExportsFile(
        "tools.exports",
        FileKind.PROJECT,
        "tools",
        (ExportLine("/srv/tools/home", "rw", ("172.16.0.6",)),),
        keystone_id="9f1c",
    )
    new = dataclasses.replace(
        old,
        filename="tools-new.exports",
        owner="tools-new",
        lines=(ExportLine("/srv/tools/home", "rw,no_root_squash", ("172.16.0.5",)),),
    )
    (spec,) = _specs(new, old).values()
    assert [b.record for b in spec.blocks] == ["tools-new.exports", "tools.exports"]
    text = render_conf(spec, 1042)
    assert text.count("EXPORT {") == 1 and text.count("CLIENT {") == 2
    assert text.count("Pseudo = ") == 1
    assert files_of([parse_conf("export-1042.conf", text)]) == {
        "tools.exports": old,
        "tools-new.exports": new,
    }
    # an address in both lists would have two owners: refused
    both = dataclasses.replace(
        new, lines=(ExportLine("/srv/tools/home", "rw", ("172.16.0.0/24",)),)
    )
    with pytest.raises(RenderRefused, match=r"tools-new\.exports and tools\.exports both give it"):
        _specs(both, old)


def test_public_export_renders_with_its_owner() -> None:
    f = ExportsFile(
        "public-scratch.exports",
        FileKind.PUBLIC,
        "scratch",
        (ExportLine("/srv/scratch", "rw", ("172.16.0.0/21",)),),
    )
    (spec,) = _specs(f).values()
    text = render_conf(spec, 7)
    assert "    # record=public-scratch.exports owner=public:scratch options=rw\n" in text
    assert parse_conf("export-7.conf", text).spec == spec
    assert files_of([parse_conf("export-7.conf", text)]) == {"public-scratch.exports": f}


def _spec(**change: Any) -> ExportSpec:
    spec = _specs(FILE)["/srv/tools/home"]
    path = change.pop("path", spec.path)
    perms_change = {
        k: change.pop(k) for k in ("access", "squash", "sec", "anon_uid") if k in change
    }
    block = spec.blocks[0]
    if perms_change:
        change["perms"] = dataclasses.replace(block.perms, **perms_change)
    return ExportSpec(path, (dataclasses.replace(block, **change),))


BAD_TOKENS = [
    ({"path": '/srv/a";\n}\nEXPORT {'}, "path"),
    ({"path": "/srv/a b"}, "path"),
    ({"path": "/srv//a"}, "path"),
    ({"path": "/"}, "path"),
    ({"path": "srv/a"}, "path"),
    ({"clients": ("172.16.0.5; Access_Type = RW",)}, "client"),
    ({"clients": ("*",)}, "client"),
    ({"clients": ("172.16.0.05",)}, "client"),
    ({"clients": ("host.example",)}, "client"),
    ({"clients": ()}, "no client"),
    ({"record": "../x.exports"}, "record"),
    ({"record": "a}.exports"}, "record"),
    ({"owner": "project:a b"}, "owner"),
    ({"owner": "tools"}, "owner"),
    ({"keystone_id": "9f1c\n}"}, "keystone id"),
    ({"options": "rw options=ro"}, "options"),
    ({"options": "rw\n    CLIENT {"}, "options"),
    ({"options": "ro"}, "not what options ro mean"),
    ({"access": "RW; CLIENT { Clients = *"}, "permissions"),
    ({"squash": "none"}, "permissions"),
    ({"sec": ("sys;",)}, "permissions"),
    ({"anon_uid": -2}, "permissions"),
]


@pytest.mark.parametrize(("change", "what"), BAD_TOKENS, ids=[str(b[0]) for b in BAD_TOKENS])
def test_every_token_is_checked_before_anything_is_written(
    change: dict[str, Any], what: str
) -> None:
    with pytest.raises(RenderRefused, match=what):
        render_conf(_spec(**change), 1042)


@pytest.mark.parametrize("export_id", [0, 65536, 90000, -1])
def test_export_id_is_a_uint16_above_the_pseudo_root(export_id: int) -> None:
    with pytest.raises(RenderRefused, match="Export_Id"):
        render_conf(_spec(), export_id)


def test_options_in_force_without_a_ganesha_meaning_refuse_the_file() -> None:
    f = dataclasses.replace(FILE, lines=(ExportLine("/srv/tools/home", "rw,mp", ("172.16.0.5",)),))
    with pytest.raises(RenderRefused, match=r"tools.exports /srv/tools/home.*'mp'"):
        blocks_of(f)


# ------------------------------------------------------------------ parse (conf files)

EDITS = [
    ("Clients = 172.16.0.5;", "Clients = *;", "Clients"),
    ("Clients = 172.16.0.5;", "Clients = 172.16.0.5", "Clients"),
    ("    Access_Type = None;\n", "    Access_Type = RW;\n", "Access_Type"),
    ("    Access_Type = None;\n", "", ":7: '    FSAL"),
    ("Export_Id = 1042;", "Export_Id = 1043;", "disagrees"),
    ('Pseudo = "/srv/tools/home"', 'Pseudo = "/srv/tools/other"', "disagrees"),
    ("}\n", "}\n}\n", "after the EXPORT block"),
    ("SecType = sys;", "SecType = gss;", "SecType"),
    ("Squash = root_squash;", "Squash = none;", "Squash"),
    ("Squash = root_squash;", "Squash = no_root_squash;", "not what options"),
    ("options=rw,", "options=ro,", "not what options"),
    ("options=rw,", "options=rw,mp,", "options"),
    ("keystone-id=9f1c ", "", ""),  # a file without an id: parses (the id is learnt)
    ("    # record=", "    # owner=", ":9: '    # owner"),
    ("}\n", "}", "newline"),
    ("# path=/srv/tools/home", "# path=/srv/tools//home", "disagrees"),
]


@pytest.mark.parametrize(("old", "new", "what"), EDITS, ids=[e[1] for e in EDITS])
def test_a_conf_file_is_exactly_what_we_write_or_an_error(old: str, new: str, what: str) -> None:
    # "}\n" edits the last line, the others the first occurrence
    text = EXPECTED[:-2] + new if old == "}\n" else EXPECTED.replace(old, new, 1)
    assert text != EXPECTED
    if not what:
        assert parse_conf("export-1042.conf", text).spec.blocks[0].keystone_id is None
        return
    with pytest.raises(ConfFileError, match=what):
        parse_conf("export-1042.conf", text)


def test_a_conf_file_names_its_id() -> None:
    assert parse_conf("export-1042.conf", EXPECTED).export_id == 1042
    with pytest.raises(ConfFileError, match="not the id of its name"):
        parse_conf("export-1043.conf", EXPECTED)
    with pytest.raises(ConfFileError, match="not a normalised volume path"):
        parse_conf("export-1042.conf", EXPECTED.replace("/srv/tools/home", "/srv/tools//home"))


# ------------------------------------------------------------------ record files

RECORD = (
    "# nfs-exportd managed Ganesha record, do not edit: record=tools.exports\n"
    "# owner=project:tools keystone-id=9f1c\n"
    "# no export: this file keeps the project's Keystone id while it has no volume line\n"
)


def test_a_project_without_lines_is_a_comment_only_record_file() -> None:
    """A managed file without lines has no export, so no EXPORT block holds it: a
    comment-only file keeps it (and its Keystone id) in conf_dir; its name cannot be
    taken for an export-ID.conf file."""
    f = ExportsFile("tools.exports", FileKind.PROJECT, "tools", (), "9f1c")
    assert record_name("tools.exports") == "record-tools.exports.conf"
    assert render_record(f) == RECORD
    assert is_ours(RECORD)
    assert parse_record("record-tools.exports.conf", RECORD) == f
    assert files_of([], [f]) == {"tools.exports": f}
    no_id = dataclasses.replace(f, keystone_id=None)
    assert parse_record("record-tools.exports.conf", render_record(no_id)) == no_id


def test_a_record_file_and_blocks_of_one_file_merge_or_disagree() -> None:
    """Left both after an interrupted apply: the blocks give the lines; a different id
    or owner is an error naming the files."""
    line = ExportLine("/srv/tools/home", "rw,sync,root_squash", ("172.16.0.5",))
    f = ExportsFile("tools.exports", FileKind.PROJECT, "tools", (line,), "9f1c")
    spec = specs_of({line.path: [blocks_of(f)[line.path]]})[line.path]
    conf = parse_conf("export-1042.conf", render_conf(spec, 1042))
    bare = dataclasses.replace(f, lines=())
    assert files_of([conf], [bare]) == {"tools.exports": f}
    with pytest.raises(ConfFileError, match=r"record-tools\.exports\.conf"):
        files_of([conf], [dataclasses.replace(bare, keystone_id="other")])


RECORD_EDITS = [
    ("keystone-id=9f1c", "keystone-id=9f1c\nEXPORT { Export_Id = 7; }", "not what"),
    ("keystone-id=9f1c", "keystone-id=9f 1c", "not what"),
    ("keystone-id=9f1c", "keystone-id=9f1c;", "not what"),
    ("owner=project:tools", "owner=project:paws", "not the file of"),
    ("owner=project:tools", "owner=public:tools", "not the file of"),
    ("record=tools.exports", "record=tools.exports ", "not what"),
    ("# no export", "#no export", "not what"),
    (
        "Keystone id while it has no volume line\n",
        "Keystone id while it has no volume line",
        "newline",
    ),
]


@pytest.mark.parametrize(("old", "new", "what"), RECORD_EDITS, ids=[e[1] for e in RECORD_EDITS])
def test_a_record_file_is_exactly_what_we_write_or_an_error(old: str, new: str, what: str) -> None:
    text = RECORD.replace(old, new, 1)
    assert text != RECORD
    with pytest.raises(ConfFileError, match=what):
        parse_record("record-tools.exports.conf", text)


def test_a_record_file_names_its_record_and_refuses_bad_tokens() -> None:
    with pytest.raises(ConfFileError, match="not the record of its name"):
        parse_record("record-paws.exports.conf", RECORD)
    with pytest.raises(ConfFileError, match="not a record file name"):
        parse_record("export-1042.conf", RECORD)
    f = ExportsFile("tools.exports", FileKind.PROJECT, "tools", (), "9f1c")
    for bad in (
        dataclasses.replace(f, keystone_id="9f 1c"),
        dataclasses.replace(f, owner="to ols", filename="to ols.exports"),
        dataclasses.replace(f, filename="paws.exports"),
        dataclasses.replace(f, lines=(ExportLine("/srv/x", "rw", ("172.16.0.5",)),)),
        ExportsFile("public-x.exports", FileKind.PUBLIC, "x", (), "9f1c"),
    ):
        with pytest.raises(RenderRefused):
            render_record(bad)


# ------------------------------------------------------------------ ids


def test_ids_are_allocated_upwards_skipping_taken_and_wrapping() -> None:
    assert allocate(3, {10, 12}, 10, 20, 10) == ([11, 13, 14], 15)
    assert allocate(3, {20, 10}, 10, 20, 19) == ([19, 11, 12], 13)  # wraps past 20
    assert allocate(0, set(), 10, 20, 15) == ([], 15)
    assert allocate(1, set(), 10, 20, 99) == ([10], 11)  # a cursor outside the range
    assert allocate(1, set(), 10, 20, 20) == ([20], 10)


def test_no_free_id_changes_nothing_and_says_so() -> None:
    with pytest.raises(IdsExhausted, match=r"\(10\.\.12\) has 1 free Export_Ids and 2 new"):
        allocate(2, {10, 11, 99}, 10, 12, 10)


def test_cursor_survives_a_lost_state_by_starting_above_our_ids() -> None:
    assert next_cursor(None, [1000, 1500, 70000], 1000, 65535) == 1501
    assert next_cursor(None, [], 1000, 65535) == 1000
    assert next_cursor(None, [65535], 1000, 65535) == 1000
    assert next_cursor(1200, [1500], 1000, 65535) == 1200


# ------------------------------------------------------------------ config


def _load(tmp_path: Path, **keys: Any) -> Any:
    data: dict[str, Any] = {
        "projects_file": "projects.yaml",
        "serve": {"hosts": ["nfs-1"]},
        "state_dir": str(tmp_path / "state"),
        "backend": "ganesha",
        **keys,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_config(path)


def test_ganesha_config_defaults(tmp_path: Path) -> None:
    cfg = _load(tmp_path)
    assert cfg.exports_dir == tmp_path / "state" / "exports.d"  # never /etc/exports.d
    assert cfg.ganesha.conf_dir == Path("/etc/ganesha/nfs-exportd.d")
    assert cfg.ganesha.staging == Path("/etc/ganesha/nfs-exportd.d.staging")
    assert (cfg.ganesha.export_id_min, cfg.ganesha.export_id_max) == (1000, 65535)
    assert cfg.ganesha.dbus_address == "system"
    cfg = _load(tmp_path, backend="exportfs")
    assert cfg.exports_dir == Path("/etc/exports.d")


CONFIG_REFUSED = [
    ({"exports_dir": "/etc/exports.d"}, "exports_dir: /etc/exports.d is read by the kernel"),
    ({"exports_dir": "/etc/exports.d/"}, "exports_dir: /etc/exports.d is read by the kernel"),
    ({"ganesha": {"conf_dir": "rec"}, "exports_dir": "rec"}, "ganesha.conf_dir: must not be"),
    ({"ganesha": {"conf_dir": "c", "staging_dir": "c/.tmp"}}, "ganesha.staging_dir: .* lies in"),
    ({"ganesha": {"conf_dir": "c", "staging_dir": "c"}}, "ganesha.staging_dir"),
    ({"ganesha": {"export_id_min": 5000, "export_id_max": 4000}}, "ganesha.export_id_min"),
    ({"ganesha": {"export_id_max": 90000}}, "ganesha.export_id_max"),
    ({"ganesha": {"export_id_min": 0}}, "ganesha.export_id_min"),
    ({"ganesha": {"dbus_address": "unix:path=/x;rm"}}, "ganesha.dbus_address"),
    ({"ganesha": {"timeout_seconds": 0}}, "ganesha.timeout_seconds"),
    ({"ganesha": {"confdir": "/x"}}, "ganesha.confdir"),
    ({"export_options": {"default": "rw,mp"}}, "export_options.default: export option 'mp'"),
    ({"export_options": {"volumes": {"home": "rw,ro"}}}, "export_options.volumes.home: both"),
    (
        {"export_options": {"projects": {"tools": {"home": "rw,sec=gss"}}}},
        "export_options.projects.tools.home: sec=gss",
    ),
    (
        {"public_exports": {"s": {"path": "/srv/s", "clients": ["10.0.0.0/8"], "options": "mp"}}},
        "public_exports.s.options",
    ),
]


@pytest.mark.parametrize(("keys", "what"), CONFIG_REFUSED, ids=[c[1] for c in CONFIG_REFUSED])
def test_ganesha_config_errors_name_the_key(
    tmp_path: Path, keys: dict[str, Any], what: str
) -> None:
    with pytest.raises(ConfigError, match=what):
        _load(tmp_path, **keys)


def test_the_same_options_are_fine_with_exportfs(tmp_path: Path) -> None:
    cfg = _load(tmp_path, backend="exportfs", export_options={"default": "rw,mp"})
    assert cfg.export_options.default == "rw,mp"
