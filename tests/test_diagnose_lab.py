"""``nfs-exportd diagnose`` against the real servers of the lab: the network-failover
outage of the outage report replayed (source NAT in the router: every VM reaches the NFS
server from the router's address), for both backends, and one test per cause.

VMs: a1 198.51.100.11 (an instance of proja), b1 .21 (projb); a2 .12 is an address of no
instance until a test creates one.  rpc.mountd's refusals are read from its syslog
datagrams (time-stamped, as a Debian server's journal or syslog keeps them), Ganesha's
from its log file.  One lab for the whole module.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from conftest import Lab
from datapath_world import A1, A2, B1, PROJECTS, cloud_world, volume
from lab_fixtures import DataLab, datalab, scratch_tree
from nfs_exportd_sim import SimCloud
from nfs_exportd_sim.lab.clients import nfs_cat
from nfs_exportd_sim.lab.holder import HeldReader
from nfs_exportd_sim.lab.mnt3 import MNT3_OK, MNT3ERR_ACCES, mnt3_probe
from nfs_exportd_sim.lab.network import ROUTER_KNFS_IP, ROUTER_SRV_IP
from nfs_exportd_sim.lab.proc import LabError
from nfs_exportd_sim.sandbox import SANDBOX

__all__ = ["datalab"]  # a fixture, imported for pytest

FILE = "hello.txt"


def _truncate(*paths: Path) -> None:
    """Start a test with empty server logs (the servers append: O_APPEND)."""
    for p in paths:
        if p.exists():
            p.write_bytes(b"")


def diagnose(lab: Lab, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any]:
    """Run ``diagnose ARGS`` in-process: (exit code, parsed JSON or the printed text)."""
    capsys.readouterr()
    rc = lab.cli("diagnose", *args)
    out = capsys.readouterr().out
    return rc, json.loads(out) if "--json" in args else out.strip()


def causes(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["cause"]: c for c in report["causes"]}


def addresses(cause: dict[str, Any]) -> list[str]:
    return [a["address"] for a in cause["addresses"]]


@pytest.fixture
def kernel(lab: Lab, datalab: DataLab, monkeypatch: pytest.MonkeyPatch) -> Iterator[SimCloud]:
    """The exportfs backend over the lab's sandbox (the etab rpc.mountd decides from),
    the simulated cloud, and diagnose reading rpc.mountd's syslog datagrams."""
    with cloud_world(lab, datalab, monkeypatch) as sim:
        sb = datalab.sandbox
        lab.config.update(
            {
                "exports_dir": str(sb / "exports.d"),
                "etab_file": str(sb / "lib" / "etab"),
                "exportfs_command": [str(SANDBOX), str(sb)],
                "diagnose": {
                    "sources": [{"kind": "file", "path": str(datalab.mountd.syslog_path)}],
                    "metrics_textfile": "refusals.prom",  # relative to the config file
                },
            }
        )
        _truncate(datalab.mountd.syslog_path)
        yield sim


def mount(datalab: DataLab, vm: str, path: str) -> int | None:
    return mnt3_probe(datalab.vm(vm).netns, datalab.net.knfs_ip, path).status


# -- the outage replayed ------------------------------------------------------------------


def test_replay_exportfs_source_nat_is_named_with_the_routers_address_and_the_projects(
    lab: Lab, datalab: DataLab, kernel: SimCloud, capsys: pytest.CaptureFixture[str]
) -> None:
    assert lab.cli("sync") == 0
    mine = {("a1", "proja"), ("b1", "projb")}
    for vm, p in mine:
        assert mount(datalab, vm, volume(lab, p)) == MNT3_OK
    rc, rep = diagnose(lab, capsys, "--json", "--since", "10m")
    assert rc == 0 and rep["refusals"] == 0 and rep["verdict"]["state"] == "OK"
    datalab.net.masquerade(True)  # the failover: every VM now leaves from the router
    try:
        for _ in range(3):  # clients retry
            for vm, p in mine:
                assert mount(datalab, vm, volume(lab, p)) == MNT3ERR_ACCES
        rc, rep = diagnose(lab, capsys, "--json", "--since", "10m")
        assert rc == 0
        top = rep["causes"][0]
        assert top["cause"] == "wrong-source-address", rep["causes"]
        assert addresses(top) == [ROUTER_KNFS_IP] and top["refusals"] == 6
        assert top["projects"] == ["proja", "projb"] and top["severity"] == "CRITICAL"
        assert top["first"] is not None and top["first"] <= top["last"] <= time.time() + 1
        assert any("2 of the 2 instance addresses" in n for n in top["notes"]), top["notes"]
        rc, text = diagnose(lab, capsys, "--since", "10m")
        print(text)
        assert text.splitlines()[1].startswith("[CRITICAL] wrong source address: 6 refusals")
        rc, line = diagnose(lab, capsys, "--check", "--since", "10m")
        print(line)
        assert rc == 2 and "\n" not in line
        assert line.startswith(
            f"NFS-EXPORTD-DIAGNOSE CRITICAL - wrong source address {ROUTER_KNFS_IP}"
        )
        assert "wrong_source_address=6" in line and "proja, projb" in line
        prom = (lab.root / "refusals.prom").read_text()  # diagnose.metrics_textfile
        assert 'nfs_exportd_refusals{cause="wrong-source-address"} 6.0' in prom
    finally:
        datalab.net.masquerade(False)
    for vm, p in mine:  # source NAT off: the VMs mount again
        assert mount(datalab, vm, volume(lab, p)) == MNT3_OK


