"""Second adversarial round on backend: ganesha (one EXPORT per path, conf_dir is what is
in force), against a real NFS-Ganesha 4.3 on its private bus: foreign files in conf_dir
(an Export_Id written in hex or octal, an export of one of our paths), two public
exports of one path, a project without lines that kept its Keystone-id binding only in
state_dir (now in a comment-only record file in conf_dir), and the sync line of a cycle
with nothing to do."""

from __future__ import annotations

import shutil

import pytest

from conftest import Lab
from lab_fixtures import ganesha_lo
from nfs_exportd.errors import StateError
from nfs_exportd.model import ExportLine, ExportsFile, FileKind
from nfs_exportd_sim.lab.ganesha import GaneshaServer
from test_ganesha_adversarial import _file, _ganesha_config
from test_ganesha_backend import OPTS, VM_A, VM_B, Rig, _reset, _served, rig, served_address

__all__ = ["ganesha_lo", "rig", "served_address"]  # fixtures, imported for pytest


def _foreign(export_id: str, path: str, client: str = "198.51.100.99") -> str:
    """A hand-written EXPORT, as an operator or another tool writes one."""
    return (
        f'EXPORT {{ Export_Id = {export_id}; Path = "{path}"; Pseudo = "{path}"; '
        "Access_Type = None; FSAL { Name = VFS; } "
        f"CLIENT {{ Clients = {client}; Access_Type = RW; }} }}\n"
    )


def test_a_foreign_export_id_in_hex_or_octal_is_not_given_to_our_export(rig: Rig) -> None:
    """Ganesha reads Export_Id = 0x3E8 as 1000 and 01751 as 1001 (its lexer takes hex
    and octal numbers); the backend only knew decimal, so it gave 1000 to a new export
    of ours.  At Ganesha's next start the foreign file (read first) won, our volume was
    not served (VM_A lost access), and every sync failed with UNDO FAILED."""
    for n, (given, name) in enumerate((("0x3E8", "a-local.conf"), ("01751", "b-local.conf"))):
        other = rig.data / f"other{n}"
        other.mkdir()
        (rig.server.conf_dir / name).write_text(_foreign(given, str(other)))
    home = str(rig.data / "tools/home")
    files = {"tools.exports": _file("tools", (home, (VM_A,)))}
    rig.apply(files)
    assert set(rig.conf()) == {"a-local.conf", "b-local.conf", "export-1002.conf"}
    rig.server.restart()  # Ganesha now loads the foreign files too
    assert sorted(rig.server.exports()) == [0, 1000, 1001, 1002]
    assert rig.server.exports()[1002] == home
    assert rig.server.clients(1002) == [f"{VM_A}/32"]
    rig.apply(files)  # and the next cycle has nothing to repair
    assert rig.backend.read_back(files) == []


def _tools_and_paws(lab: Lab, g: GaneshaServer) -> tuple[str, str]:
    _ganesha_config(lab.config, g)
    lab.add_project("tools", 50380)
    lab.add_project("paws", 50381)
    return lab.srv("tools", "home"), lab.srv("paws", "home")


def test_a_foreign_export_of_one_of_our_paths_does_not_block_every_cycle(
    lab: Lab, ganesha_lo: GaneshaServer
) -> None:
    """A hand-written file in conf_dir exports paws's volume (Ganesha serves one EXPORT
    per Pseudo, so ours for that path is refused).  Before the fix every sync tried
    AddExport, Ganesha refused it, the whole cycle was undone and failed: also the
    ip-conflict removal of an address that went from tools to paws, so paws's VM kept
    reading tools's volume, cycle after cycle.  The path must be held (path-unsafe,
    naming the file) and everything else applied."""
    home, paws_home = _tools_and_paws(lab, ganesha_lo)
    x = "172.16.0.5"
    lab.add_instance("i-1", "tools", x)
    lab.projects.pop("paws")  # paws's volume is not served here yet
    try:
        assert lab.cli("sync") == 0
        assert (home, x) in _served(ganesha_lo)
        (ganesha_lo.conf_dir / "local.conf").write_text(_foreign("5", paws_home))
        ganesha_lo.restart()
        assert (paws_home, "198.51.100.99") in _served(ganesha_lo)
        # paws's volume is now configured, and tools's address went to a paws instance
        lab.add_project("paws", 50381)
        lab.inventory["projects"].pop()  # listed already
        lab.remove_instance("i-1")
        lab.add_instance("i-2", "paws", x)
        assert lab.cli("sync") == 3  # held: paws's path is exported by local.conf
        assert (home, x) not in _served(ganesha_lo)  # the conflict removal applied
        assert (paws_home, x) not in _served(ganesha_lo)  # nothing added to a foreign export
        holds = lab.status()["plan"]["holds"]
        assert any(
            h["reason"] == "path-unsafe" and h["path"] == paws_home and "local.conf" in h["detail"]
            for h in holds
        ), holds
        assert lab.cli("sync") == 3  # and the next cycles do not fail either
    finally:
        _reset(ganesha_lo)


