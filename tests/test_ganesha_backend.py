"""backend: ganesha against a real NFS-Ganesha 4.3 (the lab's server, alone in a
loopback-only network namespace, on its private bus): exports added, updated and removed
over DBus and read back; Export_Id stable across cycles and a Ganesha restart; a failure
mid-apply undone and verified; Ganesha down changes nothing; and one real read over NFS
through an export the backend made (the server's own address is the client: in a
loopback-only namespace a connection to a local address comes from that address)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from jeepney.wrappers import DBusErrorResponse

from lab_fixtures import ganesha_lo, scratch_tree
from nfs_exportd.apply.ganesha.backend import GaneshaBackend
from nfs_exportd.apply.ganesha.dbus import GaneshaBus
from nfs_exportd.apply.ganesha.render import blocks_of, render_conf, specs_of
from nfs_exportd.config import GaneshaConfig, load_config
from nfs_exportd.cycle import scan_in_force
from nfs_exportd.errors import ApplyError, BackendUnavailable, StateError
from nfs_exportd.exportsfile import render
from nfs_exportd.model import ExportLine, ExportsFile, FileKind
from nfs_exportd_sim.lab.clients import nfs_cat
from nfs_exportd_sim.lab.ganesha import GaneshaServer
from test_failure_matrix import NEW_P, NEW_T, P1, R1, World, world

__all__ = ["ganesha_lo", "world"]  # fixtures, imported for pytest

SERVER = "198.51.100.130"  # added to lo in the lab's namespace: clients there come from it
VM_A, VM_B = "198.51.100.11", "198.51.100.21"
OPTS = "rw,sync,no_subtree_check,root_squash"


@dataclass
class Rig:
    server: GaneshaServer
    backend: GaneshaBackend
    records: Path
    data: Path
    work: Path

    def files(self, **lines: tuple[tuple[str, ...], ...]) -> dict[str, ExportsFile | None]:
        """{project: ((volume, client, ...), ...)} -> managed files."""
        out: dict[str, ExportsFile | None] = {}
        for project, vols in lines.items():
            out[f"{project}.exports"] = ExportsFile(
                f"{project}.exports",
                FileKind.PROJECT,
                project,
                tuple(ExportLine(str(self.data / project / v), OPTS, cs) for v, *cs in vols),
            )
        return out

    def in_force(self) -> dict[str, str]:
        """The managed files in force, as every reader sees them: rebuilt from conf_dir."""
        return {n: render(f) for n, f in sorted(self.backend.in_force().items())}

    def apply(self, targets: dict[str, ExportsFile | None]) -> None:
        self.backend.apply(targets, self.in_force())

    def conf(self) -> dict[str, str]:
        return {p.name: p.read_text() for p in sorted(self.server.conf_dir.iterdir())}

    def live(self) -> dict[int, list[str]]:
        """Our exports in force: {id: clients} (DisplayExport)."""
        return {i: self.server.clients(i) for i in sorted(self.server.exports()) if i}


@pytest.fixture(scope="module")
def served_address(ganesha_lo: GaneshaServer) -> str:
    subprocess.run(
        ["ip", "netns", "exec", ganesha_lo.netns, "ip", "addr", "add", f"{SERVER}/32", "dev", "lo"],
        check=True,
        capture_output=True,
    )
    return SERVER


@pytest.fixture
def rig(ganesha_lo: GaneshaServer, served_address: str, tmp_path: Path) -> Iterator[Rig]:
    data = scratch_tree(
        tmp_path / "srv",
        {
            "tools/home/hello.txt": "hello from tools/home\n",
            "tools/project/p.txt": "p\n",
            "paws/home/h.txt": "h\n",
        },
    )
    records = tmp_path / "exports.d"
    records.mkdir()
    cfg = GaneshaConfig(
        conf_dir=ganesha_lo.conf_dir,
        staging_dir=tmp_path / "staging",
        dbus_address=ganesha_lo.dbus_address,
        timeout_seconds=10,
        export_id_min=1000,
        export_id_max=1009,
    )
    # the staging dir must share conf_dir's filesystem: both under the lab's workdir
    cfg = cfg.model_copy(update={"staging_dir": ganesha_lo.conf_dir.with_name("staging")})
    backend = GaneshaBackend(
        cfg, tmp_path / "ganesha.json", pending_marker=tmp_path / "apply-pending"
    )
    yield Rig(ganesha_lo, backend, records, data, tmp_path)
    _reset(ganesha_lo)


def _reset(server: GaneshaServer) -> None:
    """Leave the module's Ganesha as it was: no export but the pseudo root, no file."""
    if not server.alive():
        server.restart()
    for export_id in server.exports():
        if export_id:
            with contextlib.suppress(DBusErrorResponse):
                server.call("RemoveExport", "q", export_id)
    for p in server.conf_dir.iterdir():
        p.unlink()


