"""Adversarial tests of backend: ganesha against a real NFS-Ganesha 4.3 (the lab's server
on its private bus): a bus that never answers, a conf file of ours lost while its export
is in force, a broken conf file's advice, a renamed project whose old and new files share
a path (one EXPORT per path), and a lost state_dir while Keystone answers 401 (conf_dir,
not a record in state_dir, is what is in force)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import Lab
from lab_fixtures import ganesha_lo
from nfs_exportd.apply.ganesha.dbus import GaneshaBus
from nfs_exportd.errors import ApplyError, BackendUnavailable, StateError
from nfs_exportd.model import ExportLine, ExportsFile, FileKind
from nfs_exportd_sim.lab.ganesha import GaneshaServer
from test_failure_matrix import World, world
from test_ganesha_backend import OPTS, VM_A, VM_B, Rig, _reset, _served, rig, served_address

__all__ = ["ganesha_lo", "rig", "served_address", "world"]  # fixtures, imported for pytest


def _file(name: str, *lines: tuple[str, tuple[str, ...]]) -> ExportsFile:
    return ExportsFile(
        f"{name}.exports", FileKind.PROJECT, name, tuple(ExportLine(p, OPTS, c) for p, c in lines)
    )


def _in_thread(fn: Any, deadline: float) -> BaseException | None:
    """Run ``fn``; fail the test if it does not return within ``deadline`` (a hang)."""
    out: list[BaseException | None] = []

    def target() -> None:
        try:
            fn()
            out.append(None)
        except BaseException as exc:
            out.append(exc)

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(deadline)
    assert not t.is_alive(), f"still waiting after {deadline} s: an unbounded hang"
    return out[0]


@pytest.fixture
def mute_bus(tmp_path: Path) -> Iterator[str]:
    """A unix socket that completes D-Bus authentication and then never answers a
    message (not even Hello): a bus daemon that is stuck or overloaded."""
    path = tmp_path / "mute-bus"
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(str(path))
    srv.listen(8)
    conns: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                c, _ = srv.accept()
            except OSError:
                return
            conns.append(c)
            buf = b""
            while b"\r\n" not in buf:
                chunk = c.recv(1024)
                if not chunk:
                    break
                buf += chunk
            c.sendall(b"OK 0123456789abcdef0123456789abcdef\r\n")
            # then read whatever comes (BEGIN, Hello) and answer nothing

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield f"unix:path={path}"
    finally:
        stop.set()
        srv.close()
        for c in conns:
            c.close()


def test_a_bus_that_authenticates_but_never_answers_hello_is_bounded(
    rig: Rig, mute_bus: str
) -> None:
    """jeepney's DBusConnection says Hello with no timeout: before the fix, the cycle
    (and the state lock) hung for ever; ganesha.timeout_seconds must bound it."""
    rig.backend.bus_factory = lambda: GaneshaBus(mute_bus, 1)
    home = str(rig.data / "tools/home")
    err = _in_thread(lambda: rig.apply({"tools.exports": _file("tools", (home, (VM_A,)))}), 8)
    assert isinstance(err, BackendUnavailable), err
    assert "nothing was changed" in str(err)
    assert rig.conf() == {} and rig.in_force() == {} and rig.live() == {}


def test_a_conf_file_lost_while_its_export_is_in_force_is_taken_back(rig: Rig) -> None:
    """export-1000.conf removed by hand (or conf_dir wiped) while Ganesha still serves
    export 1000: before the fix every cycle tried AddExport of the same Path under a new
    id, Ganesha refused it (a second Pseudo), the cycle was undone, and export 1000 kept
    serving VM_A for ever, also after VM_A's address went to someone else."""
    home = str(rig.data / "tools/home")
    rig.apply({"tools.exports": _file("tools", (home, (VM_A,)))})
    assert rig.live() == {1000: [f"{VM_A}/32"]}
    (rig.server.conf_dir / "export-1000.conf").unlink()

    rig.apply({"tools.exports": _file("tools", (home, (VM_B,)))})  # VM_A's address moved
    assert rig.live() == {1000: [f"{VM_B}/32"]}
    assert list(rig.conf()) == ["export-1000.conf"]
    rig.server.restart()  # and Ganesha's next start serves the same
    assert rig.live() == {1000: [f"{VM_B}/32"]}


def test_a_broken_conf_file_of_ours_names_a_fix_that_works(rig: Rig) -> None:
    """The StateError for a hand-edited conf file said "restore it with nfs-exportd
    rollback", but rollback applies through the same check and fails the same way; the
    fix it names must be one that works: remove the file by hand, and the next sync
    writes it again (taking back its export, which stays in force meanwhile)."""
    home = str(rig.data / "tools/home")
    files = {"tools.exports": _file("tools", (home, (VM_A,)))}
    rig.apply(files)
    conf = rig.server.conf_dir / "export-1000.conf"
    conf.write_text(conf.read_text().replace("Squash = root_squash;", "Squash = none;"))
    with pytest.raises(StateError) as e:
        rig.apply(files)
    assert "rollback" not in str(e.value)
    assert "remove it by hand" in str(e.value)
    assert rig.live() == {1000: [f"{VM_A}/32"]}  # nothing changed
    conf.unlink()  # what the message says
    rig.apply(files)
    assert rig.live() == {1000: [f"{VM_A}/32"]} and list(rig.conf()) == ["export-1000.conf"]