def test_two_public_exports_of_one_path_are_a_config_error(
    lab: Lab, ganesha_lo: GaneshaServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two public_exports naming one path with overlapping clients: the config was
    accepted, then every sync failed ("refusing the plan ... This is a bug in
    nfs-exportd: please report it") and applied nothing else (a new instance of tools
    got nothing).  It is bad input: exit 2 naming both keys, exports unchanged."""
    _ganesha_config(lab.config, ganesha_lo)
    scratch = lab.srv("scratch")
    lab.config["public_exports"] = {
        "campus": {"path": scratch, "clients": ["172.16.0.0/21"]},
        "lab": {"path": scratch, "clients": ["172.16.0.0/24"], "options": "ro,root_squash"},
    }
    lab.add_project("tools", 50380)
    lab.add_instance("i-1", "tools", "172.16.0.5")
    try:
        capsys.readouterr()
        assert lab.cli("sync") == 2
        err = capsys.readouterr().err
        assert "public_exports.campus" in err and "public_exports.lab" in err, err
        assert "bug" not in err
        assert _served(ganesha_lo) == set()
    finally:
        _reset(ganesha_lo)


def test_a_sync_with_nothing_to_do_does_not_speak_of_exportfs(
    lab: Lab, ganesha_lo: GaneshaServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """With backend: ganesha the sync line of a cycle with nothing to change said
    "exportfs not run" (exportfs is not used at all)."""
    _ganesha_config(lab.config, ganesha_lo)
    lab.add_project("tools", 50380)
    lab.add_instance("i-1", "tools", "172.16.0.5")
    try:
        assert lab.cli("sync") == 0
        capsys.readouterr()
        assert lab.cli("sync") == 0
        out = capsys.readouterr()
        line = [ln for ln in (out.out + out.err).splitlines() if ln.startswith("sync ok")]
        assert line and "exportfs" not in line[-1], line
    finally:
        _reset(ganesha_lo)


def test_a_project_without_lines_keeps_its_keystone_id_binding(
    lab: Lab, ganesha_lo: GaneshaServer
) -> None:
    """tools loses its last instance (its file keeps no line), state_dir is lost (a
    reinstall), then tools is deleted in Keystone and a new project is created under the
    same name with a new id and an instance.  With exportfs the header-only file still
    says keystone-id=id-tools, so the new id's instances get nothing until an operator
    accepts it (project-id-changed); with ganesha nothing in conf_dir remembers the id,
    and the new project's instance is served tools's volume."""
    _ganesha_config(lab.config, ganesha_lo)
    lab.config["safety"]["removal_confirmations"] = 1
    lab.add_project("tools", 50380)
    home = lab.srv("tools", "home")
    lab.add_instance("i-1", "tools", "172.16.0.5")
    try:
        assert lab.cli("sync") == 0
        lab.remove_instance("i-1")
        assert lab.cli("sync", "--force") == 0  # one pair of one: too-much-change
        assert _served(ganesha_lo) == set()
        # the file without lines is kept in conf_dir: a comment-only record file
        conf = sorted(p.name for p in ganesha_lo.conf_dir.iterdir())
        assert conf == ["record-tools.exports.conf"], conf
        assert "keystone-id=id-tools" in (ganesha_lo.conf_dir / conf[0]).read_text()
        shutil.rmtree(lab.state_dir)
        (lab.state_dir / "exports.d").mkdir(parents=True)
        lab.inventory["projects"] = [{"id": "id-tools-2", "name": "tools", "enabled": True}]
        lab.add_instance("i-9", "tools", "172.16.0.9")
        assert lab.cli("sync") == 3
        assert (home, "172.16.0.9") not in _served(ganesha_lo)
        holds = lab.status()["plan"]["holds"]
        assert any(h["reason"] == "project-id-changed" for h in holds), holds
    finally:
        _reset(ganesha_lo)


def test_removing_our_export_never_removes_a_foreign_one_that_took_its_id(rig: Rig) -> None:
    """A hand-written file (read before ours) reuses Export_Id 1000, ours; at Ganesha's
    next start it wins the id.  When our volume then stops being served, the backend
    called RemoveExport(1000) because the id was live, and removed the operator's export
    (never touch what is not ours); our conf file must go, the foreign export stay."""
    home = str(rig.data / "tools/home")
    other = rig.data / "other"
    other.mkdir()
    rig.apply({"tools.exports": _file("tools", (home, (VM_A,)))})
    (rig.server.conf_dir / "a-local.conf").write_text(_foreign("1000", str(other)))
    rig.server.restart()
    assert rig.server.exports()[1000] == str(other)
    rig.apply({"tools.exports": None})
    assert rig.server.exports().get(1000) == str(other)
    assert rig.server.clients(1000) == ["198.51.100.99/32"]
    assert set(rig.conf()) == {"a-local.conf"}


def test_a_comment_only_record_file_is_served_around_and_goes_with_the_lines(rig: Rig) -> None:
    """paws keeps a file without lines (with its Keystone id): a comment-only
    record-paws.exports.conf in conf_dir.  Ganesha 4.3 starts with it there and serves
    every export of the other files; AddExport and UpdateExport of those work with it
    present; in_force rebuilds paws's file from it; it goes when paws has a line again
    (and when paws's file goes)."""
    home, paws_home = str(rig.data / "tools/home"), str(rig.data / "paws/home")
    bare = ExportsFile("paws.exports", FileKind.PROJECT, "paws", (), "id-paws")
    rig.apply({"tools.exports": _file("tools", (home, (VM_A,))), "paws.exports": bare})
    assert set(rig.conf()) == {"export-1000.conf", "record-paws.exports.conf"}
    assert rig.backend.in_force()["paws.exports"] == bare
    assert rig.backend.read_back({"paws.exports": bare}) == []
    rig.server.restart()
    assert rig.server.exports() == {0: "/", 1000: home}
    assert rig.server.clients(1000) == [f"{VM_A}/32"]
    project = str(rig.data / "tools/project")
    rig.apply({"tools.exports": _file("tools", (home, (VM_A, VM_B)), (project, (VM_B,)))})
    assert rig.live() == {1000: [f"{VM_A}/32", f"{VM_B}/32"], 1001: [f"{VM_B}/32"]}
    assert rig.backend.in_force()["paws.exports"] == bare  # not a target: kept
    with_line = ExportsFile(
        "paws.exports", FileKind.PROJECT, "paws", (ExportLine(paws_home, OPTS, (VM_B,)),), "id-paws"
    )
    rig.apply({"paws.exports": with_line})
    assert "record-paws.exports.conf" not in rig.conf()
    assert rig.backend.in_force()["paws.exports"] == with_line
    rig.apply({"paws.exports": bare})
    assert "record-paws.exports.conf" in rig.conf()
    rig.apply({"paws.exports": None})
    assert set(rig.conf()) == {"export-1000.conf", "export-1001.conf"}
    assert "paws.exports" not in rig.backend.in_force()


def test_a_tampered_record_file_is_an_error_naming_it(rig: Rig) -> None:
    """The record file has the one grammar of what we write: an edit is a StateError
    naming the file, and nothing is applied."""
    bare = ExportsFile("paws.exports", FileKind.PROJECT, "paws", (), "id-paws")
    rig.apply({"paws.exports": bare})
    path = rig.server.conf_dir / "record-paws.exports.conf"
    path.write_text(path.read_text() + 'EXPORT { Export_Id = 7; Path = "/"; }\n')
    with pytest.raises(StateError, match=r"record-paws\.exports\.conf"):
        rig.backend.in_force()
    with pytest.raises(StateError, match=r"record-paws\.exports\.conf"):
        rig.apply({"tools.exports": _file("tools", (str(rig.data / "tools/home"), (VM_A,)))})
    assert rig.live() == {}


def test_our_export_id_named_by_a_foreign_file_is_held_and_shown(
    lab: Lab, ganesha_lo: GaneshaServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """A hand-written file (read before ours) names the Export_Id of our export of
    tools's home, in hex; at Ganesha's next start it wins the id, so our volume is not
    served.  Before, the backend only left our export out with a log warning: sync said
    ok (exit 0) and status counted it in force.  It must be a hold (path-unsafe, naming
    the file, as for a foreign export of the path): sync exits 3, status and check show
    it, and a new instance of tools gets nothing added to that path."""
    _ganesha_config(lab.config, ganesha_lo)
    lab.add_project("tools", 50380)
    home = lab.srv("tools", "home")
    lab.add_instance("i-1", "tools", "172.16.0.5")
    other = lab.srv("other")
    try:
        assert lab.cli("sync") == 0
        ours = [p.name for p in ganesha_lo.conf_dir.iterdir()]
        assert len(ours) == 1 and ours[0].startswith("export-"), ours
        export_id = int(ours[0].removeprefix("export-").removesuffix(".conf"))
        (ganesha_lo.conf_dir / "a-local.conf").write_text(_foreign(hex(export_id), other))
        ganesha_lo.restart()
        assert ganesha_lo.exports()[export_id] == other  # the foreign file won the id
        lab.add_instance("i-2", "tools", "172.16.0.6")
        capsys.readouterr()
        assert lab.cli("sync") == 3
        assert "sync held" in capsys.readouterr().out
        holds = lab.status()["plan"]["holds"]
        assert any(
            h["reason"] == "path-unsafe"
            and h["path"] == home
            and "a-local.conf" in h["detail"]
            and str(export_id) in h["detail"]
            for h in holds
        ), holds
        assert (home, "172.16.0.6") not in _served(ganesha_lo)
        assert ganesha_lo.exports()[export_id] == other  # the foreign export untouched
        assert ganesha_lo.clients(export_id) == ["198.51.100.99/32"]
        capsys.readouterr()
        lab.cli("check")
        assert "path-unsafe" in capsys.readouterr().out
        assert lab.cli("sync") == 3  # and the next cycles hold too, without failing
    finally:
        _reset(ganesha_lo)


# ------------------------------------------------------------- found by the final review


def test_a_second_conf_file_of_ours_for_one_path_changes_nothing(rig: Rig) -> None:
    """Two files of ours for one path (a copy by hand, a restore from a backup): which
    one is right is not known.  The backend used to keep the first by name order, hide
    the other from every reader, and remove its export every cycle (access taken away
    on no evidence).  Now it refuses to act, naming both files, and changes nothing."""
    files = rig.files(tools=(("home", VM_A),))
    rig.apply(files)
    (only,) = rig.conf()
    # the copy sorts first: by name order the live export 1000 was the one removed
    text = rig.conf()[only].replace("1000", "10").replace(VM_A, VM_B)
    (rig.server.conf_dir / "export-10.conf").write_text(text)
    before = rig.live()
    assert before == {1000: [f"{VM_A}/32"]}
    with pytest.raises(StateError, match=r"export-10\.conf and export-1000\.conf both export"):
        rig.apply(files)
    with pytest.raises(StateError, match="both export"):
        rig.backend.in_force()
    assert rig.live() == before  # nothing removed from Ganesha
    assert set(rig.conf()) == {"export-1000.conf", "export-10.conf"}


def test_a_foreign_path_written_unnormalised_is_still_ours_to_hold(rig: Rig) -> None:
    """A hand-written file exports "//.../paws/home/./": to Ganesha the same path as
    ours; it must be held like the plain spelling, not added every cycle and refused."""
    paws_home = str(rig.data / "paws/home")
    odd = "/" + paws_home.replace("/home", "/./home/")
    (rig.server.conf_dir / "local.conf").write_text(_foreign("5", odd))
    conflicts = rig.backend.foreign_conflicts()
    assert paws_home in conflicts and "local.conf" in conflicts[paws_home]