def test_add_update_remove_one_export_each_read_back(rig: Rig) -> None:
    home = str(rig.data / "tools/home")
    rig.apply(rig.files(tools=(("home", VM_A),)))
    assert rig.live() == {1000: [f"{VM_A}/32"]}
    assert list(rig.conf()) == ["export-1000.conf"]  # nothing else: no temporary in conf_dir
    text = rig.conf()["export-1000.conf"]
    assert f"# path={home}\n" in text and "owner=project:tools" in text
    assert f'Pseudo = "{home}";' in text
    assert rig.in_force()["tools.exports"].startswith("# nfs-exportd managed file")
    assert not list(rig.backend.staging.iterdir())

    # update: the same id, the new client list in force
    rig.apply(rig.files(tools=(("home", VM_A, VM_B), ("project", VM_B))))
    assert rig.live() == {1000: [f"{VM_A}/32", f"{VM_B}/32"], 1001: [f"{VM_B}/32"]}
    assert rig.backend.read_back(rig.files(tools=(("home", VM_A, VM_B), ("project", VM_B)))) == []

    # remove one line: its export goes, then its file; the other keeps its id
    rig.apply(rig.files(tools=(("project", VM_B),)))
    assert rig.live() == {1001: [f"{VM_B}/32"]}
    assert list(rig.conf()) == ["export-1001.conf"]

    # a new export does not get the id given up a moment ago (allocated upwards)
    rig.apply(rig.files(tools=(("project", VM_B), ("home", VM_A))))
    assert sorted(rig.live()) == [1001, 1002]

    # the whole file goes: every export of it goes
    rig.apply({"tools.exports": None})
    assert rig.live() == {} and rig.conf() == {} and rig.in_force() == {}


def test_the_nfs_client_reads_only_while_exported_to_it(rig: Rig) -> None:
    home = rig.data / "tools/home"
    ns = rig.server.netns
    rig.apply(rig.files(tools=(("home", SERVER),)))
    for version in (3, 4):
        got = nfs_cat(ns, SERVER, f"{home}/hello.txt", version)
        assert got.ok and "hello from tools/home" in got.output, got
    rig.apply(rig.files(tools=(("home", VM_A),)))  # the address now is someone else's
    for version in (3, 4):
        got = nfs_cat(ns, SERVER, f"{home}/hello.txt", version)
        assert not got.ok, got


def test_export_ids_stable_across_cycles_and_a_ganesha_restart(rig: Rig) -> None:
    files = rig.files(tools=(("home", VM_A), ("project", VM_B)), paws=(("home", VM_B),))
    rig.apply(files)
    before = rig.live()
    conf_before = rig.conf()
    assert sorted(before) == [1000, 1001, 1002]
    rig.apply(files)  # no change: nothing written
    assert rig.conf() == conf_before

    rig.server.restart()  # Ganesha reads conf_dir at its start: the same ids are back
    assert rig.live() == before
    # restart noticed: every export re-checked; one removed by hand meanwhile comes back
    rig.server.call("RemoveExport", "q", 1002)
    # ... and one whose clients were changed by hand (only a full re-check sees that)
    hand = rig.work / "hand.conf"
    hand.write_text(
        rig.conf()["export-1001.conf"].replace(f"Clients = {VM_A};", f"Clients = {VM_B};")
    )
    rig.server.call("UpdateExport", "ss", str(hand), "EXPORT(Export_Id=1001)")
    assert rig.live()[1001] == [f"{VM_B}/32"] != before[1001]
    rig.apply(files)
    assert rig.live() == before and rig.conf() == conf_before

    # a lost state file loses nothing: ids come from conf_dir, new ones above ours
    rig.backend.state_file.unlink()
    more = rig.files(tools=(("home", VM_A), ("project", VM_B), ("scratch", VM_A)))
    (rig.data / "tools/scratch").mkdir()
    rig.apply({**files, **more})
    assert sorted(rig.live()) == [1000, 1001, 1002, 1003]


def test_ganesha_refusing_an_export_mid_apply_is_undone_and_verified(rig: Rig) -> None:
    good = rig.files(tools=(("home", VM_A),), paws=(("home", VM_B),))
    rig.apply(good)
    conf, records, live = rig.conf(), rig.in_force(), rig.live()
    # tools/home is updated first, then the new export of a path Ganesha refuses
    bad = rig.files(tools=(("home", VM_A, VM_B), ("gone", VM_A)), paws=())
    with pytest.raises(ApplyError, match=r"Ganesha refused the add .*tools\.exports.*gone") as e:
        rig.apply(bad)
    assert "re-applied them over DBus and verified them in force" in str(e.value)
    assert rig.live() == live and rig.conf() == conf and rig.in_force() == records
    assert not (rig.work / "apply-pending").exists()