@pytest.fixture
def ganesha(lab: Lab, datalab: DataLab, monkeypatch: pytest.MonkeyPatch) -> Iterator[SimCloud]:
    """``backend: ganesha`` on the lab's Ganesha, diagnose reading its log file."""
    g = datalab.ganesha
    if not g.alive():
        g.restart()
    with cloud_world(lab, datalab, monkeypatch) as sim:
        for p in PROJECTS:
            scratch_tree(Path(volume(lab, p)), {FILE: f"hello from {p}\n"})
        lab.config["backend"] = "ganesha"
        lab.config["ganesha"] = {
            "conf_dir": str(g.conf_dir),
            "staging_dir": str(g.conf_dir.with_name("staging")),
            "dbus_address": g.dbus_address,
            "timeout_seconds": 10,
        }
        lab.config["diagnose"] = {"sources": [{"kind": "file", "path": str(g.log_path)}]}
        _truncate(g.log_path)
        yield sim


def test_replay_ganesha_source_nat_is_named_and_vms_read_again_after_it(
    lab: Lab, datalab: DataLab, ganesha: SimCloud, capsys: pytest.CaptureFixture[str]
) -> None:
    srv = datalab.net.server_ip
    mine = [("a1", "proja"), ("b1", "projb")]

    def cat(vm: str, p: str, v: int) -> tuple[bool, str]:
        r = nfs_cat(datalab.vm(vm).netns, srv, f"{volume(lab, p)}/{FILE}", v)
        return r.ok and f"hello from {p}" in r.output, r.message

    def all_reads() -> dict[tuple[str, str, int], tuple[bool, str]]:
        keys = [(vm, p, v) for vm, p in mine for v in (3, 4)]
        with ThreadPoolExecutor(4) as pool:
            return dict(zip(keys, pool.map(lambda k: cat(*k), keys), strict=True))

    assert lab.cli("sync") == 0
    assert all(ok for ok, _ in all_reads().values())
    held = []
    for vm, p, v in (("a1", "proja", 4), ("b1", "projb", 3)):
        r = HeldReader(datalab.vm(vm).netns, srv, volume(lab, p), FILE, v, 0.05)
        try:
            r.start()
        except LabError as exc:
            pytest.fail(f"held reader {vm} v{v}: {exc}", pytrace=False)
        held.append(r)
    try:
        datalab.net.masquerade(True)
        t_on = time.time()
        try:
            refused = all_reads()
            assert not any(ok for ok, _ in refused.values()), refused
            time.sleep(0.3)  # the held readers keep knocking
            rc, rep = diagnose(lab, capsys, "--json", "--since", "10m")
            assert rc == 0, rep
            top = rep["causes"][0]
            assert top["cause"] == "wrong-source-address", rep["causes"]
            assert addresses(top) == [ROUTER_SRV_IP]
            assert top["projects"] == ["proja", "projb"] and top["servers"] == ["ganesha"]
            assert [c["cause"] for c in rep["causes"]] == ["wrong-source-address"]
            assert rep["warnings"] == []  # EXPORT = INFO: Ganesha logs every refusal
            rc, line = diagnose(lab, capsys, "--check", "--since", "10m")
            print(line)
            assert rc == 2 and ROUTER_SRV_IP in line
            rc, text = diagnose(lab, capsys, "--since", "10m")
            print(text)
        finally:
            datalab.net.masquerade(False)
            t_off = time.time()
        again = all_reads()  # fresh mounts read again, over v3 and v4
        assert all(ok for ok, _ in again.values()), again
        time.sleep(1.5)
    finally:
        results = [(r.url, r.stop()) for r in held]
    for url, res in results:
        after = [t for t, _e in res.failed if t > t_off + 1.0]
        first = f"{1000 * (res.failed[0][0] - t_on):+.0f} ms" if res.failed else "-"
        print(
            f"held {url}: {res.reads} reads, {len(res.failed)} failed (first {first} after "
            f"masquerade on), {len(after)} failed more than 1 s after it was off"
            + (f": {res.failed[-1][1]}" if res.failed else "")
        )
        if url.endswith("version=3"):  # NFSv3 (stateless) reads on by itself
            assert res.failed and not after, res.failed[-3:]


