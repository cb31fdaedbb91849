"""The data-path lab itself: it starts, answers, serves and refuses, and leaves nothing
behind.  These are the lab's own checks; the daemon's data-path tests build on it."""

from __future__ import annotations

import contextlib
import subprocess
import time
from pathlib import Path

import pytest
from jeepney.wrappers import DBusErrorResponse

from lab_fixtures import (
    DataLab,
    datalab,
    ganesha_export,
    ganesha_lo,
    require_root,
    scratch_tree,
)
from nfs_exportd_sim.lab.clients import nfs_cat, nfs_ls
from nfs_exportd_sim.lab.ganesha import GaneshaServer
from nfs_exportd_sim.lab.holder import HeldReader
from nfs_exportd_sim.lab.mnt3 import MNT3_OK, MNT3ERR_ACCES, mnt3_probe
from nfs_exportd_sim.lab.netns import NetNS, loopback_netns
from nfs_exportd_sim.lab.network import LabNetwork
from nfs_exportd_sim.lab.proc import LabError

__all__ = ["datalab", "ganesha_lo"]  # fixtures, imported for pytest


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


# -- the whole lab: router, VMs, Ganesha on the lab net, rpc.mountd over the etab ------


def _root_net_state() -> tuple[str, str, str, str]:
    def out(*argv: str) -> str:
        return subprocess.run(argv, capture_output=True, text=True, check=True).stdout

    return (
        out("ip", "-o", "link", "show"),
        out("ip", "route", "show", "table", "all"),
        Path("/proc/sys/net/ipv4/ip_forward").read_text(),
        out("ip", "-o", "addr", "show"),
    )


def test_the_network_is_private_and_torn_down_by_name() -> None:
    require_root()
    before = _root_net_state()
    with LabNetwork({"x1": "198.51.100.31"}, knfs=False) as net:
        names = [ns.name for ns in net.namespaces()]
        assert all(ns.exists() for ns in net.namespaces())
        assert all(n.startswith(f"nxl{net.lab_id}-") for n in names)
        assert _root_net_state() == before  # no interface, route, address or forwarding
        routes = net.router.run("ip", "route", "show")
        assert "default" not in routes  # nothing is routed off the machine
        assert (
            net.vms["x1"]
            .ns.run("ip", "-4", "-o", "addr", "show", "dev", "eth0")
            .count("198.51.100.31/25")
        )
        other = LabNetwork({"x1": "198.51.100.31"}, knfs=False)  # a second lab at once
        assert other.lab_id != net.lab_id
    assert not any(NetNS(n).exists() for n in names)
    assert _root_net_state() == before


def test_a_vm_allowed_by_a_hand_written_export_reads_and_another_is_refused(
    datalab: DataLab,
) -> None:
    datalab.reset()
    g, srv_ip = datalab.ganesha, datalab.net.server_ip
    vol = scratch_tree(datalab.srv / "proj-a" / "vol1", {"README": "hello from proj-a\n"})
    _add(g, 101, ganesha_export(101, str(vol), "/proj-a/vol1", ["198.51.100.11"]))
    a1, b1 = datalab.vm("a1").netns, datalab.vm("b1").netns
    for version, path in ((4, "/proj-a/vol1/README"), (3, f"{vol}/README")):
        ok = nfs_cat(a1, srv_ip, path, version)
        refused = nfs_cat(b1, srv_ip, path, version)
        assert (ok.ok, ok.output) == (True, "hello from proj-a\n"), ok
        assert not refused.ok and refused.output == "", refused
    assert "Access not allowed on Export_Id 101 /proj-a/vol1 for client ::ffff:198.51.100.21" in (
        g.log_text()
    )