def test_ganesha_stopped_between_two_calls(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    good = rig.files(tools=(("home", VM_A),))
    rig.apply(good)
    conf, records = rig.conf(), rig.in_force()

    class StopsAfterOneCall(GaneshaBus):
        def update(self, conf: str, export_id: int) -> str:
            out = super().update(conf, export_id)
            rig.server.ganesha.stop(20)  # Ganesha gone before the next call
            return out

    cfg = rig.backend.cfg
    rig.backend.bus_factory = lambda: StopsAfterOneCall(cfg.dbus_address, cfg.timeout_seconds)
    with pytest.raises(ApplyError, match="UNDO FAILED") as e:
        rig.apply(rig.files(tools=(("home", VM_A, VM_B), ("project", VM_A))))
    assert "Ganesha serves them at its next start" in str(e.value)
    # the conf files and the records are back as they were; the marker stays
    assert rig.conf() == conf and rig.in_force() == records
    assert (rig.work / "apply-pending").exists()

    # Ganesha down: nothing changes, the error says what to do
    rig.backend.bus_factory = lambda: GaneshaBus(cfg.dbus_address, cfg.timeout_seconds)
    with pytest.raises(BackendUnavailable, match="nothing was changed: start nfs-ganesha"):
        rig.apply(rig.files(tools=(("home", VM_B),)))
    assert rig.conf() == conf and rig.in_force() == records

    # back: it serves the restored files, and the next cycle verifies and clears the marker
    rig.server.restart()
    assert rig.live() == {1000: [f"{VM_A}/32"]}
    with caplog.at_level(logging.WARNING):
        rig.apply(good)
    assert not (rig.work / "apply-pending").exists()
    # the failure is named as a failure, never as an interrupted apply
    said = caplog.text
    assert "failed and its undo was not verified" in said and "interrupted" not in said


def test_no_bus_at_all_changes_nothing(rig: Rig, tmp_path: Path) -> None:
    cfg = rig.backend.cfg.model_copy(update={"dbus_address": f"unix:path={tmp_path}/no-socket"})
    rig.backend.bus_factory = lambda: GaneshaBus(cfg.dbus_address, cfg.timeout_seconds)
    with pytest.raises(
        BackendUnavailable, match=r"Ganesha does not answer on unix:path=.*no-socket"
    ):
        rig.apply(rig.files(tools=(("home", VM_A),)))
    assert rig.conf() == {} and rig.in_force() == {} and rig.live() == {}


def test_conf_dir_is_the_record_nothing_is_written_elsewhere(rig: Rig) -> None:
    """No managed file is written (exports_dir is unused with ganesha): what is in force
    is rebuilt from conf_dir, and a path handed from one file to another (a rename) keeps
    its one export and its Export_Id."""
    rig.apply(rig.files(tools=(("home", VM_A),), paws=(("home", VM_B),)))
    assert not list(rig.records.iterdir())
    ids = rig.live()
    assert sorted(ids) == [1000, 1001]  # by path: paws/home, tools/home
    home = str(rig.data / "tools/home")
    renamed = {
        "tools.exports": None,
        "tools-new.exports": ExportsFile(
            "tools-new.exports", FileKind.PROJECT, "tools-new", (ExportLine(home, OPTS, (VM_A,)),)
        ),
    }
    rig.apply(renamed)
    assert rig.live() == ids  # the same id, the same clients
    assert "record=tools-new.exports" in rig.conf()["export-1001.conf"]
    assert sorted(rig.in_force()) == ["paws.exports", "tools-new.exports"]


def test_export_ids_run_out_changes_nothing(rig: Rig) -> None:
    vols = tuple((f"v{i}", VM_A) for i in range(11))  # the range is 1000..1009
    for v, _ in vols:
        (rig.data / "tools" / v).mkdir()
    with pytest.raises(ApplyError, match=r"\(1000\.\.1009\) has 10 free Export_Ids and 11 new"):
        rig.apply(rig.files(tools=vols))
    assert rig.conf() == {} and rig.in_force() == {} and rig.live() == {}


def test_render_of_records_is_the_exportfs_syntax(rig: Rig) -> None:
    files = rig.files(tools=(("home", VM_A),))
    rig.apply(files)
    f = files["tools.exports"]
    assert f is not None and rig.in_force() == {"tools.exports": render(f)}


def _served(server: GaneshaServer) -> set[tuple[str, str]]:
    """(path, client) pairs Ganesha serves, read with DisplayExport."""
    return {
        (path, c.removesuffix("/32").removesuffix("/128"))
        for i, path in server.exports().items()
        if i
        for c in server.clients(i)
    }


def _recorded(w: World) -> set[tuple[str, str]]:
    """The (path, client) pairs of the managed files in force, as sync reads them."""
    w.lab.write()
    scan = scan_in_force(load_config(w.lab.config_path))
    assert not w.lab.files()  # nothing in exports_dir: conf_dir is the record
    return {(ln.path, c) for f in scan.managed.values() for ln in f.lines for c in ln.clients}


def test_nfs_exportd_sync_with_backend_ganesha_against_the_simulated_cloud(
    world: World, ganesha_lo: GaneshaServer
) -> None:
    """The real daemon (openstacksdk over HTTP to the simulated cloud): the same plan as
    with exportfs, and after each sync Ganesha serves exactly what the records say."""
    w = world
    exportfs_plan = w.plan()
    assert exportfs_plan["changes"]
    w.lab.config["backend"] = "ganesha"
    w.lab.config["ganesha"] = {
        "conf_dir": str(ganesha_lo.conf_dir),
        "staging_dir": str(ganesha_lo.conf_dir.with_name("staging")),
        "dbus_address": ganesha_lo.dbus_address,
        "timeout_seconds": 10,
    }
    try:
        assert w.plan() == exportfs_plan  # the plan does not know which backend applies it
        assert w.sync() == 0
        want = _recorded(w)
        assert want and _served(ganesha_lo) == want
        assert not w.lab.etab.exists()  # no exportfs ran
        assert all(n.startswith("export-") for n in os.listdir(ganesha_lo.conf_dir))
        ids = dict(ganesha_lo.exports())

        # the cloud changes: a new instance is served after one cycle; a deleted one
        # stays until its removal is confirmed (removal_confirmations: 2)
        w.sim.create_server("paws-new", "paws", region=R1, addresses=[NEW_P], server_id="paws-new")
        w.sim.create_server("tools-new", "tools", region=R1, addresses=[NEW_T])
        w.sim.delete_server("paws-1")
        assert w.sync() == 3  # the removal is pending
        served = _served(ganesha_lo)
        assert {(p, NEW_P) for p in w.paths["paws"]} <= served
        assert {(p, NEW_T) for p in w.paths["tools"]} <= served
        assert {(p, P1) for p in w.paths["paws"]} <= served
        assert served == _recorded(w)
        assert w.sync() == 0
        served = _served(ganesha_lo)
        assert not {(p, P1) for p in w.paths["paws"]} & served and served == _recorded(w)
        assert ganesha_lo.exports() == ids  # every export kept its Export_Id

        # status works the same
        w.capsys.readouterr()
        assert w.cli("status", "--json") == 0
        status = json.loads(w.capsys.readouterr().out)
        assert status["last_cycle"]["result"] == "ok"
        assert "ganesha: 0 added, " in status["last_cycle"]["message"]
    finally:
        _reset(ganesha_lo)


def test_a_conf_file_changed_between_two_reads_is_parsed_again(tmp_path: Path) -> None:
    """conf_dir parses are reused across reads only for the very same text: a file
    rewritten in place to the same size, its mtime put back, is seen as it now is (the
    cache must never hand back what the file said before)."""
    conf_dir = tmp_path / "exports.d"
    conf_dir.mkdir()
    backend = GaneshaBackend(GaneshaConfig(conf_dir=conf_dir), tmp_path / "ganesha.json")

    def text(client: str) -> str:
        line = ExportLine("/srv/tools/home", OPTS, (client,))
        f = ExportsFile("tools.exports", FileKind.PROJECT, "tools", (line,))
        (spec,) = specs_of({p: [b] for p, b in blocks_of(f).items()}).values()
        return render_conf(spec, 1000)

    before, after = text(VM_A), text(VM_B)
    assert len(before) == len(after) and before != after
    path = conf_dir / "export-1000.conf"
    path.write_text(before)
    first = backend.read_conf_dir()
    assert first.ours["/srv/tools/home"].spec.clients == (VM_A,)
    assert backend.read_conf_dir().ours["/srv/tools/home"] is first.ours["/srv/tools/home"]
    st = os.stat(path)
    with open(path, "r+") as fh:  # in place: same inode, same size
        fh.write(after)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    st2 = os.stat(path)
    assert (st2.st_ino, st2.st_size, st2.st_mtime_ns) == (st.st_ino, st.st_size, st.st_mtime_ns)
    assert backend.read_conf_dir().ours["/srv/tools/home"].spec.clients == (VM_B,)
    assert backend.in_force()["tools.exports"].lines[0].clients == (VM_B,)
    path.write_text(after.replace("Squash = root_squash", "Squash = all_squash"))
    with pytest.raises(StateError, match=r"export-1000\.conf"):  # and a broken one is refused
        backend.read_conf_dir()