# -- one test per cause ------------------------------------------------------------------


def test_an_instance_of_another_project_is_explained_and_does_not_page(
    lab: Lab, datalab: DataLab, kernel: SimCloud, capsys: pytest.CaptureFixture[str]
) -> None:
    assert lab.cli("sync") == 0
    assert mount(datalab, "b1", volume(lab, "proja")) == MNT3ERR_ACCES
    _rc, rep = diagnose(lab, capsys, "--json")
    (c,) = rep["causes"]
    assert (c["cause"], addresses(c), c["projects"], c["address_owners"]) == (
        "other-project", [B1], ["proja"], ["projb"])  # fmt: skip
    assert diagnose(lab, capsys, "--check")[0] == 0


def test_a_new_instance_is_too_new_until_the_next_cycle(
    lab: Lab, datalab: DataLab, kernel: SimCloud, capsys: pytest.CaptureFixture[str]
) -> None:
    assert lab.cli("sync") == 0
    kernel.create_server("a-2", "proja", region="RegionOne", addresses=[A2])
    assert mount(datalab, "a2", volume(lab, "proja")) == MNT3ERR_ACCES
    _rc, rep = diagnose(lab, capsys, "--json")
    (c,) = rep["causes"]
    assert (c["cause"], addresses(c), c["severity"]) == ("not-yet-exported", [A2], "OK")
    assert lab.cli("sync") == 0
    assert mount(datalab, "a2", volume(lab, "proja")) == MNT3_OK


def test_a_held_addition_names_the_hold_and_since_when(
    lab: Lab, datalab: DataLab, kernel: SimCloud, capsys: pytest.CaptureFixture[str]
) -> None:
    assert lab.cli("sync") == 0
    Path(lab.config["maintenance_file"]).write_text("freeze: network upgrade\n")
    kernel.create_server("a-2", "proja", region="RegionOne", addresses=[A2])
    assert lab.cli("sync") == 3
    assert mount(datalab, "a2", volume(lab, "proja")) == MNT3ERR_ACCES
    _rc, rep = diagnose(lab, capsys, "--json")
    (c,) = rep["causes"]
    assert (c["cause"], addresses(c)) == ("addition-held", [A2])
    assert any("held (freeze) since 20" in n for n in c["notes"]), c["notes"]


def test_an_address_pending_removal_is_explained(
    lab: Lab, datalab: DataLab, kernel: SimCloud, capsys: pytest.CaptureFixture[str]
) -> None:
    assert lab.cli("sync") == 0
    kernel.delete_server("b-1")
    assert lab.cli("sync") == 3  # the removal waits for its confirmations
    assert mount(datalab, "b1", volume(lab, "projb")) == MNT3_OK  # still in force
    assert mount(datalab, "b1", volume(lab, "proja")) == MNT3ERR_ACCES
    _rc, rep = diagnose(lab, capsys, "--json")
    (c,) = rep["causes"]
    assert (c["cause"], addresses(c), c["severity"]) == ("pending-removal", [B1], "OK")
    # diagnose's own plan is the next cycle's: its confirmation removes the pair then
    assert any("leaving: projb" in n and "instance-gone" in n for n in c["notes"]), c["notes"]


def test_an_address_removed_is_explained_from_the_journal(
    lab: Lab, datalab: DataLab, kernel: SimCloud, capsys: pytest.CaptureFixture[str]
) -> None:
    assert lab.cli("sync") == 0
    kernel.delete_server("b-1")
    assert lab.cli("sync") == 3  # 1 of 2 confirmations
    assert lab.cli("sync") == 0  # removed (instance-gone)
    assert mount(datalab, "b1", volume(lab, "projb")) == MNT3ERR_ACCES
    _rc, rep = diagnose(lab, capsys, "--json")
    (c,) = rep["causes"]
    assert (c["cause"], addresses(c), c["severity"]) == ("removed", [B1], "OK")
    assert "removed it from projb" in c["notes"][0] and "instance-gone" in c["notes"][0]


