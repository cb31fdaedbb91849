"""The data path with the Ganesha backend, end to end: the simulated cloud's instances
carry the lab VMs' addresses, the real daemon (``nfs-exportd sync``, ``backend: ganesha``)
writes one conf file per export into the lab Ganesha's conf_dir and applies it over the
lab's private DBus, and the VMs read over NFSv3 and NFSv4 with libnfs: ``nfs-cat`` (a
fresh mount each time) and held readers (one mount, one open file, a pread every few ms:
an instance that is using its volume).

VMs: a1 198.51.100.11 and a2 .12 (project A's instances), b1 .21 (project B's); Ganesha
at 198.51.100.130.  v4 mounts use the Pseudo path, v3 the Path: the backend makes both
the volume's path, so one path serves both.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import Lab
from datapath_world import A1, A2, B1, PROJECTS, cloud_world, volume
from lab_fixtures import DataLab, datalab, scratch_tree
from nfs_exportd.apply.ganesha.backend import STATE_FILE
from nfs_exportd.apply.ganesha.dbus import GaneshaBus
from nfs_exportd_sim import SimCloud
from nfs_exportd_sim.lab.clients import NfsResult, nfs_cat
from nfs_exportd_sim.lab.holder import HeldReader, HoldResult
from nfs_exportd_sim.lab.proc import LabError

__all__ = ["datalab"]  # a fixture, imported for pytest

FILE = "hello.txt"
VMS = ("a1", "a2", "b1")
VERSIONS = (3, 4)
# what libnfs says when Ganesha refuses a new mount (v4: the export is not in the
# client's pseudo tree; v3: the MOUNT reply)
REFUSED = {4: "NFS4ERR_NOENT", 3: "MNT3ERR_ACCES"}
# ... and when it refuses a read through a file opened while access was allowed
REVOKED = {4: "NFS4ERR_ACCESS", 3: "RPC Packet not accepted"}
# the first failed read of an open file whose access was revoked: at most this long
# after the sync returned (measured: a few ms after UpdateExport returned)
REVOKE_WITHIN = 0.25
# a read failure that a Ganesha restart itself causes: at most this long after
# restart() returned (the restart took ~0.25 s here)
RESTART_GRACE = 1.0

Access = dict[tuple[str, str, int], NfsResult]


@dataclass
class World:
    lab: Lab
    datalab: DataLab
    sim: SimCloud
    updates: list[tuple[float, int]]  # (when UpdateExport returned, Export_Id)
    readers: list[HeldReader] = field(default_factory=list)

    @property
    def server(self) -> str:
        return self.datalab.net.server_ip

    def sync(self) -> int:
        return self.lab.cli("sync")

    def cat(self, vm: str, project: str, version: int) -> NfsResult:
        vol = volume(self.lab, project)
        return nfs_cat(self.datalab.vm(vm).netns, self.server, f"{vol}/{FILE}", version)

    def access(self) -> Access:
        """(vm, project, version) -> what ``nfs-cat`` of that project's file saw from
        that VM (all at once)."""
        keys = [(vm, p, v) for vm in VMS for p in PROJECTS for v in VERSIONS]
        with ThreadPoolExecutor(6) as pool:
            return dict(zip(keys, pool.map(lambda k: self.cat(*k), keys), strict=True))

    def hold(self, vm: str, project: str, version: int, interval: float = 0.02) -> HeldReader:
        """A started held reader of ``project``'s file from ``vm`` (stopped at teardown
        if the test does not stop it)."""
        vol = volume(self.lab, project)
        r = HeldReader(self.datalab.vm(vm).netns, self.server, vol, FILE, version, interval)
        self.readers.append(r)
        try:
            r.start()
        except LabError as exc:
            pytest.fail(f"held reader {vm} {project} v{version}: {exc}", pytrace=False)
        return r

    def export_id(self, project: str) -> int:
        vol = volume(self.lab, project)
        (eid,) = [i for i, p in self.datalab.ganesha.exports().items() if p == vol]
        return eid

    def live(self) -> dict[int, list[str]]:
        """Our exports in force: {Export_Id: clients} (DisplayExport)."""
        g = self.datalab.ganesha
        return {i: g.clients(i) for i in sorted(g.exports()) if i}

    def conf(self) -> dict[str, tuple[str, int]]:
        """conf_dir: {name: (text, mtime_ns)}."""
        return {
            p.name: (p.read_text(), p.stat().st_mtime_ns)
            for p in sorted(self.datalab.ganesha.conf_dir.iterdir())
        }

    def bus_owner(self) -> str | None:
        state = json.loads((self.lab.state_dir / STATE_FILE).read_text())
        return state.get("bus_owner")


def allowed(access: Access) -> set[tuple[str, str]]:
    """(vm, project) pairs that read the file over both versions; any other pair must be
    refused over both, with libnfs's refusal message (a half answer fails here)."""
    out = set()
    for vm in VMS:
        for p in PROJECTS:
            got = [access[(vm, p, v)] for v in VERSIONS]
            if all(r.ok and f"hello from {p}" in r.output for r in got):
                out.add((vm, p))
                continue
            for v, r in zip(VERSIONS, got, strict=True):
                assert not r.ok and REFUSED[v] in r.message, f"{vm} {p} v{v}: {r}"
    return out