# ------------------------------------------------------------- found by review, fixed


def _ganesha_config(config: dict[str, Any], g: GaneshaServer) -> None:
    config["backend"] = "ganesha"
    config["ganesha"] = {
        "conf_dir": str(g.conf_dir),
        "staging_dir": str(g.conf_dir.with_name("staging")),
        "dbus_address": g.dbus_address,
        "timeout_seconds": 10,
    }
    config.pop("exports_dir", None)  # the default: STATE_DIR/exports.d
    (Path(config["state_dir"]) / "exports.d").mkdir(parents=True, exist_ok=True)


def test_a_renamed_project_with_a_pending_removal_does_not_stall_every_cycle(
    lab: Lab, ganesha_lo: GaneshaServer
) -> None:
    """decide lets the old and the new name's files both hold the path during a rename
    (the old one keeps a pair that waits for its confirmations): exportfs merges the two
    lines; Ganesha refuses a second EXPORT with the same Pseudo, so every sync fails and
    is undone, and no other change (an ip-conflict removal included) is applied."""
    _ganesha_config(lab.config, ganesha_lo)
    lab.config["safety"]["removal_confirmations"] = 3
    lab.add_project("tools", 50380)
    home = lab.srv("tools", "home")
    a, b = "172.16.0.5", "172.16.0.6"
    lab.add_instance("i-1", "tools", a)
    lab.add_instance("i-2", "tools", b)
    try:
        assert lab.cli("sync") == 0
        ids = {p: i for i, p in ganesha_lo.exports().items()}
        lab.inventory["instances"] = [i for i in lab.inventory["instances"] if i["id"] != "i-2"]
        lab.inventory["projects"] = [{"id": "id-tools", "name": "tools-new", "enabled": True}]
        for inst in lab.inventory["instances"]:
            inst["project"] = "tools-new"
        lab.projects["tools-new"] = lab.projects.pop("tools")
        assert lab.cli("sync") == 3  # b's removal is pending; the rename applies
        assert _served(ganesha_lo) == {(home, a), (home, b)}
        # one EXPORT for the path, with its first id, a CLIENT block for each file
        assert [i for i, p in ganesha_lo.exports().items() if p == home] == [ids[home]]
        (conf,) = [p.read_text() for p in ganesha_lo.conf_dir.iterdir()]
        assert "record=tools.exports" in conf and "record=tools-new.exports" in conf
        assert lab.cli("sync") == 3  # and the next cycles do not fail either
        assert _served(ganesha_lo) == {(home, a), (home, b)}
    finally:
        _reset(ganesha_lo)


def test_lost_records_while_keystone_answers_401_remove_nothing(
    world: World, ganesha_lo: GaneshaServer
) -> None:
    """state_dir lost (a reinstall; exports.d made again as the README's install -d
    does) while Keystone answers 401: decide sees nothing in force and writes header-only
    records, and the backend removes every export of ours, although nothing was learned
    about any instance (fail static is broken; exportfs's files are not in state_dir)."""
    w = world
    _ganesha_config(w.lab.config, ganesha_lo)
    try:
        assert w.sync() == 0
        before = _served(ganesha_lo)
        assert before
        shutil.rmtree(w.lab.state_dir)
        (w.lab.state_dir / "exports.d").mkdir(parents=True)
        w.sim.add_fault(service="identity", status=401)
        w.sync()
        assert _served(ganesha_lo) == before
    finally:
        _reset(ganesha_lo)


def test_ganesha_frozen_mid_apply_costs_one_timeout_not_one_per_export(rig: Rig) -> None:
    """Ganesha stops answering (SIGSTOP: a hung server) after the 6th of 8 additions:
    the undo must not wait ganesha.timeout_seconds again for every export it puts back
    (at 5,000 exports and the default 30 s that is days with the state lock held); the
    conf files and records are put back, and UNDO FAILED says the rest is not verified."""
    vols = tuple((str(rig.data / "tools" / f"v{i}"), (VM_A,)) for i in range(8))
    for path, _ in vols:
        Path(path).mkdir()
    cfg = rig.backend.cfg
    calls = {"add": 0}

    class FreezesAfterSixAdds(GaneshaBus):
        def add(self, conf: str, export_id: int) -> str:
            calls["add"] += 1
            if calls["add"] == 7:
                os.kill(rig.server.pid, signal.SIGSTOP)
            return super().add(conf, export_id)

    rig.backend.bus_factory = lambda: FreezesAfterSixAdds(cfg.dbus_address, 1)
    started = time.monotonic()
    try:
        with pytest.raises(ApplyError, match="UNDO FAILED"):
            rig.apply({"tools.exports": _file("tools", *vols)})
    finally:
        os.kill(rig.server.pid, signal.SIGCONT)
    elapsed = time.monotonic() - started
    assert elapsed < 4, f"{elapsed:.1f} s: one timeout per export put back"
    assert rig.conf() == {} and rig.in_force() == {}