def test_a_pair_in_force_that_the_server_does_not_serve_is_refused_while_exported(
    lab: Lab, datalab: DataLab, kernel: SimCloud, capsys: pytest.CaptureFixture[str]
) -> None:
    """Someone ran ``exportfs -ua`` by hand: our record says a1 may mount proja's
    volume, rpc.mountd refuses it: the server is not serving what the files say."""
    assert lab.cli("sync") == 0
    datalab.exportfs("-ua")
    assert mount(datalab, "a1", volume(lab, "proja")) == MNT3ERR_ACCES
    _rc, rep = diagnose(lab, capsys, "--json")
    (c,) = rep["causes"]
    assert (c["cause"], addresses(c), c["severity"]) == ("refused-while-exported", [A1], "WARNING")
    assert "run 'nfs-exportd sync'" in c["notes"][0]
    assert diagnose(lab, capsys, "--check")[0] == 1
    assert lab.cli("sync") == 0  # the advice: the cycle reads the etab back and re-applies
    assert mount(datalab, "a1", volume(lab, "proja")) == MNT3_OK


def test_a_path_this_server_does_not_serve(
    lab: Lab, datalab: DataLab, kernel: SimCloud, capsys: pytest.CaptureFixture[str]
) -> None:
    assert lab.cli("sync") == 0
    elsewhere = lab.srv("elsewhere")  # exists, served by nobody here
    assert mount(datalab, "a1", elsewhere) == MNT3ERR_ACCES
    _rc, rep = diagnose(lab, capsys, "--json")
    (c,) = rep["causes"]
    assert (c["cause"], [p["path"] for p in c["paths"]]) == ("path-not-served", [elsewhere])
    rc, line = diagnose(lab, capsys, "--check")
    assert rc == 1 and "path-not-served: 1 refusals" in line


def test_an_address_unknown_to_the_cloud_warns(
    lab: Lab, datalab: DataLab, kernel: SimCloud, capsys: pytest.CaptureFixture[str]
) -> None:
    assert lab.cli("sync") == 0
    assert mount(datalab, "a2", volume(lab, "proja")) == MNT3ERR_ACCES  # .12: no instance
    _rc, rep = diagnose(lab, capsys, "--json")
    (c,) = rep["causes"]
    assert (c["cause"], addresses(c), c["projects"]) == ("unknown-address", [A2], ["proja"])
    assert rep["inventory"]["complete"] is True
    assert diagnose(lab, capsys, "--check")[0] == 1


def set_log_level(dbus_address: str, component: str, level: str) -> None:
    """The runtime recipe (what ``dbus-send ... Properties.Set`` does), over jeepney."""
    from jeepney import DBusAddress, new_method_call
    from jeepney.io.blocking import open_dbus_connection
    from jeepney.wrappers import unwrap_msg

    admin = DBusAddress(
        "/org/ganesha/nfsd/admin",
        bus_name="org.ganesha.nfsd",
        interface="org.freedesktop.DBus.Properties",
    )
    with open_dbus_connection(dbus_address) as conn:
        msg = new_method_call(
            admin, "Set", "ssv", ("org.ganesha.nfsd.log.component", component, ("s", level))
        )
        unwrap_msg(conn.send_and_get_reply(msg, timeout=10))


def test_ganesha_at_its_default_log_level_is_said_to_hide_refusals_until_raised_at_runtime(
    lab: Lab, datalab: DataLab, ganesha: SimCloud, capsys: pytest.CaptureFixture[str]
) -> None:
    g = datalab.ganesha
    assert lab.cli("sync") == 0
    set_log_level(g.dbus_address, "COMPONENT_EXPORT", "NIV_EVENT")  # Ganesha's default
    try:
        refused = nfs_cat(datalab.vm("b1").netns, g.address, f"{volume(lab, 'proja')}/{FILE}", 3)
        assert not refused.ok
        rc, rep = diagnose(lab, capsys, "--json")
        assert rep["refusals"] == 0  # refused, and not a line about it
        (warn,) = rep["warnings"]
        assert "log level is too low" in warn and "variant:string:NIV_INFO" in warn
        rc, line = diagnose(lab, capsys, "--check")
        assert rc == 1 and "log level is too low" in line, line
        # the advice, followed at run time: no restart, the next refusal is seen
        set_log_level(g.dbus_address, "COMPONENT_EXPORT", "NIV_INFO")
        refused = nfs_cat(datalab.vm("b1").netns, g.address, f"{volume(lab, 'proja')}/{FILE}", 3)
        assert not refused.ok
        rc, rep = diagnose(lab, capsys, "--json")
        assert rep["warnings"] == [] and [c["cause"] for c in rep["causes"]] == ["other-project"]
        assert diagnose(lab, capsys, "--check")[0] == 0
    finally:
        set_log_level(g.dbus_address, "COMPONENT_EXPORT", "NIV_INFO")
