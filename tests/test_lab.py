"""The data-path lab itself: it starts, answers, serves and refuses, and leaves nothing
behind.  These are the lab's own checks; the daemon's data-path tests build on it."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from jeepney.wrappers import DBusErrorResponse

from lab_fixtures import ganesha_export, ganesha_lo, require_root, scratch_tree
from nfs_exportd_sim.lab.clients import nfs_cat, nfs_ls
from nfs_exportd_sim.lab.ganesha import GaneshaServer
from nfs_exportd_sim.lab.netns import NetNS, loopback_netns
from nfs_exportd_sim.lab.proc import LabError

__all__ = ["ganesha_lo"]  # a fixture, imported for pytest


def _add(server: GaneshaServer, export_id: int, block: str) -> Path:
    conf = server.conf_dir / f"e{export_id}.conf"
    conf.write_text(block)
    server.call("AddExport", "ss", str(conf), f"EXPORT(Export_Id={export_id})")
    return conf


def _drop(server: GaneshaServer, export_id: int) -> None:
    with contextlib.suppress(DBusErrorResponse):
        server.call("RemoveExport", "q", export_id)
    (server.conf_dir / f"e{export_id}.conf").unlink(missing_ok=True)


def test_ganesha_answers_over_its_private_bus(ganesha_lo: GaneshaServer) -> None:
    assert ganesha_lo.alive()
    assert ganesha_lo.exports().get(0) == "/"  # the pseudo root, nothing else yet
    assert ganesha_lo.dbus_address == f"unix:path={ganesha_lo.workdir}/dbus/system_bus_socket"
    assert Path(ganesha_lo.dbus_address.removeprefix("unix:path=")).is_socket()
    with pytest.raises(DBusErrorResponse, match="Export id not found"):
        ganesha_lo.call("DisplayExport", "q", 4242)
    main = ganesha_lo.config_path.read_text()
    assert f'%dir "{ganesha_lo.conf_dir}"' in main
    assert "EXPORT = INFO" in main


def test_an_allowed_client_reads_and_a_refused_one_does_not(
    ganesha_lo: GaneshaServer, tmp_path: Path
) -> None:
    data = scratch_tree(tmp_path / "srv", {"vol/hello.txt": "hello from vol\n"})
    path = str(data / "vol")
    ns = ganesha_lo.netns
    conf = _add(ganesha_lo, 7, ganesha_export(7, path, "/p/vol", ["127.0.0.1"]))
    try:
        assert ganesha_lo.clients(7) == ["127.0.0.1/32"]
        v4 = nfs_cat(ns, "127.0.0.1", "/p/vol/hello.txt", 4)
        v3 = nfs_cat(ns, "127.0.0.1", f"{path}/hello.txt", 3)
        assert (v4.ok, v4.output) == (True, "hello from vol\n"), v4
        assert (v3.ok, v3.output) == (True, "hello from vol\n"), v3
        assert "hello.txt" in nfs_ls(ns, "127.0.0.1", "/p/vol", 4).output

        # the same export for another address only: 127.0.0.1 is refused, v4 and v3
        conf.write_text(ganesha_export(7, path, "/p/vol", ["127.0.0.9"]))
        ganesha_lo.call("UpdateExport", "ss", str(conf), "EXPORT(Export_Id=7)")
        assert ganesha_lo.clients(7) == ["127.0.0.9/32"]
        v4 = nfs_cat(ns, "127.0.0.1", "/p/vol/hello.txt", 4)
        v3 = nfs_cat(ns, "127.0.0.1", f"{path}/hello.txt", 3)
        assert not v4.ok and "NFS4ERR_NOENT" in v4.message, v4
        assert not v3.ok and "MNT3ERR_ACCES" in v3.message, v3
        log = ganesha_lo.log_text()
        assert "Access not allowed on Export_Id 7 /p/vol for client ::ffff:127.0.0.1" in log
        assert f"Export entry {path} does not allow access for client ::ffff:127.0.0.1" in log
    finally:
        _drop(ganesha_lo, 7)


def test_restart_serves_the_exports_in_its_files(ganesha_lo: GaneshaServer, tmp_path: Path) -> None:
    data = scratch_tree(tmp_path / "srv", {"vol/f.txt": "kept\n"})
    _add(ganesha_lo, 8, ganesha_export(8, str(data / "vol"), "/r/vol", ["127.0.0.1"]))
    try:
        old = ganesha_lo.pid
        ganesha_lo.restart()
        assert ganesha_lo.pid != old and ganesha_lo.alive()
        assert ganesha_lo.exports().get(8) == str(data / "vol")
        assert nfs_cat(ganesha_lo.netns, "127.0.0.1", "/r/vol/f.txt", 4).output == "kept\n"
    finally:
        _drop(ganesha_lo, 8)


def test_a_ganesha_that_cannot_start_fails_with_its_log_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    require_root()
    with loopback_netns("bad") as ns:
        server = GaneshaServer(tmp_path / "g", ns.name, extra_config="NFS_CORE_PARAM { x")
        with pytest.raises(LabError) as err:
            server.start()
        assert "ganesha.nfsd in namespace" in str(err.value)
        assert "exited" in str(err.value)
        assert "ganesha.log" in str(err.value) and "CONFIG" in str(err.value)
        assert ns.pids() == []
        assert not server.bus.daemon.alive() and not server.rpcbind.alive()
    assert not ns.exists()


def test_stop_leaves_no_process_socket_or_namespace(tmp_path: Path) -> None:
    require_root()
    with loopback_netns("stop") as ns:
        with GaneshaServer(tmp_path / "g", ns.name) as server:
            pids = [server.pid, server.rpcbind.pid, server.bus.daemon.pid]
            assert len(ns.pids()) == 2  # ganesha and rpcbind (the bus is not in a netns)
        assert ns.pids() == []
        assert not any(Path(f"/proc/{p}").exists() for p in pids)
        assert not Path(server.dbus_address.removeprefix("unix:path=")).exists()
        name = ns.name
    assert not NetNS(name).exists()


def test_a_namespace_with_a_process_left_is_not_deleted(tmp_path: Path) -> None:
    require_root()
    with loopback_netns("left") as ns:
        server = GaneshaServer(tmp_path / "g", ns.name)
        server.start()
        try:
            with pytest.raises(LabError, match=r"still has processes .*\(ganesha.nfsd\)"):
                ns.delete()
            assert ns.exists()
        finally:
            server.stop()