def test_rpc_mountd_answers_from_the_etab_exportfs_wrote(datalab: DataLab) -> None:
    datalab.reset()
    a = scratch_tree(datalab.srv / "k" / "a", {})
    b = scratch_tree(datalab.srv / "k" / "b", {})
    exports = datalab.sandbox / "exports.d"
    (exports / "a.exports").write_text(f"{a} -rw,sync,no_subtree_check 198.51.100.11\n")
    (exports / "b.exports").write_text(f"{b} -rw,sync,no_subtree_check 198.51.100.21\n")
    datalab.exportfs("-ra")
    ip = datalab.net.knfs_ip
    seen = {
        (vm, p.name): mnt3_probe(datalab.vm(vm).netns, ip, str(p)).status
        for vm in ("a1", "a2", "b1")
        for p in (a, b)
    }
    assert seen == {
        ("a1", "a"): MNT3_OK,
        ("a1", "b"): MNT3ERR_ACCES,
        ("a2", "a"): MNT3ERR_ACCES,
        ("a2", "b"): MNT3ERR_ACCES,
        ("b1", "a"): MNT3ERR_ACCES,
        ("b1", "b"): MNT3_OK,
    }
    refusals = datalab.mountd.refusals()
    assert f"rpc.mountd: refused mount request from 198.51.100.21 for {a} (/): not exported" in (
        refusals
    )
    assert any(f"from 198.51.100.12 for {a} ({a}): unmatched host" in r for r in refusals)

    # the etab changes under a running rpc.mountd: the next MOUNT follows it
    (exports / "a.exports").write_text(f"{a} -rw,sync,no_subtree_check 198.51.100.12\n")
    datalab.exportfs("-ra")
    assert mnt3_probe(datalab.vm("a2").netns, ip, str(a)).ok
    assert mnt3_probe(datalab.vm("a1").netns, ip, str(a)).status == MNT3ERR_ACCES

    # the source-NAT outage: every VM arrives as the router and is refused
    datalab.net.masquerade(True)
    try:
        assert mnt3_probe(datalab.vm("b1").netns, ip, str(b)).status == MNT3ERR_ACCES
        assert any(f"from 198.51.100.241 for {b}" in r for r in datalab.mountd.refusals())
    finally:
        datalab.net.masquerade(False)
    assert mnt3_probe(datalab.vm("b1").netns, ip, str(b)).ok


def test_a_held_reader_counts_the_reads_a_revoke_failed(datalab: DataLab) -> None:
    datalab.reset()
    g, srv_ip = datalab.ganesha, datalab.net.server_ip
    vol = scratch_tree(datalab.srv / "held", {"f.txt": "held\n"})
    conf = _add(g, 102, ganesha_export(102, str(vol), "/held", ["198.51.100.11"]))
    readers = [
        HeldReader(datalab.vm("a1").netns, srv_ip, "/held", "f.txt", 4),
        HeldReader(datalab.vm("a1").netns, srv_ip, str(vol), "f.txt", 3),
    ]
    for r in readers:
        r.start()
    time.sleep(0.3)
    conf.write_text(ganesha_export(102, str(vol), "/held", ["198.51.100.21"]))
    revoked = time.time()
    g.call("UpdateExport", "ss", str(conf), "EXPORT(Export_Id=102)")
    time.sleep(0.5)
    conf.write_text(ganesha_export(102, str(vol), "/held", ["198.51.100.11"]))
    g.call("UpdateExport", "ss", str(conf), "EXPORT(Export_Id=102)")
    granted = time.time()
    time.sleep(0.3)
    results = [r.stop() for r in readers]
    for r, res, err in zip(
        readers, results, ("NFS4ERR_ACCESS", "RPC Packet not accepted"), strict=True
    ):
        why = f"{res} {r.events}"
        # the reads in the ~0.5 s without access failed (one each ~20 ms), and no other
        assert res.failed_count >= 5 and res.reads > res.failed_count + 5, why
        assert all(err in e and revoked - 0.05 < t < granted + 0.5 for t, e in res.failed), why
        assert res.failed[0][0] - revoked < 0.5, why  # the open file lost access at once
        assert r.events[-2]["event"] == "ok", why  # and got it back

    # an undisturbed reader fails no read
    quiet = HeldReader(datalab.vm("a1").netns, srv_ip, "/held", "f.txt", 4)
    quiet.start()
    time.sleep(0.3)
    res = quiet.stop()
    assert res.reads > 5 and res.failed_count == 0, res