@pytest.fixture
def world(lab: Lab, datalab: DataLab, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    """The lab's daemon with ``backend: ganesha`` on the data lab's Ganesha, reading the
    simulated cloud; no exports at the start; each volume holds one readable file."""
    g = datalab.ganesha
    if not g.alive():  # an earlier test failed with Ganesha stopped
        g.restart()
    with cloud_world(lab, datalab, monkeypatch) as sim:
        for p in PROJECTS:
            scratch_tree(Path(volume(lab, p)), {FILE: f"hello from {p}\n"})
        lab.config["backend"] = "ganesha"
        lab.config["ganesha"] = {
            "conf_dir": str(g.conf_dir),
            "staging_dir": str(g.conf_dir.with_name("staging")),  # same filesystem
            "dbus_address": g.dbus_address,
            "timeout_seconds": 10,
        }
        updates: list[tuple[float, int]] = []
        real_update = GaneshaBus.update

        def timed_update(bus: GaneshaBus, conf: str, export_id: int) -> str:
            out = real_update(bus, conf, export_id)
            updates.append((time.time(), export_id))
            return out

        monkeypatch.setattr(GaneshaBus, "update", timed_update)  # the real call, timed
        w = World(lab, datalab, sim, updates)
        try:
            yield w
        finally:
            for r in w.readers:
                if r.alive():
                    with contextlib.suppress(LabError):
                        r.stop()
            if not g.alive():
                g.restart()


def _first_failure(res: HoldResult) -> float:
    assert res.failed, "no read failed"
    return res.failed[0][0]


# -- who reads what --------------------------------------------------------------------


def test_a_vm_reads_its_projects_volume_and_is_refused_the_others(world: World) -> None:
    assert allowed(world.access()) == set()  # nothing exported yet
    assert world.sync() == 0
    assert allowed(world.access()) == {("a1", "proja"), ("b1", "projb")}
    log = world.datalab.ganesha.log_text()
    assert f"for client ::ffff:{B1}" in log and "Access not allowed" in log


def test_a_new_instance_reads_after_one_cycle(world: World) -> None:
    assert world.sync() == 0
    a1 = [world.hold("a1", "proja", v) for v in VERSIONS]
    for v in VERSIONS:
        got = world.cat("a2", "proja", v)
        assert not got.ok and REFUSED[v] in got.message, f"v{v}: {got}"
    world.sim.create_server("a-2", "proja", region="RegionOne", addresses=[A2])
    assert world.sync() == 0
    for v in VERSIONS:
        got = world.cat("a2", "proja", v)
        assert got.ok and "hello from proja" in got.output, f"v{v}: {got}"
    for r in a1:  # the instance already reading was not disturbed by the update
        res = r.stop()
        assert res.reads > 3 and res.failed == [], f"{r.url}: {res}"
    assert [u[1] for u in world.updates] == [world.export_id("proja")]  # one UpdateExport


def test_an_address_given_to_another_project_follows_it_in_one_cycle(world: World) -> None:
    """a-1 deleted, its address given to a new instance of B, while a-1's VM still has
    A's file open: in that one cycle the open file loses access, the address reads B's
    volume and is refused A's; A's other instance (a2) reads on."""
    world.sim.create_server("a-2", "proja", region="RegionOne", addresses=[A2])
    assert world.sync() == 0
    revoked = [world.hold("a1", "proja", v, interval=0.005) for v in VERSIONS]
    others = [world.hold("a2", "proja", 4), world.hold("b1", "projb", 3)]
    world.sim.delete_server("a-1")
    world.sim.create_server("b-2", "projb", region="RegionOne", addresses=[A1])
    started = time.time()
    rc = world.sync()
    returned = time.time()
    time.sleep(REVOKE_WITHIN)
    results = [r.stop() for r in revoked]
    for res, v in zip(results, VERSIONS, strict=True):
        first = _first_failure(res)
        assert started < first < returned + REVOKE_WITHIN, f"v{v}: {res.failed[:3]}"
        assert all(REVOKED[v] in e for _t, e in res.failed), f"v{v}: {res.failed[:3]}"
        assert res.failed[-1][0] - first > 0.1  # it stays refused
    for r in others:
        res = r.stop()
        assert res.reads > 5 and res.failed == [], f"{r.url}: {res}"
    assert rc == 0
    proja = world.export_id("proja")
    returns = [t for t, i in world.updates if i == proja]
    assert len(returns) == 1, f"UpdateExport of proja's export {proja}: {world.updates}"
    for res, v in zip(results, VERSIONS, strict=True):
        first = res.failed[0][0]
        print(
            f"v{v}: first failed read {1000 * (first - returns[0]):+.1f} ms after "
            f"UpdateExport returned, {1000 * (first - returned):+.1f} ms after the sync "
            f"returned (sync took {1000 * (returned - started):.0f} ms)"
        )
    assert allowed(world.access()) == {("a1", "projb"), ("a2", "proja"), ("b1", "projb")}


# -- the control plane has a bad minute: nobody loses access ----------------------------


def _held(
    world: World, cycles: int, expect: int = 3, gained: frozenset[tuple[str, str]] = frozenset()
) -> list[dict[str, object]]:
    """Run ``cycles`` syncs (each must exit ``expect``) while every allowed VM holds its
    project's file open over v3 and v4: no read may fail, and afterwards every VM reads
    and is refused exactly as before (plus the ``gained`` pairs).  Returns the statuses."""
    before = allowed(world.access())
    assert before
    readers = [world.hold(vm, p, v) for vm, p in sorted(before) for v in VERSIONS]
    statuses, codes = [], []
    for _ in range(cycles):
        codes.append(world.sync())
        statuses.append(world.lab.status())
    time.sleep(0.1)
    for r in readers:
        res = r.stop()
        assert res.reads > 5 and res.failed == [], f"{r.url}: {res.failed[:3]}"
    assert codes == [expect] * cycles
    assert allowed(world.access()) == before | gained
    return statuses


def test_keystone_401_for_many_cycles_loses_no_access(world: World) -> None:
    assert world.sync() == 0
    live = world.live()
    world.sim.add_fault(service="identity", method="POST", path_regex="auth/tokens", status=401)
    statuses = _held(world, cycles=5)
    assert all("401" in str(s["inventory"]) for s in statuses)
    assert world.live() == live


def test_the_maintenance_flag_holds_removals_and_no_vm_loses_access(world: World) -> None:
    """The flag holds b-1's removal; a new instance of A is still served (maintenance
    freezes removals only): an UpdateExport while a1 and b1 read."""
    world.lab.config["safety"]["max_removal_fraction"] = 1.0  # only the flag holds
    assert world.sync() == 0
    Path(world.lab.config["maintenance_file"]).write_text("upgrading the control plane\n")
    world.sim.delete_server("b-1")
    world.sim.create_server("a-2", "proja", region="RegionOne", addresses=[A2])
    statuses = _held(world, cycles=4, gained=frozenset({("a2", "proja")}))
    assert statuses[-1]["holds_by_reason"] == {"maintenance": 1}
    assert [u[1] for u in world.updates] == [world.export_id("proja")]
    assert world.live()[world.export_id("proja")] == [f"{A1}/32", f"{A2}/32"]


def test_a_too_large_removal_is_held_and_no_vm_loses_access(world: World) -> None:
    world.lab.config["safety"].update({"max_removal_fraction": 0.25, "min_removal_count": 0})
    world.sim.create_server("a-2", "proja", region="RegionOne", addresses=[A2], server_id="a-2")
    assert world.sync() == 0
    live = world.live()
    for sid in ("a-1", "a-2", "b-1"):  # every instance gone at once: 3 of 3 pairs
        world.sim.delete_server(sid)
    statuses = _held(world, cycles=4)
    assert statuses[-1]["holds_by_reason"] == {"too-much-change": 3}
    assert world.live() == live


# -- Ganesha restarted ------------------------------------------------------------------


def _restart_window(r: HeldReader, t0: float, t1: float) -> str:
    """A held reader across a Ganesha restart (from t0 to t1).  v3 is stateless and
    libnfs reconnects: no read may fail.  libnfs's v4 client does not reconnect a held
    mount: its reads may fail from the moment the old server went away, never with an
    access refusal (what is measured is the restart, not the exports)."""
    res = r.stop()
    if r.url.endswith("version=3") or not res.failed:
        assert res.reads > 5 and res.failed == [], f"{r.url}: {res.failed[:3]}"
        return "no read failed"
    first = res.failed[0][0]
    assert t0 <= first <= t1 + RESTART_GRACE, res.failed[:3]
    assert not any(REVOKED[4] in e for _t, e in res.failed), res.failed[:3]
    return f"{len(res.failed)} reads failed from {1000 * (first - t0):+.0f} ms ({res.failed[0][1]})"


def test_ganesha_restarted_between_cycles_serves_every_export_from_its_files(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    g = world.datalab.ganesha
    assert world.sync() == 0
    world.sim.create_server("a-2", "proja", region="RegionOne", addresses=[A2])
    assert world.sync() == 0  # an update: what the conf files say after it must be served
    world.updates.clear()
    pairs = {("a1", "proja"), ("a2", "proja"), ("b1", "projb")}
    v3 = [world.hold(vm, p, 3) for vm, p in sorted(pairs)]
    v4 = [world.hold(vm, p, 4) for vm, p in sorted(pairs)]
    live, conf, owner = world.live(), world.conf(), world.bus_owner()
    t0 = time.time()
    g.restart()
    t1 = time.time()
    time.sleep(0.3)
    # served again with no nfs-exportd cycle: from the conf files Ganesha read at start
    assert world.live() == live
    assert allowed(world.access()) == pairs
    # v3 (stateless) reads on through the restart; libnfs's v4 client does not reconnect
    # a held mount, so a v4 reader that was open loses its connection with the server
    for r in v3 + v4:
        print(f"restart ({1000 * (t1 - t0):.0f} ms): {r.url}: {_restart_window(r, t0, t1)}")
    # the next cycle notices the restart (every export re-checked) and changes nothing,
    # while every VM reads (v4 on fresh mounts)
    readers = [world.hold(vm, p, v) for vm, p in sorted(pairs) for v in VERSIONS]
    caplog.clear()
    assert world.sync() == 0
    assert world.bus_owner() not in (None, owner) and "Ganesha restarted (bus name" in caplog.text
    assert world.conf() == conf and world.live() == live and world.updates == []
    for r in readers:
        res = r.stop()
        assert res.reads > 3 and res.failed == [], f"{r.url}: {res.failed[:3]}"


def test_ganesha_restarted_during_a_cycle(
    world: World, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Ganesha restarts after the cycle wrote a changed export's conf file and before its
    UpdateExport: the new Ganesha serves the new file, the call confirms it, and the
    cycle ends verified; the next cycle notices the restart and changes nothing."""
    g = world.datalab.ganesha
    assert world.sync() == 0
    readers = [world.hold(vm, p, 3) for vm, p in (("a1", "proja"), ("b1", "projb"))]
    restarts: list[tuple[float, float]] = []
    timed_update = GaneshaBus.update

    def restart_first(bus: GaneshaBus, conf: str, export_id: int) -> str:
        if not restarts:
            t0 = time.time()
            g.restart()
            restarts.append((t0, time.time()))
        return timed_update(bus, conf, export_id)

    monkeypatch.setattr(GaneshaBus, "update", restart_first)
    world.sim.create_server("a-2", "proja", region="RegionOne", addresses=[A2])
    owner = world.bus_owner()
    assert world.sync() == 0
    assert len(restarts) == 1 and world.bus_owner() == owner  # restarted after the check
    assert world.live()[world.export_id("proja")] == [f"{A1}/32", f"{A2}/32"]
    assert allowed(world.access()) == {("a1", "proja"), ("a2", "proja"), ("b1", "projb")}
    conf, updates = world.conf(), len(world.updates)
    caplog.clear()
    assert world.sync() == 0
    assert world.bus_owner() != owner and "Ganesha restarted (bus name" in caplog.text
    assert world.conf() == conf and len(world.updates) == updates
    for r in readers:
        t0, t1 = restarts[0]
        print(f"restart in a cycle: {r.url}: {_restart_window(r, t0, t1)}")


def test_ganesha_crashing_mid_cycle_comes_back_with_the_last_verified_exports(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """a-1's address goes to B: proja's export is updated (a1 out), then Ganesha dies
    before projb's update.  The cycle fails and puts the conf files back; Ganesha,
    started again (as its service manager would), serves the last verified state with no
    cycle (a1 reads A's volume again: the record still says so); the next cycle applies."""
    g = world.datalab.ganesha
    world.sim.create_server("a-2", "proja", region="RegionOne", addresses=[A2])
    assert world.sync() == 0
    before = allowed(world.access())
    live = world.live()
    readers = [world.hold(vm, p, 3) for vm, p in (("a2", "proja"), ("b1", "projb"))]
    crash: list[float] = []
    timed_update = GaneshaBus.update

    def crash_second(bus: GaneshaBus, conf: str, export_id: int) -> str:
        if world.updates and not crash:
            crash.append(time.time())
            g.ganesha.stop(20)  # Ganesha gone between two UpdateExports of one cycle
        return timed_update(bus, conf, export_id)

    monkeypatch.setattr(GaneshaBus, "update", crash_second)
    world.sim.delete_server("a-1")
    world.sim.create_server("b-2", "projb", region="RegionOne", addresses=[A1])
    assert world.sync() == 1
    assert crash and len(world.updates) == 1  # proja's update was in force, then undone
    g.restart()
    restarted = time.time()
    assert world.live() == live
    assert allowed(world.access()) == before
    assert world.sync() == 0
    assert allowed(world.access()) == {("a1", "projb"), ("a2", "proja"), ("b1", "projb")}
    for r in readers:
        print(f"crash in a cycle: {r.url}: {_restart_window(r, crash[0], restarted)}")
